"""The dashboard's permission, on a model without a table, so the admin can grant the dashboard to non-staff users."""

from __future__ import annotations

from django.db import models


class Dashboard(models.Model):
    """Never stored: it exists only to carry `dashboard.view_dashboard`."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_dashboard", "Can use the dashboard")]
