"""Dashboard test fixtures: users with and without access, websocket connections through the real ASGI stack,
and the static files a live server (tests.live) needs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client

from gateway.lifecycle.tests.conftest import small_gguf, supervisor, supervisor_factory, two_models  # noqa: F401
from tests.live import ROOT

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    # The manifest storage needs `collectstatic` first; page tests only need the URLs.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _no_persistent_connections() -> Iterator[None]:
    # Websocket consumers and async views reach the ORM from worker threads; with CONN_MAX_AGE their
    # connections outlive the test and PostgreSQL then refuses to drop the test database.
    database = settings.DATABASES["default"]
    saved = database.get("CONN_MAX_AGE", 0)
    database["CONN_MAX_AGE"] = 0
    yield
    database["CONN_MAX_AGE"] = saved
    # sync_to_async outside a request runs on asgiref's one shared thread: close what the test opened there.
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture
def alice(db: None) -> User:
    """Staff: may use the dashboard."""
    return User.objects.create_user("alice", password=PASSWORD, is_staff=True)


@pytest.fixture
def carol(db: None) -> User:
    """Not staff, but given the dashboard permission."""
    user = User.objects.create_user("carol", password=PASSWORD)
    user.user_permissions.add(Permission.objects.get(codename="view_dashboard", content_type__app_label="dashboard"))
    return user


@pytest.fixture
def bob(db: None) -> User:
    """Signed in, but neither staff nor given the permission."""
    return User.objects.create_user("bob", password=PASSWORD)


def session_cookie(user: User | None) -> str:
    if user is None:
        return ""
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def connect(path: str, user: User | None, origin: str = "http://testserver") -> WebsocketCommunicator:
    """A communicator on the project's ASGI application (origin check, session auth, routing), not connected yet."""
    from jetsonsite.asgi import application

    cookie = await database_sync_to_async(session_cookie)(user)
    headers = [(b"host", b"testserver"), (b"origin", origin.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def next_matching(communicator: WebsocketCommunicator, wanted: Callable[[dict], bool]) -> dict:
    """The first message `wanted` accepts; others are skipped (with Redis, other processes share the groups)."""
    while True:
        message = await communicator.receive_json_from(timeout=5)
        if wanted(message):
            return message


# --- A live server: tests.live (shared with the gateway's end-to-end tests) -----------------------------------------


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A STATIC_ROOT with this tree's static files, collected the way production does."""
    root = tmp_path_factory.mktemp("static")
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "jetsonsite.settings", "STATIC_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    yield root
