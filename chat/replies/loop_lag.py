"""How late this process's event loop runs, measured continuously.

A task sleeps `SAMPLE_EVERY` seconds at a time and notes how much later than asked it woke: that
delay is the time every other callback on the loop (a batch to relay, a Stop to act on) waits
too. `lag()` is the mean over the last `WINDOW` seconds; admission control (admission.py) reads
it, and /metrics exports it. One monitor per event loop, started with the first connection the
process serves (chat/replies/background.py).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque

#: How often the loop is sampled, and the window the reported lag is the mean over.
SAMPLE_EVERY = 0.05
WINDOW = 1.0


class LoopLag:
    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque()  # (when, lag in seconds)
        self._lag = 0.0

    def note(self, lag: float, *, now: float) -> None:
        self._samples.append((now, max(0.0, lag)))
        while self._samples and self._samples[0][0] < now - WINDOW:
            self._samples.popleft()
        self._lag = sum(lag for _, lag in self._samples) / len(self._samples)

    def lag(self) -> float:
        """Mean lag over the last WINDOW seconds; 0 before the first sample. (A float read
        once: safe from any thread, as the admin's sync view reads it.)"""
        return self._lag

    async def run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(SAMPLE_EVERY)
            now = time.monotonic()
            self.note(now - asked - SAMPLE_EVERY, now=now)


_monitors: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[LoopLag, asyncio.Task[None]]
] = weakref.WeakKeyDictionary()
_latest: LoopLag | None = None


def ensure_running() -> LoopLag:
    """This loop's monitor, started if it is not running."""
    global _latest
    loop = asyncio.get_running_loop()
    found = _monitors.get(loop)
    if found is None or found[1].done():
        monitor = LoopLag()
        found = (monitor, loop.create_task(monitor.run(), name="chat-loop-lag"))
        _monitors[loop] = found
        _latest = monitor
    return found[0]


def current() -> float:
    """The lag of this process's event loop (0 while it is not measured); from any thread."""
    return _latest.lag() if _latest is not None else 0.0
