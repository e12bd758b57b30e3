"""Static files at the ASGI layer, with WhiteNoise's index, headers and compressed variants.

WhiteNoise's Django middleware is sync-only: in the middleware chain it would run every HTTP
request (the view included) on Django's single thread-sensitive worker, the thread every
`database_sync_to_async` call in the process queues on. A view that waits (an HTTP stop awaiting
the reply's owner) would then hold up every reply's database writes. Served here instead, static
files never enter Django's request path, and their file reads run on the default thread pool.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware

CHUNK = 64 * 1024


class StaticFilesApp:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.whitenoise = WhiteNoiseMiddleware(get_response=None)

    def _find(self, path: str) -> Any:
        if self.whitenoise.autorefresh:
            return self.whitenoise.find_file(path)
        return self.whitenoise.files.get(path)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in {"GET", "HEAD"}:
            await self.app(scope, receive, send)
            return
        static_file = await sync_to_async(self._find, thread_sensitive=False)(scope["path"])
        if static_file is None:
            await self.app(scope, receive, send)
            return
        # WhiteNoise reads request headers WSGI-style (HTTP_IF_NONE_MATCH, HTTP_RANGE, ...).
        environ = {
            "HTTP_" + name.decode("latin-1").upper().replace("-", "_"): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        response = static_file.get_response(scope["method"], environ)
        await send(
            {
                "type": "http.response.start",
                "status": int(response.status),
                "headers": [(k.lower().encode(), v.encode()) for k, v in response.headers],
            }
        )
        body_file = response.file
        try:
            while body_file is not None and scope["method"] == "GET":
                chunk = await asyncio.to_thread(body_file.read, CHUNK)
                if not chunk:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            if body_file is not None:
                body_file.close()
        await send({"type": "http.response.body", "body": b""})
