"""The app's streaming figures, each beside its raw-SDK floor, on two setups: stop latency (every
reply at once, and one reply at a time amid N), cost after stop, relay lag at the pages (at N
concurrent replies), capacity (one and two daphne processes), and an overload round (twice the
capacity offered to a process told to refuse beyond it).

    .venv/bin/python -m bench.streams [--quick] [--setups sqlite,postgres]  # as JSON
    .venv/bin/python -m bench.streams --profile N [--out F] # daphne under pyinstrument, one round

``bench/run.py`` calls ``measure(quick=...)``.

Setups (bench/streams_stack.py): ``sqlite`` is what `make run` gives (one daphne, a fresh SQLite
file, the in-memory channel layer, no Redis); ``postgres`` is PostgreSQL + Redis (two daphne
processes, for the two-process capacity). The full run measures both, SQLite first (PostgreSQL
when it and Redis answer on 127.0.0.1); ``--quick`` only ``sqlite``. The raw floor involves no
database: it is measured once per N, in the first setup's stack against the same fake, and shown
beside both setups.

One round at N: N WebSocket clients (one signed-in session, each on its own conversation) send
a message at once; the fake Anthropic server streams every reply a delta every ``interval``
seconds. Once every reply has shown two batches (and ``settle`` seconds more: past the start-up
burst), a window of ``window`` seconds opens: every delta the fake writes in it is followed to
the batch frame that carries it to its client (relay lag = frame arrival - delta written, both
CLOCK_MONOTONIC: the lag a page sees). After the window, once its deltas have all arrived (or
``grace`` seconds passed: the rest count as undelivered, with their latency at that moment, a
lower bound):

1. **One stop at a time** (at N = 100; 10 with ``--quick``): ``single_stops`` clients (20; 3
   with ``--quick``), spread over the N, send Stop one after the other amid the replies still
   streaming: stop latency = the fake seeing that upstream connection closed - that client's
   Stop leaving it; cost = deltas the fake wrote after it. Each stopped client waits for its
   reply's final frame and sends a new message at once (the reply is restarted, so N stays N
   and a turn's start is part of the load, as on a live server); the next stop follows ``gap``
   seconds later.
2. **The burst**: every client sends Stop, one after the other as fast as one process can (the
   restarted replies too, once they stream): the same two figures.

The floor (bench/raw_sdk.py) does the same with the raw SDK in one asyncio process, no app:
cancelling one stream's task amid N (and starting a new one), then all of them.

**The overload round** (last in each setup): a daphne started with
``CHAT_MAX_REPLIES_PER_PROCESS=C`` (C = that setup's one-process capacity measured just before;
a fixed 10 in ``--quick``), alone on the database, is offered 2C turns at once. A turn is
accepted when its streaming reply arrives, refused when its socket is shown an error notice and
no reply. Every refused one must have been told "busy", and nothing saved for it (Message rows
of its conversation, read from the database); every accepted one must have its messages. The
accepted replies then go through the round above (relay window, single stops, burst), beside
the raw floor at the same number of streams. Every other round runs with that limit lifted
(bench/streams_stack.py ``LIMIT_ENV``), so that a round at N measures a process carrying N.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import html
import json
import math
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.raw_sdk import RoundError, raw_round, spread
from bench.streams_fake import by_marker, delta_ends, rate_in, records, tally_stop
from bench.streams_stack import Stack, postgres_reachable, render_profile, stack
from bench.streams_stats import Samples, cpu_seconds, ratio
from chat.testing.live import DaphneProcess
from chat.testing.live_client import BATCH, NOTICE, TURN, Tab

#: The fake's pace: a delta every 20 ms is 50 deltas a second per reply.
INTERVAL = 0.02
#: Deltas per reply: far more than a round needs (a round stops every reply); 2 minutes.
DELTAS = 6000
#: Capacity: the relay p99 a process must stay under, and the share of the nominal delta
#: rate the fake must have delivered for the point to count (else the load never arrived).
CAPACITY_P99_MS = 100.0
CAPACITY_MIN_RATE_SHARE = 0.9
#: The overload round's target (issue 15): the accepted replies keep their stop latency.
OVERLOAD_STOP_P99_MS = 60.0
#: What a refused turn's notice must say (its text: "This server is busy: try again in a moment.
#: Your message was not sent.").
BUSY = "busy"
SETTINGS_FILE = Path(__file__).resolve().parents[1] / "chatsite" / "settings.py"


@dataclass(frozen=True)
class Target:
    n: int | None
    """The N the target is set at (None: every N)."""
    stat: str
    limit: float
    text: str


#: Per figure, the targets (issue 6 and issue 15), on every setup.
TARGETS: dict[str, list[Target]] = {
    "stop_latency_ms": [Target(100, "p99", 10.0, "p99 ≤ 10 ms at N=100")],
    "single_stop_ms": [Target(100, "p99", OVERLOAD_STOP_P99_MS, "p99 ≤ 60 ms at N=100")],
    "after_stop_deltas": [Target(None, "max", 1.0, "≤ 1 delta after stop")],
    "single_stop_after_deltas": [Target(100, "max", 1.0, "≤ 1 delta after, N=100")],
    "relay_latency_ms": [
        Target(100, "p90", 300.0, "p90 ≤ 300 ms at N=100"),
        Target(500, "p99", 50.0, "p99 ≤ 50 ms at N=500"),
    ],
}
#: Where each figure comes from in a round's samples.
FIGURE_KEYS = {
    "stop_latency_ms": "stop_ms",
    "single_stop_ms": "single_stop_ms",
    "after_stop_deltas": "after_stop_deltas",
    "single_stop_after_deltas": "single_stop_after_deltas",
    "relay_latency_ms": "relay_ms",
}
SINGLE_FIGURES = ("single_stop_ms", "single_stop_after_deltas")


@dataclass
class Mode:
    ns: list[int]
    window: float
    capacity_ladder: list[int]
    capacity_window: float
    refine: bool
    """Bisect between the last passing and the first failing capacity point."""
    min_stop_samples: int
    """Rounds at a small N are repeated until they give at least this many stops..."""
    repeat_window: float
    """...each with this (shorter) window."""
    settle: float
    """Seconds between every reply streaming and the window opening (start-up burst over)."""
    single_stops: int
    """Stops sent one at a time amid N, per round at an N of ``single_ns`` (and in the
    overload round)."""
    single_ns: list[int]
    """The N at which single stops are measured (amid 1, a stop is the burst; at 500 on this
    machine the process is saturated, the raw floor too, and every latency is queueing: a
    stop waits seconds there, so 20 of them one at a time would take minutes to say so)."""
    gap: float
    """Seconds between a stopped reply's restart and the next single stop."""
    overload_capacity: int | None
    """The overload round's capacity: fixed, or None for the setup's measured one."""
    setups: tuple[str, ...]


