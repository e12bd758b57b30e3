"""Reading the fake Anthropic server's records for the streaming benchmarks.

The fake (chat/testing/fake_anthropic.py) runs in its own process and records, per request, when
each delta was written (``time.monotonic()``, CLOCK_MONOTONIC, comparable across processes) and
when the client hung up. A benchmark client tags every request with a unique marker in its user
message and finds its record by it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from typing import Any, Literal

from chat.testing.fake_anthropic import (
    FakeAnthropicControl,
    RequestRecord,
    last_user_text,
    plan_chunks,
)


def by_marker(records: list[RequestRecord], markers: list[str]) -> dict[str, RequestRecord]:
    """The record of each marker (the last one carrying it, should the SDK have retried)."""
    wanted = set(markers)
    found: dict[str, RequestRecord] = {}
    for record in records:
        text = last_user_text(record.body)
        if text in wanted:
            found[text] = record
    return found


def delta_ends(record: RequestRecord) -> list[int]:
    """Cumulative character offset of the end of each delta the record wrote.

    Computed from the fake's own chunk plan (the text and delta count it used for this
    request), and checked against the text it says it wrote.
    """
    config = record.config
    if config.get("echo"):
        raise ValueError("echo replies are not used by the benchmark")
    chunks, ends = _plan(config.get("text"), int(config.get("deltas", 0)))
    k = record.deltas_written
    if ("".join(chunks[:k]) if k < len(chunks) else _joined(chunks)) != record.text_written:
        raise ValueError(f"request {record.index}: the fake's text does not match its plan")
    return list(ends[:k])


@functools.lru_cache(maxsize=8)
def _plan(text: str | None, deltas: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The fake's chunks for a reply and their cumulative ends (every request of a round has
    the same plan: computed once)."""
    chunks = tuple(plan_chunks(text, deltas))
    return chunks, tuple(itertools.accumulate(len(chunk) for chunk in chunks))


@functools.lru_cache(maxsize=8)
def _joined(chunks: tuple[str, ...]) -> str:
    return "".join(chunks)


async def records(
    control: FakeAnthropicControl, *, min_count: int, finished: bool, wait: float
) -> list[RequestRecord]:
    """The fake's records, without blocking the caller's event loop."""
    return await asyncio.to_thread(control.requests, min_count, finished=finished, timeout=wait)


def ended_before(record: RequestRecord, t: float) -> bool:
    """The response had finished on its own (completed or failed, with no hang-up) by ``t``:
    a stop sent then measures nothing (counted apart, not as a stop that did not close)."""
    return (
        record.disconnected_at is None
        and record.finished_at is not None
        and record.finished_at <= t
    )


def rate_in(record: RequestRecord, start: float, end: float) -> float | None:
    """Deltas a second the fake wrote for this request between two moments."""
    if end <= start:
        return None
    return sum(1 for t in record.delta_times if start <= t <= end) / (end - start)


def describe(record: RequestRecord) -> dict[str, Any]:
    """A short JSON-ready description of a record, for error messages."""
    return {
        "index": record.index,
        "outcome": record.outcome,
        "deltas_written": record.deltas_written,
        "disconnected_at": record.disconnected_at,
    }


def tally_stop(
    record: RequestRecord, stopped_at: float, *, latencies: list[float], after: list[float]
) -> Literal["ended", "not_closed", "closed"]:
    """One stop, as the fake saw it: a stream that had ended on its own by then measures
    nothing (`ended`); else its deltas written after the stop go to `after`, and the ms until
    it was closed to `latencies` (`closed`) unless it never was (`not_closed`)."""
    if ended_before(record, stopped_at):
        return "ended"
    after.append(float(record.deltas_after(stopped_at)))
    if record.disconnected_at is None:
        return "not_closed"
    latencies.append((record.disconnected_at - stopped_at) * 1000)
    return "closed"
