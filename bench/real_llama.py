"""Completion tokens/s from the real llama-server with the small model: through the gateway vs direct.

    .venv/bin/python -m bench.real_llama [--runs 6] [--tokens 64]

The same prompt at temperature 0 with a fixed seed and `ignore_eos`, so every run generates exactly `--tokens` tokens;
runs alternate gateway/direct (the order flipping each pair) so that machine noise hits both alike. tokens/s is
completion tokens over the client's wall time, for plain and for streamed requests. Target: gateway ≥ 97% of direct.
On a busy machine llama-server's own speed varies more from run to run than the gateway could change it, so the verdict
uses the share of each run's wall time that llama-server spent working (its reported prompt + generation time over the
client's wall time): gateway/direct of that share is the tokens/s ratio with the server's speed held equal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

import aiohttp

from bench.common import Bench, LoadTarget, direct_target, gateway_target, table, verdict

TARGET_RATIO = 0.97
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def body(tokens: int, stream: bool) -> bytes:
    return json.dumps(
        {
            "model": "bench-model",
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": tokens,
            "temperature": 0,
            "seed": 42,
            "ignore_eos": True,
            "stream": stream,
            **({"stream_options": {"include_usage": True}} if stream else {}),
        }
    ).encode()


Run = tuple[
    int, float, float
]  # completion tokens, client wall time (s), llama-server's own prompt + generation time (s)


def _server_seconds(event: dict) -> float:
    timings = event.get("timings") or {}
    return (timings.get("prompt_ms", 0) + timings.get("predicted_ms", 0)) / 1000


async def run_once(session: aiohttp.ClientSession, target: LoadTarget, data: bytes, stream: bool) -> Run:
    """One request: (completion tokens, wall seconds, server seconds)."""
    started = time.perf_counter()
    async with session.post(target.url, data=data, headers=target.headers) as response:
        if response.status != 200:
            raise RuntimeError(f"{target.name}: {response.status} {(await response.read())[:300]!r}")
        if not stream:
            result = json.loads(await response.read())
            wall = time.perf_counter() - started
            return result["usage"]["completion_tokens"], wall, _server_seconds(result)
        tokens, server = 0, 0.0
        async for line in response.content:
            if line.startswith(b"data: {"):
                event = json.loads(line[6:])
                if event.get("usage"):
                    tokens = event["usage"]["completion_tokens"]
                server = _server_seconds(event) or server
    return tokens, time.perf_counter() - started, server


async def measure(
    targets: list[LoadTarget], tokens: int, runs: int, stream: bool, budget: float
) -> dict[str, list[Run]]:
    """Interleaved runs; stops after the pair that exhausts `budget` seconds (a loaded machine can be very slow)."""
    results: dict[str, list[Run]] = {t.name: [] for t in targets}
    data = body(tokens, stream)
    deadline = time.monotonic() + budget
    # A new connection for every request: llama-server drops keep-alive connections idle for 5 s.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        for target in targets:  # warm-up: the prompt cache, the gateway's caches
            await run_once(session, target, data, stream)
        for n in range(runs):
            for target in targets if n % 2 == 0 else reversed(targets):
                results[target.name].append(await run_once(session, target, data, stream))
            if time.monotonic() > deadline:
                print(f"note: {stream=}: time budget spent after {n + 1} of {runs} pairs", file=sys.stderr)
                break
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=6, help="runs per target and mode")
    parser.add_argument("--tokens", type=int, default=64, help="completion tokens per run")
    parser.add_argument(
        "--threads", type=int, default=1, help="llama-server --threads (1 leaves a core to the gateway and the client)"
    )
    parser.add_argument("--budget", type=float, default=50, help="seconds per mode, at most (after the warm-up)")
    args = parser.parse_args()

    with Bench() as bench:
        llama = bench.start_llama(["--threads", str(args.threads)])
        bench.add_model(llama)
        key = bench.create_key()
        gateway = bench.start_gateway(LOG_ENABLED="true")
        targets = [direct_target(llama), gateway_target(gateway, key)]
        results = {
            mode: asyncio.run(measure(targets, args.tokens, args.runs, mode == "stream", args.budget))
            for mode in ("plain", "stream")
        }

    print(
        f"\nReal llama-server (small model, --threads {args.threads}), {args.tokens} tokens per run, "
        "runs interleaved gateway/direct"
    )
    rows, summary = [], []  # tokens/run lists every distinct count seen: one value means like for like
    for mode, pooled in results.items():
        rates, efficiency = {}, {}
        for name in ("direct", "gateway"):
            runs = pooled[name]
            counts = {tokens for tokens, _, _ in runs}
            rates[name] = sum(tokens for tokens, _, _ in runs) / sum(wall for _, wall, _ in runs)
            # The share of the client's wall time llama-server spent working: immune to its speed changing under load.
            efficiency[name] = statistics.median(server / wall for _, wall, server in runs)
            per_run = statistics.median(tokens / wall for tokens, wall, _ in runs)
            added = statistics.median((wall - server) * 1000 for _, wall, server in runs)
            rows.append([mode, name, len(runs), "/".join(map(str, sorted(counts))), rates[name], per_run, added])
        pairs = [(g[0] / g[1]) / (d[0] / d[1]) for g, d in zip(pooled["gateway"], pooled["direct"], strict=True)]
        summary.append(
            [
                mode,
                f"{rates['gateway'] / rates['direct']:.1%}",
                f"{statistics.median(pairs):.1%}",
                f"{efficiency['gateway'] / efficiency['direct']:.1%}",
            ]
        )
    headers = ["mode", "target", "runs", "tokens/run", "tokens/s pooled", "tokens/s median", "wall - server ms"]
    print(table(headers, rows))
    print()
    headers = ["mode", "gateway/direct tokens/s pooled", "median of pairs", "server-time share ratio"]
    print(table(headers, summary))
    raw = min(float(row[2].rstrip("%")) for row in summary) / 100
    share = min(float(row[3].rstrip("%")) for row in summary) / 100
    print(f"\nlowest median-of-pairs tokens/s ratio: {raw:.1%} (moves with llama-server's own speed from run to run)")
    print(
        f"lowest server-time share ratio: {share:.1%} (target ≥ {TARGET_RATIO:.0%}): {verdict(share >= TARGET_RATIO)}"
    )


if __name__ == "__main__":
    main()
