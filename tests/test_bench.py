"""`make test` runs the benchmark once in quick mode (`python -m bench.run --quick`, as
`make bench-quick` does) and checks that it ran and produced every figure, JSON-ready, with its
raw-SDK floor where it has one, and the plot.

No timing is asserted (the machines are noisy): only that each figure is there, of a sane type
and in a sane range, and that the counts describe what happened. The bench runs as a command, the
way a person runs it (the ``bench_report`` fixture); its JSON says what it measured with.
"""

from __future__ import annotations

import json
from typing import Any

import pytest


def _json_ready(figures: dict[str, Any]) -> None:
    assert json.loads(json.dumps(figures)) == figures


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


STATS = ("p50", "p90", "p99", "max")


def _stats(figure: dict[str, Any]) -> bool:
    return all(_number(figure[k]) for k in STATS) and figure["p50"] <= figure["p99"]


def test_stop_relay_and_capacity_figures_come_with_their_raw_sdk_floor(
    bench_report: dict[str, Any],
) -> None:
    streams = bench_report["streams"]
    assert "error" not in streams, streams
    assert bench_report["environment"]["quick"] is True
    # --quick measures one setup, SQLite as `make run` gives it; the full run adds PostgreSQL.
    assert list(streams["setups"]) == ["sqlite"] == streams["config"]["setups"]
    assert "SQLite" in streams["setups"]["sqlite"]["backend"]
    ns = streams["config"]["ns"]
    for name in ("stop_latency_ms", "after_stop_deltas", "relay_latency_ms"):
        rows = streams["figures"][name]
        assert [(r["setup"], r["n"]) for r in rows] == [("sqlite", n) for n in ns], name
        for row in rows:
            for side in ("app", "raw"):
                assert _stats(row[side]), (name, row)
            assert row["target"]
    # Relay lag at the pages, with its p90 (the target is a p90).
    assert "p90 ≤ 300 ms at N=100" in streams["figures"]["relay_latency_ms"][0]["target"]
    assert streams["capacity"]["sqlite"]["one_process"]["summary"], "no capacity figure"


def test_single_stops_amid_n_streaming_replies_beside_the_raw_floor(
    bench_report: dict[str, Any],
) -> None:
    """One client's Stop at a time amid the other replies, the raw SDK cancelling one stream
    amid N: at every N of at least 10, as many stops as the round sends, each restarted."""
    streams = bench_report["streams"]
    per_round = streams["config"]["single_stops_per_round"]
    ns = streams["config"]["single_stop_ns"]
    assert ns and set(ns) <= set(streams["config"]["ns"]) and per_round > 0
    for name in ("single_stop_ms", "single_stop_after_deltas"):
        rows = streams["figures"][name]
        assert [r["n"] for r in rows] == ns, name
        for row in rows:
            for side in ("app", "raw"):
                assert _stats(row[side]), (name, row)
                assert row[side]["count"] == per_round, (name, row)
    for rnd in streams["rounds"]:
        if rnd["n"] in ns:
            assert rnd["app"]["single_stops_restarted"] == per_round
    after = streams["figures"]["single_stop_after_deltas"][0]["app"]
    assert after["max"] == int(after["max"]) >= 0


def test_overload_offers_twice_the_capacity_and_accounts_for_every_turn(
    bench_report: dict[str, Any],
) -> None:
    over = bench_report["streams"]["overload"]["sqlite"]
    _json_ready(over)
    assert "error" not in over, over
    # --quick overloads a fixed capacity of 10: 20 turns at once.
    assert over["capacity"] == 10 and over["offered"] == 20
    assert over["accepted"] + over["refused"] + over["unanswered"] == over["offered"]
    assert 0 <= over["refused_told_busy"] <= over["refused"]
    assert over["refusals_supported"] is (over["refused"] > 0)
    if over["refused"]:
        assert "busy" in over["busy_notice"].lower()
    else:
        assert over["summary"].startswith("no refusals: is CHAT_MAX_REPLIES_PER_PROCESS supported?")
    # The database was read: the accepted turns' messages are there (2 each, more if restarted).
    saved = over["rows_saved_for_accepted"]
    assert saved.get("user", 0) >= over["accepted"] - over["accepted_without_user_message"]
    assert isinstance(over["rows_saved_for_refused"], dict)
    assert set(over["checks"]) >= {
        "accepted ≤ capacity",
        "every refused turn told busy",
        "nothing saved for refused turns",
        "every accepted turn saved",
        over["stop_target"],
    }
    assert all(isinstance(v, bool) for v in over["checks"].values())
    assert over["met"] is (over["refusals_supported"] and all(over["checks"].values()))
    # The accepted replies' figures, beside the raw floor at as many streams.
    assert over["raw_n"] == max(1, over["accepted"])
    for key in ("single_stop_ms", "relay_ms", "stop_ms"):
        assert _stats(over["app"][key]), key
        assert _stats(over["raw"][key]), key


