"""Figure 7: the server's time to render a conversation page of 1,000 messages.

    .venv/bin/python -m bench.page [--quick] [--profile]

A child process gets its own SQLite database (migrated afresh), one user and one conversation of
1,000 messages: 500 questions and 500 finished replies in Markdown (paragraphs, lists, inline
code, links; every fourth reply with a highlighted code block, every sixth with a table, every
tenth interrupted). The page is then fetched with Django's test client in that process (the
full middleware chain, the real database; DEBUG off so neither the ORM nor the templates keep
debug records) and the time from request to complete response is taken: the median of several
runs after a warm-up. Also timed the same way:

- the "Show earlier messages" fragment, when the page offers one (the next page of older
  messages, as htmx fetches it);
- the socket's catch-up frame for this conversation (chat/ws/render.catch_up of what
  chat/selectors.conversation_messages returns): what a tab whose page is out of date is sent
  on connect. It is rendered on the event loop of the server process, so every socket of the
  process waits that long.

``--profile`` prints a pyinstrument profile of one page load to stderr.

The target: the page in at most 300 ms.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chat.testing.live import app_env

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 300.0
MESSAGES = 1000
RUNS_QUICK, RUNS_FULL = 2, 10
#: The test client's host.
_ENV = {"DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver"}

_PARAGRAPHS = [
    "The short answer is **yes**, but it depends on how you measure it. Start with the "
    "simplest thing that works, then look at where the time actually goes.",
    "A `dict` lookup is O(1) on average; the constant factor matters more than the "
    "asymptotics once the data fits in cache. See [the docs](https://docs.python.org/3/) "
    "for the details.",
    "Keep in mind that *premature optimisation* is rarely worth it: profile first, change "
    "one thing at a time, and keep the benchmark honest.",
    "If the service is behind a proxy, set the timeout on both sides. Otherwise the shorter "
    "one wins and the error message points at the wrong component.",
    "Here is what I would try, in order of effort: caching the result, batching the writes, "
    "and only then rewriting the hot loop in a faster language.",
]
_LISTS = [
    "- measure the baseline\n- change one thing\n- measure again\n- keep the change only if "
    "it helps",
    "1. Read the error message.\n2. Reproduce it with the smallest input.\n3. Fix the cause, "
    "not the symptom.",
]
_CODE = [
    (
        "python",
        "import statistics\n\n\ndef p90(values: list[float]) -> float:\n"
        '    """The 90th percentile, nearest rank."""\n    ordered = sorted(values)\n'
        "    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]\n\n\n"
        "print(p90([1.0, 2.5, 3.2]), statistics.median([1, 2, 3]))\n",
    ),
    (
        "javascript",
        "function debounce(fn, ms) {\n  let timer = null;\n  return function (...args) {\n"
        "    clearTimeout(timer);\n    timer = setTimeout(() => fn.apply(this, args), ms);\n"
        "  };\n}\n",
    ),
    (
        "bash",
        'for f in *.log; do\n  grep -c "ERROR" "$f" | xargs echo "$f:"\ndone\n',
    ),
]
_TABLE = "| option | default | effect |\n|:--|:-:|--:|\n| `timeout` | 30 | seconds |\n" + (
    "| `retries` | 2 | attempts |\n"
)


def _reply_text(rng: random.Random, index: int) -> str:
    parts = [rng.choice(_PARAGRAPHS), rng.choice(_LISTS), rng.choice(_PARAGRAPHS)]
    if index % 4 == 0:
        language, code = rng.choice(_CODE)
        parts.insert(2, f"```{language}\n{code}```")
    if index % 6 == 0:
        parts.append(_TABLE)
    return "\n\n".join(parts)


def _seed(count: int) -> tuple[Any, Any]:
    """A user and a conversation of `count` messages (questions and finished replies)."""
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.utils import timezone

    from chat.models import Conversation, Message
    from chat.testing.conversations import append

    rng = random.Random(7)
    user = User.objects.create_user("bench", password="bench-password-123")
    conversation = Conversation.objects.create(user=user, title="A long conversation")
    now = timezone.now()
    rows: list[Message] = []
    for i in range(count // 2):
        rows.append(
            Message(
                conversation=conversation,
                role=Message.Role.USER,
                content=f"Question {i}: how would you approach problem number {i}?",
            )
        )
        interrupted = i % 10 == 9
        text = _reply_text(rng, i)
        rows.append(
            Message(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                content=text[: len(text) // 2] if interrupted else text,
                status=Message.Status.INTERRUPTED if interrupted else Message.Status.COMPLETE,
                stop_reason=(
                    Message.StopReason.USER_STOP if interrupted else Message.StopReason.END_TURN
                ),
                input_tokens=1200 + 40 * i,
                output_tokens=len(text) // 4,
                tokens_estimated=interrupted,
                time_to_first_token_ms=400 + i % 300,
                model="claude-sonnet-4-6",
                max_tokens=4096,
                finished_at=now - timedelta(seconds=count - i),
            )
        )
    append(conversation, rows)
    return user, conversation


def _timed(fn: Any, runs: int) -> tuple[list[float], Any]:
    fn()  # warm-up: template loading, lexers, the first connection
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return times, result


def _summary(times: list[float]) -> dict[str, Any]:
    return {
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "max_ms": round(max(times), 1),
        "runs": len(times),
    }


def _count_queries(fn: Any) -> int:
    from django.db import connection

    count = 0

    def counter(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal count
        count += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counter):
        fn()
    return count


def _child(quick: bool, profile: bool) -> dict[str, Any]:
    import django

    django.setup()
    from django.conf import settings

    # As in production: no query log, no template debug records (the template engine is built
    # on first use, so this is still in time for it).
    settings.DEBUG = False
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from chat.data import selectors
    from chat.ws import render

    call_command("migrate", verbosity=0, interactive=False)
    user, conversation = _seed(MESSAGES)
    client = Client()
    client.force_login(user)
    url = reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk})
    runs = RUNS_QUICK if quick else RUNS_FULL

    def page() -> Any:
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        return response

    if profile:
        from pyinstrument import Profiler

        page()
        profiler = Profiler(interval=0.0005)
        profiler.start()
        page()
        profiler.stop()
        sys.stderr.write(profiler.output_text(unicode=True, color=False, show_all=False))

    times, response = _timed(page, runs)
    html = response.content.decode()
    figures: dict[str, Any] = {
        "messages_in_conversation": MESSAGES,
        "runs_per_section": runs,
        "page": {
            **_summary(times),
            "messages_rendered": html.count("<article "),
            "bytes": len(response.content),
            "queries": _count_queries(page),
        },
        "target_ms": TARGET_MS,
    }
    figures["target_met"] = figures["page"]["median_ms"] <= TARGET_MS

    earlier = re.search(r'hx-get="([^"]*\?before=\d+)"', html)
    if earlier:
        earlier_url = earlier.group(1).replace("&amp;", "&")

        def earlier_page() -> Any:
            response = client.get(earlier_url, headers={"HX-Request": "true"})
            assert response.status_code == 200, response.status_code
            return response

        times, response = _timed(earlier_page, runs)
        figures["earlier_fragment"] = {
            **_summary(times),
            "messages_rendered": response.content.decode().count("<article "),
            "bytes": len(response.content),
        }
    else:
        figures["earlier_fragment"] = None

    def catch_up() -> str:
        return render.catch_up(selectors.conversation_messages(conversation=conversation))

    times, frame = _timed(catch_up, runs)
    figures["catch_up_frame"] = {
        **_summary(times),
        "messages_rendered": frame.count("<article "),
        "bytes": len(frame.encode()),
    }
    return figures


def run_child(module: str, args: list[str], *, timeout: float, **env_extra: str) -> dict[str, Any]:
    """Run ``python -m module --child ARGS`` with the app's environment on a fresh SQLite file
    (deleted afterwards); the JSON object it prints on its last stdout line."""
    with tempfile.TemporaryDirectory(prefix="stopchat-bench-") as tmp:
        env = app_env(
            database_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
            anthropic_base_url="http://127.0.0.1:9",  # a child that streams sets its own
            **env_extra,
        )
        result = subprocess.run(
            [sys.executable, "-m", module, "--child", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if os.environ.get("BENCH_VERBOSE") and result.stderr:
        sys.stderr.write(result.stderr)
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(
            f"{module} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
            f"{result.stderr[-4000:]}"
        )
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def measure(*, quick: bool) -> dict[str, Any]:
    """The page's render time and the related figures (see the module's docstring)."""
    return run_child("bench.page", ["--quick"] if quick else [], timeout=300, **_ENV)


def main() -> None:
    args = sys.argv[1:]
    quick, profile = "--quick" in args, "--profile" in args
    if "--child" in args:
        print(json.dumps(_child(quick, profile)))
        return
    if profile:
        os.environ["BENCH_VERBOSE"] = "1"
        figures = run_child("bench.page", [*args], timeout=300, **_ENV)
    else:
        figures = measure(quick=quick)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
