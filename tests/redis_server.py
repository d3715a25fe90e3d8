"""A private redis-server for tests that stop, pause and restart Redis: on a free port, in a directory of its own,
without persistence (a restart forgets everything, as a Redis run that way does in production). Never the machine's
own Redis on 6379, which other sessions and CI share."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from gateway.outage import client_options
from tests.live import ARTIFACTS

MISSING = (
    "redis-server is not installed: these tests start a private one. Run `make setup-test` (scripts/install-redis.sh "
    "installs Debian's redis-server)."
)


class PrivateRedis:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self, timeout: float = 10) -> None:
        """Start it on its port (again, after `stop`) and wait until it answers PING."""
        binary = shutil.which("redis-server")
        assert binary, MISSING
        ARTIFACTS.mkdir(exist_ok=True)
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(ARTIFACTS / f"redis-{self.port}.log", "ab") as log:
            self.process = subprocess.Popen([*argv, "--dir", str(self.directory)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}: see {log.name}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Shut it down (SIGTERM: without persistence, it forgets everything) and wait until it has exited."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections are still accepted by the kernel, nothing answers, as when blackholed."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


def channel_layer_at(url: str) -> dict:
    """CHANNEL_LAYERS with channels-redis at `url`, configured as jetsonsite.settings configures it."""
    host = {"address": url, "socket_timeout": 15, **client_options()}
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [host]}}}
