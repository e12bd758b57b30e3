"""This process's own figures, for /metrics (prometheus_client): turns refused for want of room,
event-loop lag, live replies, and how long a stop takes to close the upstream stream.

The figures read from the database (replies by outcome, tokens) cover every process and are
collected at scrape time by chat/web/metrics.py; these cover the process that answers the scrape:
Prometheus scrapes each server process as a target of its own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from chat.replies import loop_lag
from chat.replies.registry import registry

# Counters are exported without `_created` samples (a counter's start time is noise here).
disable_created_metrics()

#: The registry /metrics exposes (the database figures are added to it by chat/web/metrics.py).
REGISTRY = CollectorRegistry(auto_describe=True)

TURNS_REFUSED = Counter(
    "stopchat_turns_refused",
    "New turns this process refused because it was busy (chat/replies/admission.py), by reason: "
    "replies (at CHAT_MAX_REPLIES_PER_PROCESS) or loop_lag (over CHAT_MAX_LOOP_LAG).",
    ["reason"],
    registry=REGISTRY,
)
for _reason in ("replies", "loop_lag"):
    TURNS_REFUSED.labels(reason=_reason)

STOP_SECONDS = Histogram(
    "stopchat_stop_latency_seconds",
    "Seconds from a reply's stop (any door, any reason) to its upstream stream closed, in this "
    "process.",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
    registry=REGISTRY,
)

LOOP_LAG = Gauge(
    "stopchat_event_loop_lag_seconds",
    "How late this process's event loop runs: the mean lateness of a 50 ms timer over the last "
    "second.",
    registry=REGISTRY,
)
LIVE_REPLIES = Gauge(
    "stopchat_replies_live",
    "Replies streaming in this process now.",
    registry=REGISTRY,
)


def refresh() -> None:
    """Set the gauges from the process's state (called on the event loop, before a scrape)."""
    LOOP_LAG.set(loop_lag.current())
    LIVE_REPLIES.set(registry.live())
