"""Files streamed to the browser a chunk at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import IO, Any

from asgiref.sync import sync_to_async

CHUNK_BYTES = 256 * 1024


async def file_chunks(handle: IO[bytes] | Any) -> AsyncIterator[bytes]:
    """A file's bytes, read in a worker thread a chunk at a time (a synchronous iterator would
    be read whole into memory by Django's async handler first); the file is closed at the end
    (a temporary file is then deleted)."""
    read = sync_to_async(handle.read, thread_sensitive=False)
    try:
        while chunk := await read(CHUNK_BYTES):
            yield chunk
    finally:
        await sync_to_async(handle.close, thread_sensitive=False)()
