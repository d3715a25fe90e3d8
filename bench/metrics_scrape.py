"""Benchmark: GET /metrics with an empty request log vs 1,000,000 rows, and what counting a request costs.

    .venv/bin/python -m bench.metrics_scrape [--rows 1000000] [--repeat 60] [--observes 20000]

This process plays one gateway process of the node: it counts synthetic requests (6 models, several endpoints and
statuses) into the node's metrics directory with gateway.metrics.observe, timing each call, so that the scrapes show
a realistic number of series. `manage.py monitor --once` stores this machine's sample for the device gauges. The
database is copied (the empty request log), then 1,000,000 rows are bulk-inserted as bench/logs_api.py does. Two
daphnes share the metrics directory, one over each database, and are scraped in turn, so that both states are
measured in the same run under the same load. For reference it times the GROUP BY over the table that /metrics used
to run on every scrape. Target: p95 ≤ 50 ms with the rows, and no growth with them.
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import statistics
import time
from pathlib import Path

import httpx
import psutil

from bench.common import Bench, percentile, table, verdict
from bench.logs_api import MODELS, generate

TARGET_MS = 50.0
TOKEN = "bench-metrics-token"


def records() -> list[object]:
    """One finished record per series a busy node would have: models x endpoints x statuses."""
    from gateway.requestlog.record import RequestRecord

    out: list[object] = []
    for model, status in itertools.product(MODELS, (200, 400, 429, 499, 503)):
        endpoint = "/v1/embeddings" if model.endswith("embed") else "/v1/chat/completions"
        generation = status == 200 and endpoint != "/v1/embeddings"
        out.append(RequestRecord(endpoint=endpoint, model_used=model, status=status, latency_ms=850.0, prompt_tokens=120,
                                 ttft_ms=140.0 if generation else None, completion_tokens=200 if generation else None,
                                 tokens_per_second=24.5 if generation else None))  # fmt: skip
    out += [RequestRecord(endpoint=path, status=status, latency_ms=1.0)
            for path, status in (("/v1/chat/completions", 401), ("/v1/models", 200), ("/v1/models/x", 404))]  # fmt: skip
    return out


def observe_cost(count: int) -> list[float]:
    """µs per gateway.metrics.observe call, in 5 batches of `count` (every series exists already)."""
    from gateway import metrics

    batch = records()
    for record in batch:
        metrics.observe(record)  # type: ignore[arg-type]
    costs = []
    for _ in range(5):
        cycle = itertools.islice(itertools.cycle(batch), count)
        began = time.perf_counter()
        for record in cycle:
            metrics.observe(record)  # type: ignore[arg-type]
        costs.append((time.perf_counter() - began) / count * 1e6)
    return costs


def scrape_ms(client: httpx.Client) -> float:
    began = time.perf_counter()
    response = client.get("/metrics")
    elapsed = (time.perf_counter() - began) * 1000
    assert response.status_code == 200, response.text[:300]
    return elapsed


def checkpoint(path: Path) -> None:
    """Fold the WAL into the database file, as a running gateway's SQLite soon does."""
    with sqlite3.connect(path, timeout=20) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def copy_database(source: Path, target: Path) -> None:
    checkpoint(source)
    with sqlite3.connect(source, timeout=20) as db, sqlite3.connect(target) as copy:
        db.backup(copy)


def old_group_by_ms() -> float:
    """What the previous /metrics ran on every scrape: one GROUP BY over the whole request log."""
    from django.db.models import Count, Sum

    from gateway.models import RequestLog

    began = time.perf_counter()
    list(
        RequestLog.objects.values("model_used", "model_requested", "endpoint", "status")
        .annotate(n=Count("id"), latency=Sum("latency_ms"), ttft=Sum("ttft_ms"), prompt=Sum("prompt_tokens"),
                  completion=Sum("completion_tokens"), latency_n=Count("latency_ms"), ttft_n=Count("ttft_ms"))
        .order_by()
    )  # fmt: skip
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=60, help="scrapes of each gateway")
    parser.add_argument("--observes", type=int, default=20_000, help="observe() calls per timed batch")
    args = parser.parse_args()

    with Bench() as bench:
        # This process shares the settings (and so the metrics directory) of the gateways it starts.
        import django

        django.setup()
        from django.conf import settings

        costs = observe_cost(args.observes)
        bench.manage("monitor", "--once")
        empty_db = bench.tmp / "empty.sqlite3"
        copy_database(bench.db_path, empty_db)  # the same sample, no request-log rows
        generate(args.rows, bench.db_path)
        checkpoint(bench.db_path)
        old_ms = statistics.median(old_group_by_ms() for _ in range(3))
        shared = {"MONITOR_METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(settings.PROMETHEUS_MULTIPROC_DIR)}
        states = {
            "empty log": bench.start_gateway(DATABASE_URL=f"sqlite:///{empty_db}", **shared),
            f"{args.rows:,} rows": bench.start_gateway(**shared),
        }
        # CPU time each daphne spends on its scrapes: what a scrape costs, whatever else loads the machine.
        daphnes = dict(zip(states, (psutil.Process(p.pid) for p in bench.processes[-2:]), strict=True))
        clients = {
            state: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            for state, url in states.items()
        }
        times: dict[str, list[float]] = {state: [] for state in states}
        cpu: dict[str, float] = dict.fromkeys(states, 0.0)
        size = len(clients["empty log"].get("/metrics").content)
        for n in range(args.repeat + 3):  # interleaved, order alternating; the first 3 rounds warm up
            for state in states if n % 2 == 0 else reversed(states):
                cpu_before = sum(daphnes[state].cpu_times()[:2])
                elapsed = scrape_ms(clients[state])
                if n >= 3:
                    times[state].append(elapsed)
                    cpu[state] += sum(daphnes[state].cpu_times()[:2]) - cpu_before
        for client in clients.values():
            client.close()

    print(f"\ngateway.metrics.observe: {statistics.median(costs):.1f} µs per call (median of 5 batches of "
          f"{args.observes:,}; batches {min(costs):.1f}-{max(costs):.1f} µs)")  # fmt: skip
    print(
        f"\nGET /metrics through daphne ({size:,} bytes), {args.repeat} scrapes of each gateway, interleaved, kept-alive"
    )
    rows = [[state, percentile(t, 50), percentile(t, 95), cpu[state] / len(t) * 1000] for state, t in times.items()]
    print(table(["request log", "p50 ms", "p95 ms", "daphne CPU ms per scrape"], rows))
    empty, full = times["empty log"], times[f"{args.rows:,} rows"]
    ratio = percentile(full, 50) / percentile(empty, 50)
    p95 = percentile(full, 95)
    print(f"\np50 with the rows / p50 with an empty log: {ratio:.2f}")
    print(f"p95 with the rows: {p95:.1f} ms (target ≤ {TARGET_MS:.0f} ms): {verdict(p95 <= TARGET_MS)}")
    print(f"for reference, the GROUP BY the previous /metrics ran per scrape: {old_ms:,.0f} ms over the rows")


if __name__ == "__main__":
    main()
