"""Root URLs: the OpenAI-compatible API, monitoring, the dashboard, managed models and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("gateway.urls")),
    path("", include("monitor.urls")),
    path("", include("dashboard.urls")),
    path("", include("gateway.requestlog.urls")),
    path("", include("gateway.lifecycle.urls")),
]
