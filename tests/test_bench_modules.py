"""The benchmark's modules for figures 5-7 run in quick mode and return every figure, JSON-ready.

No timing is asserted (the machines are noisy): only that each figure is there, of a sane type
and in a sane range, and that the counts describe what happened.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench import db_work, memory, page


def _json_ready(figures: dict[str, Any]) -> None:
    assert json.loads(json.dumps(figures)) == figures


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_db_work_counts_the_statements_of_a_complete_and_a_stopped_reply() -> None:
    figures = db_work.measure(quick=True)
    _json_ready(figures)
    assert figures["deltas"] == db_work.DELTAS_QUICK
    assert isinstance(figures["target_met"], bool)
    for name, status in [("complete", "complete"), ("stopped", "interrupted")]:
        reply = figures[name]
        assert reply["status"] == status
        assert _number(reply["duration_s"]) and reply["duration_s"] > 0
        assert isinstance(reply["target_met"], bool)
        assert reply["target_writes"] == pytest.approx(3 + reply["duration_s"] / 2, abs=0.01)
        assert reply["statements"] == reply["reads"] + reply["writes"] + reply["other"]
        assert sum(reply["kinds"].values()) == reply["statements"]
        assert len(reply["write_times_s"]) == reply["writes"] >= 2
        assert reply["statements_after_final_frame"] >= 0
        kinds = reply["kinds"]
        # The turn's two messages are inserted and the reply's outcome saved, whatever else.
        assert kinds.get("INSERT chat_message (turn_start)") == 1
        assert kinds.get("UPDATE chat_message (message_finalize)") == 1
    assert figures["complete"]["deltas_streamed"] == db_work.DELTAS_QUICK
    assert 0 < figures["stopped"]["deltas_streamed"] < db_work.DELTAS_QUICK


def test_memory_reports_rss_per_idle_connection_and_per_active_reply() -> None:
    pytest.importorskip("psutil")
    figures = memory.measure(quick=True)
    _json_ready(figures)
    assert figures["k"] == memory.K_QUICK
    for key in ["rss_baseline_mib", "rss_idle_mib", "rss_streaming_mib"]:
        assert _number(figures[key]) and figures[key] > 10
    for key in ["per_idle_connection_kib", "per_active_reply_kib"]:
        assert _number(figures[key])
    assert figures["reply_chars_when_measured"] > 0
    assert _number(figures["seconds_until_all_streaming"])


def test_page_times_a_conversation_of_1000_messages() -> None:
    figures = page.measure(quick=True)
    _json_ready(figures)
    assert figures["messages_in_conversation"] == page.MESSAGES
    assert figures["target_ms"] == page.TARGET_MS
    assert isinstance(figures["target_met"], bool)
    sections = [figures["page"], figures["catch_up_frame"]]
    if figures["earlier_fragment"] is not None:
        sections.append(figures["earlier_fragment"])
    for section in sections:
        assert section["runs"] == page.RUNS_QUICK
        assert all(_number(section[k]) for k in ["median_ms", "min_ms", "max_ms"])
        assert section["min_ms"] <= section["median_ms"] <= section["max_ms"]
        assert 0 < section["messages_rendered"] <= page.MESSAGES
        assert section["bytes"] > 0
    assert figures["page"]["queries"] > 0
