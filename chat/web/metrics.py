"""Reply metrics for operators: an admin page, and /metrics in Prometheus text format.

Both read `chat.data.reply_metrics.compute_reply_metrics`, i.e. the database shared by every
server process.
The admin page is a sync view like the rest of the admin (`AdminSite.admin_view` wraps views in
a sync permission check). /metrics is async; it answers a signed-in staff user, or a request
bearing `Authorization: Bearer <settings.CHAT_METRICS_TOKEN>` (when that token is set), and
otherwise 403 with no data. The token is never echoed, rendered or logged.
"""

from __future__ import annotations

import hmac

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from chat.data.reply_metrics import ReplyMetrics, compute_reply_metrics

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

acompute_reply_metrics = database_sync_to_async(compute_reply_metrics)


@require_GET
def admin_metrics(request: HttpRequest) -> HttpResponse:
    """The admin page (wired in chatsite/urls.py through `admin.site.admin_view`: staff only)."""
    request.current_app = admin.site.name
    context = {
        **admin.site.each_context(request),
        "title": "Reply metrics",
        "metrics": compute_reply_metrics(),
    }
    return render(request, "admin/chat/metrics.html", context)


def _bearer_token_ok(request: HttpRequest) -> bool:
    expected: str = settings.CHAT_METRICS_TOKEN
    if not expected:
        return False
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(supplied.strip().encode(), expected.encode())


def _sample(value: float | None) -> str:
    """A sample value as Prometheus writes floats (NaN for a quantile with no observations)."""
    return "NaN" if value is None else repr(float(value))


def render_prometheus(metrics: ReplyMetrics) -> str:
    return render_to_string(
        "chat/metrics.txt",
        {
            "m": metrics,
            "p50": _sample(metrics.stop_seconds_p50),
            "p90": _sample(metrics.stop_seconds_p90),
            "stop_sum": _sample(metrics.stop_seconds_sum),
        },
    )


@require_GET
@never_cache
async def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    if not _bearer_token_ok(request):
        user = await request.auser()
        if not (user.is_active and user.is_staff):
            return HttpResponseForbidden(
                "Forbidden: sign in as staff or send the metrics bearer token.\n",
                content_type="text/plain; charset=utf-8",
            )
    metrics = await acompute_reply_metrics()
    return HttpResponse(render_prometheus(metrics), content_type=PROMETHEUS_CONTENT_TYPE)
