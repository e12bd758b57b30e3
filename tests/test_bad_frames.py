"""Frames that once crashed the socket or kept Stop from stopping (found by the properties in
tests/test_frames_properties.py), through the real socket while a reply streams."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from chat.models import Conversation, Message
from chat.testing.fake_anthropic import FakeAnthropicServer
from tests.helpers import QUICK, SocketFactory, start_slow_reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("[" * 3000, "not JSON"),
        ('{"action": "send", "message": "\\ud800 hi"}', "not valid text"),
    ],
    ids=["deeply-nested", "lone-surrogate"],
)
async def test_a_bad_frame_mid_reply_gets_a_notice_and_the_reply_and_socket_carry_on(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    raw: str,
    expected: str,
) -> None:
    sock = await chat_socket(conversation, user)
    reply = (await start_slow_reply(sock, fake_anthropic, "Long answer please")).reply_id
    await sock.comm.send_to(text_data=raw)
    await sock.until(expected)
    await sock.send("stop")  # the socket is alive, and its reply still stoppable
    assert await sock.finished(reply) == "interrupted"
    await fake_anthropic.await_disconnect(fake_anthropic.requests[-1])
    roles = [m.role async for m in Message.objects.filter(conversation=conversation)]
    assert roles == ["user", "assistant"]


async def test_stop_stops_whatever_draft_the_composer_sends_with_it(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    settings: Any,
) -> None:
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    sock = await chat_socket(conversation, user)
    reply = (await start_slow_reply(sock, fake_anthropic, "Go on")).reply_id
    await sock.send("stop", "a draft well over the ten-character limit")
    assert await sock.finished(reply) == "interrupted"
    await fake_anthropic.await_disconnect(fake_anthropic.requests[-1])


async def test_an_unexpected_server_failure_is_a_notice_and_the_socket_lives_on(
    fake_anthropic: FakeAnthropicServer,
    chat_socket: SocketFactory,
    conversation: Conversation,
    user: User,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug anywhere behind a frame (simulated: the database write raises) must not close the
    socket, which would also take away the Stop of a reply streaming on it."""
    from chat.data import services

    real = services.turn_create

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(services, "turn_create", broken)
    fake_anthropic.reset(QUICK)
    sock = await chat_socket(conversation, user)
    await sock.send("send", "Hello")
    await sock.until("Something went wrong on the server")
    assert "the send frame failed" in caplog.text
    monkeypatch.setattr(services, "turn_create", real)
    await sock.send("send", "Hello again")
    _, reply = await sock.turn_started()
    assert await sock.finished(reply) == "complete"


@pytest.mark.parametrize("after", ["abc", "-1", "99999999999999999999", ""])
async def test_a_malformed_after_on_the_socket_url_is_ignored(
    chat_socket: SocketFactory, conversation: Conversation, user: User, after: str
) -> None:
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application
    from tests.helpers import ORIGIN, session_cookie

    comm = WebsocketCommunicator(
        application,
        f"/ws/chat/{conversation.pk}/?after={after}",
        headers=[
            (b"host", b"127.0.0.1:8000"),
            (b"origin", ORIGIN.encode()),
            (b"cookie", (await session_cookie(user)).encode()),
        ],
    )
    connected, _ = await comm.connect(timeout=5)
    assert connected
    await comm.send_to(text_data='{"action": "stop"}')
    assert "Nothing is streaming" in await comm.receive_from(timeout=5)
    await comm.disconnect()
