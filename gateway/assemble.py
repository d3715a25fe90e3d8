"""A whole (non-streamed) answer put together from the chunks of a stream, as llama-server's own route returns it.

The gateway asks llama-server for a stream even when the client wants one answer: llama-server notices a client
that went away only while it writes a stream, so this is what lets a non-streaming client's departure free the slot.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

Chunk = dict[str, Any]
# The whole answer's `object` for each kind of chunk.
WHOLE_OBJECT = {"chat.completion.chunk": "chat.completion", "text_completion": "text_completion"}


async def answer(chunks: AsyncGenerator[Chunk | None]) -> dict:
    """Read a relayed stream to its end and return the answer it spells; a failure of the stream raises through."""
    whole: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    # Closed however this ends: a cancelled request (the client left) closes the backend connection at once.
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            if chunk is None:  # keep-alive
                continue
            for name, value in chunk.items():
                if name == "choices":
                    for choice in value or []:
                        _add_choice(choices.setdefault(choice.get("index", 0), {}), choice)
                else:
                    whole[name] = value  # id, created, model …; usage and timings arrive last
    whole["object"] = WHOLE_OBJECT.get(whole.get("object", ""), whole.get("object"))
    whole["choices"] = [choices[index] for index in sorted(choices)]
    return whole


def complete(whole: dict) -> bool:
    """Every choice reached its finish reason: a stream that ended early, without failing, has none."""
    return bool(whole["choices"]) and all(choice.get("finish_reason") for choice in whole["choices"])


def _add_choice(merged: dict[str, Any], choice: dict[str, Any]) -> None:
    for name, value in choice.items():
        if name == "delta":
            _add_delta(merged.setdefault("message", {}), value or {})
        elif name == "logprobs":
            merged["logprobs"] = _extend(merged.get("logprobs"), value)
        elif name == "text":
            merged["text"] = merged.get("text", "") + (value or "")
        elif value is not None or name not in merged:
            merged[name] = value  # index; finish_reason arrives with the last chunk


def _add_delta(message: dict[str, Any], delta: dict[str, Any]) -> None:
    for name, value in delta.items():
        if name == "tool_calls":
            calls = message.setdefault("tool_calls", [])
            for part in value or []:
                index = part.get("index", len(calls))
                while len(calls) <= index:
                    calls.append({})
                _add_tool_call(calls[index], part)
        elif isinstance(value, str) and isinstance(message.get(name), str) and name != "role":
            message[name] += value  # content, reasoning_content
        elif value is not None or name not in message:
            message[name] = value


def _add_tool_call(call: dict[str, Any], part: dict[str, Any]) -> None:
    for name, value in part.items():
        if name == "index":
            continue
        if name == "function":
            function = call.setdefault("function", {})
            for field, text in (value or {}).items():
                function[field] = function.get(field, "") + (text or "") if field == "arguments" else text
        elif value is not None:
            call[name] = value


def _extend(merged: Any, part: Any) -> Any:
    """Logprobs of two chunks as one: lists (one entry per token) are joined, anything else is kept."""
    if part is None:
        return merged
    if not isinstance(merged, dict) or not isinstance(part, dict):
        return part
    joined = dict(merged)
    for name, value in part.items():
        if isinstance(value, list) and isinstance(joined.get(name), list):
            joined[name] = joined[name] + value
        elif value is not None:
            joined[name] = value
    return joined
