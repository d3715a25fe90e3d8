"""Static files from the app itself (WhiteNoise), without a thread hop on every other request.

WhiteNoise's middleware is synchronous only: under ASGI, Django would run every page and read-API request through
a thread to call it. This async wrapper asks WhiteNoise only for paths under STATIC_URL. (The /v1 API skips the
middleware stack altogether: see jetsonsite.asgi.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware:
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
