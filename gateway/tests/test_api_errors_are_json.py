"""Every path under /v1/ and /api/ answers its errors in JSON, in the API's shape, even where no view answers: a
path that matches no route (a model id with a line break, which no route takes: an HTML page before) is a 404, an unhandled exception a
500; the rest of the site keeps Django's pages."""

from __future__ import annotations

import json

import pytest
from django.http import HttpResponse
from django.test import Client, RequestFactory

from gateway.views import server_error
from jetsonsite import urls

pytestmark = pytest.mark.django_db


def openai_error(response: HttpResponse, status: int) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = json.loads(response.content)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("path", ["/api/models/%0Ab/unload", "/api/nothing-here", "/v1/nothing-here"])
def test_an_unknown_api_path_is_a_json_404(path: str) -> None:
    assert openai_error(Client().post(path), 404)["type"] == "not_found_error"


def test_an_unknown_path_under_messages_is_a_404_in_anthropics_shape() -> None:
    response = Client().post("/v1/messages/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"type": "error", "error": {"type": "not_found_error", "message": response.json()[
        "error"]["message"]}}  # fmt: skip


def test_other_paths_keep_djangos_404() -> None:
    response = Client().get("/nothing-here")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_an_unhandled_exception_under_the_api_is_a_json_500() -> None:
    assert urls.handler500 == "gateway.views.server_error"
    error = openai_error(server_error(RequestFactory().get("/api/logs")), 500)
    assert error["type"] == "server_error"
    assert server_error(RequestFactory().get("/admin/"))["Content-Type"].startswith("text/html")
