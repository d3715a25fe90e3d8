"""A method an endpoint does not serve gets 405 in OpenAI's shape, with Allow naming the ones it does."""

from __future__ import annotations

import httpx
import pytest

from gateway.models import APIKey

CASES = [
    ("TRACE", "/livez", "GET, HEAD"),
    ("POST", "/readyz", "GET, HEAD"),
    ("DELETE", "/health", "GET, HEAD"),
    ("QUERY", "/livez", "GET, HEAD"),  # unknown to Django's CSRF check, which would answer 403 in HTML first
    ("TRACE", "/v1/models", "GET"),
    ("GET", "/v1/chat/completions", "POST"),
    ("PUT", "/api/logs", "GET, HEAD, OPTIONS"),
]


@pytest.mark.parametrize(("method", "path", "allow"), CASES)
def test_it_refuses_other_methods_with_405(
    live_gateway: str, transactional_db: None, method: str, path: str, allow: str
) -> None:
    _, key = APIKey.objects.create_key(name="reader", scope_logs=True)  # the read APIs check the scope first
    response = httpx.request(method, f"{live_gateway}{path}", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 405, response.text
    assert response.headers["Allow"] == allow
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


def test_it_still_answers_head_for_supervisors(live_gateway: str, transactional_db: None) -> None:
    assert httpx.head(f"{live_gateway}/livez").status_code == 200
    assert httpx.head(f"{live_gateway}/readyz").status_code == 200
