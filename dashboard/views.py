"""Dashboard pages: thin views rendering templates; live data arrives over websockets or the JSON APIs."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from dashboard import status
from dashboard.access import dashboard_required
from gateway.models import LLMModel, ModelKind
from monitor.operations import openapi


@dashboard_required
def overview(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/overview.html", {"page": "overview"})


@dashboard_required
def models(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/models.html", {"page": "models"})


@dashboard_required
async def models_status(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"models": await status.models_status()})


@dashboard_required
def chat(request: HttpRequest) -> HttpResponse:
    choices = LLMModel.objects.enabled().filter(kind__in=[ModelKind.CHAT, ModelKind.VISION]).order_by("model_id")
    context = {"page": "chat", "models": choices, "max_image_bytes": settings.MAX_IMAGE_BYTES}
    return render(request, "dashboard/chat.html", context)


@dashboard_required
def logs(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/logs.html", {"page": "logs"})


@dashboard_required
def reference(request: HttpRequest) -> HttpResponse:
    base_url = request.build_absolute_uri("/").rstrip("/")
    enabled = LLMModel.objects.enabled()
    model = enabled.filter(kind=ModelKind.CHAT).values_list("model_id", flat=True).first() or settings.LLAMA_MODEL_ID
    embed = enabled.filter(kind=ModelKind.EMBEDDING).values_list("model_id", flat=True).first() or f"{model}-embed"
    context = {"page": "reference", "base_url": base_url, "model": model, "embed_model": embed}
    return render(request, "dashboard/reference.html", context)


@dashboard_required
def openapi_document(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi.document(request.build_absolute_uri("/").rstrip("/")))
