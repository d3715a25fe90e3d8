"""What request logging costs: gateway throughput with LOG_ENABLED=true vs false, two daphne processes, same run.

    .venv/bin/python -m bench.logging_cost [--rounds 4] [--count 600]

Non-streaming chat completions at concurrency 32 against an instant fake, a fixed number per round, rounds alternating
between the two gateways. Prints the cost in % of req/s (target ≤ 10 %), then checks that the logging gateway wrote
exactly one RequestLog row per request it was sent, and the other none (waiting for the writer with a bounded poll).
"""

from __future__ import annotations

import argparse
import time

from bench.common import Bench, chat_body, gateway_target, interleaved, percentile, table, verdict

TARGET_COST = 0.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--count", type=int, default=600, help="requests per round and gateway")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--flush-wait", type=float, default=30, help="seconds to wait for the rows, at most")
    args = parser.parse_args()

    with Bench() as bench:
        fake = bench.start_fake(tokens=16)
        bench.add_model(fake)
        # One key per gateway, so that the rows tell which gateway wrote them.
        logged = gateway_target(bench.start_gateway(LOG_ENABLED="true"), bench.create_key("bench-logged"))
        logged.name = "LOG_ENABLED=true"
        unlogged = gateway_target(bench.start_gateway(LOG_ENABLED="false"), bench.create_key("bench-unlogged"))
        unlogged.name = "LOG_ENABLED=false"
        targets = [unlogged, logged]
        body = chat_body(tokens=16)
        warm = interleaved(targets, body, concurrency=8, count=100, rounds=1)
        pooled = interleaved(targets, body, args.concurrency, args.count, args.rounds, max_seconds=15)
        sent = {t.name: sum(r[t.name].ok + r[t.name].errors for r in (warm, pooled)) for t in targets}

        # The writer flushes every LOG_FLUSH_INTERVAL (0.5 s) or per 500 rows: poll, bounded, until all are there.
        started = time.monotonic()
        rows = bench.count_log_rows("bench-logged")
        while rows < sent[logged.name] and time.monotonic() - started < args.flush_wait:
            time.sleep(0.25)
            rows = bench.count_log_rows("bench-logged")
        waited = time.monotonic() - started
        time.sleep(1.0)  # anything the gateway with logging off might write would be there by now too
        rows = bench.count_log_rows("bench-logged")
        stray = bench.count_log_rows("bench-unlogged")

    off, on = pooled[unlogged.name], pooled[logged.name]
    print(
        f"\nGateway throughput, non-streaming, concurrency {args.concurrency}, {args.rounds} x {args.count} requests each"
    )
    print(
        table(
            ["gateway", "requests", "req/s", "p50 ms", "p99 ms"],
            [
                [name, r.ok, r.rps, percentile(r.latencies, 50), percentile(r.latencies, 99)]
                for name, r in ((unlogged.name, off), (logged.name, on))
            ],
        )
    )
    cost = 1 - on.rps / off.rps
    print(f"\nlogging cost: {cost:.1%} of req/s (target ≤ {TARGET_COST:.0%}): {verdict(cost <= TARGET_COST)}")
    print()
    checks = [
        [logged.name, sent[logged.name], rows, sent[logged.name], verdict(rows == sent[logged.name])],
        [unlogged.name, sent[unlogged.name], stray, 0, verdict(stray == 0)],
    ]
    print(table(["gateway", "requests sent (incl. warm-up)", "RequestLog rows", "expected", "result"], checks))
    print(f"(all rows of the logging gateway were there {waited:.1f} s after its last response)")


if __name__ == "__main__":
    main()
