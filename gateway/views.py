"""The OpenAI-compatible API and health endpoints: thin async views over gateway.service."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway import auth, errors, limits, requestlog, routing, service, upstream
from gateway.dbsync import db_sync
from gateway.models import APIKey
from gateway.node import link, states
from gateway.node.models import NodeAdmission
from gateway.requestlog import RequestRecord

logger = logging.getLogger(__name__)
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


async def _key_or_error(request: HttpRequest) -> APIKey | JsonResponse:
    try:
        return await auth.authenticate(request.headers.get("Authorization", ""))
    except errors.APIError as exc:
        return exc.response()


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


def _reading(
    view: Callable[[HttpRequest], Awaitable[JsonResponse]],
) -> Callable[[HttpRequest], Awaitable[JsonResponse]]:
    """GET and HEAD only: any other method gets 405 in OpenAI's shape, with Allow (and no CSRF check first: the
    view changes nothing)."""

    @csrf_exempt
    @functools.wraps(view)
    async def checked(request: HttpRequest) -> JsonResponse:
        if request.method not in ("GET", "HEAD"):
            return errors.method_not_allowed(request.method or "", ("GET", "HEAD")).response()
        return await view(request)

    return checked


@_reading
async def livez(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.exception("readiness: database unreachable")
        return False


@_reading
async def readyz(request: HttpRequest) -> JsonResponse:
    ok = await sync_to_async(_database_ok)()
    return JsonResponse({"status": "ok" if ok else "unavailable", "database": ok}, status=200 if ok else 503)


async def _probe(backend: routing.BackendInfo, managed: dict[int, dict]) -> dict:
    if backend.managed:
        return await _managed_report(backend, managed.get(backend.id))
    probe = await upstream.probe(backend.target, settings.HEALTH_TIMEOUT)
    report: dict[str, Any] = {"url": backend.target.base_url, "in_flight": routing.in_flight(backend.id)}
    report["status"] = probe.status
    if probe.error:
        report["error"] = probe.error
    if probe.latency_ms is not None:
        report["latency_ms"] = probe.latency_ms
    if probe.slots is not None:
        report["slots"] = {"busy": probe.slots[0], "idle": probe.slots[1]}
    report["cooling_off"] = routing.is_down(backend.id)
    return report


async def _managed_report(backend: routing.BackendInfo, state: dict | None) -> dict:
    """A managed backend as its supervisor last recorded it; probed like any other once it runs. Stopped is
    "standby": it loads on the next request, as long as its node's supervisor runs."""
    state = state or {"state": "stopped", "supervisor_alive": False}
    report: dict[str, Any] = {"managed": True, "node": backend.node, "state": state["state"],
                              "in_flight": routing.in_flight(backend.id)}  # fmt: skip
    for name in ("memory", "last_used", "unload_at", "last_error"):
        if state.get(name):
            report[name] = state[name]
    if not state.get("supervisor_alive"):
        report["status"], report["error"] = "down", f"no supervisor answers for node {backend.node}"
    elif state["state"] == "ready" and state.get("port"):
        target = upstream.Target(link.model_url(backend.supervisor, state["port"]), link.known_key(backend.id))
        probe = await upstream.probe(target, settings.HEALTH_TIMEOUT)
        report.update(url=target.base_url, status=probe.status, latency_ms=probe.latency_ms)
        if probe.slots is not None:
            report["slots"] = {"busy": probe.slots[0], "idle": probe.slots[1]}
    else:
        report["status"] = {"failed": "down", "starting": "loading"}.get(state["state"], "standby")
    return report


def _managed_states() -> tuple[dict[int, dict], list[dict]]:
    snapshot = states.snapshot()
    alive = {node["node"]: node["supervisor"]["alive"] for node in snapshot["nodes"]}
    managed = {m["backend"]: {**m, "supervisor_alive": alive.get(m["node"], False)} for m in snapshot["data"]}
    return managed, snapshot["nodes"]


def _admission() -> list[dict[str, Any]]:
    """Each sampled node's admission state as its sampler decided it (stale once the sampler is silent), and its
    latest sample (`last_seen`)."""
    return [
        {"node": row.node, **row.to_dict(), "last_seen": row.last_seen and row.last_seen.isoformat()}
        for row in NodeAdmission.objects.all()
    ]


async def _staff_or_key(request: HttpRequest) -> bool:
    user = await request.auser()
    if user.is_authenticated and user.is_staff:
        return True
    return not isinstance(await _key_or_error(request), JsonResponse)


def _any_managed(infos: list[routing.ModelInfo]) -> bool:
    return any(backend.managed for info in infos for backend in info.backends)


@_reading
async def health(request: HttpRequest) -> JsonResponse:
    """Every enabled backend probed at once (a managed one as its supervisor recorded it, probed once it runs),
    each node's model budget and admission state, this process's request log and limits; for API keys and staff
    (it describes the infrastructure)."""
    if not await _staff_or_key(request):
        return errors.unauthorized().response()
    registry = await routing.registry()
    infos = list({info.model_id: info for info in registry.values()}.values())
    managed, nodes = await db_sync(_managed_states)() if _any_managed(infos) else ({}, [])
    probes, admission = await asyncio.gather(
        asyncio.gather(*(asyncio.gather(*(_probe(b, managed) for b in info.backends)) for info in infos)),
        db_sync(_admission)(),
    )
    models_report = [
        {
            "id": info.model_id,
            "kind": info.kind,
            # A managed backend on standby serves: it loads on demand.
            "status": "ok" if any(p["status"] in ("ok", "standby", "loading") for p in backends) else "down",
            "backends": backends,
        }
        for info, backends in zip(infos, probes, strict=True)
    ]
    ok = all(m["status"] == "ok" for m in models_report)
    body = {
        "status": "ok" if ok else "degraded",
        "models": models_report,
        "nodes": [
            {"node": n["node"], "supervisor_alive": n["supervisor"]["alive"], "budget": n["budget"]} for n in nodes
        ],
        "admission": admission,
        "request_log": {
            "pending": requestlog.pending_count(),
            "dropped": requestlog.dropped_count(),
            "in_progress": requestlog.in_progress_count(),
        },
        "limits": limits.status(),
    }
    return JsonResponse(body)
