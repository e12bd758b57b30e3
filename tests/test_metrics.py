"""Operator metrics: exact figures from the database, the admin page, and /metrics."""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from chat.data.reply_metrics import STOP_DURATION_WINDOW, _nearest_rank, compute_reply_metrics
from chat.models import Conversation, Message
from tests.helpers import METRICS_MAX_TOKENS

# CHAT_MAX_TOKENS is METRICS_MAX_TOKENS (the figures below are worked out with it), and no token.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("metrics_settings")]
# /metrics reads through database_sync_to_async, which closes the connection of a test wrapped in
# a transaction on PostgreSQL (SQLite's in-memory test database survives it): real transactions.
ASYNC_DB = pytest.mark.django_db(transaction=True)

T0 = datetime.datetime(2026, 1, 5, 12, 0, tzinfo=datetime.UTC)
TOKEN = "metrics-token-7f3a9c-very-secret"
#: This process's own families (chat/replies/process_metrics.py), beside the database's.
PROCESS_FAMILIES = (
    "stopchat_turns_refused",
    "stopchat_stop_latency_seconds",
    "stopchat_event_loop_lag_seconds",
    "stopchat_replies_live",
)


def reply(
    conversation: Conversation,
    *,
    status: str,
    stop_reason: str = "",
    started: float = 0.0,
    seconds: float | None = None,
    output_tokens: int | None = None,
    estimated: bool = False,
    max_tokens: int | None = 1000,
) -> Message:
    """An assistant reply started `started` s after T0, finished `seconds` later (None: not yet)."""
    message = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="text",
        status=status,
        stop_reason=stop_reason,
        output_tokens=output_tokens,
        tokens_estimated=estimated,
        max_tokens=max_tokens,
    )
    created = T0 + datetime.timedelta(seconds=started)
    finished = None if seconds is None else created + datetime.timedelta(seconds=seconds)
    Message.objects.filter(pk=message.pk).update(created_at=created, finished_at=finished)
    return message


def add_outcomes(conversation: Conversation) -> None:
    """Every outcome, with known times and tokens (figures worked out in the tests below)."""
    Message.objects.create(conversation=conversation, role="user", content="Q1")
    Message.objects.create(conversation=conversation, role="user", content="Q2")
    # Completed: tokens as reported by the provider.
    reply(conversation, status="complete", stop_reason="end_turn", seconds=5, output_tokens=100)
    reply(conversation, status="complete", stop_reason="end_turn", seconds=9, output_tokens=200)
    reply(conversation, status="complete", stop_reason="max_tokens", seconds=3, output_tokens=50)
    # Streaming now.
    reply(conversation, status="streaming", started=900)
    # User stops, started 100 s apart, stopped after 4, 1, 10, 2 and 3 s.
    stop = {"status": "interrupted", "stop_reason": "user_stop", "estimated": True}
    reply(conversation, **stop, started=0, seconds=4, output_tokens=100)  # 1000-100 = 900
    reply(conversation, **stop, started=100, seconds=1, output_tokens=40, max_tokens=None)  # 1960
    reply(conversation, **stop, started=200, seconds=10, output_tokens=80, max_tokens=50)  # 0
    reply(conversation, **stop, started=300, seconds=2, output_tokens=None)  # 1000
    reply(conversation, **stop, started=400, seconds=3, output_tokens=0, max_tokens=300)  # 300
    # Disconnects: in the upper bound, not in the stop durations.
    gone = {"status": "interrupted", "stop_reason": "disconnect", "estimated": True}
    reply(conversation, **gone, started=500, seconds=7, output_tokens=250)  # 750
    reply(conversation, **gone, started=600, seconds=0.5, output_tokens=0, max_tokens=None)  # 2000
    # Neither in the upper bound nor in the durations.
    reply(
        conversation,
        status="interrupted",
        stop_reason="server_restart",
        seconds=30,
        output_tokens=10,
        estimated=True,
    )
    reply(
        conversation,
        status="error",
        stop_reason="error",
        seconds=2,
        output_tokens=5,
        estimated=True,
    )
    reply(
        conversation,
        status="interrupted",
        stop_reason="",
        seconds=1,
        output_tokens=3,
        estimated=True,
    )


