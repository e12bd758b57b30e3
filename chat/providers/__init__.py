"""Model providers behind one interface; `get_provider()` picks the configured one."""

from __future__ import annotations

from django.conf import settings

from .base import (
    ChatTurn,
    FilePart,
    Provider,
    ProviderError,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ThinkingSigned,
)

__all__ = [
    "ChatTurn",
    "FilePart",
    "Provider",
    "ProviderError",
    "StreamEnd",
    "StreamEvent",
    "StreamStart",
    "TextDelta",
    "Thinking",
    "ThinkingDelta",
    "ThinkingSigned",
    "get_provider",
    "load_provider",
]


def load_provider() -> None:
    """Import the configured provider now. A server process calls this at start-up: importing
    the Anthropic SDK takes about a second, which must not stall the event loop (and every
    socket on it) when the process's first reply starts."""
    if settings.CHAT_PROVIDER == "anthropic":
        from . import anthropic  # noqa: F401
    else:
        from . import demo  # noqa: F401


def get_provider() -> Provider:
    """The provider named by settings.CHAT_PROVIDER ("anthropic" or "demo")."""
    if settings.CHAT_PROVIDER == "anthropic":
        from .anthropic import AnthropicProvider

        return AnthropicProvider(
            api_key=settings.ANTHROPIC_API_KEY, base_url=settings.ANTHROPIC_BASE_URL or None
        )
    from .demo import DemoProvider

    return DemoProvider(token_delay=settings.CHAT_DEMO_TOKEN_DELAY)
