"""The dashboard's pages: sign-in for whoever may use them (gateway.auth says who), and what they may load (this
server only)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from gateway.auth import acan_use_dashboard, can_use_dashboard

# Everything is served from here and no page has inline script: injected markup could run nothing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def _denied(request: HttpRequest, user: Any) -> HttpResponse:
    if not user.is_authenticated:
        # The admin's login page refuses non-staff users, so the dashboard has its own.
        return redirect_to_login(request.get_full_path(), reverse("dashboard:login"))
    raise PermissionDenied("You may not use the dashboard.")


def _protect(response: HttpResponse) -> HttpResponse:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response


def content_security_policy(view: Callable[..., Any]) -> Callable[..., Any]:
    """The dashboard's policy on a page that needs no sign-in (the sign-in page itself)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _protect(view(request, *args, **kwargs))

    return wrapper


def dashboard_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Sign-in for anonymous visitors, 403 for signed-in users without access; sync and async views alike."""
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = await request.auser()
            if not await acan_use_dashboard(user):
                return _denied(request, user)
            return _protect(await view(request, *args, **kwargs))

        return markcoroutinefunction(async_wrapper)

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not can_use_dashboard(request.user):
            return _denied(request, request.user)
        return _protect(view(request, *args, **kwargs))

    return wrapper
