"""Model providers behind one interface; `get_provider()` picks the configured one."""

from __future__ import annotations

from django.conf import settings

from .base import (
    ChatTurn,
    Provider,
    ProviderError,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
)

__all__ = [
    "ChatTurn",
    "Provider",
    "ProviderError",
    "StreamEnd",
    "StreamEvent",
    "StreamStart",
    "TextDelta",
    "get_provider",
]


def get_provider() -> Provider:
    """The provider named by settings.CHAT_PROVIDER ("anthropic" or "demo")."""
    if settings.CHAT_PROVIDER == "anthropic":
        from .anthropic import AnthropicProvider

        return AnthropicProvider(
            api_key=settings.ANTHROPIC_API_KEY, base_url=settings.ANTHROPIC_BASE_URL or None
        )
    from .demo import DemoProvider

    return DemoProvider(token_delay=settings.CHAT_DEMO_TOKEN_DELAY)
