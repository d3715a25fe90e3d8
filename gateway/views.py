"""The OpenAI-compatible API: thin async views over gateway.service."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from gateway import auth, errors, relay, routing, service
from gateway.models import APIKey
from gateway.outcomes import Answer, Asked, Route
from gateway.requestlog import RequestRecord

Outcome = Answer | relay.Stream
Handler = Callable[[HttpRequest, APIKey, Asked], Awaitable[Outcome]]
ServiceCall = Callable[[APIKey, Any, Asked], Awaitable[Outcome]]
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _body(request: HttpRequest) -> bytes:
    if len(request.body) > settings.MAX_REQUEST_BYTES:
        raise errors.APIError(
            413, f"Request body is larger than {settings.MAX_REQUEST_BYTES} bytes", code="request_too_large"
        )
    return request.body


def _read_json(request: HttpRequest) -> Any:
    try:
        return json.loads(_body(request))
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.invalid(f"The request body is not valid JSON: {exc}") from None


def _read_form(request: HttpRequest) -> dict[str, Any]:
    """A multipart/form-data body's fields and files, by name (the last of a repeated one)."""
    _body(request)
    if request.content_type != "multipart/form-data":
        raise errors.invalid("Send the request as multipart/form-data, with the audio file as its `file` part.")
    try:
        return {**request.POST.dict(), **request.FILES.dict()}
    except (MultiPartParserError, SuspiciousOperation) as exc:  # malformed, or too many parts
        raise errors.invalid(f"The request body is not valid multipart/form-data: {exc}") from None


async def _api(
    request: HttpRequest,
    handler: Handler,
    method: str = "POST",
    render: Callable[[errors.APIError], HttpResponse] = errors.APIError.response,
) -> HttpResponse:
    """An API request from arrival to response; its record is closed once, from the outcome or the error (a
    stream's when it ends). `render` gives an error its protocol's shape (OpenAI's, or Anthropic's)."""
    record = RequestRecord.start(request.path, request.method or "", request.META)
    try:
        with record.failing():
            if request.method != method:
                raise errors.method_not_allowed(request.method or "", (method,))
            key = await auth.authenticate(auth.authorization(request.headers))
            record.identify(key)
            outcome = await handler(request, key, record.asked())
    except errors.APIError as exc:
        response: HttpResponse = render(exc)
    else:
        record.follow(outcome)
        if isinstance(outcome, relay.Stream):
            response = StreamingHttpResponse(outcome.sse(), content_type="text/event-stream", headers=SSE_HEADERS)
        elif outcome.text is not None:
            response = HttpResponse(outcome.text, content_type="text/plain; charset=utf-8")
        else:
            response = JsonResponse(outcome.body)
    response["X-Request-Id"] = record.request_id
    return response


def _with_body(call: ServiceCall) -> Handler:
    async def handle(request: HttpRequest, key: APIKey, asked: Asked) -> Outcome:
        return await call(key, _read_json(request), asked)

    return handle


def _with_form(call: ServiceCall) -> Handler:
    async def handle(request: HttpRequest, key: APIKey, asked: Asked) -> Outcome:
        # Parsing a multipart body (up to MAX_REQUEST_BYTES) takes a while: off the event loop, which serves streams.
        return await call(key, await asyncio.to_thread(_read_form, request), asked)

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


@csrf_exempt
async def responses(request: HttpRequest) -> HttpResponse:
    return await _api(request, _with_body(service.responses))


@csrf_exempt
async def responses_input_tokens(request: HttpRequest) -> HttpResponse:
    return await _api(request, _with_body(service.input_tokens))


@csrf_exempt
async def messages(request: HttpRequest) -> HttpResponse:
    return await _api(request, _with_body(service.messages), render=errors.anthropic_response)


@csrf_exempt
async def messages_count_tokens(request: HttpRequest) -> HttpResponse:
    return await _api(request, _with_body(service.count_tokens), render=errors.anthropic_response)


@csrf_exempt
async def rerank(request: HttpRequest) -> HttpResponse:
    return await _api(request, _with_body(service.rerank))


@csrf_exempt
async def audio_transcriptions(request: HttpRequest) -> HttpResponse:
    return await _api(request, _with_form(service.transcription))


def _model_object(info: routing.ModelInfo) -> dict:
    # `kind` and `capabilities` tell clients which endpoints take the model; OpenAI's SDKs ignore them.
    return {"id": info.model_id, "object": "model", "created": info.created, "owned_by": info.owned_by,
            "kind": info.kind, "capabilities": info.capabilities()}  # fmt: skip


async def _list_models(request: HttpRequest, key: APIKey, asked: Asked) -> Answer:
    registry = await routing.registry()
    visible = {
        info.model_id: info
        for info in registry.values()
        if not key.allowed_model_ids or info.id in key.allowed_model_ids
    }
    return Answer({"object": "list", "data": [_model_object(info) for info in visible.values()]}, Route())


async def _describe_model(request: HttpRequest, key: APIKey, asked: Asked, model_id: str) -> Answer:
    route = Route(model_requested=model_id)
    try:
        info = await routing.resolve(model_id, key.allowed_model_ids)
    except errors.APIError as exc:
        # A model the key may not use is reported as missing: its existence is not the key's business.
        error = errors.not_found(f"The model `{model_id}` does not exist.") if exc.status == 403 else exc
        error.route = route
        raise error from None
    return Answer(_model_object(info), route)


@csrf_exempt
async def models(request: HttpRequest) -> HttpResponse:
    return await _api(request, _list_models, "GET")


@csrf_exempt
async def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    return await _api(request, functools.partial(_describe_model, model_id=model_id), "GET")


# --- Django's handlers for what no view answers: an unknown path, an unhandled exception ---------------------------

API_PREFIXES = ("/v1/", "/api/")


def _api_error_page(request: HttpRequest, error: errors.APIError) -> HttpResponse | None:
    """The error in the API's shape for a path under the API (Anthropic's under /v1/messages), else None: API
    clients read JSON, whatever went wrong."""
    if not request.path.startswith(API_PREFIXES):
        return None
    render = errors.anthropic_response if request.path.startswith("/v1/messages") else errors.APIError.response
    return render(error)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    error = errors.not_found(f"No such path: {request.path}", param=None, code="not_found")
    return _api_error_page(request, error) or defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    error = errors.APIError(500, "Internal server error.", "server_error", None, "internal_error")
    return _api_error_page(request, error) or defaults.server_error(request)
