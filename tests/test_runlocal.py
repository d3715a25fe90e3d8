"""Command one's last step: `manage.py runlocal` brings up the model supervisor and daphne, the small models load
on their first request, and Ctrl-C stops them all."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from gateway.llama import free_port
from tests.live import ROOT


@pytest.fixture
def workdir(tmp_path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
           "GATEWAY_PORT": str(free_port()), "SUPERVISOR_PORT": str(free_port()), "LLAMA_CTX_SIZE": "1024"}  # fmt: skip
    env.pop("REDIS_URL", None)  # embedded defaults: in-memory channel layer
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # and the metrics directory in VAR_DIR, not this process's
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
    return env


def db_count(workdir: dict[str, str], sql: str) -> int:
    with sqlite3.connect(Path(workdir["VAR_DIR"]) / "db.sqlite3") as db:
        return db.execute(sql).fetchone()[0]


def read_until(process: subprocess.Popen[str], pattern: str, limit: float = 120) -> re.Match[str]:
    deadline = time.monotonic() + limit
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"runlocal never printed {pattern!r}; it printed:\n{''.join(seen)}")


def test_it_serves_the_api_and_the_admin_and_stops_everything_on_ctrl_c(workdir: dict[str, str]) -> None:
    # A previous run's request metrics (in the default directory, under VAR_DIR) are cleared at the start.
    stale = Path(workdir["VAR_DIR"]) / "prometheus" / "counter_999999.db"
    stale.write_bytes(b"")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runlocal"], cwd=ROOT, env=workdir, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        password = read_until(process, r"password (\S+) \(shown once\)").group(1)
        key = read_until(process, r"API key \(shown once\): (\S+)").group(1)
        read_until(process, r"Deleted 1 metric files from ")
        assert not stale.exists()
        # The bundled model is a base model: the banner says so, and how to serve a real instruct model.
        note = read_until(process, r"has no chat template of its own.*").group(0)
        assert "LLAMA_MODEL_PATH" in note and "manage.py addmodel" in note
        read_until(process, r"gateway on http://")
        base = f"http://127.0.0.1:{workdir['GATEWAY_PORT']}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/livez", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        chat = httpx.post(
            f"{base}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3},
            timeout=60,
        )
        assert chat.status_code == 200, chat.text
        assert chat.json()["usage"]["completion_tokens"] > 0
        assert list(stale.parent.glob("counter_*.db")), "daphne counts its requests in the default directory"
        embed = httpx.post(f"{base}/v1/embeddings", headers={"Authorization": f"Bearer {key}"},
                           json={"model": "gemma-3-270m-embed", "input": "hi"}, timeout=60)  # fmt: skip
        assert len(embed.json()["data"][0]["embedding"]) == 640
        # Both models were loaded on demand by the supervisor, as managed models.
        with sqlite3.connect(Path(workdir["VAR_DIR"]) / "db.sqlite3") as db:
            pids = [pid for (pid,) in db.execute("SELECT pid FROM gateway_managedruntime WHERE state = 'ready'")]
        assert len(pids) == 2
        # The node's sampler runs beside them (metrics, energy, admission): its samples arrive.
        deadline = time.monotonic() + 30
        while not db_count(workdir, "SELECT COUNT(*) FROM monitor_sample"):
            assert time.monotonic() < deadline, "runlocal's sampler stored no sample within 30 s"
            time.sleep(0.5)
        children = [child.pid for child in psutil.Process(process.pid).children(recursive=True)]

        with httpx.Client(base_url=base, follow_redirects=True) as browser:
            login = browser.get("/admin/login/")
            token = browser.cookies["csrftoken"]
            admin = browser.post(
                "/admin/login/?next=/admin/",
                data={"username": "admin", "password": password, "csrfmiddlewaretoken": token},
                headers={"Referer": f"{base}/admin/login/"},
            )
            assert login.status_code == 200
            assert "Site administration" in admin.text
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    # Nothing it started is left behind: the models' llama-servers are gone, the gateway's and supervisor's ports free.
    for pid in pids + children:
        with contextlib.suppress(psutil.NoSuchProcess):
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    for port in (workdir["GATEWAY_PORT"], workdir["SUPERVISOR_PORT"]):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
