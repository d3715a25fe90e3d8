"""Model lifecycle: what loading on demand costs, what a swap costs, and how good the memory estimate is.

    .venv/bin/python -m bench.lifecycle [--rounds 3] [--formula-only]

- Cold start: time to the first token of a streamed request for a stopped managed model through the gateway, and
  what the gateway adds to it, measured within the same runs (so that llama-server's own load time, which varies by
  seconds on a busy machine, cancels out): the time the request waited for its model (its log row's cold_start_ms)
  minus llama-server's load (exec to /health 200, as the supervisor timed it), plus the proxy's share of a first
  token (warm first tokens through the gateway and directly, interleaved). For context, llama-server started by
  hand with the very same command line (read from the model's log) and asked the same request as soon as its
  /health answers 200 (polled every 5 ms). Target: the gateway adds at most 100 ms.
- Swap: the first token of model B when idle model A must be evicted first (a budget that fits one), vs B's own
  cold start.
- Memory: the GGUF estimate against what the ready process holds (RSS plus device buffers) and the buffers its log
  reports; and the formula's figures for the original service's five models (published hyperparameters and file
  sizes), the README's table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import ROOT, Bench, table, verdict

TARGET_ADDED_MS = 100.0
MIB = 1024 * 1024
PROMPT = {"messages": [{"role": "user", "content": "Say something."}], "max_tokens": 4, "stream": True}

# The original service's models (docs: origin.md) with their published hyperparameters and Q4_K_M file sizes
# (projectors in f16), and the flags of the README's worked example.
FIVE_MODELS: list[dict[str, Any]] = [
    {"id": "deepseek-r1-7b", "arch": "qwen2", "layers": 28, "heads": 28, "kv_heads": 4, "head_dim": 128, "embd": 3584,
     "ff": 18944, "vocab": 152064, "file_gb": 4.68, "ctx": 4096, "parallel": 2},
    {"id": "qwen2.5-7b", "arch": "qwen2", "layers": 28, "heads": 28, "kv_heads": 4, "head_dim": 128, "embd": 3584,
     "ff": 18944, "vocab": 152064, "file_gb": 4.68, "ctx": 4096, "parallel": 2},
    {"id": "minicpm-v-2.5", "arch": "llama", "layers": 32, "heads": 32, "kv_heads": 8, "head_dim": 128, "embd": 4096,
     "ff": 14336, "vocab": 128256, "file_gb": 4.92, "mmproj_gb": 1.03, "ctx": 4096, "parallel": 1},
    {"id": "qwen2.5-vl-7b", "arch": "qwen2vl", "layers": 28, "heads": 28, "kv_heads": 4, "head_dim": 128, "embd": 3584,
     "ff": 18944, "vocab": 152064, "file_gb": 4.68, "mmproj_gb": 1.35, "ctx": 4096, "parallel": 1},
    {"id": "qwen3-embedding-8b", "arch": "qwen3", "layers": 36, "heads": 32, "kv_heads": 8, "head_dim": 128,
     "embd": 4096, "ff": 12288, "vocab": 151665, "file_gb": 4.68, "ctx": 2048, "parallel": 2, "cache_mb": 0},
]  # fmt: skip


def formula_table() -> str:
    """Each model's estimate, with the prompt cache MODEL_CACHE_RAM_MB gives (none for the embedding model: llama-server
    caches only completions' prompts)."""
    from django.conf import settings

    from gateway.lifecycle import estimate

    rows = []
    for m in FIVE_MODELS:
        a = m["arch"]
        fields = {f"{a}.block_count": m["layers"], f"{a}.attention.head_count": m["heads"],
                  f"{a}.attention.head_count_kv": m["kv_heads"], f"{a}.attention.key_length": m["head_dim"],
                  f"{a}.attention.value_length": m["head_dim"], f"{a}.embedding_length": m["embd"],
                  f"{a}.feed_forward_length": m["ff"]}  # fmt: skip
        weights = int((m["file_gb"] + m.get("mmproj_gb", 0)) * 1e9)
        header = estimate.Header(a, fields, weights, m["vocab"])
        options = estimate.Options(m["ctx"], m["parallel"], cache_ram_mb=m.get("cache_mb", settings.MODEL_CACHE_RAM_MB))
        need = estimate.estimate(m["id"], options, header=header)  # the header carries the weights' bytes
        rows.append([m["id"], f"{m['ctx']} x{m['parallel']}", need.weights // MIB, need.kv // MIB, need.compute // MIB,
                     need.prompt_cache // MIB, need.total // MIB])  # fmt: skip
    return table(
        ["model", "ctx x slots", "weights MiB", "KV MiB", "compute MiB", "prompt cache MiB", "total MiB"], rows
    )


class LifecycleBench(Bench):
    def start_supervisor(self, **env: str) -> tuple[subprocess.Popen[bytes], str]:
        import sqlite3

        log = open(self.tmp / "supervisor.log", "ab")  # noqa: SIM115 (the process owns it)
        process = subprocess.Popen(
            [sys.executable, "manage.py", "supervise", "--port", "0"], cwd=ROOT,
            env={**os.environ, **self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with sqlite3.connect(self.db_path, timeout=20) as db:
                row = db.execute("SELECT host, port FROM gateway_supervisor WHERE pid = ?", (process.pid,)).fetchone()
            if row:
                return process, f"{row[0]}:{row[1]}"
            time.sleep(0.1)
        raise RuntimeError("the supervisor did not start: see supervisor.log")


async def first_token(session: aiohttp.ClientSession, url: str, headers: dict[str, str], model: str) -> float:
    """Seconds from now to the first content event of a streamed chat completion."""
    return (await first_token_of(session, url, headers, model))[0]


async def first_token_of(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], model: str
) -> tuple[float, str]:
    """(seconds to the first content event, the request's X-Request-Id)."""
    started = time.perf_counter()
    async with session.post(url, json={"model": model, **PROMPT}, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {(await response.read())[:300]!r}")
        async for line in response.content:
            if line.startswith(b"data: {") and (json.loads(line[6:]).get("choices") or [{}])[0].get("delta", {}).get(
                "content"
            ):
                elapsed = time.perf_counter() - started
                response.close()  # the rest is not needed: closing cancels the generation
                return elapsed, response.headers.get("X-Request-Id", "")
    raise RuntimeError("the stream ended without content")


async def by_hand(command: list[str], port: int, session: aiohttp.ClientSession) -> float:
    """llama-server started directly: seconds from exec to the first token, /health polled every 5 ms."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/health") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {process.returncode}")
            await asyncio.sleep(0.005)
        await first_token(session, f"http://127.0.0.1:{port}/v1/chat/completions", {}, "m")
        return time.perf_counter() - started
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def logged_command(log: Path) -> list[str]:
    """The command line of the model's last start, from the header line the supervisor writes into its log."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if " supervisor: " in line]
    command = shlex.split(lines[-1].split(" supervisor: ", 1)[1])
    at = command.index("--api-key-file")  # its key file lives as long as its process: by hand, no key
    return command[:at] + command[at + 2 :]


def key_of(pid: int) -> str:
    """A running managed llama-server's key, from the file its command line names (the service user may read it)."""
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return Path(command[command.index(b"--api-key-file") + 1].decode()).read_text().strip()


def cold_start_ms(db_path: Path, request_id: str) -> float:
    """The request's log row's cold_start_ms, once the writer has written it."""
    import sqlite3

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with sqlite3.connect(db_path, timeout=20) as db:
            row = db.execute(
                "SELECT cold_start_ms FROM gateway_requestlog WHERE request_id = ?", (request_id,)
            ).fetchone()
        if row and row[0] is not None:
            return row[0]
        time.sleep(0.1)
    raise RuntimeError(f"request {request_id} was not logged with its cold_start_ms")


async def run(args: argparse.Namespace, bench: LifecycleBench) -> None:
    from gateway.lifecycle import estimate, memory
    from gateway.llama import free_port, model_path
    from gateway.node import link as client

    gguf = str(model_path())
    for model in ("model-a", "model-b"):  # no prompt cache: one fits the budget of 500 MiB, two do not
        bench.manage("addmodel", model, "--gguf", gguf, "--ctx-size", "1024", "--parallel", "1", "--cache-ram-mb", "0")
    key = bench.create_key()
    _, address = bench.start_supervisor(MODEL_MEMORY_BUDGET_MB="500", LOG_LEVEL="WARNING")
    gateway = bench.start_gateway(LOG_ENABLED="true", LOG_FLUSH_INTERVAL="0.1")
    headers = {"Authorization": f"Bearer {key}"}
    chat = f"{gateway}/v1/chat/completions"
    log_a = bench.tmp / "llama" / "model-a.log"
    backends = {m["id"]: m["backend"] for m in (await client.command(address, "status"))["models"]}

    async def unload_all() -> None:
        for backend in backends.values():
            for _ in range(50):  # a stream just closed may still be counted in flight for a moment (409)
                try:
                    await client.command(address, "unload", backend)
                    break
                except client.Refused:
                    await asyncio.sleep(0.1)

    async def state(model: str) -> dict[str, Any]:
        return next(m for m in (await client.command(address, "status"))["models"] if m["id"] == model)

    cold, hand, waited, own, swaps, warm = [], [], [], [], [], {"gateway": [], "direct": []}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)) as session:
        await first_token(session, chat, headers, "model-a")  # warm-up: caches, the page cache of the GGUF
        command = logged_command(log_a)
        for n in range(args.rounds):
            for what in ("gateway", "hand") if n % 2 == 0 else ("hand", "gateway"):
                await unload_all()
                if what == "gateway":
                    seconds, request_id = await first_token_of(session, chat, headers, "model-a")
                    cold.append(seconds)
                    waited.append(cold_start_ms(bench.db_path, request_id) / 1000)
                    own.append((await state("model-a"))["load_seconds"])
                else:
                    port = free_port()
                    hand.append(await by_hand(_with_port(command, port), port, session))
            # The proxy's share of a first token, on the model ready: gateway and direct, interleaved.
            await first_token(session, chat, headers, "model-a")
            running = await state("model-a")
            direct = f"http://127.0.0.1:{running['port']}/v1/chat/completions"
            direct_headers = {"Authorization": f"Bearer {key_of(running['pid'])}"}
            for _ in range(5):
                warm["gateway"].append(await first_token(session, chat, headers, "model-a"))
                warm["direct"].append(await first_token(session, direct, direct_headers, "model-a"))
            # Swap: A is ready and idle; B needs its memory.
            swaps.append(await first_token(session, chat, headers, "model-b"))
        measured_b = (await state("model-b"))["memory"]["measured_bytes"]
    need = estimate.estimate(gguf, estimate.Options(1024, 1))
    buffers = memory.parse_buffers((bench.tmp / "llama" / "model-b.log").read_text(errors="replace"))

    median = statistics.median
    ms = lambda seconds: [s * 1000 for s in seconds]  # noqa: E731
    before_first_byte = [w - o for w, o in zip(ms(waited), ms(own), strict=True)]
    proxy = median(ms(warm["gateway"])) - median(ms(warm["direct"]))
    print(f"\nCold start of the small model (ctx 1024, 1 slot), {args.rounds} rounds, first token of a stream")
    rows = [
        ["through the gateway: request to first token", ms(cold)],
        ["  of which waiting for the model (cold_start_ms)", ms(waited)],
        ["  llama-server's load: exec to /health 200 (same runs)", ms(own)],
        ["  the supervisor's share: waiting - load", before_first_byte],
        ["llama-server by hand, same flags: exec to first token", ms(hand)],
        ["warm first token through the gateway", ms(warm["gateway"])],
        ["warm first token directly", ms(warm["direct"])],
        ["swap: B's first token, idle A evicted first", ms(swaps)],
    ]
    print(table(["", "median ms", "min ms", "max ms"], [[name, median(v), min(v), max(v)] for name, v in rows]))
    added = median(before_first_byte) + proxy
    print(
        f"\nadded by the gateway to a cold first token: supervisor {median(before_first_byte):.0f} ms + proxy "
        f"{proxy:.0f} ms = {added:.0f} ms (target ≤ {TARGET_ADDED_MS:.0f} ms): {verdict(added <= TARGET_ADDED_MS)}"
    )
    print(
        f"end to end, through the gateway minus by hand (different runs, so llama-server's own load time varies "
        f"between them): {median(ms(cold)) - median(ms(hand)):+.0f} ms at the median; the /health polling (every "
        f"25 ms, 5 ms by hand) adds up to 25 ms inside the load figure"
    )
    print(f"swap minus cold start: {median(ms(swaps)) - median(ms(cold)):+.0f} ms (stopping A first)")
    print("\nMemory of the small model (ctx 1024, 1 slot)")
    memory_rows: list[list[Any]] = [["estimate (GGUF header)", need.weights / MIB, need.kv / MIB, need.compute / MIB,
                                     need.total / MIB]]  # fmt: skip
    if buffers:
        kinds = buffers.by_kind
        memory_rows.append(["llama-server's buffers (log)", kinds.get("model", 0) / MIB, kinds.get("KV", 0) / MIB,
                            (kinds.get("compute", 0) + kinds.get("output", 0)) / MIB, buffers.total / MIB])  # fmt: skip
    if measured_b:
        memory_rows.append(["measured (peak VmHWM + device buffers)", "", "", "", measured_b / MIB])
    print(table(["", "weights MiB", "KV MiB", "compute MiB", "total MiB"], memory_rows))


def _with_port(command: list[str], port: int) -> list[str]:
    command = list(command)
    command[command.index("--port") + 1] = str(port)
    return command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="cold starts per side (gateway, by hand), and swaps")
    parser.add_argument("--formula-only", action="store_true", help="print the five-model table and stop")
    args = parser.parse_args()
    # The bench's environment (its SECRET_KEY above all: the supervisor checks it) is this process's settings too.
    with LifecycleBench() as bench:
        import django

        django.setup()
        print("The formula for the original service's five models (Q4_K_M, projectors f16, published sizes)")
        print(formula_table())
        if not args.formula_only:
            asyncio.run(run(args, bench))


if __name__ == "__main__":
    main()
