"""The one stream wrapper: llama-server's events, as they arrive, turned into what the client gets (server-sent
events, the dashboard's chunks, or one whole answer) in one layer, and the stream's single end.

Events are passed on as llama-server sent them, with the client's model name put in place of the GGUF path (a
byte replacement), and parsed only where something must be read from them: until the first token, the events that
carry the usage or an error, and every event when previews are kept. Events that arrived together leave together.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway import errors, upstream
from gateway.outcomes import Asked, Route, Usage

Chunk = dict[str, Any]
KEEPALIVE_FRAME = b": keep-alive\n\n"
DONE_FRAME = b"data: [DONE]\n\n"
PREVIEW_CHARS_MAX = 100_000  # bytes of completion a preview collects before it is cut (rows keep LOG_PREVIEW_CHARS)
FINISH_REASONS = {"limit": "length", "eos": "stop", "word": "stop", "none": "stop"}
# The whole answer's `object` for each kind of chunk.
WHOLE_OBJECT = {"chat.completion.chunk": "chat.completion", "text_completion": "text_completion"}
# Error types of error events, and the status a whole answer or a log row gets for them.
ERROR_STATUS = {"timeout_error": 504, "unavailable_error": 503}


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def _dumps(chunk: Chunk) -> bytes:
    return json.dumps(chunk, separators=(",", ":")).encode()


def _loads(raw: bytes) -> Chunk:
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise upstream.UpstreamError(f"backend sent an event that is not JSON: {exc}", 502, retryable=True) from exc
    if not isinstance(event, dict):
        raise upstream.UpstreamError("backend sent an event that is not a JSON object", 502, retryable=True)
    if "error" in event:
        raise upstream.event_error(event)
    return event


class Events(Protocol):
    """One protocol's events. `frames` gives the server-sent events for one upstream item (an `event:` line or a
    payload), without parsing it where it can; `absorb` takes one into a whole answer, which `answer` returns once the
    stream has ended. Either way the usage, the first token and the finish are noted."""

    finished: bool

    def frames(self, raw: bytes) -> bytes: ...

    def absorb(self, raw: bytes) -> None: ...

    def answer(self) -> dict[str, Any]: ...

    def error_frame(self, error: errors.APIError, body: dict[str, Any]) -> bytes: ...


class Chunked:
    """Events that become OpenAI chat or text completion chunks (`chunks`), merged into one answer as llama-server's
    own non-streamed route returns it."""

    finished: bool

    def __init__(self) -> None:
        self.whole: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}

    def chunks(self, raw: bytes) -> list[Chunk]:
        raise NotImplementedError

    def absorb(self, raw: bytes) -> None:
        if raw[:6] != b"event:":
            for chunk in self.chunks(raw):
                _merge(self.whole, self.choices, chunk)

    def answer(self) -> dict[str, Any]:
        answer = self.whole
        answer["object"] = WHOLE_OBJECT.get(answer.get("object", ""), answer.get("object"))
        answer["choices"] = [self.choices[index] for index in sorted(self.choices)]
        if not answer["choices"]:
            raise upstream.UpstreamError("backend sent no choice", 502, retryable=True)
        return answer

    def error_frame(self, error: errors.APIError, body: dict[str, Any]) -> bytes:
        # The backend's own error event as it sent it, or the failure in OpenAI's shape; no [DONE] after it.
        return frame(_dumps(body if "error" in body else error.body()))


class OpenAIEvents(Chunked):
    """llama-server's own OpenAI-shaped stream (/v1/chat/completions, /v1/completions).

    A request for `n` choices of each of several prompts (a list of prompts to /v1/completions) is one task per
    choice, interleaved in one stream: choice `index` answers prompt `index // n`, and each task ends with its own
    finish reason and its own usage. The stream is finished when every choice is, and its usage is theirs summed,
    each prompt counted once (as OpenAI counts `n`): llama-server's own whole answer keeps the last task's only."""

    def __init__(
        self, model: str, text_key: str, include_usage: bool, usage: Usage, previews: bool, prompts: int = 1, n: int = 1
    ) -> None:
        super().__init__()
        self.model, self.text_key, self.include_usage = model, text_key, include_usage
        self.usage, self.previews = usage, previews
        self.n, self.expected = n, prompts * n
        self.finished = False
        self.finished_choices: set[int] = set()
        self.task_usage: dict[int, dict[str, Any]] = {}  # each choice's own usage, by its index
        self.last_finished = 0  # the choice whose usage comes next (chat sends it in a chunk of its own)
        # The backend's model name (a GGUF path) as it appears in an event, and ours in its place; learnt from the
        # first event parsed.
        self.rename: tuple[bytes, bytes] | None = None

    def frames(self, raw: bytes) -> bytes:
        if raw[:6] == b"event:":
            return b""  # llama-server names no events here
        rename = self.rename
        if (
            rename is not None
            and self.usage.first_token is not None
            and not self.previews
            and rename[0] in raw
            and b'"usage"' not in raw
            and b'"error"' not in raw
            and b'"finish_reason":"' not in raw  # parsed: which choice finished
        ):
            return frame(raw.replace(rename[0], rename[1], 1))
        return b"".join(frame(_dumps(chunk)) for chunk in self._take(raw, whole=False))

    def chunks(self, raw: bytes) -> list[Chunk]:
        return self._take(raw, whole=True)

    def answer(self) -> dict[str, Any]:
        answer = super().answer()
        if self.task_usage:
            answer["usage"] = self._total()
        return answer

    def _total(self) -> dict[str, Any]:
        """The tasks' usage summed: completion tokens of every choice, prompt tokens of each prompt's first."""
        total: dict[str, Any] = {}
        for index, usage in sorted(self.task_usage.items()):
            first_of_prompt = index % self.n == 0
            _add_counts(total, {k: v for k, v in usage.items() if first_of_prompt or not k.startswith("prompt_")})
        total["total_tokens"] = int(total.get("prompt_tokens") or 0) + int(total.get("completion_tokens") or 0)
        return total

    def _take(self, raw: bytes, whole: bool) -> list[Chunk]:
        if raw == b"null":
            return []  # llama-server's first event when it streams several tasks
        event = _loads(raw)
        backend_model = event.get("model")
        if self.rename is None and isinstance(backend_model, str) and backend_model != self.model:
            self.rename = (
                b'"model":' + json.dumps(backend_model).encode(),
                b'"model":' + json.dumps(self.model).encode(),
            )
        event["model"] = self.model
        choices = event.get("choices") or []
        for choice in choices:
            text = (choice.get("delta") or {}).get(self.text_key) or choice.get(self.text_key)
            if text:
                self.usage.first()
                if self.previews and len(self.usage.completion_preview) < PREVIEW_CHARS_MAX:
                    self.usage.completion_preview += text
            if choice.get("finish_reason"):
                self.last_finished = int(choice.get("index") or 0)
                self.finished_choices.add(self.last_finished)
                self.finished = len(self.finished_choices) >= self.expected
        usage, timings = event.get("usage"), event.get("timings")
        if isinstance(usage, dict):
            self.task_usage[self.last_finished] = usage
            usage = self._total()
        if usage or timings:
            self.usage.count(usage, timings)
        if whole or not usage:
            return [event] if choices or usage else []
        # As OpenAI does: the usage (with llama-server's timings) in a chunk of its own, with no choices, once every
        # choice has finished, and only for a client that asked for it (llama-server's text completions send each
        # task's usage on its last choice's chunk).
        del event["usage"]
        ending = {k: v for k, v in event.items() if k != "timings"} if self.include_usage else event
        out = [ending] if choices else []
        if self.include_usage and self.finished:
            out.append({**event, "choices": [], "usage": usage})
        return out


class TemplateEvents(Chunked):
    """llama.cpp's /completion stream for a prompt the gateway rendered (gateway.prompts), as chat.completion.chunk."""

    def __init__(self, model: str, asked: Asked, include_usage: bool, usage: Usage, previews: bool) -> None:
        super().__init__()
        self.model, self.asked, self.include_usage = model, asked, include_usage
        self.usage, self.previews = usage, previews
        self.finished = False
        self.started = False

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> Chunk:
        return {
            "id": f"chatcmpl-{self.asked.request_id}",
            "object": "chat.completion.chunk",
            "created": int(self.asked.created.timestamp()),
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def frames(self, raw: bytes) -> bytes:
        if raw[:6] == b"event:":
            return b""
        return b"".join(frame(_dumps(chunk)) for chunk in self._translate(raw, whole=False))

    def chunks(self, raw: bytes) -> list[Chunk]:
        return self._translate(raw, whole=True)

    def _translate(self, raw: bytes, whole: bool) -> list[Chunk]:
        event = _loads(raw)
        out = []
        if not self.started:
            self.started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if text := event.get("content"):
            self.usage.first()
            if self.previews and len(self.usage.completion_preview) < PREVIEW_CHARS_MAX:
                self.usage.completion_preview += text
            out.append(self._chunk({"content": text}))
        if event.get("stop"):
            self.finished = True
            prompt, completion = int(event.get("tokens_evaluated") or 0), int(event.get("tokens_predicted") or 0)
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            self.usage.count(usage, event.get("timings"))
            out.append(self._chunk({}, FINISH_REASONS.get(event.get("stop_type", "none"), "stop")))
            if self.include_usage or whole:
                out.append({**self._chunk({}), "choices": [], "usage": usage})
        return out


class Named:
    """Streams whose events are named (`event: …` before each payload, the payload's `type` the same name): the
    Responses and Messages APIs. Passed on as they came, the GGUF path replaced by the client's model name; parsed
    while the first token is awaited and for the events that carry the model, the usage, the end or an error."""

    text_events: frozenset[str] = frozenset()  # events whose arrival is a token
    end_events: frozenset[str] = frozenset()
    model: str
    usage: Usage
    previews: bool

    def __init__(self, model: str, usage: Usage, previews: bool) -> None:
        self.model, self.usage, self.previews = model, usage, previews
        self.finished = False
        self.event = b""  # the `event:` line of the payload to come
        self.rename: tuple[bytes, bytes] | None = None
        self.whole: dict[str, Any] = {}

    def frames(self, raw: bytes) -> bytes:
        if raw[:6] == b"event:":
            self.event = raw + b"\n"
            return b""
        event_line, self.event = self.event, b""
        if (
            self.usage.first_token is not None
            and not self.previews
            and b'"model"' not in raw
            and b'"usage"' not in raw
            and b'"error"' not in raw
            and not any(name in raw for name in self.end_markers)
        ):
            return event_line + frame(raw)
        event = self._take(_loads(raw))
        return event_line + frame(_dumps(event))

    def absorb(self, raw: bytes) -> None:
        if raw[:6] != b"event:":
            self._add(self._take(_loads(raw)))

    def _take(self, event: Chunk) -> Chunk:
        kind = event.get("type")
        if kind == "error":
            raise upstream.event_error({"error": event.get("error") or event})
        _rename_model(event, self.model)
        if kind in self.text_events:
            self.usage.first()
            if self.previews and len(self.usage.completion_preview) < PREVIEW_CHARS_MAX:
                self.usage.completion_preview += self._text(event)
        self._note(event)
        if kind in self.end_events:
            self.finished = True
        return event

    @property
    def end_markers(self) -> tuple[bytes, ...]:
        return tuple(f'"{name}"'.encode() for name in self.end_events)

    def _text(self, event: Chunk) -> str:
        return ""

    def _note(self, event: Chunk) -> None:
        """The usage an event carries."""

    def _add(self, event: Chunk) -> None:
        raise NotImplementedError

    def answer(self) -> dict[str, Any]:
        return self.whole


class ResponsesEvents(Named):
    """OpenAI's Responses API as llama-server streams it: typed events, the whole response in `response.completed`
    (with the usage), which is also the whole answer."""

    text_events = frozenset({
        "response.output_text.delta", "response.function_call_arguments.delta", "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta", "response.refusal.delta",
    })  # fmt: skip
    end_events = frozenset({"response.completed", "response.incomplete"})

    def _text(self, event: Chunk) -> str:
        return str(event.get("delta") or "") if event.get("type") == "response.output_text.delta" else ""

    def _note(self, event: Chunk) -> None:
        if event.get("type") == "response.failed":
            response = event.get("response") or {}
            error = response.get("error") or {"message": "the backend failed the response", "type": "server_error"}
            raise upstream.event_error({"error": error})
        response = event.get("response")
        if isinstance(response, dict) and response.get("usage"):
            usage = response["usage"]
            self.usage.count({"prompt_tokens": usage.get("input_tokens"), "completion_tokens": usage.get("output_tokens"),
                              "input_tokens_details": usage.get("input_tokens_details")}, event.get("timings"))  # fmt: skip

    def _add(self, event: Chunk) -> None:
        if event.get("type") in self.end_events:
            self.whole = dict(event.get("response") or {})
            # As llama-server's own non-streamed answer has it.
            self.whole.setdefault("completed_at", self.whole.get("created_at"))

    def error_frame(self, error: errors.APIError, body: dict[str, Any]) -> bytes:
        event = {"type": "error", "code": error.code, "message": error.message, "param": error.param}
        return b"event: error\n" + frame(_dumps(event))


class AnthropicEvents(Named):
    """Anthropic's Messages API as llama-server streams it: message_start (the model, the input's usage), content
    blocks (text, tool_use with its input as JSON deltas, thinking), message_delta (the stop and the output's usage),
    message_stop; put together into the message llama-server's own non-streamed route returns."""

    text_events = frozenset({"content_block_delta"})
    end_events = frozenset({"message_stop"})

    def __init__(self, model: str, usage: Usage, previews: bool) -> None:
        super().__init__(model, usage, previews)
        self.blocks: dict[int, dict[str, Any]] = {}
        self.partial_json: dict[int, str] = {}
        self.input_tokens = 0

    def _text(self, event: Chunk) -> str:
        delta = event.get("delta") or {}
        return str(delta.get("text") or "") if delta.get("type") == "text_delta" else ""

    def _note(self, event: Chunk) -> None:
        kind = event.get("type")
        usage = (event.get("message") or {}).get("usage") if kind == "message_start" else event.get("usage")
        if not isinstance(usage, dict):
            return
        if kind == "message_start":
            # Anthropic counts the prompt's cached tokens apart from its input tokens: the prompt is all of them.
            self.input_tokens = sum(int(usage.get(name) or 0) for name in
                                    ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))  # fmt: skip
            if isinstance(usage.get("cache_read_input_tokens"), int):
                self.usage.cached_tokens = usage["cache_read_input_tokens"]
        self.usage.count({"prompt_tokens": self.input_tokens, "completion_tokens": usage.get("output_tokens")})

    def _add(self, event: Chunk) -> None:
        kind = event.get("type")
        index = int(event.get("index") or 0)
        if kind == "message_start":
            self.whole = dict(event.get("message") or {})
        elif kind == "content_block_start":
            self.blocks[index] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta":
            block, delta = self.blocks.setdefault(index, {}), event.get("delta") or {}
            if delta.get("type") == "input_json_delta":
                self.partial_json[index] = self.partial_json.get(index, "") + str(delta.get("partial_json") or "")
            for name in ("text", "thinking", "signature"):
                if name in delta:
                    block[name] = block.get(name, "") + str(delta[name] or "")
        elif kind == "content_block_stop" and index in self.partial_json:
            self.blocks[index]["input"] = json.loads(self.partial_json.pop(index) or "{}")
        elif kind == "message_delta":
            self.whole.update(event.get("delta") or {})
            self.whole["usage"] = {**(self.whole.get("usage") or {}), **(event.get("usage") or {})}

    def answer(self) -> dict[str, Any]:
        return {**self.whole, "content": [self.blocks[index] for index in sorted(self.blocks)]}

    def error_frame(self, error: errors.APIError, body: dict[str, Any]) -> bytes:
        return b"event: error\n" + frame(_dumps(errors.anthropic_body(error)))


