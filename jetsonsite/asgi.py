"""ASGI entry point: HTTP through Django, websockets through Channels, in one process.

The OpenAI-compatible API (`/v1/…`) is served by a lean Django handler. Under ASGI each of Django's built-in
middleware classes (sessions, CSRF, auth, messages, security) runs its request and response steps in a worker
thread, and every request opens its own thread context in which the synchronous request signals run; the API
needs none of it (it authenticates by key, sets no cookies and takes no browser forms — a transcription's multipart
upload is parsed by its view —, and gateway.dbsync looks after database connections), so its requests stay on the
event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jetsonsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.http import HttpRequest  # noqa: E402

from dashboard.routing import websocket_urlpatterns  # noqa: E402
from gateway import metrics  # noqa: E402

API_PREFIX = "/v1/"
logger = logging.getLogger(__name__)
# This server counts requests into the node's metrics directory: no other gateway's start may clear it now.
metrics.claim_directory()


class APIHandler(ASGIHandler):
    """Django without middleware, per-request thread context or request signals, for the API's paths."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:  # type: ignore[override]
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict, receive: Callable, send: Callable) -> None:  # type: ignore[override]
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(error_response, send)
                return
            # As Django does: a client that disconnects cancels the view (and so the upstream request).
            serving = asyncio.create_task(self._serve(request, send))
            listening = asyncio.create_task(self.listen_for_disconnect(receive))
            await asyncio.wait([serving, listening], return_when=asyncio.FIRST_COMPLETED)
            for task in (listening, serving):
                task.cancel()
            for outcome in await asyncio.gather(listening, serving, return_exceptions=True):
                if isinstance(outcome, Exception) and not isinstance(outcome, RequestAborted):
                    logger.error("error serving %s", scope.get("path"), exc_info=outcome)
        finally:
            body_file.close()

    async def _serve(self, request: HttpRequest, send: Callable) -> None:
        response = await self.get_response_async(request)
        await self.send_response(response, send)


api_app = APIHandler()

protocols = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)


async def application(scope: dict, receive: object, send: object) -> None:
    if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
        await api_app(scope, receive, send)  # type: ignore[arg-type]
    else:
        await protocols(scope, receive, send)  # type: ignore[arg-type]
