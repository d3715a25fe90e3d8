"""The OpenAI-compatible API: thin async views over gateway.service."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway import auth, errors, routing, service
from gateway.models import APIKey
from gateway.requestlog import RequestRecord

Handler = Callable[[HttpRequest, APIKey, RequestRecord], Awaitable[dict | AsyncIterator[Any]]]
ServiceCall = Callable[[APIKey, Any, RequestRecord], Awaitable[dict | AsyncIterator[Any]]]
KEEPALIVE = b": keep-alive\n\n"


def _read_json(request: HttpRequest) -> Any:
    if len(request.body) > settings.MAX_REQUEST_BYTES:
        raise errors.APIError(
            413, f"Request body is larger than {settings.MAX_REQUEST_BYTES} bytes", code="request_too_large"
        )
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.invalid(f"The request body is not valid JSON: {exc}") from None


async def _sse(stream: AsyncIterator[dict | None]) -> AsyncIterator[bytes]:
    """Server-sent events; a comment line keeps the connection alive while the backend is silent."""
    iterator = aiter(stream)
    pending: asyncio.Future | None = None
    failed = False
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=settings.SSE_KEEPALIVE_SECONDS)
            if not done:
                yield KEEPALIVE
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                break
            finally:
                if done:
                    pending = None
            if chunk is None:
                yield KEEPALIVE
                continue
            yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
            failed = failed or "error" in chunk
        if not failed:  # as llama-server does: after an error event the stream just ends
            yield b"data: [DONE]\n\n"
    finally:
        # The client went away (or the stream ended): stop the upstream request so its slot is freed.
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await iterator.aclose()


async def _api(request: HttpRequest, handler: Handler, method: str = "POST") -> HttpResponse:
    """An API request from arrival to response; its record is submitted however it ends."""
    record = RequestRecord.start(request.path, request.method or "", request.META)
    try:
        result = await record.serve(_call(request, handler, method, record))
    except errors.APIError as exc:
        response: HttpResponse = exc.response()
    else:
        if isinstance(result, dict):
            response = JsonResponse(result)
        else:
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            response = StreamingHttpResponse(_sse(result), content_type="text/event-stream", headers=headers)
    response["X-Request-Id"] = record.request_id
    return response


async def _call(
    request: HttpRequest, handler: Handler, method: str, record: RequestRecord
) -> dict | AsyncIterator[Any]:
    if request.method != method:
        raise errors.method_not_allowed(request.method or "", (method,))
    key = await auth.authenticate(request.headers.get("Authorization", ""))
    record.identify(key)
    return await handler(request, key, record)


def _with_body(call: ServiceCall) -> Handler:
    async def handle(request: HttpRequest, key: APIKey, record: RequestRecord) -> dict | AsyncIterator[Any]:
        return await call(key, _read_json(request), record)

    return handle


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    return await _api(request, _with_body(service.chat))


@csrf_exempt
async def completions(request: HttpRequest) -> HttpResponse:
    return await _api(request, _with_body(service.completion))


@csrf_exempt
async def embeddings(request: HttpRequest) -> HttpResponse:
    return await _api(request, _with_body(service.embeddings))


def _model_object(info: routing.ModelInfo) -> dict:
    return {"id": info.model_id, "object": "model", "created": info.created, "owned_by": info.owned_by}


async def _list_models(request: HttpRequest, key: APIKey, record: RequestRecord) -> dict:
    registry = await routing.registry()
    visible = {
        info.model_id: info
        for info in registry.values()
        if not key.allowed_model_ids or info.id in key.allowed_model_ids
    }
    return {"object": "list", "data": [_model_object(info) for info in visible.values()]}


async def _describe_model(request: HttpRequest, key: APIKey, record: RequestRecord, model_id: str) -> dict:
    record.model_requested = model_id
    try:
        info = await routing.resolve(model_id, key.allowed_model_ids)
    except errors.APIError as exc:
        # A model the key may not use is reported as missing: its existence is not the key's business.
        if exc.status == 403:
            raise errors.not_found(f"The model `{model_id}` does not exist.") from None
        raise
    return _model_object(info)


@csrf_exempt
async def models(request: HttpRequest) -> HttpResponse:
    return await _api(request, _list_models, "GET")


@csrf_exempt
async def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    return await _api(request, functools.partial(_describe_model, model_id=model_id), "GET")
