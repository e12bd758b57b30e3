"""The channel layer, as replies and doors use it: addresses, sends, and Redis going away.

Every page on a conversation joins that conversation's group; every live reply has its own
address (a channel) where stops and watchers reach it from any process.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from channels.layers import BaseChannelLayer, get_channel_layer


def group_name(conversation_id: uuid.UUID | str) -> str:
    return f"conversation-{uuid.UUID(str(conversation_id)).hex}"


class LayerUnavailable(Exception):
    """The channel layer (Redis) cannot be reached: cross-process messages cannot be delivered."""


def is_layer_error(exc: BaseException) -> bool:
    """True for the errors a channel layer raises when its backend (Redis) is unreachable."""
    # redis-py's own ConnectionError and TimeoutError are not OSErrors.
    return isinstance(exc, TimeoutError | OSError | ConnectionError) or (
        type(exc).__module__.startswith("redis") and "Error" in type(exc).__name__
    )


@contextlib.contextmanager
def layer_errors() -> Iterator[None]:
    """Turn a channel-layer backend failure into LayerUnavailable."""
    try:
        yield
    except Exception as exc:
        if is_layer_error(exc):
            raise LayerUnavailable(str(exc) or type(exc).__name__) from exc
        raise


def channel_layer() -> BaseChannelLayer:
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    return layer


async def _deliver(send: Callable[[], Awaitable[None]]) -> None:
    """Run one layer write; retried once, because the first write after Redis restarted fails
    on a stale pooled connection. A second failure means Redis really is unreachable."""
    for attempt in (1, 2):
        try:
            with layer_errors():
                await send()
            return
        except LayerUnavailable:
            if attempt == 2:
                raise


async def group_send(conversation_id: uuid.UUID | str, event: Mapping[str, Any]) -> None:
    layer = channel_layer()
    await _deliver(lambda: layer.group_send(group_name(conversation_id), dict(event)))


async def send(channel: str, event: Mapping[str, Any]) -> None:
    layer = channel_layer()
    await _deliver(lambda: layer.send(channel, dict(event)))


async def new_channel() -> str:
    """A new address of this process. Always with the layer's default prefix: channels-redis
    reads every process-local channel through one receive loop, which pops only the list of the
    prefix its current reader asked for, so a second prefix would wait behind the first (a stop
    held up for seconds)."""
    with layer_errors():
        return await channel_layer().new_channel()


async def receive(channel: str) -> dict[str, Any]:
    """The next event on `channel`; LayerUnavailable while Redis is down."""
    with layer_errors():
        return await channel_layer().receive(channel)
