"""A model with several backends sends a conversation's next turn back to the backend that read the last one (its
slot, or its node's saved cache, holds the start of the prompt), unless that backend is down or busier by a whole
request than another; another conversation is balanced as before."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from asgiref.sync import sync_to_async

from gateway import routing
from gateway.llama import free_port
from gateway.registry import register_model
from tests.fake_llama import FakeLlama

CHAT = "/v1/chat/completions"


@pytest.fixture
def two_fakes() -> Iterator[tuple[FakeLlama, FakeLlama]]:
    first, second = FakeLlama(free_port()).start_in_thread(), FakeLlama(free_port()).start_in_thread()
    yield first, second
    first.stop()
    second.stop()


def turns(conversation: str, n: int) -> list[dict]:
    messages = [{"role": "system", "content": f"You are the assistant of {conversation}."}]
    for turn in range(n):
        messages += [
            {"role": "user", "content": f"Question {turn}"},
            {"role": "assistant", "content": f"Answer {turn}"},
        ]
    return [*messages, {"role": "user", "content": f"Question {n}"}]


async def ask(app_client: httpx.AsyncClient, messages: list[dict]) -> None:
    response = await app_client.post(CHAT, json={"model": "pair", "messages": messages, "max_tokens": 2})
    assert response.status_code == 200, response.text


def served(fakes: tuple[FakeLlama, FakeLlama]) -> list[int]:
    return [len(fake.received) for fake in fakes]


async def test_next_turns_go_back_to_the_backend_that_read_the_conversation(
    app_client: httpx.AsyncClient, two_fakes: tuple[FakeLlama, FakeLlama]
) -> None:
    await sync_to_async(register_model)("pair", [fake.url for fake in two_fakes], kind="chat")
    await ask(app_client, turns("alice", 0))
    home = served(two_fakes).index(1)
    for n in range(1, 9):  # by chance alone, eight turns in a row on one of two idle backends: 1 in 256
        await ask(app_client, turns("alice", n))
    assert served(two_fakes)[home] == 9
    for n in range(20):  # other conversations still go to both (all on one by chance: 1 in 500,000)
        await ask(app_client, turns(f"user {n}", 0))
    assert min(served(two_fakes)) > 0


async def test_a_busy_home_backend_gives_the_turn_to_an_idle_one(
    app_client: httpx.AsyncClient, two_fakes: tuple[FakeLlama, FakeLlama]
) -> None:
    await sync_to_async(register_model)("pair", [fake.url for fake in two_fakes], kind="chat")
    await ask(app_client, turns("alice", 0))
    home = served(two_fakes).index(1)
    backends = {b.target.base_url: b for b in (await routing.registry())["pair"].backends}
    with routing.occupy(backends[two_fakes[home].url]):  # a request in flight there; none on the other
        await ask(app_client, turns("alice", 1))
    assert served(two_fakes)[1 - home] == 1
