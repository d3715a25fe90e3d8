"""Named fixtures for the monitor tests: alice's key may read metrics, bob's may not; a staff session; a real sampler
over a fake Jetson (the lifecycle tests' `sampler_factory`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from gateway.lifecycle.tests.conftest import sampler_factory  # noqa: F401 (a fixture)
from gateway.models import APIKey


@pytest.fixture
def staff_client(db: None) -> Client:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_key(db: None) -> str:
    _, plaintext = APIKey.objects.create_key(name="alice", scope_monitoring=True)
    return plaintext


@pytest.fixture
def bob_key(db: None) -> str:
    _, plaintext = APIKey.objects.create_key(name="bob", scope_monitoring=False)
    return plaintext


@pytest.fixture
async def thread_connections_closed() -> AsyncIterator[None]:
    """Close the connection sync_to_async's thread opened, so that the test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()
