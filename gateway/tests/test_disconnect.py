"""A client that goes away cancels the generation, streamed or not: the real llama-server's slot is idle within 1 s.

The generations ignore the end-of-sequence token, so they cannot end on their own within the time a test waits.
"""

from __future__ import annotations

import socket
import time

import pytest

from gateway.models import RequestLog
from gateway.tests.conftest import post
from tests.live import send_chat_request
from tests.slots import busy_slots, seconds_until_idle

LONG = {"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 800, "ignore_eos": True}
FREED_WITHIN = 1.0  # seconds from the client closing its connection to the slot being idle


@pytest.fixture
def idle_llama(llama_chat: object) -> str:
    url = llama_chat.url  # type: ignore[attr-defined]
    seconds_until_idle(url, limit=120)  # a previous test's generation must not be mistaken for ours
    return url


def close_and_time_until_idle(connection: socket.socket, llama_url: str) -> float:
    connection.close()
    return seconds_until_idle(llama_url, limit=30)


def last_row(endpoint: str = "/v1/chat/completions") -> RequestLog:
    deadline = time.monotonic() + 15
    while (row := RequestLog.objects.filter(endpoint=endpoint).first()) is None:
        assert time.monotonic() < deadline, "no log row for the abandoned request"
        time.sleep(0.1)
    return row


STORY = "Tell me a story."
STREAMS = {
    # endpoint: (its streamed request, the bytes of a token event)
    "/v1/chat/completions": ({"stream": True, **LONG}, b'"content":"'),
    "/v1/responses": (
        {"stream": True, "input": STORY, "max_output_tokens": 800, "ignore_eos": True},
        b"output_text.delta",
    ),
    "/v1/messages": (
        {"stream": True, "messages": [{"role": "user", "content": STORY}], "max_tokens": 800, "ignore_eos": True},
        b"text_delta",
    ),
}


@pytest.mark.parametrize("endpoint", STREAMS)
def test_a_stream_closed_by_the_client_frees_the_slot_within_a_second(
    live_gateway: str, api_key: str, chat_model: str, idle_llama: str, endpoint: str
) -> None:
    body, token = STREAMS[endpoint]
    connection = send_chat_request(live_gateway, api_key, {"model": chat_model, **body}, endpoint)
    received = b""
    while received.count(token) < 3:  # a few tokens have arrived
        received += connection.recv(65536)
    assert busy_slots(idle_llama) == 1
    freed_after = close_and_time_until_idle(connection, idle_llama)
    print(f"{endpoint}: slot idle {freed_after * 1000:.0f} ms after the streaming client closed")
    assert freed_after <= FREED_WITHIN
    row = last_row(endpoint)
    assert (row.status, row.client_gone) == (499, True)


def test_a_plain_request_abandoned_by_the_client_frees_the_slot_within_a_second(
    live_gateway: str, api_key: str, chat_model: str, idle_llama: str
) -> None:
    connection = send_chat_request(live_gateway, api_key, {"model": chat_model, **LONG})
    time.sleep(1.5)
    assert busy_slots(idle_llama) == 1  # still generating: the answer is far from done
    freed_after = close_and_time_until_idle(connection, idle_llama)
    print(f"slot idle {freed_after * 1000:.0f} ms after the non-streaming client closed")
    assert freed_after <= FREED_WITHIN
    row = last_row()
    assert (row.status, row.client_gone) == (499, True)


def test_the_gateway_stays_usable_after_a_disconnect(live_gateway: str, api_key: str, chat_model: str) -> None:
    response = post(live_gateway, api_key, "/v1/chat/completions", {"model": chat_model, **LONG, "max_tokens": 2})
    assert response.status_code == 200
