"""URLs of the request-log read APIs: /api/logs, /api/usage and the original service's /api/activity-logs."""

from __future__ import annotations

from django.urls import path

from gateway.requestlog import views as logviews

urlpatterns = [
    path("api/logs", logviews.LogList.as_view(), name="logs"),
    path("api/usage", logviews.Usage.as_view(), name="usage"),
    path("api/activity-logs", logviews.ActivityLogs.as_view(), name="activity-logs"),
    path("api/activity-logs/clear", logviews.ActivityLogsClear.as_view(), name="activity-logs-clear"),
]
