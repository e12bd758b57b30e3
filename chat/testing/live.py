"""The app as real processes: daphne in a subprocess, talking to a standalone fake Anthropic.

Why: a browser needs a real HTTP + WebSocket server, and "Stop really stops the model" is only
proven when the model's side of the wire (the fake) sees the app hang up. Nothing here touches
Django's ORM in the calling process; a live server has its own database, read back with
``LiveApp.query`` (SQLite) or ``postgres_rows``.

Building blocks (used by tests/ and bench/, e.g. for two daphne processes sharing Redis and
PostgreSQL)::

    fake = start_fake_anthropic()                    # FakeProcess (.base_url, .control, .stop())
    with fresh_postgres_database() as database_url:  # or sqlite:///...
        env = app_env(database_url=database_url, anthropic_base_url=fake.base_url,
                      REDIS_URL=...)
        manage(env, "migrate", "--noinput")
        create_user(env, "alice", "secret")
        with run_daphne(env, port=None, log_path=...) as server:   # DaphneProcess
            server.base_url ...

    app = start_live_app(fake)       # daphne on its own SQLite file, one user: a LiveApp
    ...
    app.stop(); app.remove_files()

The pytest fixtures built on these (``live_fake_anthropic``, ``live_app``) are in
tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from chat.testing.fake_anthropic import SLOW_DELTAS, SLOW_INTERVAL, FakeAnthropicControl
from chat.testing.live_client import Session

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The app's own knobs: inherited values are dropped so a developer's shell (a real API key, a
#: REDIS_URL, a DATABASE_URL, a CHAT_* tuning) can never leak into a live test server.
APP_ENV_PREFIXES = ("CHAT_", "DJANGO_", "ANTHROPIC_")
APP_ENV_KEYS = frozenset({"DATABASE_URL", "REDIS_URL"})

#: The fake's pace for the live server (``SLOW``: 300 deltas 20 ms apart, a 6 s reply, long
#: enough to type and press Stop in the middle of it, short enough that an unstopped one ends).
FAKE_INTERVAL = SLOW_INTERVAL
FAKE_DELTAS = SLOW_DELTAS

#: The settings of the live test servers (a fast password hasher; see chat/testing/settings.py).
TEST_SETTINGS = "chat.testing.settings"

#: PostgreSQL and Redis for several processes sharing them (``make services`` starts both on
#: 127.0.0.1); TEST_POSTGRES_URL / TEST_REDIS_URL point elsewhere.
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

STARTUP_TIMEOUT = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return text[-limit:]


# --------------------------------------------------------------------------------------------
# The fake Anthropic API, standalone
# --------------------------------------------------------------------------------------------


@dataclass
class FakeProcess:
    """A ``python -m chat.testing.fake_anthropic`` subprocess."""

    process: subprocess.Popen[str]
    base_url: str
    control: FakeAnthropicControl
    defaults: dict[str, Any]
    """The config it started with; ``restore()`` puts it back."""

    def restore(self) -> None:
        """Back to the start-up config, with no records (call between tests)."""
        self.control.set_config(**self.defaults)
        self.control.reset()

    def stop(self) -> None:
        _terminate(self.process)


def start_fake_anthropic(
    *, interval: float = FAKE_INTERVAL, deltas: int = FAKE_DELTAS, timeout: float = 10.0
) -> FakeProcess:
    """Start the fake on a free port and wait for its ``listening on URL`` line."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chat.testing.fake_anthropic",
            "--port",
            "0",
            "--interval",
            str(interval),
            "--deltas",
            str(deltas),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        line = ""
    if not line.startswith("listening on "):
        _terminate(process)
        stderr = process.stderr.read() if process.stderr else ""
        raise RuntimeError(f"the fake Anthropic server did not start: {line!r}\n{stderr}")
    base_url = line.removeprefix("listening on ").strip()
    control = FakeAnthropicControl(base_url)
    return FakeProcess(
        process=process,
        base_url=base_url,
        control=control,
        defaults=control.config(),
    )


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------


