"""Streamed chat completions through the gateway vs straight to a fake llama-server.

    .venv/bin/python -m bench.streaming [--tokens 64] [--streams 64]

- time to first token (first event with content) at concurrency 1, and what the gateway adds to it;
- SSE events/s relayed with 64 concurrent streams of 64 tokens from an instant fake (the relay's ceiling);
- the same with a paced fake (a token every 20 ms per stream, like a busy GPU): the gateway should keep up.
Direct and gateway rounds alternate.
"""

from __future__ import annotations

import argparse

from bench.common import Bench, chat_body, direct_target, gateway_target, interleaved, percentile, table

PACED_MODEL = "bench-paced"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per stream")
    parser.add_argument("--streams", type=int, default=64, help="concurrent streams")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement")
    parser.add_argument("--token-delay", type=float, default=0.02, help="seconds between tokens of the paced fake")
    parser.add_argument("--log-enabled", default="true", choices=["true", "false"], help="the gateway's LOG_ENABLED")
    args = parser.parse_args()

    with Bench() as bench:
        fake = bench.start_fake(tokens=args.tokens)
        paced = bench.start_fake(tokens=args.tokens, token_delay=args.token_delay)
        bench.add_model(fake)
        bench.add_model(paced, model_id=PACED_MODEL)
        key = bench.create_key()
        gateway = bench.start_gateway(LOG_ENABLED=args.log_enabled)
        instant_targets = [direct_target(fake), gateway_target(gateway, key)]
        paced_targets = [direct_target(paced), gateway_target(gateway, key)]
        body = chat_body(stream=True)
        paced_body = chat_body(stream=True, model=PACED_MODEL)
        interleaved(instant_targets, body, concurrency=8, count=40, rounds=1, stream=True)  # warm-up

        ttft = interleaved(instant_targets, body, 1, 50, args.rounds, max_seconds=8, stream=True)
        relay = interleaved(
            instant_targets, body, args.streams, 2 * args.streams, args.rounds, max_seconds=15, stream=True
        )
        paced_relay = interleaved(paced_targets, paced_body, args.streams, args.streams, 2, max_seconds=15, stream=True)

    print(f"\nStreamed chat completion, {args.tokens} tokens per stream, LOG_ENABLED={args.log_enabled}")
    rows = []
    for name in ("direct", "gateway"):
        r = ttft[name]
        rows.append([name, r.ok, percentile(r.ttfts, 50), percentile(r.ttfts, 99), percentile(r.latencies, 50)])
    print(table(["target", "streams", "TTFT p50 ms", "TTFT p99 ms", "whole stream p50 ms"], rows))
    added = percentile(ttft["gateway"].ttfts, 50) - percentile(ttft["direct"].ttfts, 50)
    print(f"added time to first token at p50, concurrency 1: {added:.2f} ms")

    print()
    rows = []
    for label, pooled in (
        (f"instant, {args.streams} streams", relay),
        (f"paced {args.token_delay * 1000:.0f} ms", paced_relay),
    ):
        for name in ("direct", "gateway"):
            r = pooled[name]
            rows.append([label, name, r.ok, r.events, r.events_per_second, percentile(r.ttfts, 50)])
    print(table(["backend", "target", "streams", "SSE events", "events/s", "TTFT p50 ms"], rows))
    print()
    ratios = [
        [label, f"{pooled['gateway'].events_per_second / pooled['direct'].events_per_second:.1%}"]
        for label, pooled in (("instant", relay), ("paced", paced_relay))
    ]
    print(table(["backend", "gateway/direct events/s"], ratios))


if __name__ == "__main__":
    main()
