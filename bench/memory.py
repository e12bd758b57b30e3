"""Figure 6: the server's memory per idle connection and per active reply.

    .venv/bin/python -m bench.memory [--quick]

A live daphne (chat.testing.live.start_daphne) on its own SQLite file, with the real Anthropic SDK
streaming from the standalone fake Anthropic server, paced slowly (a delta every 0.5 s) so that
the replies are all still streaming when they are counted. The per-user limits are raised
(``CHAT_MAX_CONCURRENT_REPLIES``, ``CHAT_MESSAGES_PER_MINUTE``) and titles are off. The server
process's resident set size (psutil) is read:

1. after a warm-up (sign-in, pages, a few sockets opened and closed, a few short replies, so
   lazy imports, template caches, the SDK client and the database connection exist): baseline;
2. after opening K chat sockets (chat.testing.live_client.Tab), one per conversation, idle;
3. after a reply started on each of them, K streaming at once, each having sent text.

Each reading is the median of a few samples after the server settles. Per idle connection is
(RSS 2 - RSS 1) / K and per active reply (RSS 3 - RSS 2) / K, in KiB, with K = 200 (quick: 20).
A reply's memory grows with its text (what it has sent is kept for its checkpoints and final
save): this is its cost early in the stream, with a few hundred characters.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # (no stubs in the dev extras)

from chat.testing.live import (
    DaphneProcess,
    app_env,
    create_user,
    manage,
    start_daphne,
    start_fake_anthropic,
)
from chat.testing.live_client import Session, Tab

REPO_ROOT = Path(__file__).resolve().parents[1]

K_FULL, K_QUICK = 200, 20
SLOW_INTERVAL = 0.5  # seconds between two deltas: K replies stream at once for minutes
SLOW_DELTAS = 2000
OPEN_AT_ONCE = 25  # sockets opened concurrently (a browser's burst, not a SYN flood)
SETTLE_FULL, SETTLE_QUICK = 1.0, 0.3  # seconds before reading the RSS
_CONVERSATIONS = """
import json, sys
import django
django.setup()
from django.contrib.auth.models import User
from chat.models import Conversation
user = User.objects.get(username=sys.argv[1])
made = Conversation.objects.bulk_create(
    Conversation(user=user, title=f"Memory {i}") for i in range(int(sys.argv[2]))
)
print(json.dumps([str(c.pk) for c in made]))
"""


def _conversations(env: dict[str, str], username: str, count: int) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _CONVERSATIONS, username, str(count)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ids: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return ids


async def _rss(process: psutil.Process, settle: float, samples: int = 5) -> int:
    """The median RSS of a few samples, after letting the server settle."""
    await asyncio.sleep(settle)
    values = []
    for _ in range(samples):
        values.append(process.memory_info().rss)
        await asyncio.sleep(0.1)
    return int(statistics.median(values))


async def _open_tabs(base_url: str, conversations: list[str], session: Session) -> list[Tab]:
    tabs: list[Tab] = []
    for start in range(0, len(conversations), OPEN_AT_ONCE):
        chunk = conversations[start : start + OPEN_AT_ONCE]
        tabs += await asyncio.gather(*(Tab.open(base_url, cid, session) for cid in chunk))
    return tabs


async def _wait_all(items: list[Any], what: str, check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not all(check(item) for item in items):
        if time.monotonic() > deadline:
            done = sum(1 for item in items if check(item))
            raise RuntimeError(f"only {done} of {len(items)} replies had {what} after {within} s")
        await asyncio.sleep(0.05)


async def _run(
    server: DaphneProcess,
    session: Session,
    warm: list[str],
    conversations: list[str],
    settle: float,
) -> dict[str, Any]:
    process = psutil.Process(server.process.pid)
    base = server.base_url
    k = len(conversations)

    # 1. Warm-up: pages, sockets opened and closed, a few short replies at once.
    for cid in warm:
        await asyncio.to_thread(session.get, None, f"/conversations/{cid}/")
    tabs = await _open_tabs(base, warm, session)
    starts = [len(tab.frames) for tab in tabs]
    await asyncio.gather(*(tab.send("send", "[[fake:interval=0.01,deltas=20]] hi") for tab in tabs))
    ids = await asyncio.gather(
        *(tab.turn_started(start=s) for tab, s in zip(tabs, starts, strict=True))
    )
    await asyncio.gather(*(tab.finished(mid) for tab, mid in zip(tabs, ids, strict=True)))
    await asyncio.gather(*(tab.close() for tab in tabs))
    baseline = await _rss(process, settle)

    # 2. K idle sockets, each on its own conversation (as K tabs of one user's chats).
    tabs = await _open_tabs(base, conversations, session)
    idle = await _rss(process, settle)

    # 3. A reply streaming on each of them, each having sent some text.
    started = time.monotonic()
    await asyncio.gather(*(tab.send("send", "Tell me a long story.") for tab in tabs))
    ids = await asyncio.gather(*(tab.turn_started(timeout=60) for tab in tabs))
    replies = list(zip(tabs, ids, strict=True))
    await _wait_all(replies, "two text batches", lambda r: r[0].batch_count(r[1]) >= 2, 60)
    all_streaming_s = time.monotonic() - started
    active = await _rss(process, settle)
    chars = statistics.median(len(tab.text(mid)) for tab, mid in replies)

    # Clean up: closing a tab stops its reply (saved as interrupted / disconnect).
    await asyncio.gather(*(tab.close() for tab in tabs))
    kib = 1024
    return {
        "k": k,
        "rss_baseline_mib": round(baseline / kib**2, 1),
        "rss_idle_mib": round(idle / kib**2, 1),
        "rss_streaming_mib": round(active / kib**2, 1),
        "per_idle_connection_kib": round((idle - baseline) / k / kib, 1),
        "per_active_reply_kib": round((active - idle) / k / kib, 1),
        "reply_chars_when_measured": chars,
        "seconds_until_all_streaming": round(all_streaming_s, 2),
        "fake_delta_interval_s": SLOW_INTERVAL,
    }


def measure(*, quick: bool) -> dict[str, Any]:
    """RSS per idle chat socket and per streaming reply (see the module's docstring)."""
    k = K_QUICK if quick else K_FULL
    tmp = Path(tempfile.mkdtemp(prefix="stopchat-bench-memory-"))
    fake = start_fake_anthropic(interval=SLOW_INTERVAL, deltas=SLOW_DELTAS)
    server: DaphneProcess | None = None
    try:
        env = app_env(
            database_url=f"sqlite:///{tmp / 'bench.db'}",
            anthropic_base_url=fake.base_url,
            CHAT_MAX_CONCURRENT_REPLIES=str(10 * k),
            CHAT_MESSAGES_PER_MINUTE=str(100 * k),
            CHAT_AUTO_TITLE="0",
        )
        username, password = "bench", f"bench-{secrets.token_urlsafe(12)}"
        manage(env, "migrate", "--noinput")
        create_user(env, username, password)
        ids = _conversations(env, username, k + 5)
        server = start_daphne(env, log_path=tmp / "daphne.log")
        session = Session(server.base_url)
        session.sign_in(username, password)
        settle = SETTLE_QUICK if quick else SETTLE_FULL
        figures = asyncio.run(_run(server, session, ids[:5], ids[5:], settle))
    finally:
        if server is not None:
            server.stop()
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return figures


def main() -> None:
    print(json.dumps(measure(quick="--quick" in sys.argv[1:]), indent=2))


if __name__ == "__main__":
    main()
