"""DRF errors leave in OpenAI's shape, with the field a validation error is about as `param`."""

from __future__ import annotations

from django.http import Http404
from rest_framework import exceptions

from gateway.drf import openai_exception_handler


def test_it_names_the_field_of_a_validation_error() -> None:
    exc = exceptions.ValidationError({"step": ["Expected a duration."]}, code="invalid_duration")
    response = openai_exception_handler(exc, {})
    assert response is not None and response.status_code == 400
    assert response.data == {
        "error": {
            "message": "Expected a duration.",
            "type": "invalid_request_error",
            "param": "step",
            "code": "invalid_duration",
        }
    }


def test_it_converts_djangos_http404() -> None:
    response = openai_exception_handler(Http404("No such node."), {})
    assert response is not None and response.status_code == 404
    assert response.data["error"]["type"] == "not_found_error"
    assert response.data["error"]["param"] is None


def test_it_keeps_throttling_headers() -> None:
    response = openai_exception_handler(exceptions.Throttled(wait=7), {})
    assert response is not None and response.status_code == 429
    assert response.data["error"]["type"] == "rate_limit_error"
    assert response["Retry-After"] == "7"


def test_it_leaves_other_exceptions_to_django() -> None:
    assert openai_exception_handler(ValueError("bug"), {}) is None
