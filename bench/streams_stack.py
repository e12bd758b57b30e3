"""The processes a streaming benchmark runs against: the fake Anthropic server, a fresh database,
one or two daphne processes, a signed-in session, and a pool of conversations.

Two setups (``stack(setup=...)``):

* ``"sqlite"``, what `make run` gives: one daphne on a fresh SQLite file with the in-memory
  channel layer (no ``REDIS_URL``). ``DATABASE_URL`` names that fresh file rather than being
  unset, which would be the repository's own ``db.sqlite3``; the settings take the same SQLite
  branch either way.
* ``"postgres"``: a fresh PostgreSQL database (127.0.0.1:5432, dropped at the end) and Redis
  (127.0.0.1:6379), shared by two daphne processes (the two-process figures).

``"auto"`` is ``"postgres"`` when both answer, else ``"sqlite"``. ``Stack.start_server`` starts
another daphne on the same database with extra settings (the overload round's). Everything
started is stopped (and the database dropped) on any exit, Ctrl+C included.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from chat.testing.fake_anthropic import FakeAnthropicControl
from chat.testing.live import (
    REPO_ROOT,
    DaphneProcess,
    FakeProcess,
    app_env,
    free_port,
    manage,
    postgres_rows,
    start_daphne,
    start_fake_anthropic,
    wait_http,
)
from chat.testing.live_client import Session

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
USERNAME = "bench"

#: Per-user limits lifted for the bench user: one user opens hundreds of replies at once (the
#: defaults, 3 concurrent replies and 20 messages a minute, would refuse all but three). The
#: per-process admission control is lifted too (its limit of live replies, and the refusal of
#: turns while the event loop lags: 0 turns it off), so that a round at N measures a process
#: carrying N replies; the overload round's daphne has its own (``Stack.start_server``).
LIMIT_ENV = {
    "CHAT_MAX_CONCURRENT_REPLIES": "100000",
    "CHAT_MESSAGES_PER_MINUTE": "1000000",
    "CHAT_MAX_REPLIES_PER_PROCESS": "100000",
    "CHAT_MAX_LOOP_LAG": "0",
}
#: Per-process admission settings: the overload round's daphne leaves these to the app's
#: defaults unless it sets them.
ADMISSION_KEYS = ("CHAT_MAX_REPLIES_PER_PROCESS", "CHAT_MAX_LOOP_LAG")

SETUPS = ("sqlite", "postgres")


def postgres_reachable() -> bool:
    return port_open(5432) and port_open(6379)


def port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Stack:
    fake: FakeProcess
    control: FakeAnthropicControl
    """The fake's control API with a long client timeout (records of hundreds of streams)."""
    servers: list[DaphneProcess]
    session: Session
    env: dict[str, str]
    backend: str
    setup: str = "sqlite"
    database_url: str = ""
    notes: list[str] = field(default_factory=list)
    tmp: Path = Path()
    _pool: list[str] = field(default_factory=list)
    extra_servers: list[DaphneProcess] = field(default_factory=list)

    @property
    def multi_process(self) -> bool:
        return len(self.servers) > 1

    def start_server(self, name: str, *, admission: bool = False, **settings: str) -> DaphneProcess:
        """Another daphne on the same database and fake, with these settings on top (blocking,
        a few seconds); stopped with the stack. With ``admission``, the per-process admission
        settings are the app's own defaults except those given."""
        env = dict(self.env)
        if admission:
            for key in ADMISSION_KEYS:
                env.pop(key, None)
        server = start_daphne(env | settings, log_path=self.tmp / f"daphne-{name}.log")
        self.extra_servers.append(server)
        self.session.get(server.base_url, "/conversations/active/")  # warm, as the others
        return server

    def stop_servers(self) -> None:
        """Stop the stack's own daphne processes (the extra ones stay)."""
        for server in self.servers:
            server.stop()

    def message_counts(self, conversation_ids: list[str]) -> dict[str, dict[str, int]]:
        """Message rows per conversation and role, read straight from the database (read-only
        on SQLite; its own connection on PostgreSQL): ``{conversation id: {role: count}}``."""
        out: dict[str, dict[str, int]] = {cid: {} for cid in conversation_ids}
        if not conversation_ids:
            return out
        if self.setup == "postgres":
            rows = postgres_rows(
                self.database_url,
                "SELECT conversation_id::text AS cid, role, count(*) AS n FROM chat_message "
                "WHERE conversation_id = ANY(%s::uuid[]) GROUP BY 1, 2",
                (conversation_ids,),
            )
            found = [(str(r["cid"]), str(r["role"]), int(r["n"])) for r in rows]
        else:
            by_hex = {cid.replace("-", ""): cid for cid in conversation_ids}
            path = self.database_url.removeprefix("sqlite:///")
            with contextlib.closing(
                sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=20)
            ) as conn:
                marks = ",".join("?" * len(by_hex))
                cursor = conn.execute(
                    "SELECT conversation_id, role, count(*) FROM chat_message "
                    f"WHERE conversation_id IN ({marks}) GROUP BY 1, 2",
                    list(by_hex),
                )
                found = [(by_hex[str(c)], str(r), int(n)) for c, r, n in cursor.fetchall()]
        for cid, role, n in found:
            out[cid][role] = n
        return out

    def conversations(self, n: int) -> list[str]:
        """N fresh conversations of the bench user (created in bulk, beforehand when possible)."""
        if len(self._pool) < n:
            self._pool += create_conversations(self.env, max(n - len(self._pool), 200))
        taken, self._pool = self._pool[:n], self._pool[n:]
        return taken