def test_db_work_counts_the_statements_of_a_complete_and_a_stopped_reply(
    bench_report: dict[str, Any],
) -> None:
    figures = bench_report["db_work"]
    _json_ready(figures)
    assert isinstance(figures["deltas"], int) and figures["deltas"] > 0
    assert isinstance(figures["target_met"], bool)
    for name, status in [("complete", "complete"), ("stopped", "interrupted")]:
        reply = figures[name]
        assert reply["status"] == status
        assert _number(reply["duration_s"]) and reply["duration_s"] > 0
        assert isinstance(reply["target_met"], bool)
        assert reply["target_writes"] == pytest.approx(4 + reply["duration_s"] / 2, abs=0.01)
        assert reply["statements"] == reply["reads"] + reply["writes"] + reply["other"]
        assert sum(reply["kinds"].values()) == reply["statements"]
        assert len(reply["write_times_s"]) == reply["writes"] >= 2
        assert reply["statements_after_final_frame"] >= 0
        kinds = reply["kinds"]
        # The turn's two messages are inserted (the reply names its message: two INSERTs) and
        # the reply's outcome saved, whatever else.
        assert kinds.get("INSERT chat_message (turn_create)") == 2
        assert kinds.get("UPDATE chat_message (message_finalize)") == 1
    assert figures["complete"]["deltas_streamed"] == figures["deltas"]
    assert 0 < figures["stopped"]["deltas_streamed"] < figures["deltas"]


def test_memory_reports_rss_per_idle_connection_and_per_active_reply(
    bench_report: dict[str, Any],
) -> None:
    figures = bench_report["memory"]
    _json_ready(figures)
    assert isinstance(figures["k"], int) and figures["k"] > 0
    for key in ["rss_baseline_mib", "rss_idle_mib", "rss_streaming_mib"]:
        assert _number(figures[key]) and figures[key] > 10
    for key in ["per_idle_connection_kib", "per_active_reply_kib"]:
        assert _number(figures[key])
    assert figures["reply_chars_when_measured"] > 0
    assert _number(figures["seconds_until_all_streaming"])


def test_page_times_a_conversation_of_1000_messages(bench_report: dict[str, Any]) -> None:
    figures = bench_report["page"]
    _json_ready(figures)
    assert figures["messages_in_conversation"] == 1000
    assert _number(figures["target_ms"])
    assert figures["target_met"] is (figures["page"]["median_ms"] <= figures["target_ms"])
    sections = [figures["page"], figures["catch_up_frame"]]
    if figures["earlier_fragment"] is not None:
        sections.append(figures["earlier_fragment"])
    for section in sections:
        assert section["runs"] == figures["runs_per_section"] > 0
        assert all(_number(section[k]) for k in ["median_ms", "min_ms", "max_ms"])
        assert section["min_ms"] <= section["median_ms"] <= section["max_ms"]
        assert 0 < section["messages_rendered"] <= figures["messages_in_conversation"]
        assert section["bytes"] > 0
    assert figures["page"]["queries"] > 0


def test_caching_prices_one_conversation_with_prompt_caching_off_and_on(
    bench_report: dict[str, Any],
) -> None:
    figures = bench_report["caching"]
    _json_ready(figures)
    turns = figures["turns"]
    assert isinstance(turns, int) and turns >= 3
    off, on = figures["cache_off"], figures["cache_on"]
    # The app asked for caching on every request of one run and on none of the other.
    assert off["requests_with_cache_control"] == 0
    assert on["requests_with_cache_control"] == turns
    assert off["input_tokens_cache_read"] == off["input_tokens_cache_write"] == 0
    for run in (off, on):
        kinds = ("input_tokens_uncached", "input_tokens_cache_read", "input_tokens_cache_write")
        assert sum(run[k] for k in kinds) == run["input_tokens_total"]
        assert len(run["per_turn_input_cost_usd"]) == turns
        assert sum(run["per_turn_input_cost_usd"]) == pytest.approx(run["input_cost_usd"])
        assert run["output_cost_usd"] > 0
    # The same conversation both times: the same prompts, the same replies.
    assert on["input_tokens_total"] == off["input_tokens_total"]
    assert on["output_tokens"] == off["output_tokens"]
    # The history outgrows the cache's minimum, so later turns read it and cost less.
    assert on["input_tokens_cache_read"] > 0 and on["first_cache_read_turn"] is not None
    assert on["input_cost_usd"] < off["input_cost_usd"]
    assert 0 < figures["input_cost_saving_pct"] < 100


def test_attachments_read_the_servers_memory_for_uploads_by_the_page_and_the_api(
    bench_report: dict[str, Any],
) -> None:
    figures = bench_report["attachments"]
    _json_ready(figures)
    assert "error" not in figures, figures
    # --quick sends files of about 1 MB (never more), the API's bodies in base64 a third larger.
    for size in figures["file_mib"].values():
        assert 0.9 <= size <= 1.0
    assert figures["api_body_mib"]["api_pdf"] > figures["file_mib"]["pdf"] * 1.3
    assert figures["file_shape"]["pdf_pages"] >= 1
    assert figures["rss_start_mib"] > 10 and figures["rss_end_mib"] > 10
    cases = (
        "web_small",
        "web_pdf",
        "web_image",
        "api_plain",
        "api_pdf",
        "api_image",
        "api_after_pdf",
    )
    for case in cases:
        row = figures[case]
        assert len(row["runs"]) == figures["repeats"] >= 1, case
        for key in ("peak_increase_mib", "retained_mib", "wall_ms", "cpu_ms", "longest_probe_ms"):
            assert _number(row[key]["p50"]) and row[key]["p50"] <= row[key]["max"], (case, key)
        for run in row["runs"]:
            # RSS was read throughout the request, and the probe answered meanwhile.
            assert run["samples"] >= 1 and run["probes"] >= 1, (case, run)
            assert run["baseline_mib"] > 10 and run["wall_ms"] > 0, (case, run)
            assert run["longest_probe_ms"] > 0, (case, run)
