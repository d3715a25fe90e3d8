"""DRF glue for the read APIs (logs, usage, monitoring): one exception handler giving OpenAI's error shape."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from gateway import errors

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


def openai_exception_handler(exc: Exception, context: dict) -> Response | None:
    """REST_FRAMEWORK's EXCEPTION_HANDLER: APIError as it is, DRF's errors (and Http404, PermissionDenied)
    converted, with the field a validation error is about as `param`."""
    if isinstance(exc, errors.APIError):
        return Response(exc.body(), status=exc.status, headers=exc.headers)
    response = exception_handler(exc, context)  # keeps WWW-Authenticate and Retry-After
    if response is None:
        return None  # not an HTTP error: Django's 500 handling and logging see it
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data.get("detail", "")
    param, message = errors.first_error(detail)
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
    while isinstance(code, dict | list):
        code = next(iter(code.values())) if isinstance(code, dict) else (code[0] if code else None)
    response.data = {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(response.status_code, "server_error"),
            "param": param or None,
            "code": code,
        }
    }
    return response
