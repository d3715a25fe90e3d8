"""The admin shows nodes and samples read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from monitor.tests.samples import make_sample


@pytest.fixture
def admin_client_(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


def test_it_lists_nodes_and_samples(admin_client_: Client) -> None:
    sample = make_sample("orin-1", cpu_percent=42.0)
    assert b"orin-1" in admin_client_.get("/admin/monitor/node/").content
    assert admin_client_.get("/admin/monitor/sample/").status_code == 200
    assert admin_client_.get(f"/admin/monitor/sample/{sample.pk}/change/").status_code == 200


def test_it_allows_no_edits(admin_client_: Client) -> None:
    sample = make_sample("orin-1", cpu_percent=42.0)
    assert admin_client_.get("/admin/monitor/sample/add/").status_code == 403
    response = admin_client_.post(f"/admin/monitor/sample/{sample.pk}/change/", {"cpu_percent": "1"})
    assert response.status_code == 403
    assert admin_client_.post(f"/admin/monitor/node/{sample.node_id}/delete/", {"post": "yes"}).status_code == 403
