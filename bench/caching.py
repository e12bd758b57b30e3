"""Figure 8: what prompt caching saves on a long conversation (issue 14).

    .venv/bin/python -m bench.caching [--quick]

In a child process with its own SQLite database (migrated afresh, deleted afterwards), the same
conversation is held twice through the app's own turn API (``chat.replies.turns.start``, held
turns, as the terminal chat holds them), so the app's provider code (chat/providers/anthropic.py)
builds every request, streamed by the real Anthropic SDK from the fake Anthropic server
(chat.testing.fake_anthropic.FakeAnthropicServer, in-process) and its simulated prompt cache:
once with ``CHAT_PROMPT_CACHING`` off, once on (the fake's cache cleared between the two).

The conversation (20 turns; 6 in quick mode) is the same text both times, made up from a fixed
seed: a system prompt of about 300 words, user messages of 50-150 words and replies of 200-400
words (the fake's ``text``, set before each turn; its ``deltas``, which it reports as the output
tokens, are the reply's characters / 4, as it counts input). The model is the site's default
when it has a price in settings.CHAT_PRICES, else claude-sonnet-4-6.

From the saved assistant messages, for each run: the input tokens by kind (billed in full, read
from the cache, written to it), their cost and the output's cost in USD (chat.data.pricing, the
app's own price table), each turn's input cost, and the conversation's cost as the app itself
shows it (selectors.conversation_usage). Then the saving in input cost (and in total cost) with
caching against without. Checked on the way: every request carried a top-level
``cache_control`` exactly when caching was on, and each message stored the usage the fake
reported for its request.

No target: the figure says what caching saves on such a conversation.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from decimal import Decimal
from typing import Any

from bench.page import run_child

TURNS_FULL, TURNS_QUICK = 20, 6
SEED = 14
FALLBACK_MODEL = "claude-sonnet-4-6"

_SYSTEM = (
    "You are a senior software engineer helping a small team run a Django web application in "
    "production. The team is three developers and one part-time operations person; they deploy "
    "from a single Git repository to two virtual machines behind a load balancer, with "
    "PostgreSQL as the database and Redis for caching and the channel layer. Answer in clear, "
    "plain English. Prefer short paragraphs and, where steps are involved, numbered lists. When "
    "you show code, use fenced code blocks with the language named, keep examples minimal and "
    "runnable, and explain any line that is not obvious. Do not invent APIs: if you are not "
    "sure a function or setting exists in the version the team uses, say so and suggest how to "
    "check. When a question has several reasonable answers, give the one you would choose and "
    "say briefly why, then mention the alternatives in a sentence each. Point out risks to data "
    "or availability before anything else: a migration that locks a large table, a setting that "
    "disables a security check, a command that cannot be undone. Assume the team reads the "
    "Django, PostgreSQL and Redis documentation but has little time; link to the relevant "
    "section by name rather than quoting it at length. Keep answers focused on the question; if "
    "the question reveals a bigger problem, say so at the end in two or three sentences. Never "
    "ask for secrets such as passwords, API keys or private certificates, and if the user pastes "
    "one, tell them to rotate it. Use metric units and twenty-four hour times. If you need more "
    "information to answer well, ask at most two precise questions, and still give the best "
    "answer you can with what you have. Remember that the team values boring, well-understood "
    "solutions over clever ones, and that every new service they run is one more thing to "
    "monitor, upgrade and back up. Treat performance advice with care: measure first, change one "
    "thing at a time, and keep the benchmark honest. Finally, be kind: the people asking are "
    "competent and busy, and a direct answer is the most respectful one."
)

_USER = [
    "We see occasional timeouts on the checkout page during the evening peak.",
    "The slow query log shows the orders list taking over two seconds.",
    "I am not sure whether the problem is the database or the application servers.",
    "Last week we added an index on the created column, but it did not help much.",
    "Our monitoring shows CPU on the database host at about sixty percent.",
    "The application servers run Gunicorn with four workers each.",
    "Could you explain what you would look at first, and why?",
    "We would rather not add another service unless it is really necessary.",
    "Is there a way to test this safely before we change production?",
    "The team is split between caching the page and fixing the query.",
    "Here is what the profiler says about the view that renders the list.",
    "Most of the time seems to go into the template, not the query itself.",
    "We also noticed that the connection count on PostgreSQL climbs during the peak.",
    "What would a sensible connection pool size be for our setup?",
    "Please keep the answer short; I will share it with the rest of the team.",
    "Does the same advice apply to the admin pages, which are also slow?",
    "We run the migrations by hand after each deploy, which feels fragile.",
    "How would you roll back if the new version misbehaves after a deploy?",
    "Thanks, that helped. One more thing about the background jobs.",
    "Our Celery workers sometimes pile up tasks overnight and never catch up.",
]

_REPLY = [
    "The short answer is to measure before changing anything, because the symptom you describe "
    "fits at least three different causes.",
    "Start with the database: turn on `log_min_duration_statement` for queries above 500 ms and "
    "collect a day of logs, including the evening peak.",
    "If the same few queries dominate, look at their plans with `EXPLAIN (ANALYZE, BUFFERS)` and "
    "check whether the index you added is actually used.",
    "An index on `created` helps a range filter, but not a query that sorts by another column or "
    "filters on a function of the date.",
    "On the application side, count the queries per request: Django Debug Toolbar in staging, "
    "or a small middleware that logs `len(connection.queries)` when `DEBUG` is on.",
    "A list page that runs one query per row is the most common cause of a slow template; "
    "`select_related` and `prefetch_related` usually fix it in a line or two.",
    "Four Gunicorn workers per machine is reasonable for CPU-bound work, but if the views wait "
    "on the database most of the time, threads or more workers may help.",
    "Be careful with the connection count: every worker holds its own connection, so two "
    "machines with many workers can exhaust `max_connections` during a peak.",
    "A connection pooler such as PgBouncer in transaction mode is the boring fix, but it is one "
    "more service; Django 5.1 and later can pool connections itself with psycopg 3.",
    "Caching the whole page is tempting, but it hides the slow query instead of fixing it, and "
    "it makes every change to the page harder to reason about.",
    "To test safely, restore last night's backup into a staging database and replay the slow "
    "queries there; the timings will be close enough to compare before and after.",
    "For the deploys, run the migrations as a separate step before switching traffic, and keep "
    "each migration backwards compatible with the previous release of the code.",
    "That way a rollback is just pointing the load balancer back at the previous release, "
    "without touching the database schema at all.",
    "Adding a column with a default is cheap on recent PostgreSQL versions, but adding an index "
    "on a large table locks writes unless you use `CREATE INDEX CONCURRENTLY`.",
    "For the background jobs, check whether the tasks are slow or simply too many: the queue "
    "length over time and the task duration tell you which.",
    "If tasks pile up overnight, set a time limit on each task, make them idempotent and retry "
    "with backoff, so that one stuck task does not block a worker for hours.",
    "I would not add Redis Sentinel or a second queue broker until the simple measures have "
    "been tried; they add failure modes of their own.",
    "Keep a short runbook of what you changed and what it did to the numbers; it will save you "
    "the same investigation the next time the symptom returns.",
    "Here is a minimal middleware that logs slow requests with their query count, which is "
    "usually enough to find the culprit within a day.",
    "To sum up: measure, fix the worst query, check the connection count, and only then "
    "consider caching or new infrastructure.",
]


def _words(text: str) -> int:
    return len(text.split())


def _compose(rng: random.Random, bank: list[str], low: int, high: int, lead: str = "") -> str:
    """Sentences of `bank` (in a random order, repeated if need be) up to a word count drawn
    from [low, high], in paragraphs of about four sentences."""
    target = rng.randint(low, high)
    sentences = [lead] if lead else []
    pool: list[str] = []
    while sum(map(_words, sentences)) < target:
        if not pool:
            pool = rng.sample(bank, len(bank))
        sentences.append(pool.pop())
    paragraphs = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
    return "\n\n".join(paragraphs)


def script(turns: int) -> tuple[str, list[tuple[str, str]]]:
    """The system prompt, and each turn's (user message, reply): the same for both runs."""
    rng = random.Random(SEED)
    exchanges = [
        (
            _compose(rng, _USER, 50, 150, lead=f"Question {i} of our review:"),
            _compose(rng, _REPLY, 200, 400, lead=f"On point {i}:"),
        )
        for i in range(1, turns + 1)
    ]
    return _SYSTEM, exchanges


