"""URLs of the OpenAI-compatible API and its health endpoints."""

from __future__ import annotations

from django.urls import path

from gateway import views

urlpatterns = [
    path("livez", views.livez, name="livez"),
]
