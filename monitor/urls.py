"""URLs of the monitoring read APIs and the operations endpoints (health, liveness, readiness, Prometheus)."""

from __future__ import annotations

from django.urls import path

from monitor import views
from monitor.operations import views as operations

urlpatterns = [
    path("system/stats", views.SystemStats.as_view(), name="system-stats"),
    path("api/metrics/history", views.MetricHistory.as_view(), name="metric-history"),
    path("api/nodes", views.Nodes.as_view(), name="nodes"),
    path("metrics", operations.metrics, name="prometheus-metrics"),
    path("health", operations.health, name="health"),
    path("livez", operations.livez, name="livez"),
    path("readyz", operations.readyz, name="readyz"),
]
