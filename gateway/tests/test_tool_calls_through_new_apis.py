"""Tools are what Codex, the Agents SDK and Claude Code use these APIs for: tool definitions, tool_choice and tool
results reach llama-server intact, and its tool calls reach the official SDKs as their own tool-call objects, plain
and streamed (`input_json_delta`, `response.function_call_arguments.delta`). The real small model accepts the tool
definitions; the calls come from the fake backend (a base model of 270M parameters calls no tool on purpose)."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from gateway.registry import register_model
from gateway.tests.conftest import post
from tests.fake_llama import TOOL_ARGUMENTS, FakeLlama

WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip
FUNCTION = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
            "parameters": WEATHER["input_schema"]}  # fmt: skip
ANTHROPIC_TURNS = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": {"city": "Paris"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_0", "content": "sunny"}]},
]  # fmt: skip
RESPONSES_INPUT = [
    {"role": "user", "content": "Weather in Paris?"},
    {"type": "function_call", "call_id": "call_0", "name": "get_weather", "arguments": TOOL_ARGUMENTS},
    {"type": "function_call_output", "call_id": "call_0", "output": "sunny"},
]


@pytest.fixture
def tool_model(transactional_db: None, fake_llama: FakeLlama) -> str:
    register_model("tooled", [fake_llama.url], kind="chat")
    return "tooled"


@pytest.fixture
def claude(live_gateway: str, api_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live_gateway, api_key=api_key, max_retries=0, timeout=60)


def forwarded(fake: FakeLlama, path: str) -> dict[str, Any]:
    return next(r["json"] for r in reversed(fake.received) if r["path"] == path)


def test_the_real_model_accepts_tool_definitions_on_both_apis(live_gateway: str, api_key: str, chat_model: str) -> None:
    messages = {"model": chat_model, "max_tokens": 4, "tools": [WEATHER], "tool_choice": {"type": "auto"},
                "messages": ANTHROPIC_TURNS}  # fmt: skip
    responses = {"model": chat_model, "max_output_tokens": 4, "tools": [FUNCTION], "input": RESPONSES_INPUT}

    assert post(live_gateway, api_key, "/v1/messages", messages).status_code == 200
    assert post(live_gateway, api_key, "/v1/responses", responses).status_code == 200


def test_anthropic_tool_use_reaches_the_sdk_plain_and_streamed(
    claude: anthropic.Anthropic, tool_model: str, fake_llama: FakeLlama
) -> None:
    ask = {"model": tool_model, "max_tokens": 64, "tools": [WEATHER], "tool_choice": {"type": "any"},
           "messages": ANTHROPIC_TURNS}  # fmt: skip

    message = claude.messages.create(**ask)  # type: ignore[arg-type]
    with claude.messages.stream(**ask) as stream:  # type: ignore[arg-type]
        partial = [event.partial_json for event in stream if event.type == "input_json"]
        final = stream.get_final_message()

    for answer in (message, final):
        (block,) = answer.content
        assert isinstance(block, anthropic.types.ToolUseBlock)
        assert (block.name, block.input) == ("get_weather", {"city": "Paris"})
        assert (answer.stop_reason, answer.model) == ("tool_use", tool_model)
    assert "".join(partial) == TOOL_ARGUMENTS
    sent = forwarded(fake_llama, "/v1/messages")
    assert (sent["tools"], sent["tool_choice"], sent["messages"]) == ([WEATHER], {"type": "any"}, ANTHROPIC_TURNS)


def test_a_responses_function_call_reaches_the_sdk_plain_and_streamed(
    client: openai.OpenAI, tool_model: str, fake_llama: FakeLlama
) -> None:
    ask = {"model": tool_model, "tools": [FUNCTION], "tool_choice": "required", "input": RESPONSES_INPUT}

    answer = client.responses.create(**ask)  # type: ignore[call-overload]
    with client.responses.stream(**ask) as stream:  # type: ignore[arg-type]
        deltas = [event.delta for event in stream if event.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()

    for response in (answer, final):
        (call,) = response.output
        assert isinstance(call, openai.types.responses.ResponseFunctionToolCall)
        assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
        assert response.model == tool_model
    assert "".join(deltas) == TOOL_ARGUMENTS
    sent = forwarded(fake_llama, "/v1/responses")
    assert (sent["tools"], sent["tool_choice"], sent["input"]) == ([FUNCTION], "required", RESPONSES_INPUT)
