"""Why two concurrent streams' first token comes later through the gateway than directly, on the real small model.

    .venv/bin/python -m bench.ttft_two_streams [--rounds 8] [--skew-ms 2]

llama-server batches the slots it is working on: a request that arrives while a batch is being computed waits for that
batch to end before its prompt is read. Two requests sent at the same moment straight to llama-server land in the
same batch; through the gateway, each is a little later (its own cost, about a millisecond) and the two drift apart,
so the second may miss the first one's batch. This bench measures, round by round and in turn:
- two streams straight to llama-server, sent together;
- the same two through the gateway;
- two streams straight to llama-server, the second sent --skew-ms later (the drift the gateway introduces);
- one stream alone, straight and through the gateway (what the gateway itself adds to a first token).
Each pair's first token is reported for the earlier and the later stream. If the skewed direct pair shows what the
gateway pair shows, the gap is llama-server's batching, not time spent in the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp

from bench.common import Bench, table

BODY = {"messages": [{"role": "user", "content": "Tell me a story about a fox."}], "max_tokens": 64,
        "stream": True, "temperature": 0, "seed": 1, "ignore_eos": True}  # fmt: skip


async def first_token(session: aiohttp.ClientSession, url: str, headers: dict[str, str], delay: float) -> float:
    """Milliseconds from sending (after `delay` s) to the first content event; the stream is read to its end."""
    await asyncio.sleep(delay)
    started, first = time.perf_counter(), None
    async with session.post(url, json={"model": "bench-model", **BODY}, headers=headers) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if first is None and line.startswith(b"data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = (time.perf_counter() - started) * 1000
    assert first is not None
    return first


async def run(args: argparse.Namespace, llama: str, gateway: str, key: str) -> dict[str, list[list[float]]]:
    direct = (f"{llama}/v1/chat/completions", {})
    through = (f"{gateway}/v1/chat/completions", {"Authorization": f"Bearer {key}"})
    cases = {
        "direct, together": (direct, [0.0, 0.0]),
        "gateway, together": (through, [0.0, 0.0]),
        f"direct, second {args.skew_ms:g} ms later": (direct, [0.0, args.skew_ms / 1000]),
        "direct, alone": (direct, [0.0]),
        "gateway, alone": (through, [0.0]),
    }
    results: dict[str, list[list[float]]] = {name: [] for name in cases}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for (url, headers), delays in cases.values():  # warm-up
            await asyncio.gather(*(first_token(session, url, headers, d) for d in delays))
        for n in range(args.rounds):
            order = list(cases) if n % 2 == 0 else list(reversed(cases))
            for name in order:
                (url, headers), delays = cases[name]
                times = await asyncio.gather(*(first_token(session, url, headers, d) for d in delays))
                results[name].append(sorted(times))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--skew-ms", type=float, default=2.0)
    args = parser.parse_args()
    with Bench() as bench:
        llama = bench.start_llama(["--threads", "1"])  # two slots (the default), one thread
        bench.add_model(llama)
        key = bench.create_key()
        gateway = bench.start_gateway()
        results = asyncio.run(run(args, llama, gateway, key))
    median = statistics.median
    rows = []
    for name, rounds in results.items():
        earlier = [times[0] for times in rounds]
        later = [times[-1] for times in rounds] if len(rounds[0]) > 1 else []
        rows.append([name, median(earlier), median(later) if later else "", max(max(r) for r in rounds)])
    print(f"\nFirst token of 64-token streams from the real small model (1 thread, 2 slots), {args.rounds} rounds")
    print(table(["case", "earlier stream p50 ms", "later stream p50 ms", "max ms"], rows))


if __name__ == "__main__":
    main()