def _rename_model(event: Chunk, model: str) -> None:
    """The client's model name wherever llama-server put its own (a GGUF path): the event, or its message or response."""
    for holder in (event, event.get("message"), event.get("response")):
        if isinstance(holder, dict) and "model" in holder:
            holder["model"] = model


@dataclass
class Upstream:
    """A backend's stream whose first events have arrived: `batches` (a started generator that owns the connection,
    the supervisor's lease and the backend's place; closing it gives them back) and those first events."""

    batches: AsyncIterator[list[bytes]]
    first: list[bytes]

    async def each(self) -> AsyncIterator[list[bytes]]:
        yield self.first
        async for batch in self.batches:
            yield batch

    async def close(self) -> None:
        await self.batches.aclose()  # type: ignore[attr-defined]  # closing the connection cancels the generation


async def whole(source: Upstream, events: Events) -> dict:
    """Read a backend's stream to its end and return the one answer it spells; a failure raises UpstreamError."""
    try:
        async for batch in source.each():
            for raw in batch:
                if raw == upstream.KEEPALIVE:
                    continue
                if raw == b"[DONE]":
                    break
                events.absorb(raw)
        if not events.finished:
            raise upstream.UpstreamError("backend ended the stream before the answer was complete", 502, retryable=True)
        return events.answer()
    except upstream.UpstreamError as exc:
        exc.midway = True
        raise
    finally:
        await source.close()


