"""A live server for end-to-end tests: daphne in a subprocess, on a free port, over the test database."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
METRICS_TOKEN = "live-metrics-token"  # MONITOR_METRICS_TOKEN of the session's live gateway
_own_metrics_dirs: dict[int, str] = {}  # daphne pid -> the metrics directory start_daphne made for it


def database_url() -> str:
    """DATABASE_URL for another process to use the test database (valid once the test database is set up)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    original = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(original._replace(path="/" + db["NAME"]))


def start_daphne(
    env: dict[str, str], timeout: float = 60, command: Callable[[int], list[str]] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Serve jetsonsite.asgi with daphne on a free port, with `env` over this process's environment.

    `command(port)` gives another command line serving 127.0.0.1:port (default: plain daphne).
    Returns (process, base URL) once `/livez` answers; stop it with `stop_process`. Its output goes to
    test-artifacts/daphne-<port>.log. Unless `env` names a PROMETHEUS_MULTIPROC_DIR, it counts its requests in a
    directory of its own (removed by `stop_process`), not in this process's.
    """
    from gateway.llama import free_port

    port = free_port()
    own_dir = None if "PROMETHEUS_MULTIPROC_DIR" in env else tempfile.mkdtemp(prefix=f"daphne-{port}-metrics-")
    if own_dir:
        env = {**env, "PROMETHEUS_MULTIPROC_DIR": own_dir}
    plain = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "jetsonsite.asgi:application"]
    argv = command(port) if command else plain
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / f"daphne-{port}.log", "ab")  # noqa: SIM115 (the process owns it)
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "jetsonsite.settings", **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    if own_dir:
        _own_metrics_dirs[process.pid] = own_dir
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stop_process(process)
            raise RuntimeError(f"daphne exited with code {process.returncode}: see {log.name}")
        try:
            with urllib.request.urlopen(f"{url}/livez", timeout=2):
                return process, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    stop_process(process)
    raise RuntimeError(f"daphne did not answer within {timeout:.0f} s: see {log.name}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.pid in _own_metrics_dirs:
        shutil.rmtree(_own_metrics_dirs.pop(process.pid), ignore_errors=True)


def send_chat_request(base_url: str, api_key: str, body: dict, path: str = "/v1/chat/completions") -> socket.socket:
    """A raw HTTP/1.1 POST (to /v1/chat/completions unless `path` says), so that a test decides the exact moment the
    connection closes."""
    address = urlsplit(base_url)
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    connection = socket.create_connection((address.hostname, address.port), timeout=60)
    connection.sendall(head.encode() + payload)
    return connection


def logged_row(request_id: str, limit: float = 15) -> Any:
    """The RequestLog row of a request a live server answered, once its writer has written it."""
    from gateway.models import RequestLog

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        row = RequestLog.objects.filter(request_id=request_id).first()
        if row is not None:
            return row
        time.sleep(0.1)
    raise AssertionError(f"no log row for request {request_id} after {limit:.0f} s")
