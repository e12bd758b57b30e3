"""The API key never leaves the server's memory, and message text stays out of INFO logs.

Each way a reply can end (a normal reply, a stop, a rejected key, a 500 and a 529 after the
SDK's retries, an `error` event mid-stream, a dropped connection, a stall) is driven through
the full ASGI stack and the real SDK against the fake Anthropic server, with every logger at
DEBUG. Afterwards the key, and any ten consecutive characters of it after `sk-ant-` (a key cut
short or masked at its ends still shows), must be absent from every frame the socket received,
every log record (message, arguments, exception and stack text, any extra attribute), every
saved field of the conversation's messages, the conversation page and list, the admin change
pages of the message and the conversation, the admin metrics page and /metrics.

Message text is checked the same way: a distinctive phrase in the user's message and another
in the model's reply appear in no record at INFO or above, and in no record of the app's own
loggers (`chat.*`) at any level. At DEBUG two third-party loggers do show it, and the test pins
that they are the only ones: the Anthropic SDK logs its request options (the messages sent),
and Django logs a template variable that failed to resolve with the whole template context
(the conversation's title, the first words of the first message). Both are off in the shipped
configuration (chatsite/settings.py: root at WARNING, `chat` at INFO).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.urls import reverse

from chat.models import Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer, FakeConfig
from tests.helpers import TEST_API_KEY, ChatSocket, SocketFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _secret_needles(key: str, window: int = 10) -> tuple[str, ...]:
    """The key, and every run of `window` characters of its body (the key without the
    well-known `sk-ant-` prefix): a key cut short, or masked at both ends, still shows."""
    body = key.removeprefix("sk-ant-")
    assert len(body) > window, "the test key is too short to be distinctive"
    return (key, *(body[i : i + window] for i in range(len(body) - window + 1)))


SECRETS = _secret_needles(TEST_API_KEY)

USER_PHRASE = "zanzibar quokka marmalade"
REPLY_PHRASE = "Periwinkle lighthouse saxophone"


# --- capturing every log record -------------------------------------------------------------


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a handler could write for a record."""
    texts = [record.getMessage(), str(record.msg), repr(record.args)]
    if record.exc_info and record.exc_info[1] is not None:
        # The traceback with its chained causes, as logging formats it.
        texts.append(logging.Formatter().formatException(record.exc_info))
        texts.append(repr(record.exc_info[1]))
    if record.exc_text:
        texts.append(record.exc_text)
    if record.stack_info:
        texts.append(record.stack_info)
    texts.append(repr(vars(record)))  # any `extra=` attribute too
    return texts


def assert_no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "nothing was logged: the capture is not working"
    for record in caplog.records:
        for text in record_texts(record):
            for needle in SECRETS:
                assert needle not in text, f"{record.name} {record.levelname}: {text[:300]}"
    for needle in SECRETS:
        assert needle not in caplog.text


# --- what the browser and the admins can see ------------------------------------------------


async def drain(sock: ChatSocket) -> None:
    """Read every frame already sent (receive_nothing, unlike a timed-out receive, leaves the
    consumer running)."""
    while not await sock.comm.receive_nothing(timeout=0.05):
        await sock.next_frame()


@dataclass
class Seen:
    """Everything a user, an admin or an operator can read after a turn."""

    pages: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    def assert_free_of(self, needles: tuple[str, ...]) -> None:
        for where, text in {**self.pages, **self.fields}.items():
            for needle in needles:
                assert needle not in text, f"{needle!r} in {where}"


async def everything_visible(conversation: Conversation, user: User, staff: User) -> Seen:
    seen = Seen()
    owner = AsyncClient()
    await owner.aforce_login(user)
    admin = AsyncClient()
    await admin.aforce_login(staff)
    messages = [m async for m in Message.objects.filter(conversation=conversation).order_by("id")]
    assert messages
    pages = {
        "conversation page": (
            owner,
            reverse("chat:conversation_detail", kwargs={"conversation_id": conversation.pk}),
        ),
        "conversation list": (owner, reverse("chat:conversation_list")),
        "admin conversation": (
            admin,
            reverse("admin:chat_conversation_change", args=[conversation.pk]),
        ),
        "admin metrics": (admin, reverse("admin_chat_metrics")),
        "/metrics": (admin, reverse("metrics")),
    }
    for message in messages:
        pages[f"admin message {message.pk}"] = (
            admin,
            reverse("admin:chat_message_change", args=[message.pk]),
        )
        for f in Message._meta.concrete_fields:
            seen.fields[f"Message {message.pk}.{f.name}"] = str(getattr(message, f.attname))
    for where, (client, url) in pages.items():
        response = await client.get(url)
        assert response.status_code == 200, f"{where}: {response.status_code}"
        seen.pages[where] = response.content.decode()
    return seen


# --- the turns --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    config: FakeConfig
    status: str
    error: str = ""
    stop: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    requests: int = 1


