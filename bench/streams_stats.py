"""Statistics helpers shared by the streaming benchmarks (bench/streams.py, bench/raw_sdk.py)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted ``values`` (``q`` in 0..100)."""
    if not values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


def summary(values: Iterable[float], *, digits: int = 2) -> dict[str, Any]:
    """p50 / p90 / p99 / max / mean and the count, JSON-ready; ``None`` figures for no values."""
    data = sorted(values)
    if not data:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    return {
        "count": len(data),
        "p50": round(percentile(data, 50), digits),
        "p90": round(percentile(data, 90), digits),
        "p99": round(percentile(data, 99), digits),
        "max": round(data[-1], digits),
        "mean": round(sum(data) / len(data), digits),
    }


def ratio(app: dict[str, Any], raw: dict[str, Any]) -> dict[str, float | None]:
    """app / raw for p50, p90, p99 and max (``None`` where either is missing or raw is 0)."""
    out: dict[str, float | None] = {}
    for key in ("p50", "p90", "p99", "max"):
        a, r = app.get(key), raw.get(key)
        out[key] = round(a / r, 2) if a is not None and r else None
    return out


#: A round's ``extra`` counts that add up over repeated rounds (other numbers keep the worst).
COUNTS = frozenset(
    {
        "offered",
        "accepted",
        "refused",
        "refused_told_busy",
        "unanswered",
        "single_stops_restarted",
        "restarts_not_streaming_at_burst",
        "restarts_refused",
        "ended_before_their_stop",
    }
)


@dataclass
class Samples:
    """Raw samples of one or more rounds at one N (latencies in ms, costs in deltas)."""

    n: int
    relay: list[float] = field(default_factory=list)
    stop: list[float] = field(default_factory=list)
    after: list[float] = field(default_factory=list)
    single_stop: list[float] = field(default_factory=list)
    """Stops sent one at a time amid the other replies still streaming (ms)."""
    single_after: list[float] = field(default_factory=list)
    """Deltas the fake wrote after each of those stops."""
    rate: list[float] = field(default_factory=list)
    relay_undelivered: int = 0
    """Deltas of the window that had not arrived ``grace`` seconds after it (counted in
    ``relay`` with their latency at that moment, a lower bound)."""
    stop_not_closed: int = 0
    single_not_closed: int = 0
    rounds: int = 0
    window_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    relay_at: list[float] = field(default_factory=list)
    """When each ``relay`` sample's delta was written (monotonic), for timelines; not saved."""

    def merge(self, other: Samples) -> None:
        self.relay += other.relay
        self.relay_at += other.relay_at
        self.stop += other.stop
        self.after += other.after
        self.single_stop += other.single_stop
        self.single_after += other.single_after
        self.single_not_closed += other.single_not_closed
        self.rate += other.rate
        self.relay_undelivered += other.relay_undelivered
        self.stop_not_closed += other.stop_not_closed
        self.rounds += other.rounds
        self.window_s += other.window_s
        for key, value in other.extra.items():
            if key in COUNTS and isinstance(self.extra.get(key), int):
                self.extra[key] += value
            elif isinstance(value, int | float) and isinstance(self.extra.get(key), int | float):
                self.extra[key] = max(self.extra[key], value)
            elif isinstance(value, dict) and isinstance(self.extra.get(key), dict):
                # counts add up; anything else (CPU shares) keeps the worst round's
                for k, v in value.items():
                    old = self.extra[key].get(k, 0)
                    self.extra[key][k] = old + v if key == "final_statuses" else max(old, v)
            else:
                self.extra[key] = value

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "rounds": self.rounds,
            "relay_ms": summary(self.relay),
            "relay_undelivered": self.relay_undelivered,
            "stop_ms": summary(self.stop),
            "stop_not_closed": self.stop_not_closed,
            "after_stop_deltas": summary(self.after, digits=0),
            "single_stop_ms": summary(self.single_stop),
            "single_stop_not_closed": self.single_not_closed,
            "single_stop_after_deltas": summary(self.single_after, digits=0),
            "delta_rate_per_reply": summary(self.rate, digits=1),
            "window_s": round(self.window_s, 3),
            **(
                {"relay_p99_per_second": per_second_p99(self.relay_at, self.relay)}
                if self.rounds == 1 and len(self.relay_at) == len(self.relay)
                else {}
            ),
            **self.extra,
        }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_second_p99(at: list[float], values: list[float]) -> list[float]:
    """The p99 of ``values`` in each second (by ``at``) from the first: is it steady?"""
    if not at:
        return []
    start = min(at)
    buckets: dict[int, list[float]] = {}
    for t, v in zip(at, values, strict=True):
        buckets.setdefault(int(t - start), []).append(v)
    return [round(percentile(sorted(b), 99), 1) for _, b in sorted(buckets.items())]