def app_env(
    *,
    database_url: str,
    anthropic_base_url: str,
    api_key: str = "sk-ant-test-live",
    **extra: str,
) -> dict[str, str]:
    """The environment for one app process: the inherited one minus the app's own knobs,
    plus these. ``extra`` adds or overrides anything (``REDIS_URL=...``, ``CHAT_MODEL=...``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in APP_ENV_KEYS and not k.startswith(APP_ENV_PREFIXES)
    }
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
    env |= {
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DATABASE_URL": database_url,
        "CHAT_PROVIDER": "anthropic",
        "ANTHROPIC_API_KEY": api_key,
        "ANTHROPIC_BASE_URL": anthropic_base_url,
        "DJANGO_DEBUG": "1",
        # A title request after each first reply would shift the fake's request records that
        # tests count; the title tests turn it back on.
        "CHAT_AUTO_TITLE": "0",
        # Every live test signs in as the same few users and sends far more than a person
        # would; the per-user limits are tested on their own (tests/test_limits.py).
        "CHAT_MESSAGES_PER_MINUTE": "100000",
        "CHAT_MAX_CONCURRENT_REPLIES": "1000",
        # A page that closes stops the reply it started at once (as before the grace existed);
        # the grace tests set their own.
        "CHAT_DISCONNECT_GRACE": "0",
        # No admission control: the benchmark loads a process past its capacity on purpose
        # (its overload round sets its own limit), and a loaded test machine's loop lag must
        # not refuse tests' turns. tests/test_admission.py tests it.
        "CHAT_MAX_REPLIES_PER_PROCESS": "0",
        "CHAT_MAX_LOOP_LAG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # Attachments of every test process in one place outside the repo (files are named by
        # new ids: processes sharing a database share it; the others never meet).
        "CHAT_ATTACHMENTS_DIR": str(Path(tempfile.gettempdir()) / "stopchat-test-attachments"),
        "PYTHONUNBUFFERED": "1",
        # The SDK (httpx) honours proxy variables: never send the fake's traffic to a proxy.
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }
    env |= extra
    return env


def manage(env: Mapping[str, str], *args: str, timeout: float = 60.0) -> str:
    """Run ``manage.py`` with that environment; its stdout, or RuntimeError with its output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def create_user(
    env: Mapping[str, str], username: str, password: str, *, staff: bool = False
) -> None:
    """Create (or reset the password of) a user in that environment's database."""
    code = (
        "import sys\n"
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        "user, _ = User.objects.get_or_create(username=sys.argv[1])\n"
        "user.set_password(sys.argv[2])\n"
        f"user.is_staff = user.is_superuser = {staff!r}\n"
        "user.save()\n"
    )
    script = "import django\ndjango.setup()\n" + code
    result = subprocess.run(
        [sys.executable, "-c", script, username, password],
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"creating user {username!r} failed:\n{result.stdout}\n{result.stderr}")


@dataclass
class DaphneProcess:
    """One ``daphne chatsite.asgi:application`` subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    """daphne's stdout and stderr (the app's log lines included)."""
    host: str = "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return _tail(self.log_path, limit=1 << 20)

    def stop(self) -> None:
        _terminate(self.process)


def _terminate(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def wait_http(url: str, process: subprocess.Popen[Any], timeout: float) -> None:
    """Poll ``url`` until it answers 200; RuntimeError if the process exits or time runs out."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            with opener.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last_error = exc
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s (last error: {last_error})")


def start_daphne(
    env: Mapping[str, str],
    *,
    port: int | None = None,
    log_path: Path,
    host: str = "127.0.0.1",
    timeout: float = STARTUP_TIMEOUT,
) -> DaphneProcess:
    """Start daphne with that environment and wait until it serves the login page.

    ``port=None`` picks a free one (retried on a bind race). On failure the log is in the
    RuntimeError.
    """
    attempts = 1 if port is not None else 3
    error: RuntimeError | None = None
    for _ in range(attempts):
        chosen = port if port is not None else free_port(host)
        log = log_path.open("ab")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                host,
                "-p",
                str(chosen),
                "chatsite.asgi:application",
            ],
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        server = DaphneProcess(process=process, port=chosen, log_path=log_path, host=host)
        try:
            wait_http(f"{server.base_url}/accounts/login/", process, timeout)
            return server
        except RuntimeError as exc:
            server.stop()
            error = RuntimeError(f"daphne did not start: {exc}\n--- daphne log ---\n{server.log()}")
            if "Address already in use" not in server.log():
                break
    assert error is not None
    raise error


