"""Websocket routes of the dashboard."""

from __future__ import annotations

from django.urls import path

from dashboard import consumers

websocket_urlpatterns = [
    path("ws/metrics/", consumers.MetricsConsumer.as_asgi()),
    path("ws/logs/", consumers.LogConsumer.as_asgi()),
    path("ws/models/", consumers.ModelsConsumer.as_asgi()),
    path("ws/chat/", consumers.ChatConsumer.as_asgi()),
]