# --- The computation ------------------------------------------------------------------------


def test_nearest_rank_percentiles() -> None:
    assert _nearest_rank([], 50) is None
    assert _nearest_rank([7.0], 50) == _nearest_rank([7.0], 90) == 7.0
    assert _nearest_rank([1.0, 2.0], 50) == 1.0  # rank ceil(1.0) = 1: no interpolation
    assert _nearest_rank([1.0, 2.0, 3.0, 4.0, 10.0], 90) == 10.0  # rank ceil(4.5) = 5
    # 0.9 * 70 is 63.00000000000001 in floats; the rank must still be 63.
    assert _nearest_rank([float(v) for v in range(1, 71)], 90) == 63.0


def test_counts_of_every_outcome(conversation: Conversation) -> None:
    add_outcomes(conversation)
    m = compute_reply_metrics()
    assert m.started == 14  # assistant replies only; the two user messages are not counted
    assert (m.streaming, m.completed, m.errored) == (1, 3, 1)
    assert (m.stopped_by_user, m.disconnected, m.orphaned, m.interrupted_other) == (5, 2, 1, 1)
    outcomes_sum = (
        m.completed
        + m.stopped_by_user
        + m.disconnected
        + m.orphaned
        + m.interrupted_other
        + m.errored
    )
    assert m.started == m.streaming + outcomes_sum


def test_stop_durations_are_nearest_rank_over_user_stops(conversation: Conversation) -> None:
    add_outcomes(conversation)
    m = compute_reply_metrics()
    # User stops only: [1, 2, 3, 4, 10] s. Median rank ceil(2.5) = 3; p90 rank ceil(4.5) = 5.
    assert (m.stop_window, m.stop_sample) == (STOP_DURATION_WINDOW, 5) == (1000, 5)
    assert m.stop_seconds_p50 == 3.0
    assert m.stop_seconds_p90 == 10.0
    assert m.stop_seconds_count == 5
    assert m.stop_seconds_sum == pytest.approx(20.0)


def test_stop_durations_cover_the_most_recent_stops_only(conversation: Conversation) -> None:
    add_outcomes(conversation)
    m = compute_reply_metrics(window=2)
    # The two stops that finished last: started at 400 s (3 s) and 300 s (2 s).
    assert m.stop_sample == 2
    assert (m.stop_seconds_p50, m.stop_seconds_p90) == (2.0, 3.0)
    assert m.stop_seconds_count == 5  # _count and _sum still cover every user stop


def test_tokens_not_generated_is_an_upper_bound_with_the_fallback(
    conversation: Conversation,
) -> None:
    add_outcomes(conversation)
    m = compute_reply_metrics()
    # User stops 900 + 1960 + 0 + 1000 + 300, disconnects 750 + 2000; two rows use the fallback.
    assert m.tokens_not_generated_upper_bound == 6910
    assert m.stopped_without_max_tokens == 2
    assert m.default_max_tokens == METRICS_MAX_TOKENS


def test_output_tokens_split_reported_and_estimated(conversation: Conversation) -> None:
    add_outcomes(conversation)
    m = compute_reply_metrics()
    assert m.output_tokens_reported == 350
    assert m.output_tokens_estimated == 220 + 250 + 10 + 5 + 3
    assert m.output_tokens == 838


def test_input_tokens_are_split_by_what_the_prompt_cache_did(
    client: Client, staff: User, conversation: Conversation
) -> None:
    for uncached, read, written in [(10, None, None), (20, 4000, 300), (5, 4300, 0)]:
        message = reply(conversation, status="complete", stop_reason="end_turn", seconds=1)
        Message.objects.filter(pk=message.pk).update(
            input_tokens=uncached,
            cache_read_input_tokens=read,
            cache_creation_input_tokens=written,
        )
    metrics = compute_reply_metrics()
    assert (
        metrics.input_tokens_uncached,
        metrics.input_tokens_cache_read,
        metrics.input_tokens_cache_write,
    ) == (35, 8300, 300)
    client.force_login(staff)
    samples = parse_prometheus(client.get("/metrics").content.decode())
    assert sample(samples, "stopchat_input_tokens_total", kind="uncached") == 35
    assert sample(samples, "stopchat_input_tokens_total", kind="cache_read") == 8300
    assert sample(samples, "stopchat_input_tokens_total", kind="cache_write") == 300
    page = client.get("/admin/chat/metrics/").content.decode()
    assert 'id="metric-input-cache-read"' in page and "8300" in page


