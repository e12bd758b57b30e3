"""An offline stand-in for Claude, so a fresh checkout chats without network or API key.

It streams a canned but useful answer word by word at about 40 tokens a second: slow enough
to watch, and long enough to click Stop.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from .base import (
    ChatTurn,
    FilePart,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ThinkingSigned,
)

DEMO_ANSWER = """\
You are talking to the offline demo model, so this answer is canned, but everything around it \
is real: the reply streams over a WebSocket, is saved as it goes, and stops the moment you ask.

Here is what you can try while this text is still arriving:

1. Click **Stop** (or press Esc). The reply ends at once, the bubble keeps exactly the words \
you saw, and it is marked as interrupted. With a real model, stopping closes the connection \
to Anthropic, so no further tokens are generated or billed.
2. Type a new message now and press **Stop & Send** (Enter does the same while a reply \
streams). This reply is stopped and kept, your message is saved right after it, and the next \
answer sees the whole conversation, this partial reply included.
3. Close or reload the tab. The server notices the closed socket, stops the reply, and keeps \
the partial text, so nothing is left half-finished in the database.

To talk to Claude itself, set ANTHROPIC_API_KEY before `make run`. Optionally set CHAT_MODEL \
to choose the model, and ANTHROPIC_BASE_URL to point at a compatible gateway.

A few words about how the Stop button works under the hood. Every reply runs as its own \
asyncio task on the server, next to the socket that asked for it, so a Stop frame is read \
while the reply is still streaming. Stopping cancels the task that reads from the model; \
leaving the SDK's stream context closes the HTTP response, which is what tells the provider \
to stop. Tokens are gathered into small batches, at most one frame every thirty milliseconds, \
and the text saved for a stopped reply is exactly the text that was sent to your browser.

That is the end of the demo answer. Ask anything else and you will get this same text again, \
which makes it a handy thing to practise stopping on.\
"""

DEMO_THINKING = """\
The demo model has no thoughts of its own, so this is a canned stand-in for Claude's extended \
thinking. It streams into its own part of the bubble, above the answer, and Stop works here \
exactly as it does on the answer: the connection closes and what was shown is kept. Now, on \
to the answer.\
"""

_WORDS = re.compile(r"\S+\s*|\s+")


def received(history: list[ChatTurn]) -> str:
    """What the demo says of the files the last message carried (it cannot read them)."""
    user_turns = [turn for turn in history if turn.role == "user"]
    files = user_turns[-1].files if user_turns else ()
    if not files:
        return ""
    listed = "; ".join(f"**{part.name}** ({_describe(part)})" for part in files)
    count = f"{len(files)} file{'s' if len(files) > 1 else ''}"
    return (
        f"I received {count}: {listed}. The demo model cannot look inside them; Claude reads "
        "images, PDFs and text files like these.\n\n"
    )


def _describe(part: FilePart) -> str:
    size = f"{part.size:,} bytes"
    if part.kind == "image":
        return f"an image, {part.media_type}, {size}"
    if part.kind == "document":
        return f"a PDF document, {size}"
    lines = part.content.count("\n") + 1
    return f"a text file, {lines:,} line{'s' if lines > 1 else ''}"


class DemoProvider:
    name = "Demo (offline)"

    def __init__(self, *, token_delay: float) -> None:
        self._token_delay = token_delay

    async def stream(
        self,
        *,
        model: str,
        system: str,
        history: list[ChatTurn],
        max_tokens: int,
        thinking: Thinking | None = None,
        cache: bool = False,
    ) -> AsyncIterator[StreamEvent]:
        prompt_chars = len(system) + sum(len(turn.content) for turn in history)
        yield StreamStart(input_tokens=max(1, prompt_chars // 4))
        await asyncio.sleep(self._token_delay * 8)  # a model takes a moment to start
        if thinking is not None:
            thought = _WORDS.findall(DEMO_THINKING)
            for word in thought:
                yield ThinkingDelta(word)
                await asyncio.sleep(self._token_delay)
            yield ThinkingSigned(signature="")
            max_tokens -= len(thought)
        answer = received(history) + DEMO_ANSWER
        if history and history[-1].role == "assistant" and answer.startswith(history[-1].content):
            answer = answer[len(history[-1].content) :]  # Continue: the rest of the answer
        words = _WORDS.findall(answer)
        sent = 0
        for word in words[:max_tokens]:
            yield TextDelta(word)
            sent += 1
            await asyncio.sleep(self._token_delay)
        stop_reason = "end_turn" if sent == len(words) else "max_tokens"
        yield StreamEnd(stop_reason=stop_reason, output_tokens=sent)

    async def complete(self, *, model: str, system: str, prompt: str, max_tokens: int) -> str:
        return ""  # no model to ask: a conversation keeps the first words as its title
