"""Non-streaming chat completions through the gateway vs straight to an instant fake llama-server.

    .venv/bin/python -m bench.overhead [--rounds 4] [--log-enabled true|false]

p50/p99 latency at concurrency 1 and 32, req/s at 32, and the milliseconds the gateway adds at p50 (target < 2 ms at
concurrency 1). Direct and gateway rounds alternate, so machine noise hits both alike. A third target, the gateway's
`GET /livez` (an async view returning a constant through the same middleware), is the floor any request pays in this
Django + daphne process: the gateway's own view code costs the difference between it and the chat completion.
"""

from __future__ import annotations

import argparse

from bench.common import (
    Bench,
    Target,
    chat_body,
    direct_target,
    gateway_target,
    interleaved,
    percentile,
    table,
    verdict,
)

TARGET_ADDED_MS = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per concurrency")
    parser.add_argument("--serial", type=int, default=200, help="requests per round at concurrency 1")
    parser.add_argument("--parallel", type=int, default=600, help="requests per round at concurrency 32")
    parser.add_argument("--log-enabled", default="true", choices=["true", "false"], help="the gateway's LOG_ENABLED")
    parser.add_argument("--tokens", type=int, default=16, help="completion tokens the fake answers with")
    args = parser.parse_args()

    with Bench() as bench:
        fake = bench.start_fake(tokens=args.tokens)
        bench.add_model(fake)
        key = bench.create_key()
        gateway = bench.start_gateway(LOG_ENABLED=args.log_enabled)
        floor = Target("gateway /livez", gateway + "/livez", method="GET")
        targets = [direct_target(fake), gateway_target(gateway, key), floor]
        body = chat_body(tokens=args.tokens)
        interleaved(targets, body, concurrency=8, count=200, rounds=1)  # warm-up: caches, connections, imports

        results = {}
        for concurrency, count in ((1, args.serial), (32, args.parallel)):
            results[concurrency] = interleaved(targets, body, concurrency, count, args.rounds, max_seconds=8)

    print(
        f"\nNon-streaming chat completion, {args.tokens} tokens, instant fake backend, LOG_ENABLED={args.log_enabled}"
    )
    rows = []
    for concurrency, pooled in results.items():
        for name in ("direct", "gateway", "gateway /livez"):
            r = pooled[name]
            rows.append([name, concurrency, r.ok, percentile(r.latencies, 50), percentile(r.latencies, 99), r.rps])
    print(table(["target", "concurrency", "requests", "p50 ms", "p99 ms", "req/s"], rows))

    print()
    added = []
    for concurrency, pooled in results.items():
        d, g = pooled["direct"], pooled["gateway"]
        added.append(
            [
                concurrency,
                percentile(g.latencies, 50) - percentile(d.latencies, 50),
                percentile(g.latencies, 99) - percentile(d.latencies, 99),
                f"{g.rps / d.rps:.1%}",
            ]
        )
    print(table(["concurrency", "added ms p50", "added ms p99", "gateway/direct req/s"], added))
    added_p50 = added[0][1]
    print(
        f"\nadded at p50, concurrency 1: {added_p50:.2f} ms (target < {TARGET_ADDED_MS:.0f} ms): "
        f"{verdict(added_p50 < TARGET_ADDED_MS)}"
    )


if __name__ == "__main__":
    main()