def _usd(amount: Decimal) -> float:
    return float(round(amount, 8))


async def _converse(conversation: Any, exchanges: list[tuple[str, str]], server: Any) -> None:
    """Each turn through the app's turn API, held to its end; the fake answers with the
    scripted reply (one output token reported per four characters)."""
    from chat.models import Message
    from chat.replies import turns

    for i, (question, answer) in enumerate(exchanges, start=1):
        server.update_config(text=answer, deltas=max(1, len(answer) // 4))
        async with turns.start(conversation=conversation, text=question) as turn:
            async for _event in turn:
                pass
            message = await turn.reply.wait()
        if message.status != Message.Status.COMPLETE:
            raise RuntimeError(f"turn {i}: the reply ended {message.status}: {message.error}")


def _run(user: Any, model: str, caching: bool, turns: int, server: Any) -> dict[str, Any]:
    """One conversation with caching on or off: its figures from the saved messages."""
    from django.test import override_settings

    from chat.data import selectors
    from chat.data.pricing import ModelTotals, cost_of, price_for
    from chat.models import Conversation, Message
    from chat.testing.fake_anthropic import count_input_tokens

    system, exchanges = script(turns)
    conversation = Conversation.objects.create(
        user=user,
        title=f"Caching {'on' if caching else 'off'}",
        model=model,
        system_prompt=system,
        thinking_budget=0,
    )
    server.reset()  # no records, and an empty prompt cache
    with override_settings(CHAT_PROMPT_CACHING=caching):
        asyncio.run(_converse(conversation, exchanges, server))
    records = [r for r in server.requests if r.path.split("?")[0] == "/v1/messages"]
    replies = list(
        Message.objects.filter(conversation=conversation, role=Message.Role.ASSISTANT).order_by(
            "id"
        )
    )
    if len(records) != turns or len(replies) != turns:
        raise RuntimeError(f"{turns} turns made {len(records)} requests, {len(replies)} replies")
    price = price_for(model)
    assert price is not None
    per_turn: list[dict[str, Any]] = []
    costs_in: list[Decimal] = []
    costs_out: list[Decimal] = []
    for record, reply in zip(records, replies, strict=True):
        kinds = (
            reply.input_tokens or 0,
            reply.cache_read_input_tokens or 0,
            reply.cache_creation_input_tokens or 0,
        )
        reported = (
            record.input_tokens,
            record.cache_read_input_tokens,
            record.cache_creation_input_tokens,
        )
        if kinds != reported:
            raise RuntimeError(f"reply {reply.pk} stored {kinds}, the fake reported {reported}")
        prompt = count_input_tokens(record.body)
        if sum(kinds) != prompt:
            raise RuntimeError(f"reply {reply.pk}: {kinds} do not add up to the prompt, {prompt}")
        if ("cache_control" in record.body) != caching:
            raise RuntimeError(f"request {record.index}: cache_control sent: {not caching}")
        plain, read, write = kinds
        row = ModelTotals(
            model=model,
            input_tokens=plain,
            output_tokens=0,
            replies=1,
            cache_read_tokens=read,
            cache_creation_tokens=write,
        )
        cost_in = cost_of(row, price)
        cost_out = cost_of(
            ModelTotals(model=model, input_tokens=0, output_tokens=reply.output_tokens or 0),
            price,
        )
        costs_in.append(cost_in)
        costs_out.append(cost_out)
        per_turn.append(
            {"prompt": prompt, "uncached": plain, "cache_read": read, "cache_write": write}
        )
    shown = selectors.conversation_usage(conversation_id=conversation.pk)
    input_cost, output_cost = sum(costs_in, Decimal(0)), sum(costs_out, Decimal(0))
    if shown.cost_usd != input_cost + output_cost:
        raise RuntimeError(f"the app shows {shown.cost_usd}, the turns add up to more or less")
    return {
        "caching": caching,
        "requests_with_cache_control": sum("cache_control" in r.body for r in records),
        "input_tokens_uncached": sum(t["uncached"] for t in per_turn),
        "input_tokens_cache_read": sum(t["cache_read"] for t in per_turn),
        "input_tokens_cache_write": sum(t["cache_write"] for t in per_turn),
        "input_tokens_total": sum(t["prompt"] for t in per_turn),
        "output_tokens": sum(r.output_tokens or 0 for r in replies),
        "input_cost_usd": _usd(input_cost),
        "output_cost_usd": _usd(output_cost),
        "total_cost_usd": _usd(input_cost + output_cost),
        "cost_shown_by_app": shown.cost_text,
        "first_cache_read_turn": next(
            (i for i, t in enumerate(per_turn, start=1) if t["cache_read"]), None
        ),
        "per_turn_input_cost_usd": [_usd(c) for c in costs_in],
        "per_turn_input_tokens": per_turn,
    }


def _saving(off: float, on: float) -> float | None:
    return round(100 * (off - on) / off, 1) if off else None


def _child(quick: bool) -> dict[str, Any]:
    from chat.testing.fake_anthropic import FakeAnthropicServer, FakeConfig

    turns = TURNS_QUICK if quick else TURNS_FULL
    server = FakeAnthropicServer(FakeConfig(interval=0.0, deltas=1)).start()
    try:
        os.environ["ANTHROPIC_BASE_URL"] = server.base_url
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth.models import User
        from django.core.management import call_command

        from chat.data.pricing import price_for

        call_command("migrate", verbosity=0, interactive=False)
        user = User.objects.create_user("bench", password="bench-password-123")
        model = settings.CHAT_MODEL if price_for(settings.CHAT_MODEL) else FALLBACK_MODEL
        price = price_for(model)
        if price is None:
            raise RuntimeError(f"no price for {model} in settings.CHAT_PRICES")
        off = _run(user, model, False, turns, server)
        on = _run(user, model, True, turns, server)
        cache_config = server.config
    finally:
        server.stop()
    system, exchanges = script(turns)
    return {
        "turns": turns,
        "model": model,
        "price_usd_per_mtok": {
            "input": float(price.input),
            "output": float(price.output),
            "cache_write": float(price.cache_write),
            "cache_read": float(price.cache_read),
        },
        "words": {
            "system": len(system.split()),
            "user_mean": round(sum(len(q.split()) for q, _ in exchanges) / turns),
            "reply_mean": round(sum(len(a.split()) for _, a in exchanges) / turns),
        },
        "fake_cache_min_tokens": cache_config.cache_min_tokens,
        "cache_off": off,
        "cache_on": on,
        "input_cost_saving_pct": _saving(off["input_cost_usd"], on["input_cost_usd"]),
        "total_cost_saving_pct": _saving(off["total_cost_usd"], on["total_cost_usd"]),
    }


def measure(*, quick: bool) -> dict[str, Any]:
    """The same conversation with prompt caching off and on (see the module's docstring)."""
    return run_child("bench.caching", ["--quick"] if quick else [], timeout=120)


def main() -> None:
    args = sys.argv[1:]
    if "--child" in args:
        print(json.dumps(_child("--quick" in args)))
        return
    print(json.dumps(measure(quick="--quick" in args), indent=2))


if __name__ == "__main__":
    main()
