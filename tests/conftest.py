"""Shared fixtures: settings for tests, users, conversations, the fake Anthropic server (in this
process, and as its own process behind a live daphne), and a chat socket driver.

tests/live/conftest.py and tests/browser/conftest.py add what only their folders use. The
helpers and constants these fixtures hand out are in tests/helpers.py and chat/testing/.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import AsyncClient

from chat.models import Conversation
from chat.testing.fake_anthropic import FakeAnthropicServer, FakeConfig
from chat.testing.live import (
    REPO_ROOT,
    DaphneProcess,
    FakeProcess,
    LiveApp,
    manage,
    run_daphne,
    start_fake_anthropic,
    start_live_app,
)
from tests.helpers import (
    METRICS_MAX_TOKENS,
    ORIGIN,
    TEST_API_KEY,
    ChatSocket,
    SocketFactory,
    production_env,
    session_cookie,
    workers_lock,
)

# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _test_settings(settings: Any) -> None:
    """Tests count the fake's requests; a title request after each first reply would shift
    them (the title tests turn it back on). And tests send more than a person would: the
    limits are set by tests/test_limits.py where it tests them. Passwords are hashed with a
    fast hasher: no test is about the hash, and the default costs half a second a user."""
    settings.CHAT_AUTO_TITLE = False
    settings.CHAT_MESSAGES_PER_MINUTE = 100_000
    settings.CHAT_MAX_CONCURRENT_REPLIES = 1000
    # A page that closes stops the reply it started at once, as before the grace existed; the
    # grace tests (tests/test_grace.py) set their own.
    settings.CHAT_DISCONNECT_GRACE = 0
    # Admission control is tested where it is set (tests/test_admission.py): a noisy machine's
    # loop lag must not refuse other tests' turns.
    settings.CHAT_MAX_REPLIES_PER_PROCESS = 0
    settings.CHAT_MAX_LOOP_LAG = 0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def attachments_dir(settings: Any, tmp_path: Path) -> Path:
    """Each test's attachments in a directory of its own (never the repo's var/)."""
    directory = tmp_path / "attachments"
    storage = settings.STORAGES["attachments"] | {
        "OPTIONS": settings.STORAGES["attachments"]["OPTIONS"] | {"location": directory}
    }
    settings.STORAGES = settings.STORAGES | {"attachments": storage}
    settings.CHAT_ATTACHMENTS_DIR = directory
    return directory


@pytest.fixture
def metrics_settings(settings: Any) -> None:
    """tests/test_metrics.py: CHAT_MAX_TOKENS is METRICS_MAX_TOKENS, and no /metrics token,
    whatever the environment says."""
    settings.CHAT_MAX_TOKENS = METRICS_MAX_TOKENS
    settings.CHAT_METRICS_TOKEN = ""


# --------------------------------------------------------------------------------------------
# Under xdist (`make test`): a test marked `alone` runs while no test runs on another worker
# --------------------------------------------------------------------------------------------
# It measures a latency budget across processes, which a browser or a benchmark on the other
# core would eat into. Every other test holds a shared lock from its setup to its teardown; an
# `alone` test takes it exclusively for its call only (its fixtures start meanwhile).


def _workers_lock_dir(config: pytest.Config) -> Path | None:
    """The run's temp dir, which the workers' own (``--basetemp .../popen-gwN``) are in."""
    if "PYTEST_XDIST_WORKER" not in os.environ or not config.option.basetemp:
        return None  # one process: nothing runs beside the test
    return Path(config.option.basetemp).parent


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    directory = _workers_lock_dir(item.config)
    if directory is None or item.get_closest_marker("alone") is not None:
        return (yield)
    with workers_lock(directory, exclusive=False):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    directory = _workers_lock_dir(item.config)
    if directory is None or item.get_closest_marker("alone") is None:
        return (yield)
    with workers_lock(directory, exclusive=True):
        return (yield)


# --------------------------------------------------------------------------------------------
# Users and conversations
# --------------------------------------------------------------------------------------------


@pytest.fixture
def user(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("alice", password="correct-horse-battery")


@pytest.fixture
def other_user(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("mallory", password="correct-horse-battery")


@pytest.fixture
def staff(django_user_model: type[User]) -> User:
    """A superuser (tests sign it in with force_login)."""
    return django_user_model.objects.create_superuser("root", password="admin-pass-123")


@pytest.fixture
def conversation(user: User) -> Conversation:
    return Conversation.objects.create(user=user, title="Test chat")


# --------------------------------------------------------------------------------------------
# The fake Anthropic API in this process, and the app's chat socket
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
def fake_anthropic(fake_server: FakeAnthropicServer, settings: Any) -> FakeAnthropicServer:
    """The app's Anthropic provider, through the real SDK, against the fake API server."""
    fake_server.reset(FakeConfig(interval=0.01, deltas=30))
    settings.CHAT_PROVIDER = "anthropic"
    settings.ANTHROPIC_API_KEY = TEST_API_KEY
    settings.ANTHROPIC_BASE_URL = fake_server.base_url
    return fake_server


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    """A fresh in-process fake per test, fast enough that whole replies take ~50 ms (the fake's
    own tests, tests/test_fake_anthropic.py)."""
    with FakeAnthropicServer(FakeConfig(interval=0.005, deltas=10)) as srv:
        yield srv