@contextlib.contextmanager
def run_daphne(
    env: Mapping[str, str], *, port: int | None = None, log_path: Path, host: str = "127.0.0.1"
) -> Iterator[DaphneProcess]:
    server = start_daphne(env, port=port, log_path=log_path, host=host)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# The fixture's object
# --------------------------------------------------------------------------------------------


@dataclass
class LiveApp:
    """A running app: where it is, who may sign in, its database, and the fake behind it."""

    server: DaphneProcess
    username: str
    password: str
    db_path: Path
    fake: FakeProcess
    env: dict[str, str]
    tmp_dir: Path

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def fake_control(self) -> FakeAnthropicControl:
        return self.fake.control

    def url(self, path: str) -> str:
        return self.base_url + path

    def query(self, sql: str, params: tuple[Any, ...] | Mapping[str, Any] = ()) -> list[dict]:
        """Rows of a read-only query on the live server's SQLite database, as dicts.

        Opened read-only per call, so it never holds a lock the server waits on.
        """
        uri = f"file:{self.db_path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params).fetchall()]

    def messages(self, conversation_id: str) -> list[dict]:
        """A conversation's messages in order (``conversation_id`` as in its URL)."""
        hex_id = conversation_id.replace("-", "")
        return self.query(
            "SELECT id, role, status, stop_reason, content FROM chat_message "
            "WHERE conversation_id = ? ORDER BY id",
            (hex_id,),
        )

    def log(self) -> str:
        return self.server.log()

    def log_tail(self) -> str:
        """The end of daphne's log, for a failure report."""
        return _tail(self.server.log_path)

    def stop(self) -> None:
        self.server.stop()

    def remove_files(self) -> None:
        """Delete the temp dir (database, log); call after ``stop``."""
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


def start_live_app(
    fake: FakeProcess,
    *,
    name: str = "live",
    users: Sequence[str] = ("alice",),
    **extra: str,
) -> LiveApp:
    """daphne serving the app on a free port, on its own SQLite file in a new temp dir, with
    ``users`` (all with the same fresh password; the first is ``LiveApp.username``).

    ``extra`` goes to ``app_env`` (e.g. ``CHAT_MAX_CONCURRENT_REPLIES="2"``); the settings are
    TEST_SETTINGS unless it says otherwise. The caller stops it (``stop``) and deletes its files
    (``remove_files``).
    """
    tmp_dir = Path(tempfile.mkdtemp(prefix=f"stopchat-{name}-"))
    db_path = tmp_dir / f"{name}.db"
    env = app_env(
        database_url=f"sqlite:///{db_path}",
        anthropic_base_url=fake.base_url,
        **({"DJANGO_SETTINGS_MODULE": TEST_SETTINGS} | extra),
    )
    password = f"live-{secrets.token_urlsafe(12)}"
    try:
        manage(env, "migrate", "--noinput")
        for username in users:
            create_user(env, username, password)
        server = start_daphne(env, log_path=tmp_dir / "daphne.log")
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return LiveApp(
        server=server,
        username=users[0],
        password=password,
        db_path=db_path,
        fake=fake,
        env=env,
        tmp_dir=tmp_dir,
    )


# --------------------------------------------------------------------------------------------
# PostgreSQL and Redis, for several processes sharing them
# --------------------------------------------------------------------------------------------


def services_missing(
    postgres_url: str = POSTGRES_URL, redis_url: str = REDIS_URL, timeout: float = 3.0
) -> list[str]:
    """What is not reachable of PostgreSQL and Redis (empty when both answer)."""
    import redis

    problems = []
    try:
        redis.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        ).ping()
    except Exception as exc:
        problems.append(f"no Redis at {redis_url} ({exc})")
    try:
        psycopg.connect(postgres_url, connect_timeout=int(timeout), autocommit=True).close()
    except Exception as exc:
        problems.append(f"no PostgreSQL at {postgres_url} ({exc})")
    return problems


