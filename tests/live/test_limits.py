"""Limits through a real daphne: a 1 MB frame and a binary frame (the rest of the limits, in
process: tests/test_limits.py)."""

from __future__ import annotations

import asyncio
import json

from chat.testing.live import LiveApp
from chat.testing.live_client import Session, Tab


def test_a_1_mb_frame_through_daphne_gets_a_clear_error_and_the_socket_stays_usable(
    live_app: LiveApp,
) -> None:
    async def scenario() -> None:
        session = Session(live_app.base_url)
        session.sign_in(live_app.username, live_app.password)
        conversation = session.new_conversation()
        tab = await Tab.open(live_app.base_url, conversation, session)
        try:
            await tab.ws.send(json.dumps({"action": "send", "message": "x" * 1_000_000}))
            await tab.until(r"That message is too long")
            await tab.ws.send(b"\x00\x01binary")
            await tab.until(r"Binary frames are not accepted")
            assert not tab.closed.is_set()
            await tab.send("send", "[[fake:deltas=3,interval=0.001]] still here?")
            reply = await tab.turn_started()
            assert await tab.finished(reply) == "complete"
        finally:
            await tab.close()
        assert [m["role"] for m in live_app.messages(conversation)] == ["user", "assistant"]

    asyncio.run(scenario())