@pytest.fixture
async def sdk_client(server: FakeAnthropicServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The real async SDK pointed at ``server``; no retries unless a test asks for them."""
    sdk = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test-key", max_retries=0)
    yield sdk
    await sdk.close()


@pytest.fixture
async def chat_socket() -> AsyncIterator[SocketFactory]:
    """Open sockets through the full ASGI stack (origin check, session auth, routing)."""
    from chatsite.asgi import application

    opened: list[WebsocketCommunicator] = []

    async def open_socket(
        conversation: Conversation,
        user: User | None,
        *,
        origin: str = ORIGIN,
        expect_connected: bool = True,
        after: int | None = None,
    ) -> ChatSocket:
        headers = [(b"host", b"127.0.0.1:8000"), (b"origin", origin.encode())]
        if user is not None:
            headers.append((b"cookie", (await session_cookie(user)).encode()))
        # `after`: the newest message id of the page that opens the socket, as the page sends.
        query = "" if after is None else f"?after={after}"
        comm = WebsocketCommunicator(
            application, f"/ws/chat/{conversation.pk}/{query}", headers=headers
        )
        connected, _ = await comm.connect(timeout=5)
        assert connected is expect_connected
        if connected:
            opened.append(comm)
        return ChatSocket(comm)

    yield open_socket
    for comm in opened:
        with contextlib.suppress(Exception):  # already closed by the test
            await comm.disconnect(timeout=5)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at DEBUG for every logger: the root, every logger with a level of its own (the
    `chat` logger is at INFO in settings), and the ones that do not propagate to the root
    (tests/test_secrets_and_logs.py)."""
    import chat.providers.anthropic  # noqa: F401  (the SDK's loggers exist before levels are set)

    caplog.set_level(logging.DEBUG)
    added: list[logging.Logger] = []
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger):
            continue
        if logger.level != logging.NOTSET:
            caplog.set_level(logging.DEBUG, logger=name)
        if not logger.propagate and caplog.handler not in logger.handlers:
            logger.addHandler(caplog.handler)
            added.append(logger)
    assert logging.getLogger("chat.replies.reply").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("anthropic._base_client").isEnabledFor(logging.DEBUG)
    yield caplog
    for logger in added:
        logger.removeHandler(caplog.handler)


# --------------------------------------------------------------------------------------------
# The benchmark, as a command (tests/test_bench.py)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``python -m bench.run --quick``, once: its bench.json (the table printed, the plot
    written)."""
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "stop latency" in result.stdout  # the table was printed
    assert (out / "bench.png").stat().st_size > 10_000
    yield json.loads((out / "bench.json").read_text())


# --------------------------------------------------------------------------------------------
# The app as real processes (tests/live/, tests/browser/): chat.testing.live
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_fake_anthropic() -> Iterator[FakeProcess]:
    """The fake Anthropic API as its own process (300 deltas, 20 ms apart, by default)."""
    fake = start_fake_anthropic()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def live_app(request: pytest.FixtureRequest, live_fake_anthropic: FakeProcess) -> Iterator[LiveApp]:
    """daphne serving the app on a free port, with its own SQLite file and one user; shared by
    the session (each test recognises its own conversations).

    If any test failed, daphne's log is written to the terminal at the end of the session and
    the temp dir (database, log) is kept; ``LIVE_KEEP_TMP=1`` keeps it anyway.
    """
    app = start_live_app(live_fake_anthropic)
    try:
        yield app
    finally:
        app.stop()
        if request.session.testsfailed:
            # Kept for a post-mortem; its path is in the message.
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            text = f"\n--- daphne log ({app.server.log_path}) ---\n{app.log_tail()}\n"
            if reporter is not None:
                reporter.write_line(text)
            else:
                sys.stderr.write(text)
        elif os.environ.get("LIVE_KEEP_TMP"):
            sys.stderr.write(f"\nlive app files kept in {app.tmp_dir}\n")
        else:
            app.remove_files()


@pytest.fixture
async def owner_client(user: User) -> AsyncClient:
    """`user`, signed in (the page's session) for the attachment views."""
    client = AsyncClient()
    await client.aforce_login(user)
    return client


# --------------------------------------------------------------------------------------------
# daphne with the production settings (tests/live/test_security_headers.py, test_favicon.py)
# --------------------------------------------------------------------------------------------

#: The production settings with one change: STATIC_ROOT in a temp dir, so collectstatic (the
#: manifest that DJANGO_DEBUG=0 needs) never writes into the shared checkout.
PROD_SETTINGS_MODULE = """\
import os

from chatsite.settings import *  # noqa: F403

STATIC_ROOT = os.environ["TEST_STATIC_ROOT"]
"""


@pytest.fixture(scope="module")
def production_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneProcess]:
    tmp = tmp_path_factory.mktemp("production")
    (tmp / "production_test_settings.py").write_text(PROD_SETTINGS_MODULE)
    env = production_env(
        tmp,
        DJANGO_SETTINGS_MODULE="production_test_settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(tmp), os.environ.get("PYTHONPATH", "")])),
        TEST_STATIC_ROOT=str(tmp / "static"),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        # TLS ends at "nginx": test_security_headers.py plays it by sending X-Forwarded-Proto:
        # https. The redirect stays off only because start_daphne's readiness probe speaks
        # plain HTTP.
        DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        DJANGO_SSL_REDIRECT="0",
    )
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")
    with run_daphne(env, log_path=tmp / "daphne.log") as server:
        yield server
