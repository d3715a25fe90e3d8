"""Signing in and out through the dashboard's own pages (the admin's login refuses non-staff users)."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from dashboard.tests.conftest import PASSWORD


def test_it_signs_in_a_user_given_the_permission_and_follows_next(carol) -> None:
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("dashboard:login") + "?next=/logs/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        reverse("dashboard:login"),
        {"username": "carol", "password": PASSWORD, "next": "/logs/", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert response["Location"] == "/logs/"
    assert client.get("/logs/").status_code == 200


def test_it_refuses_a_sign_in_without_the_csrf_token(carol) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("dashboard:login"), {"username": "carol", "password": PASSWORD})
    assert response.status_code == 403


def test_it_refuses_a_wrong_password(carol) -> None:
    response = Client().post(reverse("dashboard:login"), {"username": "carol", "password": "wrong"})
    assert response.status_code == 200
    assert b"errorlist" in response.content
    assert "_auth_user_id" not in Client().session


def test_it_signs_out_only_by_post(client: Client, alice) -> None:
    client.force_login(alice)
    assert client.get(reverse("dashboard:logout")).status_code == 405
    response = client.post(reverse("dashboard:logout"))
    assert response.status_code == 302
    assert client.get(reverse("dashboard:overview")).status_code == 302
