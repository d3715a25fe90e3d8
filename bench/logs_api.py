"""Benchmark: p50/p95 of /api/logs and /api/usage over 1,000,000 request log rows in a throwaway SQLite database.

    .venv/bin/python bench/logs_api.py [--rows 1000000] [--repeat 30] [--fresh]

The rows (30 days, 20 keys, 6 models, a realistic status mix) are generated once into var/bench-logs.sqlite3 and
reused by later runs unless --fresh. Requests go through Django's test client with a logs-scope API key, so the
figures include authentication, filtering, pagination and JSON rendering, but no HTTP server.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = ROOT / "var" / "bench-logs.sqlite3"
END = datetime(2026, 11, 1, tzinfo=UTC)  # fixed, so that reruns query the same data
DAYS = 30
MODELS = ["qwen2.5-7b", "deepseek-r1-7b", "minicpm-v", "qwen2.5-vl", "qwen3-embed", "gemma-3-270m"]


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = f"sqlite:///{DB}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "jetsonsite.settings"
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 60)
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ["DEBUG"] = "false"  # DEBUG keeps every query in memory and slows the ORM
    os.environ["LOG_ENABLED"] = "false"
    import django

    django.setup()


def generate(rows: int, path: Path = DB) -> None:
    """Bulk-insert `rows` request-log rows, and the energy facts of those measured, into the SQLite database at `path`
    (Django's configured database)."""
    from django.core.management import call_command

    from gateway.models import APIKey

    call_command("migrate", verbosity=0)
    keys = [APIKey.objects.create_key(name=f"team-{n}", scope_logs=n == 0)[0] for n in range(20)]
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    # Loading without the indexes and building them afterwards is several times faster.
    indexes = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
        "AND tbl_name IN ('gateway_requestlog', 'gateway_energyfact')"
    ).fetchall()
    for name, _ in indexes:
        db.execute(f'DROP INDEX "{name}"')
    rng = random.Random(4)
    start = END - timedelta(days=DAYS)
    step = DAYS * 86400 / rows
    key_weights = [1 / (n + 1) for n in range(len(keys))]
    columns = (
        "request_id, created, api_key_id, key_name, endpoint, method, model_requested, model_used, backend, status, "
        "error_type, error_message, stream, latency_ms, ttft_ms, prompt_tokens, completion_tokens, tokens_per_second, "
        "client_ip, user_agent, client_gone, prompt_preview, completion_preview, error_code"
    )
    sql = f"INSERT INTO gateway_requestlog ({columns}) VALUES ({', '.join('?' * 24)})"
    fact_columns = (
        'lease, request_id, node, model, gross_mj, net_mj, source, start, "end", seconds, measured_seconds, written'
    )
    fact_sql = f"INSERT INTO gateway_energyfact ({fact_columns}) VALUES ({', '.join('?' * 12)})"
    facts: list[tuple] = []

    def row(n: int) -> tuple:
        created = start + timedelta(seconds=n * step)
        key = rng.choices(keys, key_weights)[0]
        model = rng.choice(MODELS)
        roll = rng.random()
        status = 200 if roll < 0.95 else 429 if roll < 0.97 else 503 if roll < 0.98 else 401 if roll < 0.99 else 404
        used = model if status in (200, 503) else ""
        latency = rng.lognormvariate(math.log(800), 0.8)
        prompt, completion = rng.randint(10, 2000), rng.randint(1, 800) if status == 200 else 0
        # Served requests of two models in three have an energy (the others' nodes have no power sensor).
        energy = latency * rng.uniform(4, 12) if used and status == 200 and MODELS.index(model) % 3 else None
        if energy is not None:
            at = created.strftime("%Y-%m-%d %H:%M:%S.%f")
            facts.append((f"{n:032x}.1", f"{n:032x}", "orin-1", model, energy, energy * 0.6, "VDD_IN", at, at,
                          latency / 1000, latency / 1000, at))  # fmt: skip
        return (
            f"{n:032x}", created.strftime("%Y-%m-%d %H:%M:%S.%f"), key.id if status != 401 else None,
            key.name if status != 401 else "", "/v1/embeddings" if model == "qwen3-embed" else "/v1/chat/completions",
            "POST", model, used, "http://127.0.0.1:8081" if used else "", status,
            "" if status == 200 else "rate_limit_error", "" if status == 200 else "Too many requests.",
            int(rng.random() < 0.5), latency, latency / 5, prompt, completion, completion / (latency / 1000 + 1e-9),
            f"192.168.1.{rng.randint(2, 250)}", "openai-python/1.54.0", int(rng.random() < 0.01), "", "",
            "" if status == 200 else "rate_limit_exceeded",
        )  # fmt: skip

    began = time.perf_counter()
    for first in range(0, rows, 50_000):
        db.executemany(sql, (row(n) for n in range(first, min(first + 50_000, rows))))
        db.executemany(fact_sql, facts)
        facts.clear()
    for _, index_sql in indexes:
        db.execute(index_sql)
    db.execute("ANALYZE")
    db.commit()
    db.close()
    print(f"generated {rows:,} rows in {time.perf_counter() - began:.1f} s")


