"""Where the gateway's time goes: daphne under cProfile, loaded by wrk against an instant fake backend.

    .venv/bin/python -m bench.profile_gateway [--seconds 10] [--connections 1] [--stream] [--top 30]

Prints the functions with the most time of their own (tottime) and the most time under them (cumtime), and the
requests served, so that a figure per request can be read off.
"""

from __future__ import annotations

import argparse
import pstats
import signal
import sys
import tempfile
from pathlib import Path

from bench.common import Bench, chat_body, gateway_target, require_wrk, wrk, wrk_script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--stream", action="store_true", help="streamed requests of 64 tokens instead of plain ones")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    require_wrk()
    with Bench() as bench:
        fake = bench.start_fake(tokens=64 if args.stream else 16)
        bench.add_model(fake)
        key = bench.create_key()
        profile = Path(tempfile.mkdtemp(dir=bench.tmp)) / "gateway.prof"

        def profiled(port: int) -> list[str]:
            return [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "daphne", "-b", "127.0.0.1", "-p",
                    str(port), "jetsonsite.asgi:application"]  # fmt: skip

        from tests.live import start_daphne

        process, url = start_daphne({**bench.env, "LOG_ENABLED": "true"}, command=profiled)
        target = gateway_target(url, key)
        body = chat_body(tokens=64, stream=True) if args.stream else chat_body(tokens=16)
        script = wrk_script(Path(tempfile.mkdtemp(dir=bench.tmp)), target, body)
        wrk(target.url, args.connections, 2, script)  # warm-up
        result = wrk(target.url, args.connections, args.seconds, script)
        process.send_signal(signal.SIGINT)  # cProfile writes its file when the program ends normally
        process.wait(30)
        requests = result.rps * args.seconds
        print(f"\n{requests:.0f} requests in {args.seconds:g} s at {args.connections} connection(s): "
              f"p50 {result.p50:.2f} ms, {result.rps:.0f} req/s (under the profiler: slower than without)\n")  # fmt: skip
        stats = pstats.Stats(str(profile))
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumtime").print_stats(args.top)


if __name__ == "__main__":
    main()
