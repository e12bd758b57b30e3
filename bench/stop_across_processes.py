"""Stop latency across processes: a reply streams on daphne A, the stop comes from daphne B.

    .venv/bin/python -m bench.stop_across_processes [N]

Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (`make services`). Starts the
fake Anthropic server (a delta every 20 ms) and two daphne processes on a fresh database, then
stops N replies by an HTTP POST to B and N by a second tab's socket on B, and prints the time
from the stop leaving the client to the fake seeing the upstream connection closed.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from tests.live import FakeProcess, app_env, create_user, manage, start_daphne, start_fake_anthropic
from tests.live_client import Session, Tab
from tests.test_multiprocess import upstream

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def measure(
    n: int, a_url: str, b_url: str, session: Session, fake: FakeProcess
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"HTTP stop on B": [], "second tab's Stop on B": []}
    for kind in results:
        cid = await asyncio.to_thread(session.new_conversation, a_url)
        owner = await Tab.open(a_url, cid, session)
        other = await Tab.open(b_url, cid, session)
        await asyncio.sleep(0.3)
        for i in range(n):
            marker = f"bench-{i}-{secrets.token_hex(3)}"
            start = len(owner.frames)
            await owner.send("send", marker)
            message_id = await owner.turn_started(start=start)
            await owner.batches(message_id, 3)
            if kind.startswith("HTTP"):
                sent = time.monotonic()
                await asyncio.to_thread(session.post_json, b_url, f"/conversations/{cid}/stop/")
            else:
                sent = await other.send("stop")
            record = await upstream(fake.control, marker, finished=True)
            assert record.disconnected_at is not None, "the upstream stream was never closed"
            results[kind].append((record.disconnected_at - sent) * 1000)
            await owner.finished(message_id)
        await owner.close()
        await other.close()
    return results


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    name = f"stopchat_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    tmp = Path(tempfile.mkdtemp(prefix="stopchat-bench-"))
    fake = start_fake_anthropic()
    servers = []
    try:
        env = app_env(
            database_url=ADMIN_URL.rsplit("/", 1)[0] + f"/{name}",
            anthropic_base_url=fake.base_url,
            REDIS_URL="redis://127.0.0.1:6379/0",
        )
        manage(env, "migrate", "--noinput")
        create_user(env, "bench", "bench-password-123")
        servers = [start_daphne(env, log_path=tmp / f"{x}.log") for x in "ab"]
        session = Session(servers[0].base_url)
        session.sign_in("bench", "bench-password-123")
        for server in servers:  # warm: lazy imports, the connection pool
            session.get(server.base_url, "/conversations/active/")
        results = asyncio.run(measure(n, servers[0].base_url, servers[1].base_url, session, fake))
    finally:
        for server in servers:
            server.stop()
        fake.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for kind, values in results.items():
        values.sort()
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        print(
            f"{kind:24} n={len(values):3}  p50 {statistics.median(values):6.1f} ms  "
            f"p90 {p90:6.1f} ms  max {values[-1]:6.1f} ms"
        )


if __name__ == "__main__":
    main()
