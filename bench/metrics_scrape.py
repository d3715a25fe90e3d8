"""Benchmark: GET /metrics with an empty request log vs 1,000,000 rows, and what counting a request costs.

    .venv/bin/python -m bench.metrics_scrape [--rows 1000000] [--repeat 50] [--observes 20000]

One throwaway SQLite database and one daphne. This process plays a second gateway process on the node: it counts
synthetic requests (6 models, several endpoints and statuses) into the daphne's metrics directory with
gateway.metrics.observe, timing each call, so the scrape shows a realistic number of series. `manage.py monitor --once`
stores this machine's sample for the device gauges. Then, in the same run: scrapes over an empty request log, the rows
bulk-inserted (as bench/logs_api.py does), scrapes over them, the rows deleted, scrapes over an empty log again.
For reference it also times, once per state, the GROUP BY over the table that /metrics used to run on every scrape.
Target: p95 ≤ 50 ms with the rows, and no growth with them.
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import statistics
import time

import httpx

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


def scrape_times(client: httpx.Client, repeat: int) -> tuple[list[float], int]:
    """ms per GET /metrics over a kept-alive connection, as Prometheus scrapes; and the response's size."""
    times, size = [], 0
    for n in range(repeat + 3):
        began = time.perf_counter()
        response = client.get("/metrics")
        elapsed = (time.perf_counter() - began) * 1000
        assert response.status_code == 200, response.text[:300]
        size = len(response.content)
        if n >= 3:  # warm-up
            times.append(elapsed)
    return times, size


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
    parser.add_argument("--repeat", type=int, default=50, help="scrapes per state")
    parser.add_argument("--observes", type=int, default=20_000, help="observe() calls per timed batch")
    args = parser.parse_args()

    with Bench() as bench:
        # This process shares the settings (and so the metrics directory) of the daphne it starts.
        import django

        django.setup()
        from django.conf import settings

        from gateway.models import RequestLog

        costs = observe_cost(args.observes)
        bench.manage("monitor", "--once")
        url = bench.start_gateway(
            MONITOR_METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(settings.PROMETHEUS_MULTIPROC_DIR)
        )
        results: dict[str, tuple[list[float], int, float, int]] = {}
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            times, size = scrape_times(client, args.repeat)
            results["empty log"] = (times, size, old_group_by_ms(), RequestLog.objects.count())
            generate(args.rows, bench.db_path)
            times, size = scrape_times(client, args.repeat)
            results[f"{args.rows:,} rows"] = (times, size, old_group_by_ms(), RequestLog.objects.count())
            with sqlite3.connect(bench.db_path, timeout=20) as db:
                db.execute("DELETE FROM gateway_requestlog")
            times, size = scrape_times(client, args.repeat)
            results["empty log again"] = (times, size, old_group_by_ms(), RequestLog.objects.count())

    print(f"\ngateway.metrics.observe: {statistics.median(costs):.1f} µs per call (median of 5 batches of "
          f"{args.observes:,}; batches {min(costs):.1f}-{max(costs):.1f} µs)")  # fmt: skip
    print(f"\nGET /metrics through daphne, {args.repeat} scrapes per state over one kept-alive connection")
    rows = []
    for state, (times, size, old_ms, count) in results.items():
        rows.append([state, f"{count:,}", percentile(times, 50), percentile(times, 95), f"{size:,}", old_ms])
    print(table(["request log", "rows", "p50 ms", "p95 ms", "bytes", "old GROUP BY ms"], rows))
    empty = results["empty log"][0] + results["empty log again"][0]
    full = results[f"{args.rows:,} rows"][0]
    ratio = percentile(full, 50) / percentile(empty, 50)
    p95 = percentile(full, 95)
    print(f"\np50 with the rows / p50 with an empty log: {ratio:.2f}")
    print(f"p95 with the rows: {p95:.1f} ms (target ≤ {TARGET_MS:.0f} ms): {verdict(p95 <= TARGET_MS)}")


if __name__ == "__main__":
    main()
