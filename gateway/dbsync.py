"""Database calls from the async API path: run in Django's worker thread, dropping stale connections first.

The API's requests skip Django's request signals (see jetsonsite.asgi), which is where Django normally closes
connections that are broken or past CONN_MAX_AGE; each call made through here does it instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


def db_sync(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    @wraps(function)
    def fresh(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        return function(*args, **kwargs)

    return sync_to_async(fresh)
