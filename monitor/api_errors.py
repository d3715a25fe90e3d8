"""DRF errors in OpenAI's shape {"error": {message, type, param, code}}; any app's DRF views may use it."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


def _first_message(detail: object) -> tuple[str, str | None]:
    """The first message of a DRF error detail, and the field it is about."""
    if isinstance(detail, dict):
        field, value = next(iter(detail.items()))
        message, inner = _first_message(value)
        return message, inner or (None if field == "non_field_errors" else str(field))
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail), None


def openai_exception_handler(exc: Exception, context: dict) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None  # not a DRF/HTTP error: let Django's 500 handling and logging see it
    # Django's Http404 and PermissionDenied arrive here too, already turned into {"detail": ...}.
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data.get("detail", "")
    message, param = _first_message(detail)
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
    while isinstance(code, dict | list):
        code = next(iter(code.values())) if isinstance(code, dict) else (code[0] if code else None)
    response.data = {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(response.status_code, "server_error"),
            "param": param,
            "code": code,
        }
    }
    return response
