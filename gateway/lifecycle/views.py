"""The managed-models API: GET /api/models/running, POST /api/models/<id>/load | unload | restart.

Staff sessions, or API keys with `scope_models`; users with the dashboard permission may read. Async views: a load
waits for the model to be ready without holding one of the server's threads.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from gateway import auth, errors
from gateway.dbsync import db_sync
from gateway.models import APIKey, Backend, Supervisor
from gateway.node import link as client
from gateway.node import states

OPERATIONS = ("load", "unload", "restart")


async def _refusal(request: HttpRequest, write: bool) -> errors.APIError | None:
    """None when the request may go on: a key with the models scope, or a staff session (any dashboard user, to
    read). Session writes need the CSRF token, as every form of the site does."""
    header = request.headers.get("Authorization", "")
    if auth.bearer_token(header):
        key: APIKey = await auth.authenticate(header)
        if not key.scope_models:
            return errors.APIError(403, "This API key may not manage models (scope_models).", "permission_error")
        return None
    user = await request.auser()
    if not user.is_authenticated:
        return errors.unauthorized()
    if write and not user.is_staff:
        return errors.APIError(403, "Only staff may load and unload models.", "permission_error")
    if not write and not await auth.acan_use_dashboard(user):
        return errors.APIError(403, "You may not see the models.", "permission_error")
    if write:
        failed = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})  # type: ignore[arg-type]
        if failed is not None:
            return errors.APIError(403, "CSRF token missing or incorrect.", "permission_error", code="csrf_failed")
    return None


@csrf_exempt  # reads only: other methods get 405 before anything else
async def running(request: HttpRequest) -> JsonResponse:
    if request.method not in ("GET", "HEAD"):
        return errors.method_not_allowed(request.method or "", ("GET", "HEAD")).response()
    try:
        refused = await _refusal(request, write=False)
    except errors.APIError as exc:
        refused = exc
    if refused is not None:
        return refused.response()
    return JsonResponse(await db_sync(states.snapshot)())


def _target(model_id: str, node: str) -> tuple[Backend, str]:
    """The managed backend an operation is about, and its supervisor's address."""
    backends = Backend.objects.filter(model__model_id=model_id, managed=True).select_related("model")
    if node:
        backends = backends.filter(node=node)
    found = list(backends[:2])
    if not found:
        raise errors.not_found(f"`{model_id}` has no managed backend" + (f" on node {node}." if node else "."))
    if len(found) > 1:
        raise errors.invalid(f"`{model_id}` is managed on several nodes: name one with ?node=", param="node")
    supervisor = Supervisor.objects.filter(node=found[0].node).first()
    return found[0], client.address_of(supervisor) if supervisor else ""


@csrf_exempt  # checked in _refusal for sessions only: API keys carry no cookie to forge
async def operate(request: HttpRequest, model_id: str, operation: str) -> JsonResponse:
    """Load (waits until ready unless ?wait=false), unload (409 while requests are in flight), restart."""
    try:
        if request.method != "POST":
            raise errors.method_not_allowed(request.method or "", ("POST",))
        if (refused := await _refusal(request, write=True)) is not None:
            raise refused
        if operation not in OPERATIONS:
            raise errors.not_found(f"Unknown operation {operation!r}: use {', '.join(OPERATIONS)}.", param=None)
        backend, address = await db_sync(_target)(model_id, request.GET.get("node", ""))
        if not address:
            raise client.unavailable(backend.node, "(no address)", "no supervisor has started on this node")
        wait = request.GET.get("wait", "true").lower() not in ("0", "false", "no")
        reply = await client.command(address, operation, backend.id, wait=wait)
    except errors.APIError as exc:
        return exc.response()
    return JsonResponse({"object": "model.state", "operation": operation, "model": reply["model"]})
