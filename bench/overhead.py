"""Non-streaming chat completions through the gateway vs straight to an instant fake llama-server, loaded by wrk.

    .venv/bin/python -m bench.overhead [--rounds 3] [--seconds 5] [--log-enabled true|false]

p50/p99 latency at 1 and 32 connections, req/s at 32, and the milliseconds the gateway adds at p50 (target < 2 ms at
1 connection). Load comes from wrk (`make setup-bench` installs Debian's): a Python client saturates long before the
gateway does. Targets alternate round by round, so machine noise hits them alike; each figure is the median over
rounds (req/s: the mean). A third target, `GET /livez`, is a constant view behind Django's full middleware stack
(the dashboard's and admin's path), which the API's own handler skips (`jetsonsite/asgi.py`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench.common import (
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

TARGET_ADDED_MS = 2.0
CONNECTIONS = (1, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per connection count")
    parser.add_argument("--seconds", type=float, default=5, help="wrk duration of each run")
    parser.add_argument("--log-enabled", default="true", choices=["true", "false"], help="the gateway's LOG_ENABLED")
    parser.add_argument("--tokens", type=int, default=16, help="completion tokens the fake answers with")
    args = parser.parse_args()
    require_wrk()

    runs: dict[tuple[str, int], list[WrkResult]] = {}
    with Bench() as bench:
        fake = bench.start_fake(tokens=args.tokens)
        bench.add_model(fake)
        key = bench.create_key()
        gateway = bench.start_gateway(LOG_ENABLED=args.log_enabled)
        targets = [
            direct_target(fake),
            gateway_target(gateway, key),
            LoadTarget("gateway /livez", gateway + "/livez", method="GET"),
        ]
        folder = Path(tempfile.mkdtemp(dir=bench.tmp))
        body = chat_body(tokens=args.tokens)
        scripts = {t.name: wrk_script(folder, t, body) for t in targets}
        for target in targets:  # warm-up: caches, connections, imports
            wrk(target.url, 8, 1, scripts[target.name])
        for connections in CONNECTIONS:
            for n in range(args.rounds):
                for target in targets if n % 2 == 0 else reversed(targets):
                    result = wrk(target.url, connections, args.seconds, scripts[target.name])
                    runs.setdefault((target.name, connections), []).append(result)

    def figure(name: str, connections: int, attribute: str) -> float:
        values = [getattr(r, attribute) for r in runs[(name, connections)]]
        return statistics.mean(values) if attribute == "rps" else statistics.median(values)

    print(
        f"\nNon-streaming chat completion, {args.tokens} tokens, instant fake backend, LOG_ENABLED={args.log_enabled}, "
        f"wrk {args.rounds} rounds of {args.seconds:g} s"
    )
    rows = [
        [t.name, c, figure(t.name, c, "p50"), figure(t.name, c, "p99"), figure(t.name, c, "rps")]
        for c in CONNECTIONS
        for t in targets
    ]
    print(table(["target", "connections", "p50 ms", "p99 ms", "req/s"], rows))

    print()
    added = [
        [
            c,
            figure("gateway", c, "p50") - figure("direct", c, "p50"),
            figure("gateway", c, "p99") - figure("direct", c, "p99"),
            f"{figure('gateway', c, 'rps') / figure('direct', c, 'rps'):.1%}",
        ]
        for c in CONNECTIONS
    ]
    print(table(["connections", "added ms p50", "added ms p99", "gateway/direct req/s"], added))
    added_p50 = added[0][1]
    print(
        f"\nadded at p50, 1 connection: {added_p50:.2f} ms (target < {TARGET_ADDED_MS:.0f} ms): "
        f"{verdict(added_p50 < TARGET_ADDED_MS)}"
    )


if __name__ == "__main__":
    main()
