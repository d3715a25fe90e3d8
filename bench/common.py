"""Shared pieces of the gateway benchmarks: backends, a throwaway database, daphne, a bounded load generator, tables.

Everything runs on this machine's loopback. A `Bench` owns a temporary directory (SQLite database, VAR_DIR) and
every process it starts; leaving its `with` block stops them and removes the directory.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import secrets
import shutil
import sqlite3
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID = "bench-model"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _secret_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(60))


class Bench:
    """A throwaway gateway installation: `with Bench() as b: url = b.start_gateway(...)`."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
        self.db_path = self.tmp / "bench.sqlite3"
        self.env = {
            "DJANGO_SETTINGS_MODULE": "jetsonsite.settings",
            "VAR_DIR": str(self.tmp),
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "SECRET_KEY": _secret_key(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DEBUG": "false",
            "REDIS_URL": "",  # the in-memory channel layer, limits in the database (none set on the bench key)
            "LOG_LEVEL": "WARNING",
            "LOG_ENABLED": "false",
        }
        # This process reads the same settings (gateway.llama needs them to find llama-server and the model).
        os.environ.update(self.env)
        self.processes: list[Any] = []
        self.llamas: list[Any] = []

    def __enter__(self) -> Bench:
        self.manage("migrate", "--verbosity", "0")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        from tests.live import stop_process

        for llama in self.llamas:
            llama.stop()
        for process in reversed(self.processes):
            stop_process(process)
        self.processes.clear()
        self.llamas.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- setup through manage.py, in a subprocess with the bench environment ---

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def add_model(self, backend_url: str, model_id: str = MODEL_ID) -> None:
        self.manage("addmodel", model_id, "--backend", backend_url)

    def create_key(self, name: str = "bench") -> str:
        return self.manage("createapikey", name).strip().splitlines()[-1].strip()

    # --- processes ---

    def start_fake(self, tokens: int = 16, token_delay: float = 0.0) -> str:
        from gateway.llama import free_port

        port = free_port()
        cmd = [sys.executable, "-m", "tests.fake_llama", "--port", str(port), "--tokens", str(tokens)]
        if token_delay:
            cmd += ["--token-delay", str(token_delay)]
        process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", process, timeout=20)
        return url

    def start_llama(self, extra_args: list[str] | None = None) -> str:
        from gateway.llama import free_port
        from tests.llama_server import LlamaServer

        server = LlamaServer(port=free_port(), extra_args=extra_args or [])
        self.llamas.append(server)
        server.start(log_file=ROOT / "test-artifacts" / "bench-llama.log")
        return server.url

    def start_gateway(self, **env: str) -> str:
        from tests.live import start_daphne

        process, url = start_daphne({**self.env, **env})
        self.processes.append(process)
        return url

    # --- the database, read directly (the writer's rows) ---

    def count_log_rows(self, key_name: str | None = None) -> int:
        """RequestLog rows, all or those of one API key."""
        sql, params = "SELECT COUNT(*) FROM gateway_requestlog", ()
        if key_name is not None:
            sql, params = sql + " WHERE key_name = ?", (key_name,)
        with sqlite3.connect(self.db_path, timeout=20) as db:
            return db.execute(sql, params).fetchone()[0]


def wait_http(url: str, process: subprocess.Popen | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


# --- the load generator ---


@dataclass
class LoadTarget:
    """Where requests go: the gateway (with a key) or a backend directly."""

    name: str
    url: str  # full URL of the endpoint
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


def chat_body(tokens: int | None = None, stream: bool = False, model: str = MODEL_ID, **extra: Any) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Say something."}]}
    if tokens:
        body["max_tokens"] = tokens
    if stream:
        body["stream"] = True
    return json.dumps({**body, **extra}).encode()


def gateway_target(base_url: str, key: str, path: str = "/v1/chat/completions") -> LoadTarget:
    return LoadTarget(
        "gateway", base_url + path, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    )


def direct_target(base_url: str, path: str = "/v1/chat/completions") -> LoadTarget:
    return LoadTarget("direct", base_url + path, {"Content-Type": "application/json"})


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # ms, successful requests
    ttfts: list[float] = field(default_factory=list)  # ms to the first content event (streams)
    events: int = 0  # SSE data events received (streams)
    errors: int = 0
    elapsed: float = 0.0  # s, wall time of the whole load
    last_error: str = ""

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.elapsed if self.elapsed else 0.0

    def merge(self, other: LoadResult) -> LoadResult:
        """Pool two loads (for interleaved rounds): rates become totals over the summed wall time."""
        return LoadResult(
            self.latencies + other.latencies,
            self.ttfts + other.ttfts,
            self.events + other.events,
            self.errors + other.errors,
            self.elapsed + other.elapsed,
            other.last_error or self.last_error,
        )


def _has_content(line: bytes) -> bool:
    try:
        choices = json.loads(line[5:]).get("choices") or [{}]
    except ValueError:
        return False
    return bool((choices[0].get("delta") or {}).get("content"))


async def _one(
    session: aiohttp.ClientSession, target: LoadTarget, body: bytes, stream: bool, result: LoadResult
) -> None:
    started = time.perf_counter()
    try:
        data = body if target.method == "POST" else None
        async with session.request(target.method, target.url, data=data, headers=target.headers) as response:
            if response.status != 200:
                result.errors += 1
                result.last_error = f"{response.status}: {(await response.read())[:200]!r}"
                return
            if not stream:
                await response.read()
            else:
                seen_content = False
                async for line in response.content:
                    if not line.startswith(b"data:"):
                        continue
                    result.events += 1
                    if not seen_content and _has_content(line):
                        seen_content = True
                        result.ttfts.append((time.perf_counter() - started) * 1000)
        result.latencies.append((time.perf_counter() - started) * 1000)
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.errors += 1
        result.last_error = f"{exc.__class__.__name__}: {exc}"


async def _load(
    target: LoadTarget, body: bytes, concurrency: int, count: int, max_seconds: float, stream: bool
) -> LoadResult:
    result = LoadResult()
    remaining = count
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=max_seconds + 5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, skip_auto_headers=["User-Agent"]) as session:
        deadline = time.perf_counter() + max_seconds

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                await _one(session, target, body, stream, result)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - started
    return result


def load(
    target: LoadTarget, body: bytes, concurrency: int, count: int, max_seconds: float = 20.0, stream: bool = False
) -> LoadResult:
    """Send `count` requests (at most `max_seconds` of them) from `concurrency` connections; new event loop each time."""
    return asyncio.run(_load(target, body, concurrency, count, max_seconds, stream))


def interleaved(
    targets: list[LoadTarget],
    body: bytes | dict[str, bytes],
    concurrency: int,
    count: int,
    rounds: int,
    max_seconds: float = 20.0,
    stream: bool = False,
) -> dict[str, LoadResult]:
    """`rounds` rounds of `count` requests to each target in turn (order alternating), pooled per target."""
    pooled = {t.name: LoadResult() for t in targets}
    for n in range(rounds):
        order = targets if n % 2 == 0 else list(reversed(targets))
        for target in order:
            payload = body[target.name] if isinstance(body, dict) else body
            pooled[target.name] = pooled[target.name].merge(
                load(target, payload, concurrency, count, max_seconds, stream)
            )
    for name, result in pooled.items():
        if result.errors:
            print(f"warning: {name}: {result.errors} failed requests (last: {result.last_error})", file=sys.stderr)
    return pooled


# --- wrk: the C load generator, for the gateway's own cost (a Python client saturates long before daphne) ---


@dataclass
class WrkResult:
    rps: float
    p50: float  # ms
    p99: float  # ms


def require_wrk() -> None:
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: make setup-bench (apt-get install -y wrk)")


def wrk_script(folder: Path, target: LoadTarget, body: bytes | str) -> Path:
    """A wrk Lua script sending the target's method, headers and body."""
    lines = [f"wrk.method = {json.dumps(target.method)}"]
    if target.method != "GET":
        text = body.decode() if isinstance(body, bytes) else body
        lines.append(f"wrk.body = {json.dumps(text)}")
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in target.headers.items()]
    script = folder / f"wrk-{abs(hash((target.url, target.method, body)))}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def _milliseconds(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, connections: int, seconds: float, script: Path) -> WrkResult:
    """One wrk run with one thread; fails on any non-2xx answer or socket error."""
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    out = result.stdout
    if result.returncode != 0 or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk against {url} failed:\n{out}\n{result.stderr}")

    def latency(percent: int) -> float:
        found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, flags=re.MULTILINE)
        return _milliseconds(found.group(1), found.group(2))  # type: ignore[union-attr]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, latency(50), latency(99))


# --- figures ---


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain text table; floats with two decimals."""
    cells = [[f"{c:,.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"
