"""Saved prompt caches: a conversation's next turn after its model was evicted, with and without the saved cache.

    .venv/bin/python -m bench.prompt_cache [--rounds 3] [--rules 120]

Two managed models share a budget that fits one: "cached" (the small model with --swa-full, which Gemma 3's
sliding-window layers need for a restored cache to be reused) and "other" (the same GGUF), which evicts it. Each
round, in one run:
- a long conversation's first turn on "cached" (a system prompt of --rules rules, over 1,000 tokens);
- a request for "other", which evicts "cached": the swap, which now includes saving its slot;
- the conversation's next turn on "cached", streamed: its time to first token (TTFT) with the saved cache restored;
- the same next turn from another API key, whose conversation was never saved: the TTFT read from scratch;
- a short request on "cached" (below KV_CACHE_MIN_TOKENS: nothing to save), then the swap again: without a save.
Each TTFT includes the model's load; the log row's cold_start_ms says how long the request waited for it, and the
prompt's share is TTFT minus that wait. Target: with the cache, the prompt's share is at most 5% of the cold one's.
The save and restore times are llama-server's own, from the supervisor's log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import table, verdict
from bench.lifecycle import LifecycleBench

TARGET_RATIO = 0.05
GREEDY = {"temperature": 0, "seed": 7, "max_tokens": 4}


def system_prompt(rules: int) -> str:
    return " ".join(f"Rule {n}: answer briefly, politely and in plain words, and never repeat rule {n}." for n in
                    range(rules))  # fmt: skip


async def streamed_first_token(
    session: aiohttp.ClientSession, url: str, key: str, model: str, messages: list[dict]
) -> tuple[float, str]:
    """(seconds to the first content event, the request's X-Request-Id); the rest of the answer is read too, so that
    the slot holds the whole turn."""
    started, first = time.perf_counter(), None
    body = {"model": model, "messages": messages, "stream": True, **GREEDY}
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        if response.status != 200:
            raise RuntimeError(f"{model}: {response.status} {(await response.read())[:300]!r}")
        async for line in response.content:
            if first is None and line.startswith(b"data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - started
        if first is None:
            raise RuntimeError("the stream ended without content")
        return first, response.headers.get("X-Request-Id", "")


async def whole(session: aiohttp.ClientSession, url: str, key: str, model: str, messages: list[dict]) -> dict:
    body = {"model": model, "messages": messages, **GREEDY}
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        if response.status != 200:
            raise RuntimeError(f"{model}: {response.status} {(await response.read())[:300]!r}")
        return await response.json()


def row(db_path: Path, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with sqlite3.connect(db_path, timeout=20) as db:
            db.row_factory = sqlite3.Row
            found = db.execute("SELECT * FROM gateway_requestlog WHERE request_id = ?", (request_id,)).fetchone()
        if found is not None:
            return dict(found)
        time.sleep(0.1)
    raise RuntimeError(f"request {request_id} was not logged")


def delays(log: Path) -> list[float]:
    return [float(m.group(1)) for m in re.finditer(r"delayed its stop by (\d+) ms", log.read_text(errors="replace"))]


def logged_ms(log: Path, what: str) -> list[float]:
    """llama-server's own save or restore times, from the supervisor's log lines."""
    pattern = re.compile(rf"prompt cache of \S+ (?:slot \d+ )?{what}.* in (\d+) ms")
    return [float(m.group(1)) for m in pattern.finditer(log.read_text(errors="replace"))]


async def run(args: argparse.Namespace, bench: LifecycleBench) -> None:
    from gateway.llama import model_path
    from gateway.node import link as client

    gguf = str(model_path())
    common = ["--gguf", gguf, "--ctx-size", "4096", "--parallel", "1", "--cache-ram-mb", "0"]
    bench.manage("addmodel", "cached", *common, "--llama-args=--swa-full")
    bench.manage("addmodel", "other", *common)
    owner = bench.create_key("owner")
    strangers = [bench.create_key(f"stranger-{n}") for n in range(args.rounds)]
    _, address = bench.start_supervisor(MODEL_MEMORY_BUDGET_MB="700", LOG_LEVEL="INFO")
    gateway = bench.start_gateway(LOG_ENABLED="true", LOG_FLUSH_INTERVAL="0.1")
    chat = f"{gateway}/v1/chat/completions"
    system = {"role": "system", "content": system_prompt(args.rules)}

    async def stopped(model: str) -> None:
        for _ in range(300):
            status = await client.command(address, "status")
            if next(m for m in status["models"] if m["id"] == model)["state"] == "stopped":
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{model} was not stopped")

    hello = [{"role": "user", "content": "Hi"}]
    read: dict[str, list[tuple[float, int]]] = {"with": [], "without": []}  # llama-server's prompt_ms, cache_n
    with_cache, without_cache, swap_save, swap_plain, prompt_tokens, sources = [], [], [], [], [], []
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for n in range(args.rounds):
            first = [system, {"role": "user", "content": f"Round {n}: say hello."}]
            answer = await whole(session, chat, owner, "cached", first)
            prompt_tokens.append(answer["usage"]["prompt_tokens"])
            seconds, _ = await streamed_first_token(session, chat, owner, "other", hello)  # evicts, saving
            swap_save.append(seconds)
            await stopped("cached")
            next_turn = [*first, answer["choices"][0]["message"], {"role": "user", "content": "And goodbye?"}]

            seconds, request_id = await streamed_first_token(session, chat, owner, "cached", next_turn)
            logged = row(bench.db_path, request_id)
            sources.append(logged["prompt_cache"])
            with_cache.append((seconds, (logged["cold_start_ms"] or 0) / 1000))
            read["with"].append((logged["prompt_ms"], logged["cached_tokens"]))

            await streamed_first_token(session, chat, owner, "other", hello)
            await stopped("cached")
            seconds, request_id = await streamed_first_token(session, chat, strangers[n], "cached", next_turn)
            logged = row(bench.db_path, request_id)
            without_cache.append((seconds, (logged["cold_start_ms"] or 0) / 1000))
            read["without"].append((logged["prompt_ms"], logged["cached_tokens"]))

            await whole(session, chat, owner, "cached", hello)  # only a short prompt left: nothing to save
            seconds, _ = await streamed_first_token(session, chat, owner, "other", hello)
            swap_plain.append(seconds)
            await whole(session, chat, owner, "cached", hello)

    log = bench.tmp / "supervisor.log"
    median = statistics.median
    ms = lambda values: [v * 1000 for v in values]  # noqa: E731
    prompt_with = ms([ttft - wait for ttft, wait in with_cache])
    prompt_without = ms([ttft - wait for ttft, wait in without_cache])
    print(f"\nA {median(prompt_tokens):.0f}-token conversation's next turn after its model was evicted "
          f"({args.rounds} rounds; sources of the restored turns: {', '.join(sources)})")  # fmt: skip
    rows = [
        ["TTFT with the saved cache", ms([t for t, _ in with_cache])],
        ["  of which waiting for the model (cold_start_ms)", ms([w for _, w in with_cache])],
        ["  the prompt's share: TTFT - wait", prompt_with],
        ["TTFT without (another key: read from scratch)", ms([t for t, _ in without_cache])],
        ["  of which waiting for the model (cold_start_ms)", ms([w for _, w in without_cache])],
        ["  the prompt's share: TTFT - wait", prompt_without],
        ["llama-server's prompt_ms with the cache", [ms for ms, _ in read["with"]]],
        ["llama-server's prompt_ms without", [ms for ms, _ in read["without"]]],
        ["  tokens served from the cache, with (count)", [n for _, n in read["with"]]],
        ["save (llama-server's save_ms)", logged_ms(log, "saved")],
        ["the stop's delay for its saves (supervisor)", delays(log)],
        ["restore (llama-server's restore_ms)", logged_ms(log, "restored")],
        ["swap to the other model, with the save", ms(swap_save)],
        ["swap to the other model, nothing to save", ms(swap_plain)],
    ]
    print(table(["", "median ms", "min ms", "max ms"],
                [[name, median(v), min(v), max(v)] for name, v in rows if v]))  # fmt: skip
    ratio = median(prompt_with) / median(prompt_without)
    print(f"\nthe prompt's share with the cache / without: {ratio:.1%} (target ≤ {TARGET_RATIO:.0%}): "
          f"{verdict(ratio <= TARGET_RATIO)}")  # fmt: skip
    print(f"the swap's cost of saving: {median(ms(swap_save)) - median(ms(swap_plain)):+.0f} ms at the median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rules", type=int, default=120, help="rules in the system prompt (120: about 2,800 tokens)")
    args = parser.parse_args()
    with LifecycleBench() as bench:
        import django

        django.setup()
        asyncio.run(run(args, bench))


if __name__ == "__main__":
    main()
