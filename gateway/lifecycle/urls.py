"""URLs of the managed-models API."""

from __future__ import annotations

from django.urls import path

from gateway.lifecycle import views

urlpatterns = [
    path("api/models/running", views.running, name="models-running"),
    path("api/models/<path:model_id>/<str:operation>", views.operate, name="models-operate"),
]
