"""Reply metrics for operators, computed from the database.

The database is the one truth shared by every server process, so nothing here counts in memory:
each figure is an aggregate query over the assistant messages (`role=assistant`), and the
durations are read for a bounded window of recent user stops only. Works on SQLite and PostgreSQL.

Definitions (the admin page and /metrics show exactly these):

- started: every assistant reply ever saved (each one is a row, whatever became of it).
- streaming: replies whose status is `streaming` now.
- completed: status `complete` (the model ended the reply: end_turn, max_tokens, stop_sequence,
  refusal).
- stopped_by_user: `interrupted` / `user_stop` (Stop, Stop & Send, Esc, the HTTP endpoint).
- disconnected: `interrupted` / `disconnect` (the socket or the API caller's connection closed
  mid-reply, or the server shut down).
- orphaned: `interrupted` / `server_restart` (the serving process died; closed by the reaper).
- interrupted_other: `interrupted` with any other stop reason (none are written today; counted so
  the outcomes always add up: started = streaming + every outcome).
- errored: status `error`.
- stop duration: `finished_at - created_at` of a user stop, in seconds. Median and p90 use the
  nearest-rank definition (the smallest observed value with at least that share of the
  observations at or below it) over the most recent `STOP_DURATION_WINDOW` user stops, by
  `finished_at`; None when there are none. `stop_seconds_count` / `stop_seconds_sum` cover every
  user stop.
- tokens not generated (an UPPER BOUND): over user stops and disconnects, the sum of
  max(0, max_tokens - output_tokens). `max_tokens` is the limit the reply was requested with;
  rows saved before that field existed have none and count with `settings.CHAT_MAX_TOKENS`
  (`stopped_without_max_tokens` says how many). A reply would usually have ended well before its
  limit, so the true saving is lower. A stopped reply's output tokens are estimated from its text.
- output tokens: the sum of `output_tokens` of every reply, split into figures the provider
  reported and figures estimated from the text (stopped, errored and orphaned replies).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    IntegerField,
    Q,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from chat.models import Message

# How many of the most recent user stops the median and p90 are computed over.
STOP_DURATION_WINDOW = 1000

_INTERRUPTED = Q(status=Message.Status.INTERRUPTED)
_USER_STOP = _INTERRUPTED & Q(stop_reason=Message.StopReason.USER_STOP)
_DISCONNECT = _INTERRUPTED & Q(stop_reason=Message.StopReason.DISCONNECT)
_ORPHAN = _INTERRUPTED & Q(stop_reason=Message.StopReason.SERVER_RESTART)
_STOPPED = _USER_STOP | _DISCONNECT
_TIMED_USER_STOP = _USER_STOP & Q(finished_at__isnull=False)


@dataclass(frozen=True)
class ReplyMetrics:
    computed_at: datetime.datetime
    started: int
    streaming: int
    completed: int
    stopped_by_user: int
    disconnected: int
    orphaned: int
    interrupted_other: int
    errored: int
    # Seconds from a reply's start to its user stop, over the most recent `stop_window` stops.
    stop_window: int
    stop_sample: int
    stop_seconds_p50: float | None
    stop_seconds_p90: float | None
    # Every user stop with a finish time (the summary's _count and _sum).
    stop_seconds_count: int
    stop_seconds_sum: float
    # Upper bound: sum over user stops and disconnects of max(0, max_tokens - output_tokens).
    tokens_not_generated_upper_bound: int
    stopped_without_max_tokens: int
    default_max_tokens: int
    output_tokens_reported: int
    output_tokens_estimated: int
    input_tokens_uncached: int
    """Input tokens billed in full (neither read from nor written to the prompt cache)."""
    input_tokens_cache_read: int
    input_tokens_cache_write: int

    @property
    def output_tokens(self) -> int:
        return self.output_tokens_reported + self.output_tokens_estimated


def _nearest_rank(ordered: list[float], percent: int) -> float | None:
    """The nearest-rank percentile of ascending `ordered`: the value at rank ceil(p/100 * n)."""
    if not ordered:
        return None
    rank = max(1, -(-percent * len(ordered) // 100))  # integer ceil: no float rounding
    return ordered[rank - 1]


def compute_reply_metrics(*, window: int = STOP_DURATION_WINDOW) -> ReplyMetrics:
    """Every figure of `ReplyMetrics`, from two queries (synchronous; wrap it in async code)."""
    default_max_tokens: int = settings.CHAT_MAX_TOKENS
    replies = Message.objects.filter(role=Message.Role.ASSISTANT)
    # Coalesce/Greatest keep NULLs out of the arithmetic: SQLite's MAX() and PostgreSQL's
    # GREATEST() treat NULL differently.
    not_generated = Greatest(
        Coalesce(F("max_tokens"), Value(default_max_tokens), output_field=IntegerField())
        - Coalesce(F("output_tokens"), Value(0), output_field=IntegerField()),
        Value(0),
        output_field=IntegerField(),
    )
    counts = replies.aggregate(
        started=Count("id"),
        streaming=Count("id", filter=Q(status=Message.Status.STREAMING)),
        completed=Count("id", filter=Q(status=Message.Status.COMPLETE)),
        stopped_by_user=Count("id", filter=_USER_STOP),
        disconnected=Count("id", filter=_DISCONNECT),
        orphaned=Count("id", filter=_ORPHAN),
        interrupted=Count("id", filter=_INTERRUPTED),
        errored=Count("id", filter=Q(status=Message.Status.ERROR)),
        not_generated=Coalesce(Sum(not_generated, filter=_STOPPED), 0),
        without_max_tokens=Count("id", filter=_STOPPED & Q(max_tokens__isnull=True)),
        tokens_reported=Coalesce(Sum("output_tokens", filter=Q(tokens_estimated=False)), 0),
        tokens_estimated=Coalesce(Sum("output_tokens", filter=Q(tokens_estimated=True)), 0),
        input_uncached=Coalesce(Sum("input_tokens"), 0),
        input_cache_read=Coalesce(Sum("cache_read_input_tokens"), 0),
        input_cache_write=Coalesce(Sum("cache_creation_input_tokens"), 0),
        stop_count=Count("id", filter=_TIMED_USER_STOP),
        stop_total=Sum(
            ExpressionWrapper(F("finished_at") - F("created_at"), output_field=DurationField()),
            filter=_TIMED_USER_STOP,
        ),
    )
    recent = (
        replies.filter(_TIMED_USER_STOP)
        .order_by("-finished_at", "-id")
        .values_list("created_at", "finished_at")
    )
    seconds = sorted(
        max(0.0, (finished - created).total_seconds())
        for created, finished in recent[:window]
        if finished is not None
    )
    total: datetime.timedelta | None = counts["stop_total"]

    interrupted_known = counts["stopped_by_user"] + counts["disconnected"] + counts["orphaned"]
    return ReplyMetrics(
        computed_at=timezone.now(),
        started=counts["started"],
        streaming=counts["streaming"],
        completed=counts["completed"],
        stopped_by_user=counts["stopped_by_user"],
        disconnected=counts["disconnected"],
        orphaned=counts["orphaned"],
        interrupted_other=counts["interrupted"] - interrupted_known,
        errored=counts["errored"],
        stop_window=window,
        stop_sample=len(seconds),
        stop_seconds_p50=_nearest_rank(seconds, 50),
        stop_seconds_p90=_nearest_rank(seconds, 90),
        stop_seconds_count=counts["stop_count"],
        stop_seconds_sum=total.total_seconds() if total is not None else 0.0,
        tokens_not_generated_upper_bound=counts["not_generated"],
        stopped_without_max_tokens=counts["without_max_tokens"],
        default_max_tokens=default_max_tokens,
        output_tokens_reported=counts["tokens_reported"],
        output_tokens_estimated=counts["tokens_estimated"],
        input_tokens_uncached=counts["input_uncached"],
        input_tokens_cache_read=counts["input_cache_read"],
        input_tokens_cache_write=counts["input_cache_write"],
    )
