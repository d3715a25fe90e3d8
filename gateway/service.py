"""The gateway's request logic: validate, route, call llama-server with failover, translate to OpenAI's shapes.

Views (the HTTP API) and the dashboard's chat consumer both call in here, so routing, limits and logging are one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from gateway import assemble, errors, images, limits, prompts, routing, schemas, upstream
from gateway.models import APIKey, ModelKind, PromptFormat
from gateway.node import link as lifecycle
from gateway.requestlog import RequestRecord
from gateway.routing import ModelInfo

Chunk = dict[str, Any]
# Turns a backend's stream into OpenAI chunks: (events, record, model id for the client, include usage).
Relay = Callable[[AsyncIterator[bytes], RequestRecord, str, bool], AsyncIterator[Chunk | None]]
FINISH_REASONS = {"limit": "length", "eos": "stop", "word": "stop", "none": "stop"}
# OpenAI fields with a different name or meaning in llama-server's own /completion API.
COMPLETION_FIELD_MAP = {"max_tokens": "n_predict", "temperature": "temperature", "top_p": "top_p", "seed": "seed",
                        "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
                        "logit_bias": "logit_bias"}  # fmt: skip


def _as_api_error(exc: upstream.UpstreamError) -> errors.APIError:
    if exc.is_timeout:
        return errors.timeout(str(exc))
    if 400 <= exc.status < 500:
        error = exc.body.get("error") if isinstance(exc.body.get("error"), dict) else {}
        return errors.APIError(exc.status, str(exc), error.get("type") or "invalid_request_error")
    if exc.status == 503:
        return errors.unavailable(str(exc))
    return errors.APIError(502, str(exc), "server_error", None, "bad_gateway")


def _failed_before_answering(backend: routing.BackendInfo, exc: upstream.UpstreamError) -> upstream.UpstreamError:
    """A backend that is unwell (a refused or dropped connection, a 5xx: see UpstreamError) is taken out of
    rotation, and the caller tries the next one; any other failure is the answer. A managed backend's supervisor
    knows its state better than a cool-off."""
    if not exc.retryable:
        raise _as_api_error(exc) from exc
    if not backend.managed:
        routing.mark_down(backend)
    return exc


def _none_left(
    info: ModelInfo, last: upstream.UpstreamError | None, refusal: lifecycle.Refused | None
) -> errors.APIError:
    if refusal is not None and last is None:
        return refusal  # the supervisor's own answer: queue full, load timeout, too large, failed to load
    return errors.unavailable(f"No backend of `{info.model_id}` is available" + (f": {last}" if last else "."))


def _granted(record: RequestRecord, grant: lifecycle.Grant) -> None:
    record.backend = grant.target.base_url
    if grant.cold:
        record.cold_start_ms = (record.cold_start_ms or 0) + grant.waited_ms


async def _served(info: ModelInfo, serve: Callable[[routing.BackendInfo], Awaitable[dict]]) -> dict:
    """The answer `serve` gets from the first backend that does not fail before answering."""
    last: upstream.UpstreamError | None = None
    refusal: lifecycle.Refused | None = None
    for backend in routing.candidates(info):
        with routing.occupy(backend):
            try:
                return await serve(backend)
            except upstream.UpstreamError as exc:
                last = _failed_before_answering(backend, exc)
            except lifecycle.Refused as exc:
                refusal = exc
    raise _none_left(info, last, refusal)


async def _post(info: ModelInfo, path: str, payload: dict, record: RequestRecord) -> dict:
    """POST to the first backend that answers."""

    async def post(backend: routing.BackendInfo) -> dict:
        if backend.managed:
            return await _post_managed(backend, info, path, payload, record)
        record.backend = backend.target.base_url
        return await upstream.post_json(backend.target, path, payload, info.request_timeout)

    return await _served(info, post)


async def _post_managed(
    backend: routing.BackendInfo, info: ModelInfo, path: str, payload: dict, record: RequestRecord
) -> dict:
    """POST to a managed backend, leased from its supervisor; a connection refused right after the grant (the
    process was being stopped, or had crashed unnoticed) is asked for once more."""
    for attempt in (1, 2):
        async with lifecycle.lease(backend, record.request_id) as grant:
            _granted(record, grant)
            try:
                return await upstream.post_json(grant.target, path, payload, info.request_timeout)
            except upstream.UpstreamError as exc:
                if attempt == 2 or not exc.refused:
                    raise
    raise AssertionError("unreachable")


def _events(
    backend: routing.BackendInfo, info: ModelInfo, path: str, payload: dict, record: RequestRecord
) -> AsyncIterator[bytes]:
    if backend.managed:
        return _managed_events(backend, info, path, payload, record)
    record.backend = backend.target.base_url
    return upstream.stream_events(backend.target, path, payload, info.request_timeout)


async def _managed_events(
    backend: routing.BackendInfo, info: ModelInfo, path: str, payload: dict, record: RequestRecord
) -> AsyncIterator[bytes]:
    """A managed backend's stream, its lease held until the stream ends (or the client leaves); asked for once more
    when the connection is refused right after the grant, as in _post_managed."""
    for attempt in (1, 2):
        async with lifecycle.lease(backend, record.request_id) as grant:
            _granted(record, grant)
            events = upstream.stream_events(grant.target, path, payload, info.request_timeout)
            try:
                first = await anext(events)
            except upstream.UpstreamError as exc:
                await events.aclose()
                if attempt == 2 or not exc.refused:
                    raise
                continue
            except StopAsyncIteration:
                return
            try:
                yield first
                async for event in events:
                    yield event
            finally:
                await events.aclose()
            return


async def _open_stream(info: ModelInfo, path: str, payload: dict, record: RequestRecord) -> AsyncIterator[bytes]:
    """Backend SSE payloads; failover happens until the first event arrives, after that the backend is chosen."""
    last: upstream.UpstreamError | None = None
    refusal: lifecycle.Refused | None = None
    for backend in routing.candidates(info):
        with routing.occupy(backend):
            events = _events(backend, info, path, payload, record)
            try:
                first = await anext(events)
            except upstream.UpstreamError as exc:
                await events.aclose()
                last = _failed_before_answering(backend, exc)
                continue
            except lifecycle.Refused as exc:
                await events.aclose()
                refusal = exc
                continue
            except StopAsyncIteration:
                raise errors.APIError(502, "backend closed the stream", "server_error") from None
            try:
                yield first
                async for event in events:
                    yield event
            finally:
                await events.aclose()
            return
    raise _none_left(info, last, refusal)


async def _start_stream(info: ModelInfo, path: str, payload: dict, record: RequestRecord) -> AsyncIterator[bytes]:
    """Open the stream and wait for its first event, so that errors before it become plain HTTP errors."""
    stream = _open_stream(info, path, payload, record)
    first = await anext(stream)

    async def replay() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(stream):
            yield first
            async for event in stream:
                yield event

    return replay()


def _error_chunk(exc: Exception) -> Chunk:
    """The error event that ends a stream: the backend's own, as it sent it, or the failure in OpenAI's shape."""
    if isinstance(exc, upstream.UpstreamError):
        if "error" in exc.body:
            return exc.body
        exc = _as_api_error(exc)
    if isinstance(exc, errors.APIError):
        return exc.body()
    return {"error": {"message": "internal error", "type": "server_error", "param": None, "code": None}}


def _count_usage(record: RequestRecord, usage: dict | None, timings: dict | None = None) -> None:
    if usage:
        record.prompt_tokens = usage.get("prompt_tokens", record.prompt_tokens)
        record.completion_tokens = usage.get("completion_tokens", record.completion_tokens)
    if timings and timings.get("predicted_per_second"):
        record.tokens_per_second = round(float(timings["predicted_per_second"]), 2)


def _effective_max_tokens(info: ModelInfo, data: dict) -> int | None:
    asked = data.get("max_completion_tokens") or data.get("max_tokens")
    cap = info.max_tokens_cap
    return min(asked, cap) if asked and cap else asked or cap


async def _admit(key: APIKey, info: ModelInfo, record: RequestRecord) -> limits.Lease | None:
    record.model_used = info.model_id
    return await limits.admit(key, record.request_id, info.request_timeout)


# --- chat completions ---


def _openai_payload(info: ModelInfo, data: dict, extra: dict) -> dict:
    """The request for llama-server's OpenAI-compatible routes: model defaults, then the client's own values."""
    payload = {**info.default_params, **{k: v for k, v in data.items() if v is not None}, **extra}
    for gateway_only in ("max_completion_tokens", "user", "echo"):
        payload.pop(gateway_only, None)
    payload["model"] = info.model_id
    max_tokens = _effective_max_tokens(info, data)
    if max_tokens:
        payload["max_tokens"] = max_tokens
    # Always a stream (see gateway.assemble), always with usage: the log needs it; the client gets the usage chunk
    # only if it asked.
    payload["stream"] = True
    payload["stream_options"] = {**(data.get("stream_options") or {}), "include_usage": True}
    return payload


def _template_payload(info: ModelInfo, data: dict, extra: dict) -> dict:
    for field in ("tools", "tool_choice", "logprobs", "top_logprobs", "parallel_tool_calls"):
        if data.get(field):
            raise errors.invalid(
                f"'{field}' needs the model's own chat template: `{info.model_id}` uses the gateway-side "
                f"'{info.prompt_format}' format",
                param=field,
            )
    prompt, stops = prompts.render(info.prompt_format, data["messages"])
    payload: dict[str, Any] = {**info.default_params, "prompt": prompt, "stream": True}
    for name, native in COMPLETION_FIELD_MAP.items():
        if data.get(name) is not None:
            payload[native] = data[name]
    payload["n_predict"] = _effective_max_tokens(info, data) or -1
    payload["stop"] = stops + (data.get("stop") or [])
    response_format = data.get("response_format") or {}
    if response_format.get("type") == "json_object":
        payload["json_schema"] = {"type": "object"}
    elif response_format.get("type") == "json_schema":
        payload["json_schema"] = (response_format.get("json_schema") or {}).get("schema", {})
    # llama.cpp's own sampling fields (top_k, min_p, …) pass through; it refuses what it does not know.
    return {**payload, **extra}


def _chunk(record: RequestRecord, model: str, delta: dict, finish_reason: str | None = None) -> Chunk:
    return {
        "id": f"chatcmpl-{record.request_id}",
        "object": "chat.completion.chunk",
        "created": int(record.created.timestamp()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


async def _relay_server_stream(
    events: AsyncIterator[bytes], record: RequestRecord, model: str, include_usage: bool, text_key: str
) -> AsyncIterator[Chunk | None]:
    """llama-server's OpenAI-shaped stream, with our model id; None marks a keep-alive. A failure raises
    (UpstreamError, or ValueError for an event that is not JSON), as in _relay_completion_stream."""
    try:
        async for raw in events:
            if not raw:
                yield None
                continue
            if raw == b"[DONE]":
                break
            event = json.loads(raw)
            if "error" in event:
                raise upstream.event_error(event)
            event["model"] = model
            choices = event.get("choices") or []
            if choices and (choices[0].get("delta", {}).get(text_key) or choices[0].get(text_key)):
                record.mark_first_token()
            if event.get("usage") or event.get("timings"):
                _count_usage(record, event.get("usage"), event.get("timings"))
            usage = event.pop("usage", None)
            if choices:
                ending = usage and include_usage
                # As OpenAI does: the usage (and llama-server's timings) in a chunk of its own, with no choices;
                # llama-server's text completions send them on the last choice's chunk.
                yield {k: v for k, v in event.items() if k != "timings"} if ending else event
            if usage and include_usage:
                yield {**event, "choices": [], "usage": usage}
    finally:
        await events.aclose()  # closing the backend connection is what cancels the generation


async def _relay_completion_stream(
    events: AsyncIterator[bytes], record: RequestRecord, model: str, include_usage: bool
) -> AsyncIterator[Chunk | None]:
    """llama.cpp's /completion stream, translated into chat.completion.chunk objects."""
    yield _chunk(record, model, {"role": "assistant", "content": ""})
    try:
        async for raw in events:
            if not raw:
                yield None
                continue
            event = json.loads(raw)
            if "error" in event:
                raise upstream.event_error(event)
            if event.get("content"):
                record.mark_first_token()
                yield _chunk(record, model, {"content": event["content"]})
            if event.get("stop"):
                usage = _completion_usage(event)
                _count_usage(record, usage, event.get("timings"))
                yield _chunk(record, model, {}, FINISH_REASONS.get(event.get("stop_type", "none"), "stop"))
                if include_usage:
                    yield {**_chunk(record, model, {}), "choices": [], "usage": usage}
                return
    finally:
        await events.aclose()  # closing the backend connection is what cancels the generation


