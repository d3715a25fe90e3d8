"""Websocket routes of the dashboard."""

from __future__ import annotations

from django.urls import path  # noqa: F401

websocket_urlpatterns: list = []
