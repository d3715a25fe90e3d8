"""Who may read the history APIs: staff, dashboard users, and keys with the matching scope; nobody else."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from gateway.models import APIKey

pytestmark = pytest.mark.django_db
READ_APIS = ["/api/logs", "/api/usage", "/system/stats", "/api/nodes"]


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", READ_APIS)
def test_a_user_given_the_dashboard_permission_may_read(path: str) -> None:
    carol = User.objects.create_user("carol")
    carol.user_permissions.add(Permission.objects.get(codename="view_dashboard", content_type__app_label="dashboard"))
    assert signed_in(carol).get(path).status_code in (200, 404)  # 404: no sample stored yet


@pytest.mark.parametrize("path", READ_APIS)
def test_a_plain_user_may_not(path: str) -> None:
    response = signed_in(User.objects.create_user("bob")).get(path)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


@pytest.mark.parametrize(("path", "scope"), [("/api/logs", "scope_logs"), ("/api/nodes", "scope_monitoring")])
def test_a_key_needs_its_scope(path: str, scope: str) -> None:
    _, plain = APIKey.objects.create_key(name="no scope")
    _, scoped = APIKey.objects.create_key(name="scoped", **{scope: True})
    assert Client().get(path, HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 403
    assert Client().get(path, HTTP_AUTHORIZATION=f"Bearer {scoped}").status_code == 200
