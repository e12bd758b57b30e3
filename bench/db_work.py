"""Figure 5: the database work of one reply, complete and stopped mid-way.

    .venv/bin/python -m bench.db_work [--quick]

Through the real path, in a child process with its own SQLite database (migrated afresh): the real
ASGI app (chatsite.asgi.application: origin check, session auth, routing, the consumer) driven by
channels' WebsocketCommunicator, the real Anthropic SDK streaming from the fake Anthropic server
(chat.testing.fake_anthropic.FakeAnthropicServer, in-process) at a delta every 20 ms: 300 deltas
(about 6 s) in full mode, 50 in quick mode. Every SQL statement the app runs on any connection of
any thread is counted (Django's ``execute_wrapper``, installed on each connection as it is
created), from the moment the send frame goes out to the moment the final frame (the finished
bubble) arrives, and named by its kind, table and the function of chat/ that ran it. Writes are
INSERT, UPDATE and DELETE; reads are SELECT; the rest (savepoints) is listed too.

One reply runs to its end; the next is stopped (a Stop frame) half-way through.

The target: at most 4 writes plus one per 2 s of the reply's streaming (its duration taken from
the send frame to the final frame, which is when the reply is ``streaming`` in the database).
It was 3 until versions (issue 17): the reply's row names the message it answers, so the two are
inserted one after the other, no longer in one statement.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.page import run_child

CHAT_DIR = Path(__file__).resolve().parents[1] / "chat"
INTERVAL = 0.02
DELTAS_FULL, DELTAS_QUICK = 300, 50
ORIGIN = "http://127.0.0.1:8000"
WRITES = ("INSERT", "UPDATE", "DELETE")
_TABLE = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)
_FROM = re.compile(r'\bFROM\s+"?(\w+)"?', re.IGNORECASE)


def _kind(sql: str) -> tuple[str, str]:
    """(verb, table) of a statement, e.g. ("UPDATE", "chat_message")."""
    verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    match = _TABLE.match(sql) if verb in WRITES else _FROM.search(sql)
    return verb, match.group(1) if match else ""


def _caller() -> str:
    """The innermost function of chat/ (any of its packages, not its test tooling) on the stack
    (its name only: they are unique enough)."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(CHAT_DIR) and not path.is_relative_to(CHAT_DIR / "testing"):
            return frame.f_code.co_name
        frame = frame.f_back  # type: ignore[assignment]
    return "?"


class StatementLog:
    """Every statement on every Django connection while ``recording`` (thread-safe)."""

    def __init__(self) -> None:
        self.recording = False
        self.started = 0.0
        self.entries: list[tuple[float, str, str, str]] = []  # (t, verb, table, caller)
        self._lock = threading.Lock()

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if self.recording:
            verb, table = _kind(sql)
            entry = (time.monotonic() - self.started, verb, table, _caller())
            with self._lock:
                self.entries.append(entry)
        return execute(sql, params, many, context)

    def install(self) -> None:
        """Wrap every connection Django opens from now on, on any thread."""
        from django.db.backends.signals import connection_created

        def wrap(sender: Any, connection: Any, **kwargs: Any) -> None:
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)

        connection_created.connect(wrap, weak=False)

    def start(self) -> None:
        with self._lock:
            self.entries = []
            self.started = time.monotonic()
            self.recording = True

    def stop(self) -> list[tuple[float, str, str, str]]:
        with self._lock:
            self.recording = False
            return list(self.entries)


def _summarise(
    entries: list[tuple[float, str, str, str]], duration: float, extra: dict[str, Any]
) -> dict[str, Any]:
    kinds = Counter(
        " ".join(filter(None, [verb, table, f"({caller})"])) for _, verb, table, caller in entries
    )
    writes = sum(1 for _, verb, _, _ in entries if verb in WRITES)
    reads = sum(1 for _, verb, _, _ in entries if verb == "SELECT")
    # Two INSERTs (the message, then its reply, which names it: versions, issue 17), the
    # conversation's touch, the final save; a checkpoint every 2 s.
    target = 4 + duration / 2
    return {
        "duration_s": round(duration, 2),
        "statements": len(entries),
        "reads": reads,
        "writes": writes,
        "other": len(entries) - reads - writes,
        "target_writes": round(target, 2),
        "target_met": writes <= target,
        "kinds": dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))),
        # When each write ran, in seconds after the send frame (checkpoints show their pace).
        "write_times_s": [round(t, 2) for t, verb, _, _ in entries if verb in WRITES],
        **extra,
    }