SCENARIOS = {
    "complete": Scenario(FakeConfig(interval=0.002, deltas=20), "complete"),
    "stopped": Scenario(FakeConfig(interval=0.002, deltas=5000), "interrupted", stop=True),
    "status_401": Scenario(
        FakeConfig(error="status_401"), "error", "The Anthropic API key was rejected."
    ),
    "required_key": Scenario(
        FakeConfig(interval=0.002, deltas=20, required_key="sk-ant-the-one-the-server-wants"),
        "error",
        "The Anthropic API key was rejected.",
    ),
    "status_500_after_retries": Scenario(
        FakeConfig(error="status_500"),
        "error",
        "Anthropic returned an error (api_error).",
        settings={"CHAT_MAX_RETRIES": 2},
        requests=3,
    ),
    "status_529_after_retries": Scenario(
        FakeConfig(error="status_529"),
        "error",
        "Anthropic is overloaded right now. Retry in a moment.",
        settings={"CHAT_MAX_RETRIES": 2},
        requests=3,
    ),
    "error_midstream": Scenario(
        FakeConfig(interval=0.002, deltas=20, error="error_midstream", error_after=5),
        "error",
        "Anthropic is overloaded right now. Retry in a moment.",
    ),
    "drop_midstream": Scenario(
        FakeConfig(interval=0.002, deltas=20, error="drop_midstream", error_after=5),
        "error",
        "The connection to Anthropic was lost mid-reply.",
    ),
    "stall": Scenario(
        FakeConfig(interval=0.002, deltas=20, error="stall", error_after=5),
        "error",
        "Anthropic stopped sending (the stream stalled).",
        settings={"CHAT_STALL_TIMEOUT": 0.2},
    ),
}


async def play(
    scenario: Scenario,
    sock: ChatSocket,
    fake: FakeAnthropicServer,
    text: str = "Hello there",
    stop_once_shown: str = "",
) -> Message:
    """Send one message, see its reply end as the scenario says; the saved reply. A stop
    waits for the first batch, or for `stop_once_shown` to have been sent to the page."""
    await sock.send("send", text)
    _, reply_id = await sock.turn_started()
    if scenario.stop:
        await sock.until(rf'id="msg-{reply_id}-body" hx-swap-oob="beforeend"')
        while stop_once_shown not in sock.text_sent(reply_id):
            await sock.until(rf'id="msg-{reply_id}-body" hx-swap-oob="beforeend"')
        await sock.send("stop")
    assert await sock.finished(reply_id) == scenario.status
    await drain(sock)
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == scenario.status
    assert reply.error == scenario.error
    # (Streaming requests: a title request after a first reply is not.)
    assert len([r for r in fake.requests if r.stream]) == scenario.requests
    # Every request the fake saw carried the key: it was in use, so its absence below counts.
    for record in fake.requests:
        sent = record.headers.get("x-api-key", "") + record.headers.get("authorization", "")
        assert TEST_API_KEY in sent
    return reply


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_the_api_key_is_in_no_frame_log_page_or_saved_field(
    name: str,
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    staff: User,
    settings: Any,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    scenario = SCENARIOS[name]
    for setting, value in scenario.settings.items():
        setattr(settings, setting, value)
    fake_anthropic.reset(scenario.config)
    sock = await chat_socket(conversation, user)
    await play(scenario, sock, fake_anthropic)

    assert sock.frames
    for frame in sock.frames:
        for needle in SECRETS:
            assert needle not in frame
    assert_no_secret_in_logs(all_logs)
    seen = await everything_visible(conversation, user, staff)
    if scenario.error:
        assert scenario.error in seen.pages["conversation page"]
    seen.assert_free_of(SECRETS)


# --- message text and the logs ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["complete", "stopped", "error_midstream"])
async def test_message_text_is_not_logged_at_info(
    name: str,
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    user: User,
    settings: Any,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    # An untitled conversation, so the first exchange also asks the model for a title: its
    # prompt carries both texts, through chat.replies.titles and the SDK. (The stopped reply's title
    # request outlasts its timeout, which is logged too.)
    settings.CHAT_AUTO_TITLE = True
    settings.CHAT_TITLE_TIMEOUT = 0.2
    conversation = await Conversation.objects.acreate(user=user, title="")
    scenario = SCENARIOS[name]
    fake_anthropic.reset(
        FakeConfig(
            interval=scenario.config.interval,
            deltas=scenario.config.deltas,
            error=scenario.config.error,
            error_after=scenario.config.error_after,
            text=" ".join([REPLY_PHRASE] * 40),
        )
    )
    sock = await chat_socket(conversation, user)
    reply = await play(
        scenario,
        sock,
        fake_anthropic,
        text=f"Tell me about {USER_PHRASE}",
        stop_once_shown=REPLY_PHRASE,
    )
    assert REPLY_PHRASE in reply.content  # the phrase reached the server, so it could leak
    # Wait for the title request's outcome: a new title, or the warning that there is none.
    async with asyncio.timeout(5):
        while not any("no title from the model" in r.getMessage() for r in all_logs.records):
            title = (await Conversation.objects.aget(pk=conversation.pk)).title
            if not title.startswith("Tell me"):
                break
            await asyncio.sleep(0.01)
    assert len(fake_anthropic.requests) > scenario.requests  # the title was asked for

    phrases = (USER_PHRASE, REPLY_PHRASE)
    debug_with_text: set[str] = set()
    for record in all_logs.records:
        if not any(p in t for p in phrases for t in record_texts(record)):
            continue
        where = f"{record.name} {record.levelname}: {record.getMessage()[:200]}"
        assert record.levelno < logging.INFO, f"message text logged at {where}"
        assert not record.name.startswith("chat"), f"the app logged message text: {where}"
        debug_with_text.add(record.name)
    # Only third-party debug output: the SDK's log of its request options (they include the
    # messages sent), and Django's log of a template variable that failed to resolve (its
    # exception text is the whole template context, with the conversation's title, which is
    # the first words of the first message until the model names it).
    assert debug_with_text <= {"anthropic._base_client", "django.template"}
    assert any(r.name.startswith("chat") and r.levelno >= logging.INFO for r in all_logs.records)
