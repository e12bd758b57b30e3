"""Fixtures of the live tests: the app as real processes (daphne, ``manage.py chat``) on their own
databases, against the fake Anthropic as its own process (``live_fake_anthropic`` and
``live_app`` are in tests/conftest.py: the browser tests use them too)."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.testing.live import (
    REPO_ROOT,
    TEST_SETTINGS,
    Cluster,
    FakeProcess,
    app_env,
    create_user,
    free_port,
    manage,
    run_cluster,
    services_missing,
    start_live_app,
)
from tests.live.helpers import (
    CONCURRENT,
    ORPHAN_AFTER,
    REAPER_INTERVAL,
    Api,
    PrivateRedis,
    TerminalDb,
    unavailable,
)

# --------------------------------------------------------------------------------------------
# Two processes sharing Redis and PostgreSQL (test_multiprocess.py)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Two daphne processes on a fresh PostgreSQL database and the shared Redis, reaping orphans
    after ORPHAN_AFTER s. Their logs are printed at the end if any test failed."""
    problems = services_missing()
    if problems:
        unavailable("; ".join(problems))
    with run_cluster(
        CHAT_ORPHAN_AFTER=str(ORPHAN_AFTER), CHAT_REAPER_INTERVAL=str(REAPER_INTERVAL)
    ) as running:
        try:
            yield running
        finally:
            if request.session.testsfailed:
                print(running.logs())


@pytest.fixture
def private_redis(cluster: Cluster) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (the restart test runs its own)")
    server = PrivateRedis(free_port(), cluster.tmp_dir / f"redis-{secrets.token_hex(3)}")
    server.dir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# The streaming HTTP API (test_api.py)
# --------------------------------------------------------------------------------------------

#: alice's API tokens (one revoked) and a conversation of bob's, printed as JSON.
API_SETUP = """
import json, sys
import django
django.setup()
from chat.data import services
from chat.data import api_tokens
from django.contrib.auth.models import User
alice = User.objects.get(username="alice")
bob = User.objects.get(username="bob")
_, alice_token = api_tokens.token_create(user=alice, name="tests")
revoked, revoked_token = api_tokens.token_create(user=alice, name="revoked")
api_tokens.token_revoke(user=alice, token_id=revoked.pk)
bobs = services.conversation_create(user=bob, title="Bob's private chat")
print(json.dumps({"token": alice_token, "revoked": revoked_token, "bobs": str(bobs.pk)}))
"""


@pytest.fixture(scope="module")
def api_server(live_fake_anthropic: FakeProcess) -> Iterator[Api]:
    """Its own daphne and SQLite database: replies at once are limited to CONCURRENT here."""
    app = start_live_app(
        live_fake_anthropic,
        name="api",
        users=("alice", "bob"),
        CHAT_MAX_CONCURRENT_REPLIES=str(CONCURRENT),
    )
    try:
        made = subprocess.run(
            [sys.executable, "-c", API_SETUP],
            cwd=REPO_ROOT,
            env=app.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        ids = json.loads(made.stdout.strip().splitlines()[-1])
        yield Api(app, ids["token"], ids["revoked"], ids["bobs"])
    finally:
        app.stop()
        app.remove_files()


@pytest.fixture
def api(api_server: Api) -> Api:
    """The API tests' app, with the fake back to its start-up config and no records."""
    api_server.app.fake.restore()
    return api_server


# --------------------------------------------------------------------------------------------
# The terminal chat (test_terminal_chat.py)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def terminal_db(live_fake_anthropic: FakeProcess) -> Iterator[TerminalDb]:
    tmp_dir = Path(tempfile.mkdtemp(prefix="stopchat-terminal-"))
    db_path = tmp_dir / "terminal.db"
    env = app_env(
        database_url=f"sqlite:///{db_path}",
        anthropic_base_url=live_fake_anthropic.base_url,
        DJANGO_SETTINGS_MODULE=TEST_SETTINGS,
    )
    manage(env, "migrate", "--noinput")
    for name in ("alice", "bob"):
        create_user(env, name, f"pw-{secrets.token_urlsafe(8)}")
    try:
        yield TerminalDb(env=env, db_path=db_path, fake=live_fake_anthropic)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


@pytest.fixture
def db(terminal_db: TerminalDb) -> TerminalDb:
    terminal_db.fake.restore()
    return terminal_db
