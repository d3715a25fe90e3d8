"""A real llama-server with the small model, for tests and benchmarks: started on a port, ready once its /health
answers 200, stopped."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from gateway import llama
from tests.live import stop_process


@dataclass
class LlamaServer:
    """One llama-server process; `embeddings=True` starts it as an embeddings instance."""

    port: int
    host: str = "127.0.0.1"
    embeddings: bool = False
    ctx_size: int = 2048
    parallel: int = 2
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        extra = ["--pooling", "mean", *self.extra_args] if self.embeddings else self.extra_args
        return llama.command(
            llama.model_path(),
            self.port,
            self.host,
            self.ctx_size,
            self.parallel,
            embeddings=self.embeddings,
            extra_args=extra,
        )

    def start(self, log_file: Path | None = None, timeout: float = 120) -> LlamaServer:
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Ready means GET /health answers 200: every route answers 503 while the model loads."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise llama.LlamaError(f"llama-server on port {self.port} exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise llama.LlamaError(f"llama-server on port {self.port} was not ready within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
