"""The project's own middleware: X-Forwarded-Proto only from trusted proxies, and static files without a thread hop.

(The /v1 API skips the middleware stack altogether: see jetsonsite.asgi.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware

# The request log's rule for TRUSTED_PROXIES, so both headers are believed from the same peers.
from gateway.clientip import is_trusted_proxy, parse_ip


class ForwardedProtoMiddleware:
    """Drops X-Forwarded-Proto unless the peer is one of TRUSTED_PROXIES.

    With HTTPS on, Django believes the header (SECURE_PROXY_SSL_HEADER); a client reaching daphne directly could
    claim https and skip the HTTPS redirect. First in the stack, before SecurityMiddleware reads it.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> None:
        assert iscoroutinefunction(get_response)
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if "HTTP_X_FORWARDED_PROTO" in request.META:
            peer = parse_ip(str(request.META.get("REMOTE_ADDR") or ""))
            if peer is None or not is_trusted_proxy(peer):
                del request.META["HTTP_X_FORWARDED_PROTO"]
        return await self.get_response(request)


class StaticFilesMiddleware:
    """Static files from the app itself (WhiteNoise), asked only for paths under STATIC_URL.

    WhiteNoise's middleware is synchronous only: under ASGI, Django would run every page and read-API request
    through a thread to call it.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]) -> None:
        assert iscoroutinefunction(get_response)
        self.get_response = get_response
        self.prefix = "/" + settings.STATIC_URL.lstrip("/")
        # WhiteNoise answers None for paths it does not know; those go on down the stack.
        self.whitenoise = WhiteNoiseMiddleware(get_response=lambda request: None)
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(self.prefix):
            response = await sync_to_async(self.whitenoise, thread_sensitive=False)(request)
            if response is not None:
                return response
        return await self.get_response(request)
