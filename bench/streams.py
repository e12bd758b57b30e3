"""The app's streaming figures, each beside its raw-SDK floor: stop latency, cost after stop,
relay latency (at N concurrent replies) and capacity (one and two daphne processes).

    .venv/bin/python -m bench.streams [--quick]            # these figures only, as JSON
    .venv/bin/python -m bench.streams --profile N [--out F] # daphne under pyinstrument, one round

``bench/run.py`` calls ``measure(quick=...)``.

One round at N: N WebSocket clients (one signed-in session, each on its own conversation) send
a message at once; the fake Anthropic server streams every reply a delta every ``interval``
seconds. Once every reply has shown two batches, a window of ``window`` seconds opens: every
delta the fake writes in it is followed to the batch frame that carries it to its client
(relay latency = frame arrival - delta written, both CLOCK_MONOTONIC). After the window, once
its deltas have all arrived (or ``grace`` seconds passed: the rest count as undelivered, with
their latency at that moment, a lower bound), every client sends Stop, one after the other as
fast as one process can: stop latency = the fake seeing that upstream connection closed - that
client's Stop leaving it; cost after stop = deltas the fake wrote after it. The floor
(bench/raw_sdk.py) does the same with the raw SDK in one asyncio process, with no app.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.raw_sdk import RoundError, raw_round
from bench.streams_fake import by_marker, delta_ends, rate_in, records
from bench.streams_stack import Stack, render_profile, stack
from bench.streams_stats import Samples, cpu_seconds, ratio
from chat.testing.live import DaphneProcess
from chat.testing.live_client import BATCH, NOTICE, TURN, Tab

#: The fake's pace: a delta every 20 ms is 50 deltas a second per reply.
INTERVAL = 0.02
#: Deltas per reply: far more than a round needs (a round stops every reply).
DELTAS = 3000
#: Capacity: the relay p99 a process must stay under, and the share of the nominal delta
#: rate the fake must have delivered for the point to count (else the load never arrived).
CAPACITY_P99_MS = 100.0
CAPACITY_MIN_RATE_SHARE = 0.9


@dataclass(frozen=True)
class Target:
    n: int | None
    """The N the target is set at (None: every N)."""
    stat: str
    limit: float
    text: str


TARGETS = {
    "stop_latency_ms": Target(100, "p99", 10.0, "p99 ≤ 10 ms at N=100"),
    "after_stop_deltas": Target(None, "max", 1.0, "≤ 1 delta after stop"),
    "relay_latency_ms": Target(500, "p99", 50.0, "p99 ≤ 50 ms at N=500 (batching included)"),
}


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


QUICK = Mode(
    ns=[1, 10],
    window=0.6,
    capacity_ladder=[10, 20],
    capacity_window=0.5,
    refine=False,
    min_stop_samples=3,
    repeat_window=0.3,
    settle=0.2,
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
)


# --------------------------------------------------------------------------------------------
# One client
# --------------------------------------------------------------------------------------------


@dataclass
class _Client:
    tab: Tab
    marker: str
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
) -> Samples:
    """One round of N concurrent replies through the app (see the module docstring)."""
    await asyncio.to_thread(st.control.reset)
    conversation_ids = await asyncio.to_thread(st.conversations, n)
    tag = secrets.token_hex(3)
    started = time.monotonic()
    tabs = await _open_tabs(st, servers, conversation_ids)
    clients = [_Client(tab=t, marker=f"bench {n} {i} {tag}") for i, t in enumerate(tabs)]
    open_s = time.monotonic() - started
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
            ended = [c for c in clients if c.final]
            if n - len(ended) < max(1, n // 10):
                raise RoundError(
                    f"{len(ended)} of {n} replies ended ({ended[0].final}) before streaming, "
                    f"e.g.: {ended[0].final_text[-300:]}"
                )
            return all(len(c.ends) >= 2 or c.final for c in clients)

        not_started: list[_Client] = []
        try:
            await _until(all_streaming, 30 + n * 0.2, f"all {n} replies streaming", poll=0.05)
        except RoundError as exc:
            # Go on with the replies that stream, if enough do; the rest are counted.
            not_started = [c for c in clients if len(c.ends) < 2 and not c.final]
            streaming = [c for c in clients if len(c.ends) >= 2 and not c.final]
            if len(streaming) < max(1, n // 10):
                told = [c.notices[-1] for c in not_started if c.notices]
                raise RoundError(
                    f"{exc} ({len(not_started)} not streaming"
                    + (f"; the last notice one was shown: {told[0]}" if told else "")
                    + ")"
                ) from None
        ramp_s = time.monotonic() - sent_all
        await asyncio.sleep(settle)  # past the start-up burst: the window sees a steady state
        pids = {"daphne": [s.process.pid for s in servers], "fake": [st.fake.process.pid]}
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
        live = [c for c in clients if not c.final and c not in not_started]
        seen = by_marker(
            await records(st.control, min_count=n, finished=False, wait=10),
            [c.marker for c in clients],
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

        for c in live:
            c.stop_at = await c.tab.send("stop")
        final = by_marker(
            await records(st.control, min_count=n, finished=True, wait=30 + n * 0.05),
            [c.marker for c in clients],
        )

        def all_final() -> bool:
            for c in clients:
                c.update()
            return all(c.final for c in clients)

        finals_error = ""
        try:
            await _until(all_final, 30 + n * 0.05, "every reply's final frame", poll=0.05)
        except RoundError as exc:
            finals_error = str(exc)
    finally:
        await _close_tabs(tabs)

    notices = sorted({text for c in clients for text in c.notices})
    statuses: dict[str, int] = {}
    for c in clients:
        statuses[c.final or "none"] = statuses.get(c.final or "none", 0) + 1
    out = Samples(
        n=n,
        rounds=1,
        window_s=t_end - t_all,
        extra={
            "processes": len(servers),
            "open_sockets_s": round(open_s, 2),
            "ramp_s": round(ramp_s, 2),
            "final_statuses": statuses,
            "cpu_cores_used": {k: round(v / (t_end - t_all), 2) for k, v in cpu_used.items()},
            **({"error_notices": notices[:5]} if notices else {}),
            **({"finals_error": finals_error} if finals_error else {}),
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
    for c in live:
        record = final.get(c.marker)
        if record is None:
            raise RoundError(f"the fake has no request for {c.marker!r}")
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
        assert c.stop_at is not None
        if record.disconnected_at is None:
            out.stop_not_closed += 1
        else:
            out.stop.append((record.disconnected_at - c.stop_at) * 1000)
        out.after.append(float(record.deltas_after(c.stop_at)))
    if out.relay:  # what one relayed delta costs the server processes, all work included
        out.extra["daphne_cpu_us_per_delta"] = round(cpu_used["daphne"] / len(out.relay) * 1e6)
    return out


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(f"[streams] {text}", file=sys.stderr, flush=True)


def _met(figure: str, n: int, app: dict[str, Any]) -> bool | None:
    target = TARGETS[figure]
    if target.n is not None and target.n != n:
        return None
    value = app.get(target.stat)
    return None if value is None else bool(value <= target.limit)


def _figure_rows(rounds: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in TARGETS}
    keys = {
        "stop_latency_ms": "stop_ms",
        "after_stop_deltas": "after_stop_deltas",
        "relay_latency_ms": "relay_ms",
    }
    for rnd in rounds:
        n = rnd["n"]
        app_r, raw_r = rnd.get("app", {}), rnd.get("raw", {})
        for figure, key in keys.items():
            row: dict[str, Any] = {"n": n, "target": TARGETS[figure].text}
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
        _say(f"capacity, {len(servers)} process(es): N={n}")
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


async def _one_round(st: Stack, side: str, n: int, window: float, settle: float) -> Samples:
    """One app round on the first daphne process, or one raw-SDK round."""
    if side == "app":
        return await app_round(st, n, servers=st.servers[:1], window=window, settle=settle)
    return await raw_round(
        st.fake.base_url,
        st.control,
        n,
        window=window,
        settle=settle,
        control_pid=st.fake.process.pid,
    )


async def _measure(st: Stack, mode: Mode, interval: float) -> dict[str, Any]:
    one = st.servers[:1]
    _say("warm-up round (not reported)")
    with contextlib.suppress(Exception):
        await app_round(st, 2, servers=st.servers, window=0.3)
    with contextlib.suppress(Exception):
        await raw_round(st.fake.base_url, st.control, 2, window=0.3)
    rounds: list[dict[str, Any]] = []
    for n in mode.ns:
        entry: dict[str, Any] = {"n": n}
        # A few concurrent replies give a few stop samples: repeat the round for a distribution.
        repeats = max(1, math.ceil(mode.min_stop_samples / n))
        window = mode.window if repeats == 1 else mode.repeat_window
        settle = mode.settle if repeats == 1 else min(mode.settle, 0.2)
        for side in ("app", "raw"):
            _say(f"{side} round, N={n}" + (f", {repeats} times" if repeats > 1 else ""))
            try:
                samples = Samples(n=n)
                for _ in range(repeats):
                    samples.merge(await _one_round(st, side, n, window, settle))
                entry[side] = samples.to_dict()
                _say(
                    f"  relay p99 {entry[side]['relay_ms']['p99']} ms, "
                    f"stop p99 {entry[side]['stop_ms']['p99']} ms"
                )
            except Exception as exc:
                entry[side] = {"error": f"{type(exc).__name__}: {exc}"}
                _say(f"  failed: {exc}")
        rounds.append(entry)
    if not mode.capacity_ladder:
        return {"rounds": rounds, "figures": _figure_rows(rounds), "capacity": {}}
    capacity: dict[str, Any] = {"one_process": await _capacity(st, one, mode, interval)}
    if st.multi_process:
        capacity["two_processes"] = await _capacity(st, st.servers, mode, interval)
    else:
        capacity["two_processes"] = {
            "summary": "not measured: needs PostgreSQL and Redis on 127.0.0.1 (not reachable)",
            "largest_n": None,
        }
    return {"rounds": rounds, "figures": _figure_rows(rounds), "capacity": capacity}


def measure(
    *,
    quick: bool,
    interval: float = INTERVAL,
    ns: list[int] | None = None,
    profile_to: Path | None = None,
    capacity: bool = True,
) -> dict[str, Any]:
    """Every streaming figure with its raw floor (starts and stops everything it needs)."""
    mode = QUICK if quick else FULL
    if ns is not None:
        mode = dataclasses.replace(mode, ns=ns)
    if not capacity:
        mode = dataclasses.replace(mode, capacity_ladder=[])
    started = time.monotonic()
    with stack(interval=interval, deltas=DELTAS, profile_to=profile_to) as st:
        setup_s = time.monotonic() - started
        _say(f"up in {setup_s:.1f} s: {st.backend}")
        result = asyncio.run(_measure(st, mode, interval))
        backend, notes = st.backend, st.notes
    return {
        "backend": backend,
        "notes": notes,
        "config": {
            "fake_interval_s": interval,
            "nominal_deltas_per_second": round(1 / interval, 1),
            "app_batch_interval_s": 0.03,
            "window_s": mode.window,
            "capacity_window_s": mode.capacity_window,
            "ns": mode.ns,
            "capacity_ladder": mode.capacity_ladder,
        },
        "targets": {k: v.text for k, v in TARGETS.items()},
        "setup_s": round(setup_s, 1),
        "total_s": round(time.monotonic() - started, 1),
        **result,
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


def profile(n: int, out: Path, *, window: float, interval: float) -> dict[str, Any]:
    """One round at N against one daphne run under pyinstrument; the report goes to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    session = out.with_suffix(".pyisession")
    with stack(interval=interval, deltas=DELTAS, processes=1, profile_to=session) as st:

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
    parser.add_argument("--interval", type=float, default=INTERVAL)
    parser.add_argument("--no-capacity", action="store_true")
    parser.add_argument("--profile", type=int, default=0, help="profile daphne at this N")
    parser.add_argument("--window", type=float, default=5.0, help="with --profile")
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile.txt"))
    args = parser.parse_args()
    if args.profile:
        result = profile(args.profile, args.out, window=args.window, interval=args.interval)
    else:
        ns = [int(x) for x in args.ns.split(",") if x] or None
        result = measure(
            quick=args.quick, interval=args.interval, ns=ns, capacity=not args.no_capacity
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
