"""Dashboard URLs: the pages at the site root, their sign-in and sign-out."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard import views
from dashboard.access import content_security_policy

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("models/", views.models, name="models"),
    path("models/status", views.models_status, name="models-status"),
    path("chat/", views.chat, name="chat"),
    path("logs/", views.logs, name="logs"),
    path("reference/", views.reference, name="reference"),
    path("reference/openapi.json", views.openapi_document, name="openapi"),
    path(
        "login/",
        content_security_policy(
            auth_views.LoginView.as_view(template_name="dashboard/login.html", next_page="dashboard:overview")
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
]