def test_empty_database() -> None:
    m = compute_reply_metrics()
    assert (m.started, m.streaming, m.stop_sample, m.stop_seconds_count) == (0, 0, 0, 0)
    assert m.stop_seconds_p50 is None and m.stop_seconds_p90 is None
    assert m.stop_seconds_sum == 0.0
    assert m.tokens_not_generated_upper_bound == 0
    assert (m.output_tokens_reported, m.output_tokens_estimated) == (0, 0)


# --- The admin page -------------------------------------------------------------------------


def figure(page: str, row_id: str) -> str:
    match = re.search(rf'<tr id="{row_id}"><th scope="row">[^<]*</th><td>([^<]*)</td>', page)
    assert match, row_id
    return match.group(1)


def test_admin_page_shows_the_figures(
    client: Client, staff: User, conversation: Conversation
) -> None:
    add_outcomes(conversation)
    client.force_login(staff)
    response = client.get("/admin/chat/metrics/")
    assert response.status_code == 200
    page = response.content.decode()
    expected = {
        "metric-started": "14",
        "metric-streaming": "1",
        "metric-completed": "3",
        "metric-stopped": "5",
        "metric-disconnected": "2",
        "metric-orphaned": "1",
        "metric-interrupted-other": "1",
        "metric-errored": "1",
        "metric-stop-p50": "3.00 s",
        "metric-stop-p90": "10.00 s",
        "metric-not-generated": "≤ 6910",
        "metric-tokens-reported": "350",
        "metric-tokens-estimated": "~488",
        "metric-tokens-total": "838",
    }
    assert {row: figure(page, row) for row in expected} == expected
    assert "Output tokens not generated thanks to stops (upper bound)" in page
    assert f"<code>CHAT_MAX_TOKENS</code> = {METRICS_MAX_TOKENS} (2 of them)" in page
    assert 'href="/metrics"' in page
    assert '<a href="/admin/">Home</a>' in page  # breadcrumbs


def test_admin_index_links_to_the_metrics(client: Client, staff: User) -> None:
    client.force_login(staff)
    assert 'href="/admin/chat/metrics/"' in client.get("/admin/").content.decode()
    assert 'href="/admin/chat/metrics/"' in client.get("/admin/chat/").content.decode()
    assert 'href="/admin/chat/metrics/"' not in client.get("/admin/auth/").content.decode()


def test_admin_page_without_stops(client: Client, staff: User) -> None:
    client.force_login(staff)
    page = client.get("/admin/chat/metrics/").content.decode()
    assert figure(page, "metric-stop-p50") == figure(page, "metric-stop-p90") == "—"
    assert "before the limit was recorded" not in page