QUICK = Mode(
    ns=[1, 10],
    window=0.6,
    capacity_ladder=[10, 20],
    capacity_window=0.5,
    refine=False,
    min_stop_samples=3,
    repeat_window=0.3,
    settle=0.2,
    single_stops=3,
    single_ns=[10],
    gap=0.1,
    overload_capacity=10,
    setups=("sqlite",),
)
FULL = Mode(
    ns=[1, 100, 500],
    window=3.0,
    capacity_ladder=[50, 100, 200, 300, 500, 750, 1000],
    capacity_window=3.0,
    refine=True,
    min_stop_samples=30,
    repeat_window=1.0,
    settle=2.0,
    single_stops=20,
    single_ns=[100],
    gap=0.3,
    overload_capacity=None,
    setups=("sqlite", "postgres"),
)


# --------------------------------------------------------------------------------------------
# One client
# --------------------------------------------------------------------------------------------


@dataclass
class _Client:
    tab: Tab
    marker: str
    conversation_id: str = ""
    parsed: int = 0
    message_id: int = 0
    arrivals: list[float] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    """Per batch frame of the reply: arrival (monotonic) and cumulative characters received."""
    received: int = 0
    final: str = ""
    final_text: str = ""
    notices: list[str] = field(default_factory=list)
    stop_at: float | None = None
    _final_re: re.Pattern[str] | None = None

    def update(self) -> None:
        """Read the frames that arrived since the last call (incrementally: cheap to poll)."""
        frames = self.tab.frames
        while self.parsed < len(frames):
            frame = frames[self.parsed]
            self.parsed += 1
            text = frame.text
            if not self.message_id:
                match = TURN.search(text)
                if match:
                    self.message_id = int(match.group(1))
                    self._final_re = re.compile(
                        rf'<article id="msg-{self.message_id}" class="msg msg--assistant '
                        r'msg--(complete|interrupted|error)" hx-swap-oob'
                    )
            if "notice--error" in text:
                self.notices += [html.unescape(t).strip() for _, t in NOTICE.findall(text)]
            if not self.message_id:
                continue
            for mid, chunk in BATCH.findall(text):
                if int(mid) == self.message_id:
                    self.received += len(html.unescape(chunk))
                    self.arrivals.append(frame.at)
                    self.ends.append(self.received)
            if self._final_re is not None and (done := self._final_re.search(text)):
                self.final = done.group(1)
                self.final_text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())

    @property
    def refused(self) -> bool:
        """The turn was refused: an error notice, and no reply started."""
        return not self.message_id and bool(self.notices)

    @property
    def streaming(self) -> bool:
        return len(self.ends) >= 2 and not self.final

    @property
    def settled(self) -> bool:
        """Streaming, ended, or refused: nothing more to wait for at the start."""
        return len(self.ends) >= 2 or bool(self.final) or self.refused

    def told_busy(self) -> bool:
        return any(BUSY in text.lower() for text in self.notices)

    def again(self, marker: str) -> _Client:
        """The same tab's next turn (its frames read from now on)."""
        self.update()
        return _Client(
            tab=self.tab, marker=marker, conversation_id=self.conversation_id, parsed=self.parsed
        )

    def arrival_of(self, offset: int) -> float | None:
        """When the frame that completed the text up to ``offset`` characters arrived."""
        i = bisect.bisect_left(self.ends, offset)
        return self.arrivals[i] if i < len(self.ends) else None


async def _until(check: Callable[[], bool], within: float, what: str, poll: float = 0.02) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise RoundError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(poll)


def _ended(client: _Client) -> Callable[[], bool]:
    def check() -> bool:
        client.update()
        return bool(client.final)

    return check


