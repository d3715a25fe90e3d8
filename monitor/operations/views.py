"""The operations endpoints: /livez and /readyz for process supervisors (no key), /health for API keys and staff,
/metrics for Prometheus (its own token) and staff."""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from gateway import auth, errors
from monitor.operations import prometheus
from monitor.operations.health import report

logger = logging.getLogger(__name__)


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


async def _staff_or_key(request: HttpRequest) -> bool:
    user = await request.auser()
    if user.is_authenticated and user.is_staff:
        return True
    try:
        await auth.authenticate(request.headers.get("Authorization", ""))
    except errors.APIError:
        return False
    return True


@_reading
async def health(request: HttpRequest) -> JsonResponse:
    """For API keys and staff: it describes the infrastructure."""
    if not await _staff_or_key(request):
        return errors.unauthorized().response()
    return JsonResponse(await report())


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text; readable with MONITOR_METRICS_TOKEN as a Bearer token, or by a staff session."""
    token = settings.MONITOR_METRICS_TOKEN
    supplied = auth.bearer_token(request.headers.get("Authorization", ""))
    by_token = bool(token and supplied) and hmac.compare_digest(supplied.encode(), token.encode())
    if not (by_token or (request.user.is_authenticated and request.user.is_staff)):
        if not token:
            return errors.APIError(
                403, "Set MONITOR_METRICS_TOKEN to let Prometheus read /metrics.", "permission_error"
            ).response()
        return errors.unauthorized("Invalid or missing metrics token.").response()
    return HttpResponse(prometheus.render(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
