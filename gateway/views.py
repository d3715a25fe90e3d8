"""The OpenAI-compatible API: thin async views over gateway.service."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse


async def livez(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