def _completion_usage(result: dict) -> dict:
    prompt = int(result.get("tokens_evaluated") or 0)
    completion = int(result.get("tokens_predicted") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def chat(key: APIKey, body: Any, record: RequestRecord) -> dict | AsyncIterator[Chunk | None]:
    """A chat completion: a response dict, or (stream) an iterator of chunks where None is a keep-alive."""
    data, extra, info = await _generation_request(schemas.ChatRequestSerializer, key, body, record)
    images.check_messages(data["messages"], vision=info.kind == ModelKind.VISION)
    if record.store_previews:
        record.prompt_preview = prompts.message_text(data["messages"][-1].get("content"))
    if info.prompt_format == PromptFormat.SERVER or info.kind == ModelKind.VISION:
        payload = _openai_payload(info, data, extra)
        relay = functools.partial(_relay_server_stream, text_key="content")
        return await _generate(key, info, data, record, "/v1/chat/completions", payload, relay)
    payload = _template_payload(info, data, extra)
    return await _generate(key, info, data, record, "/completion", payload, _relay_completion_stream)


async def _generate(
    key: APIKey, info: ModelInfo, data: dict, record: RequestRecord, path: str, payload: dict, relay: Relay
) -> dict | AsyncIterator[Chunk | None]:
    """Generate through a backend stream, whatever the client asked for: a client that wants one answer gets the
    stream put together (gateway.assemble), from another backend if the first fails part-way (_whole_answer), and
    leaving early cancels the generation either way."""
    lease = await _admit(key, info, record)
    if not data["stream"]:
        try:
            return await _whole_answer(info, path, payload, record, relay, data["model"])
        finally:
            await asyncio.shield(limits.release(lease, _tokens(record)))
    try:
        events = await _start_stream(info, path, payload, record)
    except BaseException:
        await limits.release(lease, 0)
        raise
    include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
    return _releasing(relay(events, record, data["model"], include_usage), lease, record)


async def _whole_answer(
    info: ModelInfo, path: str, payload: dict, record: RequestRecord, relay: Relay, model: str
) -> dict:
    """One answer, put together from a backend's stream. Nothing reaches the client before it is complete, so a
    backend that fails on the way is left as one that fails before its first byte is, and the next one answers
    from the start."""

    async def answer(backend: routing.BackendInfo) -> dict:
        # The answer's own first token and tokens, not those of a backend that failed part-way.
        record.ttft_ms = record.prompt_tokens = record.completion_tokens = record.tokens_per_second = None
        chunks = relay(_events(backend, info, path, payload, record), record, model, True)
        try:
            whole = await assemble.answer(chunks)
        except ValueError as exc:
            raise upstream.UpstreamError(f"backend sent an event that is not JSON: {exc}", 502, retryable=True) from exc
        if not assemble.complete(whole):
            raise upstream.UpstreamError("backend ended the stream before the answer was complete", 502, retryable=True)
        return whole

    whole = await _served(info, answer)
    if record.store_previews:
        choice = whole["choices"][0]
        record.completion_preview = (choice.get("message") or {}).get("content") or choice.get("text") or ""
    return whole


async def _generation_request(
    serializer: type, key: APIKey, body: Any, record: RequestRecord
) -> tuple[dict, dict, ModelInfo]:
    """Validate a chat or text completion request and find its model."""
    data, extra = schemas.validate(serializer, body, extra_allowed=True)
    record.model_requested = data["model"]
    record.stream = data["stream"]
    info = await routing.resolve(data["model"], key.allowed_model_ids)
    if info.kind == ModelKind.EMBEDDING:
        raise errors.invalid(f"`{info.model_id}` is an embedding model: use /v1/embeddings", param="model")
    return data, extra, info


async def _answered(result: dict, lease: limits.Lease | None, record: RequestRecord) -> dict:
    """Count a whole (non-streamed) answer's usage and give the key's place back."""
    _count_usage(record, result.get("usage"), result.get("timings"))
    record.mark_first_token()
    await limits.release(lease, _tokens(record))
    return result


def _tokens(record: RequestRecord) -> int:
    return (record.prompt_tokens or 0) + (record.completion_tokens or 0)


async def _releasing(
    relay: AsyncIterator[Chunk | None], lease: limits.Lease | None, record: RequestRecord
) -> AsyncIterator[Chunk | None]:
    """Pass the stream on, a failure as one error event at its end; free the key's in-flight place and count its
    tokens however it ends."""
    try:
        async for chunk in relay:
            if (
                record.store_previews
                and chunk
                and chunk.get("choices")
                and len(record.completion_preview) <= settings.LOG_PREVIEW_CHARS
            ):
                delta = chunk["choices"][0].get("delta") or {}
                record.completion_preview += delta.get("content") or chunk["choices"][0].get("text") or ""
            yield chunk
    except (upstream.UpstreamError, ValueError) as exc:
        yield _error_chunk(exc)
    finally:
        await relay.aclose()
        await asyncio.shield(limits.release(lease, _tokens(record)))


# --- legacy completions ---


async def completion(key: APIKey, body: Any, record: RequestRecord) -> dict | AsyncIterator[Chunk | None]:
    data, extra, info = await _generation_request(schemas.CompletionRequestSerializer, key, body, record)
    payload = _openai_payload(info, data, extra)
    if record.store_previews and isinstance(data["prompt"], str):
        record.prompt_preview = data["prompt"]
    relay = functools.partial(_relay_server_stream, text_key="text")
    return await _generate(key, info, data, record, "/v1/completions", payload, relay)


# --- embeddings ---


async def embeddings(key: APIKey, body: Any, record: RequestRecord) -> dict:
    data, _ = schemas.validate(schemas.EmbeddingRequestSerializer, body, extra_allowed=False)
    record.model_requested = data["model"]
    info = await routing.resolve(data["model"], key.allowed_model_ids)
    if info.kind != ModelKind.EMBEDDING:
        raise errors.invalid(f"`{info.model_id}` is not an embedding model", param="model")
    payload = {"input": data["input"], "model": info.model_id, "encoding_format": "float"}
    lease = await _admit(key, info, record)
    try:
        result = await _post(info, "/v1/embeddings", payload, record)
    except BaseException:
        await limits.release(lease, 0)
        raise
    result["model"] = data["model"]
    if data["encoding_format"] == "base64":
        for item in result.get("data", []):
            vector = item["embedding"]
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return await _answered(result, lease, record)


# --- for the dashboard ---


def dashboard_key(user: AbstractBaseUser) -> APIKey:
    """The signed-in user's internal key: dashboard chats count against its limits and carry its name in logs."""
    key = APIKey.objects.filter(owner=user, name=f"dashboard: {user.get_username()}", revoked=False).first()
    if key is None:
        key, _plaintext = APIKey.objects.create_key(name=f"dashboard: {user.get_username()}", owner=user)
    key.allowed_model_ids = frozenset(key.allowed_models.values_list("id", flat=True))  # type: ignore[attr-defined]
    return key
