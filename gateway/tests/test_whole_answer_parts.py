"""A whole (non-streamed) answer is put together from llama-server's stream exactly as its own non-streamed route
returns it, for every part a chunk can carry: tool calls whose arguments arrive in pieces (several calls at once),
reasoning content (DeepSeek R1-style models) beside the content, and logprobs. (Text and logprobs are also compared
with the real server in test_assembled_answers.py; no small model on PyPI calls tools or reasons.)"""

from __future__ import annotations

import json

from gateway.outcomes import Usage
from gateway.relay import OpenAIEvents


def chunk(delta: dict, finish: str | None = None) -> bytes:
    return event([{"index": 0, "delta": delta, "finish_reason": finish}])


def event(choices: list, **extra: object) -> bytes:
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "/m/qwen.gguf",
            "choices": choices, **extra}  # fmt: skip
    return json.dumps(body).encode()


def whole(stream: list[bytes]) -> dict:
    events = OpenAIEvents("qwen", "content", include_usage=True, usage=Usage(), previews=False)
    for raw in stream:
        events.absorb(raw)
    return events.answer()


def test_tool_calls_in_pieces_become_the_whole_calls() -> None:
    stream = [
        chunk({"role": "assistant", "content": None}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, "tool_calls"),
        event([], usage={"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}),
    ]

    answer = whole(stream)

    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'}},
        ],
    }
    assert (answer["object"], answer["model"], answer["usage"]["total_tokens"]) == ("chat.completion", "qwen", 21)


def test_reasoning_content_is_kept_apart_from_the_content() -> None:
    stream = [
        chunk({"role": "assistant", "content": None}),
        chunk({"reasoning_content": "The user "}),
        chunk({"reasoning_content": "greets me."}),
        chunk({"content": "Hello"}),
        chunk({"content": "!"}),
        chunk({}, "stop"),
    ]

    (choice,) = whole(stream)["choices"]

    assert choice["message"] == {"role": "assistant", "content": "Hello!", "reasoning_content": "The user greets me."}
    assert choice["finish_reason"] == "stop"
