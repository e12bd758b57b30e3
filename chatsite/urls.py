from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from django.views.i18n import JavaScriptCatalog

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
    # Browsers ask for /favicon.ico where a page links no icon (the admin, a PDF or an image
    # opened on its own). Pages link static/favicon.svg by its hashed name; this points at its
    # plain name, which stays valid whatever the file's next hash is (a 301 is cached for good).
    path(
        "favicon.ico",
        RedirectView.as_view(url=f"{settings.STATIC_URL}favicon.svg", permanent=True),
        name="favicon",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    # The language switch in the top bar and on the sign-in page posts to set_language here.
    path("i18n/", include("django.conf.urls.i18n")),
    # The words static/chat/chat.js shows (its gettext), in the page's language.
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("", include("chat.urls")),
]
