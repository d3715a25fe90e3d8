"""A live server for end-to-end tests: daphne in a subprocess, on a free port, over the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


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
    test-artifacts/daphne-<port>.log.
    """
    from gateway.llama import free_port

    port = free_port()
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
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
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
