"""API errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}, with the right status."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse


class APIError(Exception):
    """An error the client should see; raised anywhere on the request path, rendered once by the view."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.route: Any = None  # where the request went before it failed (gateway.outcomes.Route), for its log row

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, "invalid_request_error", param, code)


def method_not_allowed(method: str, allowed: tuple[str, ...]) -> APIError:
    allow = ", ".join(allowed)
    return APIError(
        405, f"Method {method} not allowed: use {allow}", code="method_not_allowed", headers={"Allow": allow}
    )


def unauthorized(message: str = "Invalid or missing API key.") -> APIError:
    return APIError(401, message, "authentication_error", None, "invalid_api_key", {"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> APIError:
    return APIError(403, message, "permission_error", "model", "model_not_allowed")


def not_found(message: str, param: str | None = "model", code: str = "model_not_found") -> APIError:
    return APIError(404, message, "not_found_error", param, code)


def rate_limited(message: str, retry_after: int) -> APIError:
    return APIError(429, message, "rate_limit_error", None, "rate_limit_exceeded", {"Retry-After": str(retry_after)})


def unavailable(message: str) -> APIError:
    return APIError(503, message, "unavailable_error", None, "backend_unavailable")


def not_supported(message: str) -> APIError:
    """A backend that does not serve the endpoint asked for (llama-server's own status and type for it)."""
    return APIError(501, message, "not_supported_error", None, "endpoint_not_supported")


def timeout(message: str) -> APIError:
    return APIError(504, message, "timeout_error", None, "backend_timeout")


def first_error(detail: Any, path: str = "") -> tuple[str, str]:
    """(param path like `messages[0].content`, message) of the first error in a DRF error tree."""
    if isinstance(detail, dict):
        name, inner = next(iter(detail.items()))
        if isinstance(name, int):  # DRF reports list items as {index: errors}
            return first_error(inner, f"{path}[{name}]")
        name = "" if name == "non_field_errors" else name
        return first_error(inner, f"{path}.{name}" if path and name else path or name)
    if isinstance(detail, list):
        for index, inner in enumerate(detail):
            if inner:
                if isinstance(inner, dict | list):
                    return first_error(inner, f"{path}[{index}]")
                return path, str(inner)
    return path, str(detail)


# Anthropic's status and error type for ours: its SDKs and Claude Code act on them (529 is how it says "overloaded,
# retry later", where we answer 503).
ANTHROPIC_ERRORS = {
    400: (400, "invalid_request_error"), 401: (401, "authentication_error"), 403: (403, "permission_error"),
    404: (404, "not_found_error"), 405: (405, "invalid_request_error"), 409: (409, "invalid_request_error"),
    413: (413, "request_too_large"), 429: (429, "rate_limit_error"), 503: (529, "overloaded_error"),
    504: (504, "timeout_error"),
}  # fmt: skip


def anthropic_status(error: APIError) -> tuple[int, str]:
    return ANTHROPIC_ERRORS.get(error.status) or (
        (error.status, "api_error") if error.status >= 500 else (400, "invalid_request_error")
    )


def anthropic_body(error: APIError) -> dict:
    """The error as Anthropic's API gives it: {"type": "error", "error": {"type", "message"}}."""
    return {"type": "error", "error": {"type": anthropic_status(error)[1], "message": error.message}}


def anthropic_response(error: APIError) -> JsonResponse:
    response = JsonResponse(anthropic_body(error), status=anthropic_status(error)[0])
    for name, value in error.headers.items():
        if name != "WWW-Authenticate":
            response[name] = value
    return response