def create_conversations(
    env: dict[str, str], count: int, *, password: str | None = None
) -> list[str]:
    """Bulk-create conversations for the bench user in one Django process; their ids. With
    ``password`` the user is created (or its password reset) first, in the same process."""
    script = (
        "import json, sys\n"
        "import django\n"
        "django.setup()\n"
        "from django.contrib.auth import get_user_model\n"
        "from chat.models import Conversation\n"
        "User = get_user_model()\n"
        "if sys.argv[3]:\n"
        "    user, _ = User.objects.get_or_create(username=sys.argv[1])\n"
        "    user.set_password(sys.argv[3])\n"
        "    user.save()\n"
        "user = User.objects.get(username=sys.argv[1])\n"
        "made = Conversation.objects.bulk_create(\n"
        "    [Conversation(user=user) for _ in range(int(sys.argv[2]))], batch_size=500\n"
        ")\n"
        "print(json.dumps([str(c.pk) for c in made]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, USERNAME, str(count), password or ""],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"creating conversations failed:\n{result.stdout}\n{result.stderr}")
    ids: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return ids


def start_profiled_daphne(env: dict[str, str], *, log_path: Path, out: Path) -> DaphneProcess:
    """daphne under pyinstrument; its session is saved to ``out`` (a .pyisession file, see
    ``render_profile``) when it is stopped by SIGINT."""
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyinstrument",
                "-r",
                "pyisession",
                "-o",
                str(out),
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "chatsite.asgi:application",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = DaphneProcess(process=process, port=port, log_path=log_path)
    try:
        wait_http(f"{server.base_url}/accounts/login/", process, 30)
    except RuntimeError:
        server.stop()
        raise
    return server


def stop_profiled(server: DaphneProcess, timeout: float = 60) -> None:
    """SIGINT (daphne stops cleanly and pyinstrument writes its report), then the usual stop."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout)
    server.stop()


def render_profile(session: Path, out: Path) -> None:
    """Two text reports of a saved pyinstrument session: the call tree (frames over 1% of the
    samples, library frames shown) to ``out``, and a flat list by own time beside it."""
    base = [sys.executable, "-m", "pyinstrument", f"--load={session}", "-r", "text"]
    tree = ["--show-all", "-p", "processor_options.filter_threshold=0.01", "-o", str(out)]
    flat_out = out.with_name(out.stem + "-flat" + out.suffix)
    flat = ["--show-all", "-p", "flat=true", "-o", str(flat_out)]
    for extra in (tree, flat):
        subprocess.run([*base, *extra], cwd=REPO_ROOT, check=True, timeout=300)


@contextlib.contextmanager
def stack(
    *,
    interval: float,
    deltas: int,
    processes: int = 2,
    profile_to: Path | None = None,
    batch_interval: str | None = None,
    setup: str = "auto",
) -> Iterator[Stack]:
    """Start everything; yield the Stack; stop everything and drop the database. ``processes``
    applies to the ``"postgres"`` setup (``"sqlite"`` runs one)."""
    if setup == "auto":
        setup = "postgres" if postgres_reachable() else "sqlite"
    elif setup == "postgres" and not postgres_reachable():
        raise RuntimeError("PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 must answer")
    elif setup not in SETUPS:
        raise ValueError(f"unknown setup {setup!r}: one of {SETUPS} or 'auto'")
    notes: list[str] = [
        "per-user limits lifted for the bench user (CHAT_MAX_CONCURRENT_REPLIES="
        f"{LIMIT_ENV['CHAT_MAX_CONCURRENT_REPLIES']}, CHAT_MESSAGES_PER_MINUTE="
        f"{LIMIT_ENV['CHAT_MESSAGES_PER_MINUTE']}): the defaults (3 concurrent replies, 20 "
        "messages a minute) would refuse all but three of one user's replies; CHAT_AUTO_TITLE=0",
        "per-process admission control lifted too (CHAT_MAX_REPLIES_PER_PROCESS="
        f"{LIMIT_ENV['CHAT_MAX_REPLIES_PER_PROCESS']}, CHAT_MAX_LOOP_LAG="
        f"{LIMIT_ENV['CHAT_MAX_LOOP_LAG']}) except in the overload round, so that a round at N "
        "measures a process carrying N replies",
    ]
    tmp = Path(tempfile.mkdtemp(prefix="stopchat-bench-streams-"))
    pg = setup == "postgres"
    db_name = f"stopchat_bench_{secrets.token_hex(4)}" if pg else ""
    fake: FakeProcess | None = None
    servers: list[DaphneProcess] = []
    profiled: DaphneProcess | None = None
    result: Stack | None = None
    created_db = False
    try:
        extra: dict[str, str] = dict(LIMIT_ENV) | {"CHAT_AUTO_TITLE": "0"}
        if batch_interval is not None:
            extra["CHAT_BATCH_INTERVAL"] = batch_interval
        if pg:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{db_name}"')
            created_db = True
            database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}"
            extra["REDIS_URL"] = REDIS_URL
            backend = "PostgreSQL + Redis channel layer"
        else:
            database_url = f"sqlite:///{tmp / 'bench.db'}"
            backend = "SQLite + in-memory channel layer (as `make run`), one daphne"
            processes = 1
        fake = start_fake_anthropic(interval=interval, deltas=deltas)
        env = app_env(database_url=database_url, anthropic_base_url=fake.base_url, **extra)
        manage(env, "migrate", "--noinput", timeout=180)
        password = f"bench-{secrets.token_urlsafe(12)}"

        def start(i: int) -> DaphneProcess:
            log_path = tmp / f"daphne-{i}.log"
            if i == 0 and profile_to is not None:
                return start_profiled_daphne(env, log_path=log_path, out=profile_to)
            return start_daphne(env, log_path=log_path)

        # The servers start (each a few seconds of imports) while the user is created.
        with ThreadPoolExecutor(max_workers=processes + 1) as pool:
            pending = [pool.submit(start, i) for i in range(processes)]
            conversations = pool.submit(create_conversations, env, 200, password=password)
            failures: list[BaseException] = []
            for i, future in enumerate(pending):
                try:
                    servers.append(future.result())
                except BaseException as exc:
                    failures.append(exc)
                else:
                    if i == 0 and profile_to is not None:
                        profiled = servers[-1]
            pool_ids = conversations.result()
            if failures:
                raise failures[0]
        session = Session(servers[0].base_url)
        session.sign_in(USERNAME, password)
        for server in servers:  # warm: lazy imports, the connection pool
            session.get(server.base_url, "/conversations/active/")
        result = Stack(
            fake=fake,
            control=FakeAnthropicControl(fake.base_url, timeout=180),
            servers=servers,
            session=session,
            env=env,
            backend=backend,
            setup=setup,
            database_url=database_url,
            notes=notes,
            tmp=tmp,
        )
        result._pool = pool_ids
        yield result
    finally:
        for server in result.extra_servers if result is not None else []:
            server.stop()
        for server in servers:
            if server is profiled:
                stop_profiled(server)
            else:
                server.stop()
        if fake is not None:
            fake.stop()
        if created_db:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        if os.environ.get("BENCH_KEEP_TMP"):
            sys.stderr.write(f"bench files kept in {tmp}\n")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