# --------------------------------------------------------------------------------------------
# One round through the app
# --------------------------------------------------------------------------------------------


async def _open_tabs(
    st: Stack, servers: list[DaphneProcess], conversation_ids: list[str]
) -> list[Tab]:
    tabs: list[Tab] = []
    step = 100
    try:
        for start in range(0, len(conversation_ids), step):
            chunk = conversation_ids[start : start + step]
            opened = await asyncio.gather(
                *(
                    Tab.open(servers[(start + i) % len(servers)].base_url, cid, st.session)
                    for i, cid in enumerate(chunk)
                ),
                return_exceptions=True,
            )
            errors = [o for o in opened if isinstance(o, BaseException)]
            tabs += [o for o in opened if isinstance(o, Tab)]
            if errors:
                raise RoundError(f"{len(errors)} sockets failed to open, e.g. {errors[0]!r}")
    except BaseException:
        await _close_tabs(tabs)
        raise
    return tabs


async def _close_tabs(tabs: list[Tab]) -> None:
    for start in range(0, len(tabs), 200):
        await asyncio.gather(
            *(t.close() for t in tabs[start : start + 200]), return_exceptions=True
        )


async def app_round(
    st: Stack,
    n: int,
    *,
    servers: list[DaphneProcess],
    window: float,
    settle: float = 1.0,
    grace: float = 20.0,
    single_stops: int = 0,
    gap: float = 0.3,
    groups: dict[str, list[str]] | None = None,
) -> Samples:
    """One round of N concurrent turns through the app (see the module docstring). A turn the
    app refuses (an error notice, no reply) is counted, not measured; ``groups``, if given,
    receives the conversation ids of the ``accepted`` and ``refused`` turns."""
    await asyncio.to_thread(st.control.reset)
    conversation_ids = await asyncio.to_thread(st.conversations, n)
    tag = secrets.token_hex(3)
    started = time.monotonic()
    tabs = await _open_tabs(st, servers, conversation_ids)
    clients = [
        _Client(tab=t, marker=f"bench {n} {i} {tag}", conversation_id=cid)
        for i, (t, cid) in enumerate(zip(tabs, conversation_ids, strict=True))
    ]
    open_s = time.monotonic() - started
    singles: list[_Client] = []
    """The clients stopped one at a time (each replaced in ``current`` by its next turn)."""
    restarted: list[_Client] = []
    burst: list[_Client] = []
    try:
        await asyncio.sleep(0.1)
        for client in clients:
            await client.tab.send("send", client.marker)
        sent_all = time.monotonic()

        def all_streaming() -> bool:
            for c in clients:
                c.update()
                if c.tab.closed.is_set():
                    raise RoundError("a socket closed mid-round")
            refused = [c for c in clients if c.refused]
            taken = n - len(refused)
            ended = [c for c in clients if c.final]
            if taken - len(ended) < max(1, taken // 10):
                if not taken:
                    raise RoundError(f"all {n} turns refused, e.g.: {refused[0].notices[-1]}")
                raise RoundError(
                    f"{len(ended)} of {taken} replies ended ({ended[0].final}) before streaming, "
                    f"e.g.: {ended[0].final_text[-300:]}"
                )
            return all(c.settled for c in clients)

        not_started: list[_Client] = []
        try:
            await _until(all_streaming, 30 + n * 0.2, f"all {n} replies streaming", poll=0.05)
        except RoundError as exc:
            # Go on with the replies that stream, if enough do; the rest are counted.
            not_started = [c for c in clients if not c.settled]
            streaming = [c for c in clients if c.streaming]
            taken = n - sum(1 for c in clients if c.refused)
            if len(streaming) < max(1, taken // 10):
                told = [c.notices[-1] for c in not_started if c.notices]
                raise RoundError(
                    f"{exc} ({len(not_started)} not streaming"
                    + (f"; the last notice one was shown: {told[0]}" if told else "")
                    + ")"
                ) from None
        ramp_s = time.monotonic() - sent_all
        await asyncio.sleep(settle)  # past the start-up burst: the window sees a steady state
        pids = {
            "daphne": [s.process.pid for s in servers],
            "fake": [st.fake.process.pid],
        }
        cpu_before = {k: sum(cpu_seconds(p) for p in v) for k, v in pids.items()}
        client_cpu = time.process_time()
        t_all = time.monotonic()
        await asyncio.sleep(window)
        t_end = time.monotonic()
        cpu_used = {k: sum(cpu_seconds(p) for p in v) - cpu_before[k] for k, v in pids.items()}
        cpu_used["client (this process)"] = time.process_time() - client_cpu

        for c in clients:
            c.update()
        # A reply that ended on its own before the stop (an error, or closed as an orphan) is
        # left out of the figures, and counted with the reason it gave.
        early = [c for c in clients if c.final]
        live = [c for c in clients if not c.final and not c.refused and c not in not_started]
        seen = by_marker(
            await records(
                st.control,
                min_count=sum(1 for c in clients if c.message_id),
                finished=False,
                wait=10,
            ),
            [c.marker for c in live],
        )
        targets: dict[str, int] = {}
        for c in live:
            record = seen.get(c.marker)
            if record is None:
                raise RoundError(f"the fake has no request for {c.marker!r}")
            ends = delta_ends(record)
            k = sum(1 for t in record.delta_times if t <= t_end)
            targets[c.marker] = ends[k - 1] if k else 0

        def delivered() -> bool:
            for c in live:
                c.update()
            return all(c.received >= targets[c.marker] for c in live)

        with contextlib.suppress(RoundError):
            await _until(delivered, grace, "delivery of the window's deltas")
        gave_up = time.monotonic()

        # One stop at a time amid the others, each stopped reply restarted at once.
        current = list(live)
        for j, i in enumerate(spread(len(current), single_stops)):
            c = current[i]
            c.stop_at = await c.tab.send("stop")
            singles.append(c)
            with contextlib.suppress(RoundError):
                await _until(_ended(c), 15, "the stopped reply's final frame", poll=0.005)
            fresh = c.again(f"{c.marker} again {j}")
            await fresh.tab.send("send", fresh.marker)
            current[i] = fresh
            restarted.append(fresh)
            await asyncio.sleep(gap)
        if restarted:

            def restarts_streaming() -> bool:
                for c in restarted:
                    c.update()
                return all(c.settled for c in restarted)

            with contextlib.suppress(RoundError):
                await _until(restarts_streaming, 10 + n * 0.02, "the restarted replies streaming")

        # The burst: every reply stopped, one Stop after the other.
        for c in current + not_started:
            c.update()
        burst = [c for c in current if c.streaming]
        for c in current + not_started:
            if (c in current or c.message_id) and not c.final and not c.refused:
                c.stop_at = await c.tab.send("stop")

        everyone = clients + restarted

        def all_final() -> bool:
            for c in everyone:
                c.update()
            return all(c.final for c in everyone if c.message_id)

        finals_error = ""
        try:
            await _until(all_final, 30 + n * 0.05, "every reply's final frame", poll=0.05)
        except RoundError as exc:
            finals_error = str(exc)
        final = by_marker(
            await records(
                st.control,
                min_count=sum(1 for c in everyone if c.message_id),
                finished=True,
                wait=30 + n * 0.05,
            ),
            [c.marker for c in everyone],
        )
    finally:
        await _close_tabs(tabs)

    refused = [c for c in clients if c.refused]
    accepted = [c for c in clients if c.message_id]
    if groups is not None:
        groups["accepted"] = [c.conversation_id for c in accepted]
        groups["refused"] = [c.conversation_id for c in refused]
        groups["restarts_refused"] = [c.conversation_id for c in restarted if c.refused]
    notices = sorted({text for c in everyone for text in c.notices})
    statuses: dict[str, int] = {}
    for c in everyone:
        if c.message_id:
            statuses[c.final or "none"] = statuses.get(c.final or "none", 0) + 1
    restarts_refused = sum(1 for c in restarted if c.refused)
    out = Samples(
        n=n,
        rounds=1,
        window_s=t_end - t_all,
        extra={
            "processes": len(servers),
            "open_sockets_s": round(open_s, 2),
            "ramp_s": round(ramp_s, 2),
            "offered": n,
            "accepted": len(accepted),
            "refused": len(refused),
            "refused_told_busy": sum(1 for c in refused if c.told_busy()),
            "unanswered": n - len(accepted) - len(refused),
            "final_statuses": statuses,
            "cpu_cores_used": {k: round(v / (t_end - t_all), 2) for k, v in cpu_used.items()},
            **({"error_notices": notices[:5]} if notices else {}),
            **({"finals_error": finals_error} if finals_error else {}),
            **(
                {
                    "single_stops_restarted": len(restarted),
                    "restarts_not_streaming_at_burst": sum(
                        1 for c in restarted if not c.streaming and c not in burst
                    ),
                }
                if restarted
                else {}
            ),
            **({"restarts_refused": restarts_refused} if restarts_refused else {}),
            **(
                {
                    "ended_before_stop": len(early),
                    "ended_before_stop_example": early[0].final_text[-300:],
                }
                if early
                else {}
            ),
            **(
                {"not_streaming_in_time": len(not_started), "start_timeout_s": 30 + n * 0.2}
                if not_started
                else {}
            ),
        },
    )

    def record_of(c: _Client) -> Any:
        record = final.get(c.marker)
        if record is None:
            raise RoundError(f"the fake has no request for {c.marker!r}")
        return record

    for c in live:
        record = record_of(c)
        ends = delta_ends(record)
        for k, written in enumerate(record.delta_times):
            if t_all <= written <= t_end:
                arrived = c.arrival_of(ends[k])
                if arrived is None or arrived > gave_up:
                    out.relay_undelivered += 1
                    arrived = gave_up
                out.relay.append((arrived - written) * 1000)
                out.relay_at.append(written)
        rate = rate_in(record, t_all, t_end)
        if rate is not None:
            out.rate.append(rate)
    ended_first = 0
    for c in burst:
        assert c.stop_at is not None
        outcome = tally_stop(record_of(c), c.stop_at, latencies=out.stop, after=out.after)
        ended_first += outcome == "ended"
        out.stop_not_closed += outcome == "not_closed"
    for c in singles:
        assert c.stop_at is not None
        outcome = tally_stop(
            record_of(c), c.stop_at, latencies=out.single_stop, after=out.single_after
        )
        ended_first += outcome == "ended"
        out.single_not_closed += outcome == "not_closed"
    if ended_first:
        out.extra["ended_before_their_stop"] = ended_first
    if out.relay:  # what one relayed delta costs the server processes, all work included
        out.extra["daphne_cpu_us_per_delta"] = round(cpu_used["daphne"] / len(out.relay) * 1e6)
    return out


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


_T0 = time.monotonic()


def _say(text: str) -> None:
    print(f"[streams {time.monotonic() - _T0:6.1f} s] {text}", file=sys.stderr, flush=True)


def _met(figure: str, n: int, app: dict[str, Any]) -> bool | None:
    """Whether the figure meets every target set at this N (None: no target at this N)."""
    verdicts: list[bool] = []
    for target in TARGETS[figure]:
        if target.n is not None and target.n != n:
            continue
        value = app.get(target.stat)
        if value is None:
            return None
        verdicts.append(bool(value <= target.limit))
    return all(verdicts) if verdicts else None


def _target_text(figure: str) -> str:
    return "; ".join(t.text for t in TARGETS[figure])


def _figure_rows(
    rounds: list[dict[str, Any]], raw_rounds: dict[int, dict[str, Any]], single_ns: list[int]
) -> dict[str, list[dict[str, Any]]]:
    """Per figure, one row per (setup, N): the app's statistics beside the raw floor's."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in TARGETS}
    for rnd in rounds:
        n = rnd["n"]
        app_r = rnd.get("app", {})
        raw_r = raw_rounds.get(n, {"error": "not measured"})
        for figure, key in FIGURE_KEYS.items():
            if figure in SINGLE_FIGURES and n not in single_ns:
                continue
            row: dict[str, Any] = {"setup": rnd["setup"], "n": n, "target": _target_text(figure)}
            if "error" in app_r:
                row["app_error"] = app_r["error"]
            else:
                row["app"] = app_r[key]
            if "error" in raw_r:
                row["raw_error"] = raw_r["error"]
            else:
                row["raw"] = raw_r[key]
            if "app" in row and "raw" in row:
                row["ratio"] = ratio(row["app"], row["raw"])
            row["met"] = _met(figure, n, row["app"]) if "app" in row else None
            out[figure].append(row)
    return out


def _rate_ok(result: dict[str, Any], interval: float) -> bool:
    rate = result["delta_rate_per_reply"].get("p50")
    return rate is not None and rate >= CAPACITY_MIN_RATE_SHARE / interval


async def _capacity(
    st: Stack, servers: list[DaphneProcess], mode: Mode, interval: float
) -> dict[str, Any]:
    points: list[dict[str, Any]] = []

    async def point(n: int) -> bool:
        _say(f"capacity, {st.setup}, {len(servers)} process(es): N={n}")
        try:
            result = (
                await app_round(
                    st, n, servers=servers, window=mode.capacity_window, settle=mode.settle
                )
            ).to_dict()
        except Exception as exc:
            points.append({"n": n, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            _say(f"  N={n}: failed: {exc}")
            return False
        p99 = result["relay_ms"]["p99"]
        rate_ok = _rate_ok(result, interval)
        undelivered = result["relay_undelivered"]
        ok = p99 is not None and p99 < CAPACITY_P99_MS and rate_ok and not undelivered
        points.append(
            {
                "n": n,
                "ok": ok,
                "relay_ms": result["relay_ms"],
                "relay_undelivered": result["relay_undelivered"],
                "delta_rate_per_reply": result["delta_rate_per_reply"],
                **({} if rate_ok else {"note": "the fake delivered < 90% of 50 deltas/s"}),
                **({"refused": result["refused"]} if result["refused"] else {}),
            }
        )
        _say(f"  N={n}: relay p99 {p99} ms, rate p50 {result['delta_rate_per_reply']['p50']}/s")
        return ok

    passed: int | None = None
    failed: int | None = None
    for n in mode.capacity_ladder:
        if await point(n):
            passed = n
        else:
            failed = n
            break
    if passed is None and failed is not None and mode.refine:
        n = failed // 2
        while n >= 5 and passed is None:
            if await point(n):
                passed = n
            else:
                failed = n
                n //= 2
    if mode.refine and passed is not None and failed is not None:
        for _ in range(2):
            mid = (passed + failed) // 2
            if failed - passed <= max(10, passed // 10) or mid in (passed, failed):
                break
            if await point(mid):
                passed = mid
            else:
                failed = mid
    if passed is None:
        summary_text = f"< {failed}" if failed is not None else "not measured"
    elif failed is None:
        summary_text = f"≥ {passed} (the largest N tried)"
    else:
        summary_text = f"{passed} (passes), {failed} fails"
    return {
        "largest_n": passed,
        "first_failing_n": failed,
        "summary": summary_text,
        "criterion": (
            f"relay p99 < {CAPACITY_P99_MS:.0f} ms at {1 / interval:.0f} deltas/s per reply"
        ),
        "points": sorted(points, key=lambda p: p["n"]),
    }


# --------------------------------------------------------------------------------------------
# The overload round
# --------------------------------------------------------------------------------------------


async def overload_round(
    st: Stack,
    server: DaphneProcess,
    capacity: int,
    mode: Mode,
    floor: Callable[[int], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """2 x ``capacity`` turns offered at once to ``server`` (started with
    ``CHAT_MAX_REPLIES_PER_PROCESS=capacity``): who was refused and told so, that nothing was
    saved for them, and the accepted replies' relay lag and stop latency beside the raw floor
    at as many streams (``floor(n)``)."""
    offered = 2 * capacity
    _say(f"overload, {st.setup}: {offered} turns offered at capacity {capacity}")
    groups: dict[str, list[str]] = {}
    samples = await app_round(
        st,
        offered,
        servers=[server],
        window=mode.window,
        settle=mode.settle,
        single_stops=mode.single_stops,
        gap=mode.gap,
        groups=groups,
    )
    result = samples.to_dict()
    accepted_ids, refused_ids = groups["accepted"], groups["refused"]
    again_refused = groups["restarts_refused"]
    counts = await asyncio.to_thread(
        st.message_counts, list(dict.fromkeys(accepted_ids + refused_ids + again_refused))
    )
    saved_for_refused: dict[str, int] = {}
    saved_for_accepted: dict[str, int] = {}
    for ids, saved in ((refused_ids, saved_for_refused), (accepted_ids, saved_for_accepted)):
        for cid in ids:
            for role, count in counts[cid].items():
                saved[role] = saved.get(role, 0) + count
    # A turn refused after a single stop: its conversation keeps the first turn's two messages.
    saved_for_refused_restarts = sum(max(0, sum(counts[cid].values()) - 2) for cid in again_refused)
    missing_user = sum(1 for cid in accepted_ids if not counts[cid].get("user"))
    missing_reply = sum(1 for cid in accepted_ids if not counts[cid].get("assistant"))
    accepted, refused = result["accepted"], result["refused"]
    told = result["refused_told_busy"]
    n_floor = max(1, accepted)
    _say(f"  accepted {accepted}, refused {refused} ({told} told busy); raw floor at N={n_floor}")
    raw = await floor(n_floor)
    notices = [t for t in result.get("error_notices", []) if BUSY in t.lower()]
    supported = refused > 0
    stop_target = f"single stop p99 ≤ {OVERLOAD_STOP_P99_MS:.0f} ms"
    rows_for_refused = sum(saved_for_refused.values()) + saved_for_refused_restarts
    checks = {
        "accepted ≤ capacity": accepted <= capacity,
        "every refused turn told busy": told == refused,
        "nothing saved for refused turns": rows_for_refused == 0,
        "every accepted turn saved": missing_user == 0 and missing_reply == 0,
        stop_target: (
            result["single_stop_ms"]["p99"] is not None
            and result["single_stop_ms"]["p99"] <= OVERLOAD_STOP_P99_MS
        ),
    }
    setting = f"CHAT_MAX_REPLIES_PER_PROCESS={capacity}"
    restarts = result.get("single_stops_restarted", 0)
    later = (
        f"; of {restarts} turns sent after single stops, {len(again_refused)} refused"
        if restarts
        else ""
    )
    turns = (
        f"{offered} offered at once at {setting}: {accepted} accepted, {refused} refused "
        f"({told} told busy), {result['unanswered']} unanswered{later}; rows saved for "
        f"refused turns: {rows_for_refused}; accepted turns without their messages: "
        f"{max(missing_user, missing_reply)}"
    )
    if not supported:
        known = "CHAT_MAX_REPLIES_PER_PROCESS" in SETTINGS_FILE.read_text()
        turns = (
            f"no refusals: is CHAT_MAX_REPLIES_PER_PROCESS supported? All {accepted} of "
            f"{offered} turns sent at once were accepted at {setting}"
            + (
                f" (the setting is in chatsite/settings.py{later}: not enforced against turns "
                "that arrive together?)"
                if known
                else " (it is not in chatsite/settings.py)"
            )
        )
    return {
        "capacity": capacity,
        "offered": offered,
        "accepted": accepted,
        "refused": refused,
        "refused_told_busy": told,
        "unanswered": result["unanswered"],
        "refusals_supported": supported,
        "busy_notice": notices[0] if notices else None,
        "rows_saved_for_refused": saved_for_refused,
        "rows_saved_for_accepted": saved_for_accepted,
        "restarts_refused": len(again_refused),
        "rows_saved_for_refused_restarts": saved_for_refused_restarts,
        "accepted_without_user_message": missing_user,
        "accepted_without_reply_message": missing_reply,
        "summary": turns,
        "checks": checks,
        "stop_target": stop_target,
        "met": supported and all(checks.values()),
        "target": (
            f"accepted replies' single stop p99 ≤ {OVERLOAD_STOP_P99_MS:.0f} ms; every refused "
            "turn told busy, nothing saved for it; nothing lost"
        ),
        "app": result,
        "raw_n": n_floor,
        "raw": raw,
    }


# --------------------------------------------------------------------------------------------
# One setup, then both
# --------------------------------------------------------------------------------------------


async def _raw(
    st: Stack, n: int, window: float, settle: float, mode: Mode, single_stops: int
) -> Samples:
    return await raw_round(
        st.fake.base_url,
        st.control,
        n,
        window=window,
        settle=settle,
        control_pid=st.fake.process.pid,
        single_stops=single_stops,
        gap=mode.gap,
    )


async def _measure_setup(
    st: Stack, mode: Mode, interval: float, raw_rounds: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """Every round of one setup; the raw floor at each N not measured yet (into
    ``raw_rounds``)."""
    _say(f"{st.setup}: warm-up round (not reported)")
    with contextlib.suppress(Exception):
        await app_round(st, 2, servers=st.servers, window=0.3, settle=0.1)
    if not raw_rounds:
        with contextlib.suppress(Exception):
            await raw_round(st.fake.base_url, st.control, 2, window=0.3, settle=0.1)
    rounds: list[dict[str, Any]] = []
    for n in mode.ns:
        entry: dict[str, Any] = {"setup": st.setup, "n": n}
        # A few concurrent replies give a few stop samples: repeat the round for a distribution.
        repeats = max(1, math.ceil(mode.min_stop_samples / n))
        window = mode.window if repeats == 1 else mode.repeat_window
        settle = mode.settle if repeats == 1 else min(mode.settle, 0.2)
        singles = mode.single_stops if n in mode.single_ns else 0
        sides = ["app"] if n in raw_rounds else ["app", "raw"]
        for side in sides:
            _say(
                f"{st.setup}: {side} round, N={n}"
                + (f", {repeats} times" if repeats > 1 else "")
                + (f", {singles} single stops" if singles else "")
            )
            try:
                samples = Samples(n=n)
                for _ in range(repeats):
                    if side == "app":
                        samples.merge(
                            await app_round(
                                st,
                                n,
                                servers=st.servers[:1],
                                window=window,
                                settle=settle,
                                single_stops=singles,
                                gap=mode.gap,
                            )
                        )
                    else:
                        samples.merge(await _raw(st, n, window, settle, mode, singles))
                entry[side] = samples.to_dict()
                _say(
                    f"  relay p90 {entry[side]['relay_ms']['p90']} ms, p99 "
                    f"{entry[side]['relay_ms']['p99']} ms; stop p99 "
                    f"{entry[side]['stop_ms']['p99']} ms"
                    + (
                        f", single stop p99 {entry[side]['single_stop_ms']['p99']} ms"
                        if singles
                        else ""
                    )
                )
            except Exception as exc:
                entry[side] = {"error": f"{type(exc).__name__}: {exc}"}
                _say(f"  failed: {exc}")
        if "raw" in entry:
            raw_rounds[n] = entry["raw"]
        rounds.append(entry)

    capacity: dict[str, Any] = {}
    if mode.capacity_ladder:
        capacity["one_process"] = await _capacity(st, st.servers[:1], mode, interval)
        if st.multi_process:
            capacity["two_processes"] = await _capacity(st, st.servers, mode, interval)

    async def floor(n: int) -> dict[str, Any]:
        """The raw floor at N streams with single stops (measured here unless it was)."""
        known = raw_rounds.get(n)
        if known is not None and "error" not in known and known["single_stop_ms"]["count"]:
            return known
        _say(f"raw round, N={n} (the overload's floor)")
        try:
            result = (
                await _raw(st, n, mode.window, mode.settle, mode, mode.single_stops)
            ).to_dict()
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        raw_rounds.setdefault(n, result)
        return result

    overload: dict[str, Any]
    cap = mode.overload_capacity
    source = "fixed (--quick)"
    if cap is None:
        cap = capacity.get("one_process", {}).get("largest_n")
        source = "this setup's one-process capacity, measured just before"
    if not cap:
        overload = {"skipped": "not measured: no capacity figure to overload"}
    else:
        st.stop_servers()  # the overload's daphne alone on the database
        try:
            server = await asyncio.to_thread(
                st.start_server,
                "overload",
                admission=True,
                CHAT_MAX_REPLIES_PER_PROCESS=str(cap),
            )
            overload = await overload_round(st, server, cap, mode, floor)
            overload["capacity_source"] = source
            _say(f"  {overload['summary']}")
        except Exception as exc:
            overload = {
                "capacity": cap,
                "capacity_source": source,
                "error": f"{type(exc).__name__}: {exc}",
            }
            _say(f"  overload failed: {exc}")
    return {"rounds": rounds, "capacity": capacity, "overload": overload}


def measure(
    *,
    quick: bool,
    interval: float = INTERVAL,
    ns: list[int] | None = None,
    profile_to: Path | None = None,
    capacity: bool = True,
    setups: list[str] | None = None,
) -> dict[str, Any]:
    """Every streaming figure with its raw floor, per setup (starts and stops everything it
    needs, one setup after the other)."""
    mode = QUICK if quick else FULL
    if ns is not None:
        mode = dataclasses.replace(mode, ns=ns)
    if not capacity:
        mode = dataclasses.replace(mode, capacity_ladder=[])
    if setups:
        mode = dataclasses.replace(mode, setups=tuple(setups))
    started = time.monotonic()
    raw_rounds: dict[int, dict[str, Any]] = {}
    per_setup: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for setup in mode.setups:
        if setup == "postgres" and not postgres_reachable():
            per_setup[setup] = {
                "skipped": "PostgreSQL on 127.0.0.1:5432 and/or Redis on 127.0.0.1:6379 not "
                "reachable (`make services` starts both)"
            }
            notes.append(f"postgres setup not measured: {per_setup[setup]['skipped']}")
            continue
        begun = time.monotonic()
        try:
            with stack(interval=interval, deltas=DELTAS, profile_to=profile_to, setup=setup) as st:
                setup_s = time.monotonic() - begun
                _say(f"{setup}: up in {setup_s:.1f} s: {st.backend}")
                result = asyncio.run(_measure_setup(st, mode, interval, raw_rounds))
                backend = st.backend
                notes += [note for note in st.notes if note not in notes]
        except Exception as exc:
            per_setup[setup] = {"error": f"{type(exc).__name__}: {exc}"}
            _say(f"{setup}: failed: {exc}")
            continue
        per_setup[setup] = {
            "backend": backend,
            "setup_s": round(setup_s, 1),
            "total_s": round(time.monotonic() - begun, 1),
            **result,
        }
    if mode.single_stops < 100:
        notes.append(
            f"single stops: {mode.single_stops} per round (each stopped reply restarted at once, "
            f"so N stays N): their p99 is their maximum (nearest rank)"
        )
    if "sqlite" in per_setup and "postgres" in per_setup:
        notes.append(
            "the raw floor involves no database: measured once per N (in the first setup's "
            "run) and shown beside both setups"
        )
    rounds = [r for s in per_setup.values() for r in s.get("rounds", [])]
    overload_source = (
        f"a fixed {mode.overload_capacity} (--quick)"
        if mode.overload_capacity is not None
        else "the setup's measured one-process capacity"
    )
    return {
        "setups": per_setup,
        "backend": "; ".join(
            f"{name}: {s.get('backend') or s.get('error') or s.get('skipped')}"
            for name, s in per_setup.items()
        ),
        "notes": notes,
        "config": {
            "fake_interval_s": interval,
            "nominal_deltas_per_second": round(1 / interval, 1),
            "app_batch_interval_s": 0.03,
            "window_s": mode.window,
            "capacity_window_s": mode.capacity_window,
            "ns": mode.ns,
            "capacity_ladder": mode.capacity_ladder,
            "setups": list(mode.setups),
            "single_stops_per_round": mode.single_stops,
            "single_stop_gap_s": mode.gap,
            "single_stop_ns": mode.single_ns,
            "overload_capacity": overload_source,
        },
        "targets": {k: _target_text(k) for k in TARGETS}
        | {"overload": f"single stop p99 ≤ {OVERLOAD_STOP_P99_MS:.0f} ms"},
        "total_s": round(time.monotonic() - started, 1),
        "rounds": rounds,
        "raw_rounds": [{"n": n, **raw} for n, raw in sorted(raw_rounds.items())],
        "figures": _figure_rows(rounds, raw_rounds, mode.single_ns),
        "capacity": {k: s["capacity"] for k, s in per_setup.items() if s.get("capacity")},
        "overload": {k: s["overload"] for k, s in per_setup.items() if "overload" in s},
    }


def timeline(samples: Samples, bucket: float = 0.1) -> list[tuple[float, float, int]]:
    """Relay latency over the window: (seconds from its start, max ms, deltas) per bucket."""
    if not samples.relay_at:
        return []
    start = min(samples.relay_at)
    buckets: dict[int, list[float]] = {}
    for at, latency in zip(samples.relay_at, samples.relay, strict=True):
        buckets.setdefault(int((at - start) / bucket), []).append(latency)
    return [(round(k * bucket, 2), round(max(v), 1), len(v)) for k, v in sorted(buckets.items())]


def profile(
    n: int, out: Path, *, window: float, interval: float, setup: str = "auto"
) -> dict[str, Any]:
    """One round at N against one daphne run under pyinstrument; the report goes to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    session = out.with_suffix(".pyisession")
    with stack(
        interval=interval, deltas=DELTAS, processes=1, profile_to=session, setup=setup
    ) as st:

        async def rounds() -> Samples:
            with contextlib.suppress(Exception):
                await app_round(st, 2, servers=st.servers, window=0.3)  # warm-up
            return await app_round(st, n, servers=st.servers, window=window)

        samples = asyncio.run(rounds())
    render_profile(session, out)
    for at, worst, count in timeline(samples):
        _say(f"  t+{at:5.2f} s  relay max {worst:8.1f} ms  ({count} deltas)")
    return {"profile": str(out), **samples.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.streams")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ns", default="", help="comma-separated N values (default: the mode's)")
    parser.add_argument("--setups", default="", help="comma-separated: sqlite, postgres")
    parser.add_argument("--interval", type=float, default=INTERVAL)
    parser.add_argument("--no-capacity", action="store_true")
    parser.add_argument("--profile", type=int, default=0, help="profile daphne at this N")
    parser.add_argument("--window", type=float, default=5.0, help="with --profile")
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile.txt"))
    args = parser.parse_args()
    setups = [s for s in args.setups.split(",") if s]
    if args.profile:
        result = profile(
            args.profile,
            args.out,
            window=args.window,
            interval=args.interval,
            setup=setups[0] if setups else "auto",
        )
    else:
        ns = [int(x) for x in args.ns.split(",") if x] or None
        result = measure(
            quick=args.quick,
            interval=args.interval,
            ns=ns,
            capacity=not args.no_capacity,
            setups=setups or None,
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
