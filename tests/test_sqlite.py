"""The default database, SQLite, is set up for a concurrent web app: read back from a real
connection of the app's own settings, in a process of its own, on a fresh file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from chat.testing.live import REPO_ROOT, app_env

READ_PRAGMAS = """
import json
from django.db import connection
with connection.cursor() as cursor:
    found = {}
    for name in ("journal_mode", "synchronous", "busy_timeout", "temp_store", "foreign_keys"):
        cursor.execute(f"PRAGMA {name}")
        found[name] = cursor.fetchone()[0]
found["transaction_mode"] = connection.transaction_mode
found["conn_max_age"] = connection.settings_dict["CONN_MAX_AGE"]
print(json.dumps(found))
"""


def test_sqlite_runs_in_wal_with_normal_sync_a_busy_timeout_and_immediate_transactions(
    tmp_path: Path,
) -> None:
    env = app_env(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", anthropic_base_url="http://127.0.0.1:9"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", READ_PRAGMAS],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pragmas = json.loads(done.stdout.strip().splitlines()[-1])
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL
        "busy_timeout": 20000,
        "temp_store": 2,  # MEMORY
        "foreign_keys": 1,
        "transaction_mode": "IMMEDIATE",
        "conn_max_age": 600,
    }