async def _one_reply(
    application: Any,
    cookie: str,
    conversation_id: str,
    log: StatementLog,
    server: Any,
    *,
    stop_after: float | None,
) -> dict[str, Any]:
    from channels.testing import WebsocketCommunicator

    comm = WebsocketCommunicator(
        application,
        f"/ws/chat/{conversation_id}/",
        headers=[
            (b"host", b"127.0.0.1:8000"),
            (b"origin", ORIGIN.encode()),
            (b"cookie", cookie.encode()),
        ],
    )
    connected, _ = await comm.connect(timeout=10)
    assert connected, "the socket was refused"
    await asyncio.sleep(0.5)  # the connect's own reads (session, user, catch-up) are over
    server.reset()
    log.start()
    sent = time.monotonic()
    await comm.send_to(text_data=json.dumps({"action": "send", "message": "Tell me a story."}))
    reply_id = 0
    stopped = False
    final = None
    while final is None:
        frame = await comm.receive_from(timeout=30)
        if not reply_id:
            match = re.search(
                r'<article id="msg-(\d+)" class="msg msg--assistant msg--streaming"', frame
            )
            reply_id = int(match.group(1)) if match else 0
        elif stop_after is not None and not stopped and time.monotonic() - sent >= stop_after:
            stopped = True
            await comm.send_to(text_data=json.dumps({"action": "stop"}))
        if reply_id:
            final = re.search(
                rf'<article id="msg-{reply_id}" class="msg msg--assistant msg--(\w+)" hx-swap-oob',
                frame,
            )
    duration = time.monotonic() - sent
    entries = log.stop()
    # Anything the reply still runs after its final frame (nothing, as it stands) is counted too.
    log.start()
    await asyncio.sleep(0.3)
    after = log.stop()
    await comm.disconnect(timeout=5)
    record = server.requests[-1]
    span = (record.delta_times[-1] - record.delta_times[0]) if len(record.delta_times) > 1 else 0.0
    return _summarise(
        entries,
        duration,
        {
            "status": final.group(1),
            "deltas_streamed": record.deltas_written,
            "delta_span_s": round(span, 2),
            "statements_after_final_frame": len(after),
        },
    )


def _child(quick: bool) -> dict[str, Any]:
    import os

    from chat.testing.fake_anthropic import FakeAnthropicServer, FakeConfig

    deltas = DELTAS_QUICK if quick else DELTAS_FULL
    server = FakeAnthropicServer(FakeConfig(interval=INTERVAL, deltas=deltas)).start()
    try:
        os.environ["ANTHROPIC_BASE_URL"] = server.base_url
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.test import Client

        from chat.models import Conversation
        from chatsite.asgi import application

        call_command("migrate", verbosity=0, interactive=False)
        user = User.objects.create_user("bench", password="bench-password-123")
        client = Client()
        client.force_login(user)
        cookie = (
            f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        )
        conversation = Conversation.objects.create(user=user, title="Database work")
        log = StatementLog()
        log.install()

        async def both() -> dict[str, Any]:
            complete = await _one_reply(
                application, cookie, str(conversation.pk), log, server, stop_after=None
            )
            stopped = await _one_reply(
                application,
                cookie,
                str(conversation.pk),
                log,
                server,
                stop_after=deltas * INTERVAL / 2,
            )
            return {"complete": complete, "stopped": stopped}

        replies = asyncio.run(both())
    finally:
        server.stop()
    return {
        "deltas": deltas,
        "delta_interval_s": INTERVAL,
        "checkpoint_interval_s": settings.CHAT_CHECKPOINT_INTERVAL,
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        **replies,
        "target_met": all(r["target_met"] for r in replies.values()),
    }


def measure(*, quick: bool) -> dict[str, Any]:
    """The statements of one complete and one stopped reply (see the module's docstring)."""
    return run_child("bench.db_work", ["--quick"] if quick else [], timeout=120)


def main() -> None:
    args = sys.argv[1:]
    if "--child" in args:
        print(json.dumps(_child("--quick" in args)))
        return
    print(json.dumps(measure(quick="--quick" in args), indent=2))


if __name__ == "__main__":
    main()
