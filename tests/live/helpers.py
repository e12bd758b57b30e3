"""What the live tests (tests/live/) share with their fixtures (tests/live/conftest.py): the
objects those fixtures hand out, and the settings the servers are started with."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from chat.testing.fake_anthropic import RequestRecord
from chat.testing.live import FakeProcess, LiveApp

IN_CI = os.environ.get("CI", "").strip().lower() in {"true", "1"}

#: The stop → upstream-closed budget of the issue.
STOP_BUDGET = 0.100

# --------------------------------------------------------------------------------------------
# Several processes (tests/live/test_multiprocess.py)
# --------------------------------------------------------------------------------------------

#: Reaper settings for the cluster's processes: a live reply beats its heartbeat every 2 s.
ORPHAN_AFTER = 4
REAPER_INTERVAL = 1


def unavailable(reason: str) -> None:
    """Skip (fail under CI=true) a test that needs Redis and PostgreSQL."""
    message = (
        f"several-process tests need Redis and PostgreSQL: {reason}. `make test` starts them on "
        "127.0.0.1 when they are installed; TEST_REDIS_URL / TEST_POSTGRES_URL point elsewhere."
    )
    if IN_CI:
        pytest.fail(message + " (CI=true: they must run)")
    pytest.skip(message)


@dataclass
class PrivateRedis:
    """A redis-server of this test's own (so restarting it disturbs nobody else)."""

    port: int
    dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
                "--pidfile",
                str(self.dir / "redis.pid"),
            ],
            check=True,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    return
            assert time.monotonic() < deadline, "the private Redis did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(port=self.port, socket_connect_timeout=1).shutdown(nosave=True)


# --------------------------------------------------------------------------------------------
# The streaming HTTP API (tests/live/test_api.py)
# --------------------------------------------------------------------------------------------

#: The API's replies streaming at once per user, in the API tests' server (for the 429 test).
CONCURRENT = 2


@dataclass
class Api:
    """The API tests' own app (replies at once limited to CONCURRENT), alice's API tokens, and
    a conversation of bob's."""

    app: LiveApp
    token: str
    revoked_token: str
    bobs_conversation: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.app.base_url, headers=self.headers, trust_env=False, timeout=30, **kwargs
        )

    def fake_requests(self, n: int) -> list[RequestRecord]:
        return self.app.fake_control.requests(n)


# --------------------------------------------------------------------------------------------
# The terminal chat (tests/live/test_terminal_chat.py)
# --------------------------------------------------------------------------------------------


@dataclass
class TerminalDb:
    """The environment of a terminal chat process, and a read-only look at its database."""

    env: dict[str, str]
    db_path: Path
    fake: FakeProcess

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        uri = f"file:{self.db_path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params).fetchall()]

    def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT id, role, status, stop_reason, content, thinking, tokens_estimated "
            "FROM chat_message "
            "WHERE conversation_id = ? ORDER BY id",
            (uuid.UUID(conversation_id).hex,),
        )

    def owner(self, conversation_id: str) -> str:
        rows = self.query(
            "SELECT u.username FROM chat_conversation c JOIN auth_user u ON u.id = c.user_id "
            "WHERE c.id = ?",
            (uuid.UUID(conversation_id).hex,),
        )
        assert rows, f"conversation {conversation_id} is not in the database"
        return str(rows[0]["username"])
