"""Test-wide fixtures: real llama-server processes with the small model, started once per session; a live gateway;
a private Redis."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import METRICS_TOKEN, database_url, start_daphne, stop_process
from tests.redis_server import MISSING, PrivateRedis
from tests.settle import settle_live_server

ARTIFACTS = Path(__file__).resolve().parent / "test-artifacts"


def _start_llama(kind: str) -> Iterator[object]:
    """A real llama-server of one `kind`: chat, embed (--embeddings --pooling mean) or rerank (--rerank)."""
    from gateway import llama
    from tests.llama_server import LlamaServer

    ARTIFACTS.mkdir(exist_ok=True)
    try:
        server = LlamaServer(port=llama.free_port(), embeddings=kind == "embed", parallel=2 if kind == "chat" else 1,
                             extra_args=["--rerank"] if kind == "rerank" else [])  # fmt: skip
        server.start(log_file=ARTIFACTS / f"llama-{kind}.log")
    except llama.LlamaError as exc:
        pytest.fail(f"cannot start a real llama-server ({kind}): {exc}. Run `make test`, which installs it.")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_chat() -> Iterator[object]:
    """A real llama-server with the small model, for chat and completions."""
    yield from _start_llama("chat")


@pytest.fixture(scope="session")
def llama_embed() -> Iterator[object]:
    """A real llama-server started with --embeddings --pooling mean."""
    yield from _start_llama("embed")


@pytest.fixture(scope="session")
def llama_rerank() -> Iterator[object]:
    """A real llama-server started with --rerank. The small model is no reranker, so its scores mean nothing, but
    they are llama-server's own answer to /v1/rerank, in its real shape."""
    yield from _start_llama("rerank")


@pytest.fixture(scope="session")
def live_gateway_server(django_db_setup: None, django_db_blocker: object) -> Iterator[str]:
    """Base URL of the gateway served by one real daphne process over the test database, for the whole session.

    Tests take it through `live_gateway`, which settles it after each test.
    """
    # Small size limits, so that the 413 and image-size paths are cheap to reach.
    env = {"DATABASE_URL": database_url(), "LOG_FLUSH_INTERVAL": "0.1", "MAX_REQUEST_BYTES": str(2**20),
           "MAX_IMAGE_BYTES": str(2**16), "MAX_AUDIO_BYTES": str(2**16), "IMAGE_URL_ALLOWED_HOSTS": "images.example.org",
           "BACKEND_COOLOFF_SECONDS": "30", "SSE_KEEPALIVE_SECONDS": "0.5", "MONITOR_METRICS_TOKEN": METRICS_TOKEN}  # fmt: skip
    process, url = start_daphne(env)
    yield url
    stop_process(process)


@pytest.fixture
def live_gateway(live_gateway_server: str, transactional_db: None) -> Iterator[str]:
    """The live gateway's base URL; after the test, every request it served is logged before the database is reset."""
    yield live_gateway_server
    settle_live_server(live_gateway_server)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own on a free port (never the machine's), running; stopped after the test."""
    from gateway.llama import free_port

    if shutil.which("redis-server") is None:
        pytest.fail(MISSING)
    server = PrivateRedis(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> Iterator[None]:
    """A new channel layer instance for every test.

    channels-redis keeps receive state (a lock, a counter) on the layer instance, bound to the event loop that
    first received; pytest-asyncio gives each test its own loop, so a shared instance can leave a test waiting on
    a lock from a loop that no longer runs.
    """
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
