"""Test-wide fixtures: real llama-server processes with the small model, started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "test-artifacts"


def _start_llama(embeddings: bool) -> Iterator[object]:
    from gateway import llama

    ARTIFACTS.mkdir(exist_ok=True)
    kind = "embed" if embeddings else "chat"
    try:
        server = llama.LlamaServer(port=llama.free_port(), embeddings=embeddings, parallel=1 if embeddings else 2)
        server.start(log_file=ARTIFACTS / f"llama-{kind}.log")
    except llama.LlamaError as exc:
        pytest.fail(f"cannot start a real llama-server ({kind}): {exc}. Run `make test`, which installs it.")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_chat() -> Iterator[object]:
    """A real llama-server with the small model, for chat and completions."""
    yield from _start_llama(embeddings=False)


@pytest.fixture(scope="session")
def llama_embed() -> Iterator[object]:
    """A real llama-server started with --embeddings --pooling mean."""
    yield from _start_llama(embeddings=True)
