"""The floor: the fake Anthropic server consumed directly by the raw SDK, in one asyncio process.

N concurrent ``AsyncAnthropic().messages.stream(...)`` against the same fake the app uses, the
same iteration the app's provider does (``chat/providers/anthropic.py``), with no Django, no
socket and no browser frame in between. Relay latency is the time from the fake writing a delta
to this process receiving it as a ``text_delta`` event; stop latency is the time from cancelling
the task that reads the stream to the fake seeing the connection closed. With ``single_stops``,
before the burst, streams are cancelled one at a time amid the others (each replaced at once by
a new stream, so N stays N), as the app round stops one client's reply amid N.

Used by bench/streams.py; ``python -m bench.raw_sdk BASE_URL N`` runs one round on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.streams_fake import by_marker, rate_in, records, tally_stop
from bench.streams_stats import Samples, cpu_seconds
from chat.testing.fake_anthropic import FakeAnthropicControl, RequestRecord

MODEL = "claude-sonnet-4-6"


class RoundError(RuntimeError):
    """A round could not produce its figures (the reason is the message)."""


@dataclass
class _Stream:
    marker: str
    received: list[float] = field(default_factory=list)
    """time.monotonic() of each text delta received."""
    cancelled_at: float | None = None
    task: asyncio.Task[None] | None = None
    error: str = ""


async def _read(client: Any, stream: _Stream) -> None:
    try:
        async with client.messages.stream(
            model=MODEL,
            max_tokens=4096,
            messages=[{"role": "user", "content": stream.marker}],
            timeout=60,
        ) as events:
            async for event in events:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    stream.received.append(time.monotonic())
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        chain: list[str] = []
        cause: BaseException | None = exc
        while cause is not None and len(chain) < 4:
            chain.append(f"{type(cause).__name__}: {cause}")
            cause = cause.__cause__ or cause.__context__
        stream.error = " <- ".join(chain)


def _record(final: dict[str, RequestRecord], stream: _Stream) -> RequestRecord:
    record = final.get(stream.marker)
    if record is None:
        raise RoundError(f"the fake has no record of {stream.marker!r}")
    return record


def spread(n: int, k: int) -> list[int]:
    """``k`` distinct indices among ``n``, spread evenly (the clients stopped one at a time)."""
    k = min(k, n)
    return [i * n // k for i in range(k)] if k else []


async def _until(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise RoundError(f"{what} did not happen within {within:.0f} s")
        await asyncio.sleep(0.01)


async def raw_round(
    base_url: str,
    control: FakeAnthropicControl,
    n: int,
    *,
    window: float,
    settle: float = 1.0,
    grace: float = 20.0,
    control_pid: int = 0,
    single_stops: int = 0,
    gap: float = 0.3,
) -> Samples:
    """One round of N concurrent raw-SDK streams: relay latency over ``window`` seconds once all
    stream; then ``single_stops`` streams cancelled one at a time, ``gap`` seconds apart, each
    replaced by a new one; then every stream cancelled at once. Figures in ms (latencies) and
    deltas (cost)."""
    import anthropic  # imported here: it takes a second, and only this round needs it

    await asyncio.to_thread(control.reset)
    tag = secrets.token_hex(3)
    streams = [_Stream(marker=f"raw {n} {i} {tag}") for i in range(n)]
    singles: list[_Stream] = []
    """The streams cancelled one at a time (each replaced in ``streams``)."""
    everyone = list(streams)
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key="sk-ant-raw-bench", max_retries=2)
    try:
        for stream in streams:
            stream.task = asyncio.create_task(_read(client, stream))

        def all_streaming() -> bool:
            failed = [s.error for s in streams if s.error]
            if failed:
                raise RoundError(f"{len(failed)} raw streams failed, e.g. {failed[0]}")
            return all(len(s.received) >= 2 for s in streams)

        await _until(all_streaming, 30 + n * 0.1, f"all {n} raw streams streaming")
        await asyncio.sleep(settle)  # past the start-up burst, as the app round does
        fake_cpu = cpu_seconds(control_pid) if control_pid else 0.0
        own_cpu = time.process_time()
        t_all = time.monotonic()
        await asyncio.sleep(window)
        t_end = time.monotonic()
        own_cpu = time.process_time() - own_cpu
        fake_cpu = (cpu_seconds(control_pid) - fake_cpu) if control_pid else float("nan")
        seen = by_marker(
            await records(control, min_count=n, finished=False, wait=5),
            [s.marker for s in streams],
        )
        targets = {
            s.marker: sum(1 for t in seen[s.marker].delta_times if t <= t_end)
            for s in streams
            if s.marker in seen
        }
        # Everything written in the window reaches us before we cancel (no survivor bias).
        with contextlib.suppress(RoundError):
            await _until(
                lambda: all(len(s.received) >= targets.get(s.marker, 0) for s in streams),
                grace,
                "delivery of the window's deltas",
            )
        gave_up = time.monotonic()
        for j, i in enumerate(spread(n, single_stops)):
            stream = streams[i]
            assert stream.task is not None
            stream.cancelled_at = time.monotonic()
            stream.task.cancel()
            await asyncio.gather(stream.task, return_exceptions=True)
            singles.append(stream)
            fresh = _Stream(marker=f"raw {n} {i} {tag} again {j}")
            fresh.task = asyncio.create_task(_read(client, fresh))
            streams[i] = fresh
            everyone.append(fresh)
            await asyncio.sleep(gap)
        if singles:  # the replacements stream before the burst (those that do not: left out)
            with contextlib.suppress(RoundError):
                await _until(
                    lambda: all(len(s.received) >= 2 or s.error for s in streams),
                    10,
                    "the replacement streams streaming",
                )
        burst = [s for s in streams if len(s.received) >= 2 and not (s.task and s.task.done())]
        for stream in streams:
            assert stream.task is not None
            stream.cancelled_at = time.monotonic()
            stream.task.cancel()
        await asyncio.gather(*(s.task for s in streams if s.task), return_exceptions=True)
        final = by_marker(
            await records(control, min_count=len(everyone), finished=True, wait=30 + n * 0.05),
            [s.marker for s in everyone],
        )
    finally:
        for stream in everyone:
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()
        await asyncio.gather(*(s.task for s in everyone if s.task), return_exceptions=True)
        await client.close()

    span = t_end - t_all
    out = Samples(
        n=n,
        rounds=1,
        window_s=span,
        extra={
            "cpu_cores_used": {
                "raw SDK (this process)": round(own_cpu / span, 2),
                "fake": round(fake_cpu / span, 2),
            }
        },
    )
    ended_first = 0
    for stream in singles:
        assert stream.cancelled_at is not None
        outcome = tally_stop(
            _record(final, stream),
            stream.cancelled_at,
            latencies=out.single_stop,
            after=out.single_after,
        )
        ended_first += outcome == "ended"
        out.single_not_closed += outcome == "not_closed"
    if singles:
        out.extra["single_stops_replaced_not_streaming"] = len(streams) - len(burst)
    originals = [s for s in everyone if " again " not in s.marker]
    for stream in originals:
        record = _record(final, stream)
        for k, written in enumerate(record.delta_times):
            if t_all <= written <= t_end:
                if k < len(stream.received) and stream.received[k] <= gave_up:
                    out.relay.append((stream.received[k] - written) * 1000)
                    out.relay_at.append(written)
                else:
                    out.relay_undelivered += 1
                    out.relay.append((gave_up - written) * 1000)
                    out.relay_at.append(written)
        rate = rate_in(record, t_all, t_end)
        if rate is not None:
            out.rate.append(rate)
    for stream in burst:
        assert stream.cancelled_at is not None
        outcome = tally_stop(
            _record(final, stream), stream.cancelled_at, latencies=out.stop, after=out.after
        )
        ended_first += outcome == "ended"
        out.stop_not_closed += outcome == "not_closed"
    if ended_first:
        out.extra["ended_before_their_stop"] = ended_first
    if out.relay:  # what one received delta costs the SDK process
        out.extra["raw_cpu_us_per_delta"] = round(own_cpu / len(out.relay) * 1e6)
    return out


def main() -> None:
    base_url, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10
    result = asyncio.run(raw_round(base_url, FakeAnthropicControl(base_url, 60), n, window=2))
    print(result.to_dict())


if __name__ == "__main__":
    main()
