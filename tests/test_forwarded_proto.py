"""With HTTPS on, X-Forwarded-Proto is believed only from a trusted proxy: a direct client cannot claim https."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def https(settings: Any) -> Any:
    # What HTTPS=true sets (jetsonsite.settings), before the test client loads the middleware.
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    return settings


def test_it_redirects_a_direct_client_that_claims_https(https: Any) -> None:
    https.TRUSTED_PROXIES = []
    response = Client(REMOTE_ADDR="192.0.2.10").get("/login/", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/login/"


def test_it_believes_https_from_a_trusted_proxy(https: Any) -> None:
    https.TRUSTED_PROXIES = ["192.0.2.0/24"]
    response = Client(REMOTE_ADDR="192.0.2.10").get("/login/", headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert response.wsgi_request.is_secure()
