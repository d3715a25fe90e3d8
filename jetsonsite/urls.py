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
# JSON errors in the API's shape under /v1/ and /api/, Django's pages elsewhere.
handler404 = "gateway.views.page_not_found"
handler500 = "gateway.views.server_error"