def measure(client: object, url: str, headers: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url, **headers)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--fresh", action="store_true", help="regenerate the rows")
    args = parser.parse_args()
    DB.parent.mkdir(exist_ok=True)
    if args.fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{DB}{suffix}").unlink(missing_ok=True)
    reuse = DB.exists()
    setup_django()
    from django.core.management import call_command
    from django.test import Client

    from gateway import crypto
    from gateway.models import APIKey, RequestLog
    from gateway.requestlog import usage

    if reuse:
        call_command("migrate", verbosity=0)
    else:
        generate(args.rows)
    usage.forget_before(None)  # every run starts with no stored usage, so the first call shows the fill cost
    total = RequestLog.objects.count()
    print(f"{total:,} rows in {DB}")
    # A fresh logs-scope key each run: plaintexts are not stored.
    APIKey.objects.filter(name="bench-reader").delete()
    _, plaintext = APIKey.objects.create_key(name="bench-reader", scope_logs=True)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}
    some_key = APIKey.objects.get(name="team-3")
    assert crypto.split_prefix(plaintext)

    client = Client()
    day = (END - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    mid = (END - timedelta(days=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = END.strftime("%Y-%m-%dT%H:%M:%SZ")
    month = (END - timedelta(days=DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    first_page = client.get("/api/logs", **headers).json()
    cases = [
        ("/api/logs (first page, 50 rows)", "/api/logs"),
        ("/api/logs next page (cursor)", first_page["next"]),
        ("/api/logs?model=minicpm-v", "/api/logs?model=minicpm-v"),
        ("/api/logs?status=5xx&since=15 days ago", f"/api/logs?status=5xx&since={mid}"),
        ("/api/logs?key=<prefix>&endpoint=…", f"/api/logs?key={some_key.prefix}&endpoint=/v1/embeddings"),
        ("/api/logs?model=…&until=15 days ago", f"/api/logs?model=qwen2.5-vl&until={mid}"),
        ("/api/usage by model per hour, 1 day", f"/api/usage?group=hour&by=model&since={day}&until={end}"),
        ("/api/usage by key per day, 30 days", f"/api/usage?group=day&by=key&since={month}&until={end}"),
    ]
    print(f"{'request':<42} {'first ms':>9} {'p50 ms':>8} {'p95 ms':>8}")
    for label, url in cases:
        first = measure(client, url, headers, 1)[0]  # fills the page cache, and for /api/usage the stored buckets
        times = measure(client, url, headers, args.repeat)
        p95 = statistics.quantiles(times, n=20, method="inclusive")[18]
        print(f"{label:<42} {first:>9.1f} {statistics.median(times):>8.1f} {p95:>8.1f}")
    # What an open bucket costs: it is computed on every request. As if it were 23:59 on the last day of the data,
    # so that the open hour and the open day are as full as they get.
    late = END - timedelta(minutes=1)
    for group, span in (("hour", timedelta(hours=1)), ("day", timedelta(days=1))):
        usage.usage(END - span, END, group, "key", now=late)  # stores the closed hours of the day, once
        times = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            usage.usage(END - span, END, group, "key", now=late)
            times.append((time.perf_counter() - began) * 1000)
        rows = RequestLog.objects.filter(created__gte=END - span, created__lt=END).count()
        p95 = statistics.quantiles(times, n=20, method="inclusive")[18]
        label = f"open {group} by key ({rows:,} rows), usage()"
        print(f"{label:<42} {'':>9} {statistics.median(times):>8.1f} {p95:>8.1f}")


if __name__ == "__main__":
    main()
