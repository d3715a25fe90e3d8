"""Gateway test fixtures: the app served by daphne over the test database, real backends, keys, an SDK client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest

from gateway import upstream
from gateway.llama import free_port
from gateway.models import APIKey, ModelKind, PromptFormat
from gateway.registry import register_model
from tests.fake_llama import FakeLlama
from tests.settle import settle_this_process
from tests.slots import seconds_until_idle

# A generation an earlier test cancelled (or left running) must not take a slot this test counts on: the fixtures
# that hand out the shared real server wait until none of its slots is processing.
IDLE_WITHIN = 120  # seconds


@pytest.fixture
def chat_model(transactional_db: None, llama_chat: object) -> str:
    """The real small model through the backend's own chat template (prompt format `server`), its slots idle."""
    seconds_until_idle(llama_chat.url, limit=IDLE_WITHIN)  # type: ignore[attr-defined]
    register_model("gemma", [llama_chat.url], kind=ModelKind.CHAT)  # type: ignore[attr-defined]
    return "gemma"


@pytest.fixture
def template_model(transactional_db: None, llama_chat: object) -> str:
    """The same real model through the gateway-side Gemma template and /completion, its slots idle."""
    seconds_until_idle(llama_chat.url, limit=IDLE_WITHIN)  # type: ignore[attr-defined]
    register_model("gemma-tpl", [llama_chat.url], kind=ModelKind.CHAT, prompt_format=PromptFormat.GEMMA)  # type: ignore[attr-defined]
    return "gemma-tpl"


@pytest.fixture
def embedding_model(transactional_db: None, llama_embed: object) -> str:
    register_model("gemma-embed", [llama_embed.url], kind=ModelKind.EMBEDDING)  # type: ignore[attr-defined]
    return "gemma-embed"


@pytest.fixture
def api_key(transactional_db: None) -> str:
    """Plaintext of a key with no limits, allowed every model."""
    _, plaintext = APIKey.objects.create_key(name="alice's key")
    return plaintext


@pytest.fixture
def client(live_gateway: str, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=api_key, max_retries=0, timeout=120)


@pytest.fixture
async def app_client(transactional_db: None, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway served in this process (httpx over ASGI) with alice's key, where a test can see and hold
    routing's state; after the test its log rows are written and its connections closed."""
    from jetsonsite.asgi import application

    transport = httpx.ASGITransport(app=application)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers, timeout=60) as app:
        yield app
    await settle_this_process()
    await upstream.close_sessions()


def post(
    live_gateway: str, api_key: str, path: str, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A raw POST, for what the SDK hides (status, headers, exact error bodies)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json", **(headers or {})}
    return httpx.post(f"{live_gateway}{path}", content=content, headers=headers, timeout=60)


@pytest.fixture
def fake_llama() -> Iterator[FakeLlama]:
    """A recording fake backend, for faults the real server cannot be made to show."""
    fake = FakeLlama(free_port()).start_in_thread()
    yield fake
    fake.stop()


def charged(key_id: int) -> tuple[int, int]:
    """(tokens charged to a key, its requests in flight) as its limits' store counts them: Redis when REDIS_URL is
    set (CI's second run), else the database."""
    from django.conf import settings
    from django.db.models import Sum

    from gateway.models import InFlight, RateWindow

    if not settings.REDIS_URL:
        tokens = RateWindow.objects.filter(api_key_id=key_id).aggregate(total=Sum("tokens"))["total"] or 0
        return tokens, InFlight.objects.filter(api_key_id=key_id).count()
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        tokens = sum(int(client.get(name) or 0) for name in client.scan_iter(f"jg:{key_id}:*:t"))
        return tokens, client.zcard(f"jg:{key_id}:inflight")
    finally:
        client.close()
