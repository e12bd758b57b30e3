"""Reply metrics for operators: an admin page, and /metrics in Prometheus text format.

Both read `chat.data.reply_metrics.compute_reply_metrics`, i.e. the database shared by every
server process, and this process's own figures (chat/replies/process_metrics.py: turns refused
for want of room, event-loop lag, live replies, stop latency). /metrics is written by
prometheus_client.
The admin page is a sync view like the rest of the admin (`AdminSite.admin_view` wraps views in
a sync permission check). /metrics is async; it answers a signed-in staff user, or a request
bearing `Authorization: Bearer <settings.CHAT_METRICS_TOKEN>` (when that token is set), and
otherwise 403 with no data. The token is never echoed, rendered or logged.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterator

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from chat.data.reply_metrics import ReplyMetrics, compute_reply_metrics
from chat.replies import loop_lag, process_metrics
from chat.replies.registry import registry

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_LATEST

acompute_reply_metrics = database_sync_to_async(compute_reply_metrics)


@require_GET
def admin_metrics(request: HttpRequest) -> HttpResponse:
    """The admin page (wired in chatsite/urls.py through `admin.site.admin_view`: staff only)."""
    request.current_app = admin.site.name
    context = {
        **admin.site.each_context(request),
        "title": "Reply metrics",
        "metrics": compute_reply_metrics(),
        "process": process_figures(),
    }
    return render(request, "admin/chat/metrics.html", context)


def process_figures() -> dict[str, object]:
    """This process's admission figures, for the admin page."""
    refused = {
        sample.labels["reason"]: int(sample.value)
        for family in process_metrics.TURNS_REFUSED.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    return {
        "loop_lag_ms": round(loop_lag.current() * 1000, 1),
        "live": registry.live(),
        "refused_replies": refused.get("replies", 0),
        "refused_loop_lag": refused.get("loop_lag", 0),
        "max_replies": settings.CHAT_MAX_REPLIES_PER_PROCESS,
        "max_loop_lag_ms": round(settings.CHAT_MAX_LOOP_LAG * 1000),
    }


def _bearer_token_ok(request: HttpRequest) -> bool:
    expected: str = settings.CHAT_METRICS_TOKEN
    if not expected:
        return False
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(supplied.strip().encode(), expected.encode())


class DatabaseFigures:
    """The figures read from the database (every server process's replies), as Prometheus
    metric families for one scrape."""

    def __init__(self, m: ReplyMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        yield CounterMetricFamily(
            "stopchat_replies_started",
            "Assistant replies started: every assistant message in the database.",
            value=m.started,
        )
        outcomes = CounterMetricFamily(
            "stopchat_replies",
            "Finished assistant replies by outcome: completed (the model ended it), "
            "stopped_by_user (interrupted/user_stop), disconnected (interrupted/disconnect), "
            "orphaned (interrupted/server_restart), interrupted_other, errored.",
            labels=["outcome"],
        )
        for outcome in (
            "completed",
            "stopped_by_user",
            "disconnected",
            "orphaned",
            "interrupted_other",
            "errored",
        ):
            outcomes.add_metric([outcome], getattr(m, outcome))
        yield outcomes
        yield GaugeMetricFamily(
            "stopchat_replies_streaming",
            "Assistant replies streaming now, across every server process.",
            value=m.streaming,
        )
        stops = Metric(
            "stopchat_stop_after_seconds",
            "Seconds from a reply's start to its user stop. Quantiles: nearest rank over the "
            f"{m.stop_window} most recent user stops (NaN when none); _sum and _count: every "
            "user stop.",
            "summary",
        )
        for quantile, value in (("0.5", m.stop_seconds_p50), ("0.9", m.stop_seconds_p90)):
            stops.add_sample(
                "stopchat_stop_after_seconds",
                {"quantile": quantile},
                math.nan if value is None else value,
            )
        stops.add_sample("stopchat_stop_after_seconds_sum", {}, m.stop_seconds_sum)
        stops.add_sample("stopchat_stop_after_seconds_count", {}, m.stop_seconds_count)
        yield stops
        yield CounterMetricFamily(
            "stopchat_tokens_not_generated_upper_bound",
            "UPPER BOUND of output tokens not generated thanks to stops: sum over user stops "
            "and disconnects of max(0, max_tokens - output tokens); replies with no recorded "
            f"max_tokens count with CHAT_MAX_TOKENS={m.default_max_tokens}. A reply rarely runs "
            "to its limit, so the true saving is usually much lower.",
            value=m.tokens_not_generated_upper_bound,
        )
        output = CounterMetricFamily(
            "stopchat_output_tokens",
            "Output tokens of assistant replies, by source: reported by the provider, or "
            "estimated from the text of a stopped, orphaned or failed reply.",
            labels=["source"],
        )
        output.add_metric(["reported"], m.output_tokens_reported)
        output.add_metric(["estimated"], m.output_tokens_estimated)
        yield output
        inputs = CounterMetricFamily(
            "stopchat_input_tokens",
            "Input tokens of assistant replies as Anthropic bills them: uncached (full price), "
            "cache_read (read from the prompt cache, a tenth of the price), cache_write "
            "(written to the cache, 1.25x).",
            labels=["kind"],
        )
        inputs.add_metric(["uncached"], m.input_tokens_uncached)
        inputs.add_metric(["cache_read"], m.input_tokens_cache_read)
        inputs.add_metric(["cache_write"], m.input_tokens_cache_write)
        yield inputs


class Scrape:
    """One /metrics answer: this process's own figures, then the database's."""

    def __init__(self, m: ReplyMetrics) -> None:
        self._database = DatabaseFigures(m)

    def collect(self) -> Iterator[Metric]:
        yield from process_metrics.REGISTRY.collect()
        yield from self._database.collect()


def render_prometheus(metrics: ReplyMetrics) -> str:
    """Prometheus text format (prometheus_client writes it). Call on the event loop: the
    process's gauges are read from it."""
    process_metrics.refresh()
    return generate_latest(Scrape(metrics)).decode()


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
