"""The gateway's own cost: this checkout against an earlier one, in one run, loaded by wrk.

    .venv/bin/python -m bench.before_after --before /path/to/an/older/checkout [--rounds 3] [--seconds 5]

    (an older checkout: `git worktree add /tmp/before <commit>`; it runs with this checkout's virtualenv)

One instant fake backend (this checkout's); a gateway served by daphne from each checkout, each with its own
database migrated by its own code and the same model and key. Targets alternate round by round, so machine noise
hits them alike; each figure is the median over rounds.
- Non-streamed chat at one connection: the median latency each gateway adds over the backend alone.
- Streamed chat (64 tokens) at 32 connections: the SSE events/s each relays, as a share of the backend alone (wrk
  reads each stream to its end: responses/s x events per stream).
- daphne's resident memory after the load.
- This checkout's streamed /v1/chat/completions, /v1/messages and /v1/responses at one connection (the fake answers
  all three): what each adds over the backend alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from bench.common import (
    ROOT,
    Bench,
    LoadTarget,
    WrkResult,
    chat_body,
    direct_target,
    gateway_target,
    require_wrk,
    table,
    verdict,
    wrk,
    wrk_script,
)

TOKENS = 64
TARGET_ADDED_MS = 1.0
TARGET_EVENTS = 0.5
TARGET_RSS_MB = 110


def events_per_stream(url: str, body: bytes, headers: dict[str, str]) -> int:
    import httpx

    response = httpx.post(url, content=body, headers=headers, timeout=30)
    return sum(1 for line in response.text.splitlines() if line.startswith("data:"))


def start_other_gateway(bench: Bench, checkout: Path, backend: str) -> tuple[str, str, psutil.Process]:
    """A gateway served from another checkout, with its own database, the same model (its id) and a key."""
    from tests.live import start_daphne

    folder = Path(tempfile.mkdtemp(dir=bench.tmp))
    env = {**os.environ, **bench.env, "VAR_DIR": str(folder), "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}"}

    def manage(*args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=checkout, env=env, capture_output=True,
                              text=True, timeout=180, check=True)  # fmt: skip
        return done.stdout

    manage("migrate", "--verbosity", "0")
    manage("addmodel", "bench-model", "--backend", backend)
    key = manage("createapikey", "bench").strip().splitlines()[-1].strip()
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "jetsonsite.asgi:application"]
    process, url = start_daphne(
        {**bench.env, "VAR_DIR": str(folder), "DATABASE_URL": env["DATABASE_URL"]},
        command=lambda port: ["sh", "-c", f"cd {checkout} && exec " + " ".join(command).replace("{port}", str(port))],
    )
    bench.processes.append(process)
    return url, key, psutil.Process(process.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="an older checkout of this repository")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5, help="wrk duration of each run")
    args = parser.parse_args()
    require_wrk()
    runs: dict[tuple[str, str], list[WrkResult]] = {}
    with Bench() as bench:
        fake = bench.start_fake(tokens=TOKENS)
        bench.add_model(fake)
        key = bench.create_key()
        after = bench.start_gateway(LOG_ENABLED="true")
        after_process = psutil.Process(bench.processes[-1].pid)
        before, before_key, before_process = start_other_gateway(bench, args.before.resolve(), fake)
        folder = Path(tempfile.mkdtemp(dir=bench.tmp))
        gateways = {"before": gateway_target(before, before_key), "after": gateway_target(after, key)}
        targets = {"direct": direct_target(fake), **gateways}
        plain, streamed = chat_body(tokens=16), chat_body(tokens=TOKENS, stream=True)
        scripts = {(name, kind): wrk_script(folder, target, body) for name, target in targets.items()
                   for kind, body in (("plain", plain), ("stream", streamed))}  # fmt: skip
        bodies = {
            "chat": streamed,
            "messages": json.dumps({"model": "bench-model", "max_tokens": 16, "stream": True,
                                    "messages": [{"role": "user", "content": "Say something."}]}).encode(),
            "responses": json.dumps({"model": "bench-model", "max_output_tokens": 16, "stream": True,
                                     "input": "Say something."}).encode(),
        }  # fmt: skip
        paths = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}
        for api, path in paths.items():
            for side, target in (("direct", direct_target(fake, path)), ("gateway", gateway_target(after, key, path))):
                scripts[(f"{api} {side}", "stream")] = wrk_script(folder, LoadTarget(side, target.url, target.headers),
                                                                  bodies[api])  # fmt: skip
        for (name, _), script in scripts.items():  # warm-up
            url = targets[name].url if name in targets else _url(name, fake, after, paths)
            wrk(url, 4, 1, script)
        per_stream = events_per_stream(targets["direct"].url, streamed, targets["direct"].headers)
        for n in range(args.rounds):
            order = list(targets) if n % 2 == 0 else list(reversed(targets))
            for name in order:
                runs.setdefault((name, "plain"), []).append(wrk(targets[name].url, 1, args.seconds,
                                                                scripts[(name, "plain")]))  # fmt: skip
            for name in order:
                runs.setdefault((name, "stream"), []).append(wrk(targets[name].url, 32, args.seconds,
                                                                 scripts[(name, "stream")]))  # fmt: skip
            for api in paths:
                for side in ("direct", "gateway") if n % 2 == 0 else ("gateway", "direct"):
                    name = f"{api} {side}"
                    runs.setdefault((name, "stream"), []).append(
                        wrk(_url(name, fake, after, paths), 1, args.seconds, scripts[(name, "stream")])
                    )
        memory = {"before": before_process.memory_info().rss / 2**20, "after": after_process.memory_info().rss / 2**20}

    def p50(name: str, kind: str) -> float:
        return statistics.median(r.p50 for r in runs[(name, kind)])

    def events(name: str) -> float:
        return statistics.median(r.rps for r in runs[(name, "stream")]) * per_stream

    print(f"\nBefore ({args.before}) and after (this checkout), one instant fake backend, wrk, {args.rounds} rounds "
          f"of {args.seconds:g} s")  # fmt: skip
    rows = []
    for side in ("before", "after"):
        rows.append([side, p50(side, "plain") - p50("direct", "plain"), events(side),
                     f"{events(side) / events('direct'):.1%}", memory[side]])  # fmt: skip
    rows.append(["backend alone", p50("direct", "plain"), events("direct"), "100%", ""])
    print(table(["gateway", "added p50 ms, 1 conn (alone: p50)", f"events/s, 32 streams of {TOKENS}",
                 "share of the backend's", "daphne RSS MB after"], rows))  # fmt: skip
    added = p50("after", "plain") - p50("direct", "plain")
    share = events("after") / events("direct")
    print(f"\nafter: added p50 {added:.2f} ms (target ≤ {TARGET_ADDED_MS} ms): {verdict(added <= TARGET_ADDED_MS)}; "
          f"events relayed {share:.0%} (target ≥ {TARGET_EVENTS:.0%}): {verdict(share >= TARGET_EVENTS)}; RSS "
          f"{memory['after']:.0f} MB (target ≤ {TARGET_RSS_MB}): {verdict(memory['after'] <= TARGET_RSS_MB)}")  # fmt: skip
    print("\nStreamed, 16 tokens, 1 connection: what the gateway adds to each API")
    api_rows = [[api, p50(f"{api} direct", "stream"), p50(f"{api} gateway", "stream"),
                 p50(f"{api} gateway", "stream") - p50(f"{api} direct", "stream")] for api in paths]  # fmt: skip
    print(table(["API", "backend alone p50 ms", "through the gateway p50 ms", "added ms"], api_rows))


def _url(name: str, fake: str, after: str, paths: dict[str, str]) -> str:
    api, side = name.split(" ")
    return (fake if side == "direct" else after) + paths[api]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