@dataclass(frozen=True)
class Ending:
    """How a stream ended, for its log row: 200, 502 with the backend's error, or 499 when the client left."""

    status: int
    error: errors.APIError | None = None
    client_gone: bool = False


class Stream:
    """A streamed answer, from its first events to its end. Whoever reads it (`sse` for HTTP clients, `chunks` for the
    dashboard) ends it once, however the reading ends: the backend connection closed (which cancels the generation),
    the supervisor's lease and the key's place given back with the tokens used, and `on_end` told (the log row)."""

    def __init__(
        self, source: Upstream, events: Events, route: Route, usage: Usage, release: Callable[[int], Awaitable[None]]
    ) -> None:
        self.source, self.events, self.route, self.usage, self.release = source, events, route, usage, release
        self.on_end: Callable[[Ending], None] | None = None
        self.ended = False

    async def sse(self) -> AsyncIterator[bytes]:
        """Server-sent events; events that arrived together in one piece; a backend failure as one error event."""
        ending = Ending(200)
        try:
            async for batch in self.source.each():
                out, done, failure = [], False, None
                for raw in batch:
                    if raw == upstream.KEEPALIVE:
                        out.append(KEEPALIVE_FRAME)
                    elif raw == b"[DONE]":
                        done = True
                        break
                    else:
                        try:
                            out.append(self.events.frames(raw))
                        except upstream.UpstreamError as exc:
                            failure = exc  # what arrived before it is passed on first
                            break
                if out:
                    yield b"".join(out)
                if failure is not None:
                    raise failure
                if done:
                    break
            self._check_finished()
            yield DONE_FRAME
        except upstream.UpstreamError as exc:
            ending = Ending(502, as_api_error(exc))
            yield self.events.error_frame(ending.error, exc.body)  # type: ignore[arg-type]
        except (asyncio.CancelledError, GeneratorExit):
            ending = Ending(499, client_gone=True)
            raise
        finally:
            await asyncio.shield(self.end(ending))

    async def chunks(self) -> AsyncIterator[Chunk]:
        """The client's chunks as dicts (the dashboard's chat); a backend failure raises APIError."""
        ending = Ending(200)
        try:
            async for batch in self.source.each():
                for raw in batch:
                    if raw == b"[DONE]":
                        break
                    if raw != upstream.KEEPALIVE:
                        for chunk in self.events.chunks(raw):  # type: ignore[attr-defined]  # chat: OpenAIEvents
                            yield chunk
            self._check_finished()
        except upstream.UpstreamError as exc:
            ending = Ending(502, as_api_error(exc))
            raise ending.error from exc  # type: ignore[misc]
        except (asyncio.CancelledError, GeneratorExit):
            ending = Ending(499, client_gone=True)
            raise
        finally:
            await asyncio.shield(self.end(ending))

    def _check_finished(self) -> None:
        if not self.events.finished:
            raise upstream.UpstreamError("backend ended the stream without a finish reason", 502)

    async def end(self, ending: Ending) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            await self.source.close()
            await self.release(self.usage.tokens)
        finally:
            if self.on_end is not None:
                self.on_end(ending)


