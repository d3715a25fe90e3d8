"""Static files are served by the app itself (an isolated Jetson has no CDN and no web server in front)."""

from __future__ import annotations

import re

import httpx
import pytest


@pytest.mark.django_db(transaction=True)
def test_the_admin_stylesheet_is_served_by_the_gateway(live_gateway: str) -> None:
    # Collected under a hashed name: find it through the admin login page, as a browser would.
    page = httpx.get(f"{live_gateway}/admin/login/")
    href = re.search(r'href="(/static/admin/css/base[^"]*\.css)"', page.text).group(1)
    response = httpx.get(f"{live_gateway}{href}")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert "max-age" in response.headers.get("Cache-Control", "")
