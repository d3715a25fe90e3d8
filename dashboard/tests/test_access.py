"""Every page needs a signed-in user who is staff or holds `dashboard.view_dashboard`."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

PAGES = ["dashboard:overview", "dashboard:models", "dashboard:chat", "dashboard:logs", "dashboard:reference"]


@pytest.mark.parametrize("page", [*PAGES, "dashboard:models-status"])
def test_it_sends_anonymous_visitors_to_sign_in(client: Client, page: str) -> None:
    response = client.get(reverse(page))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('dashboard:login')}?next={reverse(page)}"


@pytest.mark.parametrize("page", PAGES)
def test_it_refuses_users_without_access(client: Client, bob, page: str) -> None:
    client.force_login(bob)
    assert client.get(reverse(page)).status_code == 403


@pytest.mark.parametrize("page", PAGES)
def test_it_shows_every_page_to_staff(client: Client, alice, page: str) -> None:
    client.force_login(alice)
    response = client.get(reverse(page))
    assert response.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in response.content  # the sign-out form


@pytest.mark.parametrize("page", PAGES)
def test_it_shows_every_page_to_holders_of_the_permission(client: Client, carol, page: str) -> None:
    client.force_login(carol)
    assert client.get(reverse(page)).status_code == 200


def test_it_refuses_inactive_staff(client: Client, alice) -> None:
    client.force_login(alice)
    alice.is_active = False
    alice.save()
    assert client.get(reverse("dashboard:overview")).status_code == 302