def as_api_error(exc: upstream.UpstreamError) -> errors.APIError:
    """A backend's failure as the client sees it: its own 4xx, 501 (it does not serve the endpoint), 503 or 504,
    else 502."""
    if exc.is_timeout:
        return errors.timeout(str(exc))
    if exc.status == 501:
        return errors.not_supported(str(exc))
    error = exc.body.get("error") if isinstance(exc.body.get("error"), dict) else {}
    kind = str(error.get("type") or "")
    code = error.get("code") if isinstance(error.get("code"), str) else None  # llama-server's is its HTTP status
    if 400 <= exc.status < 500:
        return errors.APIError(exc.status, str(exc), kind or "invalid_request_error", None, code)
    if exc.status == 503:
        return errors.unavailable(str(exc))
    kind = kind or "server_error"
    return errors.APIError(ERROR_STATUS.get(kind, 502), str(exc), kind, None, code or "bad_gateway")


def _merge(answer: dict[str, Any], choices: dict[int, dict[str, Any]], chunk: Chunk) -> None:
    for name, value in chunk.items():
        if name == "choices":
            for choice in value or []:
                _add_choice(choices.setdefault(choice.get("index", 0), {}), choice)
        else:
            answer[name] = value  # id, created, model …; usage and timings arrive last


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


def _add_counts(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Add a usage object's counts into `total`, details (cached tokens, …) included."""
    for name, value in part.items():
        if isinstance(value, dict):
            _add_counts(total.setdefault(name, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            total[name] = total.get(name, 0) + value
        else:
            total.setdefault(name, value)


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