@contextlib.contextmanager
def fresh_postgres_database(
    admin_url: str = POSTGRES_URL, *, prefix: str = "stopchat_test"
) -> Iterator[str]:
    """A new, empty database on that server, dropped (connections and all) afterwards; its URL.

    Its name is random, so any number of test sessions and benchmarks can use one server.
    """
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base, _, _ = admin_url.rpartition("/")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------------
# Several app processes sharing PostgreSQL and Redis
# --------------------------------------------------------------------------------------------


@dataclass
class Cluster:
    """App processes behind one PostgreSQL database and one Redis, the fake behind them all, and
    a session signed in once (its cookies work on every process: the session is in the
    database)."""

    servers: list[DaphneProcess]
    fake: FakeProcess
    env: dict[str, str]
    database_url: str
    session: Session
    tmp_dir: Path

    @property
    def a(self) -> DaphneProcess:
        return self.servers[0]

    @property
    def b(self) -> DaphneProcess:
        return self.servers[1]

    @property
    def control(self) -> FakeAnthropicControl:
        return self.fake.control

    def start_process(self, name: str, **extra: str) -> DaphneProcess:
        """Another process of the same app (``extra`` changes its environment); the caller
        stops it."""
        return start_daphne(self.env | extra, log_path=self.tmp_dir / f"daphne-{name}.log")

    def logs(self) -> str:
        """The end of every process's log, for a failure report."""
        return "".join(
            f"\n--- {log.name} ---\n{_tail(log, 6000)}"
            for log in sorted(self.tmp_dir.glob("*.log"))
        )

    def message(self, message_id: int) -> dict[str, Any]:
        """A message's row (id, role, status, stop_reason, content)."""
        rows = postgres_rows(
            self.database_url,
            "SELECT id, role, status, stop_reason, content FROM chat_message WHERE id = %s",
            (message_id,),
        )
        if not rows:
            raise AssertionError(f"message {message_id} is not in the database")
        return rows[0]

    def user_texts(self, conversation_id: str) -> list[str]:
        rows = postgres_rows(
            self.database_url,
            "SELECT content FROM chat_message WHERE conversation_id = %s AND role = 'user' "
            "ORDER BY id",
            (uuid.UUID(conversation_id),),
        )
        return [row["content"] for row in rows]


def postgres_rows(
    database_url: str, sql: str, params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    """Rows of one query on that database, as dicts (a connection of its own, autocommit)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@contextlib.contextmanager
def run_cluster(
    *,
    processes: int = 2,
    username: str = "alice",
    redis_url: str = REDIS_URL,
    postgres_url: str = POSTGRES_URL,
    **extra: str,
) -> Iterator[Cluster]:
    """Start the fake, a fresh PostgreSQL database, and ``processes`` daphne processes sharing
    it and Redis, each warmed by one request (lazy imports, the connection pool, as every process
    behind a proxy has served one); stop and drop everything afterwards. ``extra`` goes to
    ``app_env``; the settings are TEST_SETTINGS unless it says otherwise."""
    tmp_dir = Path(tempfile.mkdtemp(prefix="stopchat-cluster-"))
    fake = start_fake_anthropic()
    servers: list[DaphneProcess] = []
    try:
        with fresh_postgres_database(postgres_url) as database_url:
            env = app_env(
                database_url=database_url,
                anthropic_base_url=fake.base_url,
                REDIS_URL=redis_url,
                **({"DJANGO_SETTINGS_MODULE": TEST_SETTINGS} | extra),
            )
            manage(env, "migrate", "--noinput")
            password = f"cluster-{secrets.token_urlsafe(12)}"
            create_user(env, username, password)
            try:
                for i in range(processes):
                    servers.append(
                        start_daphne(env, log_path=tmp_dir / f"daphne-{'abcdefgh'[i]}.log")
                    )
                session = Session(servers[0].base_url)
                session.sign_in(username, password)
                for server in servers:
                    session.get(server.base_url, "/conversations/active/")
                yield Cluster(servers, fake, env, database_url, session, tmp_dir)
            finally:
                for server in servers:
                    server.stop()
    finally:
        fake.stop()
        shutil.rmtree(tmp_dir, ignore_errors=True)
