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
import time

from chat.testing.live import Cluster, run_cluster
from chat.testing.live_client import Tab, upstream


async def measure(n: int, cluster: Cluster) -> dict[str, list[float]]:
    a_url, b_url, session = cluster.a.base_url, cluster.b.base_url, cluster.session
    results: dict[str, list[float]] = {"HTTP stop on B": [], "second tab's Stop on B": []}
    for kind in results:
        cid = await asyncio.to_thread(session.new_conversation, a_url)
        owner = await Tab.open(a_url, cid, session)
        other = await Tab.open(b_url, cid, session)
        await asyncio.sleep(0.3)
        for i in range(n):
            marker = f"bench-{i}-{secrets.token_hex(3)}"
            message_id = await owner.start_reply(marker)
            if kind.startswith("HTTP"):
                sent = time.monotonic()
                await asyncio.to_thread(session.post_json, b_url, f"/conversations/{cid}/stop/")
            else:
                sent = await other.send("stop")
            record = await upstream(cluster.control, marker, finished=True)
            assert record.disconnected_at is not None, "the upstream stream was never closed"
            results[kind].append((record.disconnected_at - sent) * 1000)
            await owner.finished(message_id)
        await owner.close()
        await other.close()
    return results


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with run_cluster(username="bench") as cluster:
        results = asyncio.run(measure(n, cluster))
    for kind, values in results.items():
        values.sort()
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        print(
            f"{kind:24} n={len(values):3}  p50 {statistics.median(values):6.1f} ms  "
            f"p90 {p90:6.1f} ms  max {values[-1]:6.1f} ms"
        )


if __name__ == "__main__":
    main()
