"""App config of monitor: Jetson and Linux metrics sampled into the database."""

from __future__ import annotations

from django.apps import AppConfig


class MonitorConfig(AppConfig):
    name = "monitor"