def test_admin_page_is_staff_only(client: Client, user: User) -> None:
    response = client.get("/admin/chat/metrics/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(user)
    response = client.get("/admin/chat/metrics/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


# --- /metrics -------------------------------------------------------------------------------


def parse_prometheus(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample, parsed by prometheus_client's own parser; each family has help and a type."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation and family.type != "unknown", family.name
        for found in family.samples:
            key = (found.name, frozenset(found.labels.items()))
            assert key not in samples, found
            samples[key] = found.value
    return samples


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


@ASYNC_DB
def test_metrics_for_staff(client: Client, staff: User, conversation: Conversation) -> None:
    add_outcomes(conversation)
    client.force_login(staff)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"
    assert "no-cache" in response["Cache-Control"]
    text = response.content.decode()
    samples = parse_prometheus(text)
    assert sample(samples, "stopchat_replies_started_total") == 14
    by_outcome = {
        outcome: sample(samples, "stopchat_replies_total", outcome=outcome)
        for outcome in [
            "completed",
            "stopped_by_user",
            "disconnected",
            "orphaned",
            "interrupted_other",
            "errored",
        ]
    }
    assert by_outcome == {
        "completed": 3,
        "stopped_by_user": 5,
        "disconnected": 2,
        "orphaned": 1,
        "interrupted_other": 1,
        "errored": 1,
    }
    assert sample(samples, "stopchat_replies_streaming") == 1
    assert sample(samples, "stopchat_stop_after_seconds", quantile="0.5") == 3.0
    assert sample(samples, "stopchat_stop_after_seconds", quantile="0.9") == 10.0
    assert sample(samples, "stopchat_stop_after_seconds_count") == 5
    assert sample(samples, "stopchat_stop_after_seconds_sum") == pytest.approx(20.0)
    assert sample(samples, "stopchat_tokens_not_generated_upper_bound_total") == 6910
    assert sample(samples, "stopchat_output_tokens_total", source="reported") == 350
    assert sample(samples, "stopchat_output_tokens_total", source="estimated") == 488
    database = [name for name, _ in samples if not name.startswith(PROCESS_FAMILIES)]
    assert len(database) == 18  # 1 + 6 outcomes + 1 + 4 summary lines + 1 + 2 + 3 input kinds
    assert "# TYPE stopchat_replies_total counter" in text
    assert "# TYPE stopchat_replies_streaming gauge" in text
    assert "# TYPE stopchat_stop_after_seconds summary" in text
    assert "# HELP stopchat_tokens_not_generated_upper_bound_total UPPER BOUND" in text


@ASYNC_DB
def test_metrics_without_stops_report_nan_quantiles(client: Client, staff: User) -> None:
    client.force_login(staff)
    samples = parse_prometheus(client.get("/metrics").content.decode())
    assert math.isnan(sample(samples, "stopchat_stop_after_seconds", quantile="0.5"))
    assert sample(samples, "stopchat_stop_after_seconds_count") == 0


@ASYNC_DB
def test_metrics_with_the_bearer_token(
    client: Client, settings: Any, conversation: Conversation
) -> None:
    add_outcomes(conversation)
    settings.CHAT_METRICS_TOKEN = TOKEN
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert sample(parse_prometheus(response.content.decode()), "stopchat_replies_streaming") == 1
    assert TOKEN not in response.content.decode()
    lower = client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"})
    assert lower.status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer ",
    ],
)
def test_metrics_refuse_without_a_valid_token(
    client: Client, settings: Any, conversation: Conversation, authorization: str | None
) -> None:
    add_outcomes(conversation)
    settings.CHAT_METRICS_TOKEN = TOKEN
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 403
    body = response.content.decode()
    assert response["Content-Type"].startswith("text/plain")
    assert "stopchat_" not in body and TOKEN not in body


def test_metrics_empty_token_means_staff_only(client: Client, user: User) -> None:
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer"}).status_code == 403
    client.force_login(user)  # signed in, not staff
    assert client.get("/metrics").status_code == 403


def test_metrics_refuse_inactive_staff(client: Client, staff: User) -> None:
    client.force_login(staff)
    User.objects.filter(pk=staff.pk).update(is_active=False)
    assert client.get("/metrics").status_code == 403


def test_metrics_get_only(client: Client, staff: User, settings: Any) -> None:
    settings.CHAT_METRICS_TOKEN = TOKEN
    assert client.post("/metrics").status_code == 405
    client.force_login(staff)
    assert client.post("/metrics").status_code == 405
    assert client.put("/metrics").status_code == 405


@ASYNC_DB
def test_the_token_never_appears_in_pages(client: Client, staff: User, settings: Any) -> None:
    settings.CHAT_METRICS_TOKEN = TOKEN
    client.force_login(staff)
    for url in ["/metrics", "/admin/chat/metrics/", "/admin/"]:
        response = client.get(url)
        assert response.status_code == 200
        assert TOKEN not in response.content.decode()
    assert reverse("metrics") == "/metrics"
    assert reverse("admin_chat_metrics") == "/admin/chat/metrics/"
