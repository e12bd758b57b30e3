from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from chat.web import metrics as views_metrics

urlpatterns = [
    # Before admin.site.urls, whose catch-all would answer this path with a 404.
    path(
        "admin/chat/metrics/",
        admin.site.admin_view(views_metrics.admin_metrics),
        name="admin_chat_metrics",
    ),
    path("admin/", admin.site.urls),
    path("metrics", views_metrics.prometheus_metrics, name="metrics"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("chat.urls")),
]
