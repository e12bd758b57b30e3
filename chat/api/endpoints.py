"""The streaming HTTP API for scripts: one more door to the same turns and the same stop.

Authenticated by a per-user API token (`Authorization: Bearer chat_…`, chat/api_tokens.py); the
session cookie is not accepted here, so these views need no CSRF token. Every error is JSON,
`{"error": {"type": …, "message": …}}`, with its status.

A reply is a `text/event-stream`: a `start` event, a `text` event per batch, an `end` event.
The request holds its turn (chat/replies/turns.py): when the caller hangs up, Django cancels
the request and the reply is stopped at once (saved as interrupted / disconnect). Stops from
elsewhere (the stop endpoints, a browser tab, another process) reach the reply at its own
address, as any reply's.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from chat.data import api_tokens, selectors, services
from chat.files import checks, store
from chat.files.checks import AttachmentRefused
from chat.models import Conversation, Message
from chat.replies import turns
from chat.replies.events import ReplyFinished, TextBatch, TurnStarted
from chat.replies.inputs import InvalidMessage, clean_message
from chat.web.forms import ConversationSettingsForm

logger = logging.getLogger(__name__)

ApiView = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def error(status: int, kind: str, message: str) -> JsonResponse:
    response = JsonResponse({"error": {"type": kind, "message": message}}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def api_view(*methods: str) -> Callable[[ApiView], ApiView]:
    """Token authentication and allowed methods; the view gets the token's user."""

    def decorate(view: ApiView) -> ApiView:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return error(
                    401,
                    "authentication_error",
                    "Send an API token: 'Authorization: Bearer <token>' (make one on your "
                    "API tokens page).",
                )
            user = await database_sync_to_async(api_tokens.user_for_token)(token.strip())
            if user is None:
                return error(401, "authentication_error", "That API token is not valid.")
            if request.method not in methods:
                response = error(
                    405, "method_not_allowed", f"Use {' or '.join(methods)} on this URL."
                )
                response["Allow"] = ", ".join(methods)
                return response
            return await view(request, user, *args, **kwargs)

        return wrapper

    return decorate


class BodyTooLarge(InvalidMessage):
    """A request body over the API's limit (413)."""


def body_limit() -> int:
    """The largest body the messages endpoint reads: the most files a message may carry, each
    of the largest size, in base64, with the longest message (escaped) and room to spare."""
    per_file = (settings.CHAT_MAX_ATTACHMENT_BYTES + 2) // 3 * 4 + 1024
    message = settings.CHAT_MAX_MESSAGE_CHARS * 12
    return settings.CHAT_MAX_ATTACHMENTS * per_file + message + 64 * 1024


def _json_body(request: HttpRequest, *, limit: int | None = None) -> dict[str, Any]:
    """The request's JSON object (an empty body is an empty object); InvalidMessage if it is
    not, BodyTooLarge past `limit` bytes (Django's DATA_UPLOAD_MAX_MEMORY_SIZE by default),
    told by Content-Length before a byte is read."""
    limit = limit or settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440
    too_large = BodyTooLarge(f"The request body is too large: at most {limit:,} bytes here.")
    if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
        raise too_large
    body = request.read(limit + 1)
    if len(body) > limit:
        raise too_large
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidMessage("The body must be JSON.") from None
    if not isinstance(data, dict):
        raise InvalidMessage("The body must be a JSON object.")
    return data


def _conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.pk),
        "title": str(conversation),
        "model": conversation.model or settings.CHAT_MODEL,
        "system_prompt": conversation.system_prompt,
        "thinking_budget": conversation.thinking_budget,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "url": reverse("chat:conversation_detail", args=[conversation.pk]),
    }


def _newest_conversations_json(user: User, limit: int = 50) -> list[dict[str, Any]]:
    return [_conversation_json(c) for c in selectors.conversation_list(user=user)[:limit]]


def _invalid(exc: InvalidMessage) -> JsonResponse:
    if isinstance(exc, BodyTooLarge):
        return error(413, "request_too_large", str(exc))
    return error(400, "invalid_request_error", str(exc))


def _message_json(message: Message, request: HttpRequest) -> dict[str, Any]:
    """A message of the shown branch; one with other versions says which it is of how many."""
    versions = {"version": message.version, "versions": message.versions}
    return (versions if message.versions > 1 else {}) | {
        "id": message.pk,
        "role": message.role,
        "content": message.content,
        "attachments": [
            {
                "id": str(a.pk),
                "name": a.name,
                "kind": a.kind,
                "media_type": a.media_type,
                "size": a.size,
                "url": request.build_absolute_uri(reverse("chat:attachment", args=[a.pk])),
            }
            for a in message.files
        ],
        "thinking": message.thinking,
        "thinking_signature": message.thinking_signature,
        "thinking_ms": message.thinking_ms,
        "status": message.status,
        "stop_reason": message.stop_reason,
        "stop_note": message.stop_note,
        "error": message.error,
        "model": message.model,
        "usage": _usage_json(message),
        "created_at": message.created_at.isoformat(),
        "finished_at": message.finished_at.isoformat() if message.finished_at else None,
    }


def _usage_json(message: Message) -> dict[str, Any]:
    return {
        "input_tokens": message.input_tokens,
        "cache_read_input_tokens": message.cache_read_input_tokens,
        "cache_creation_input_tokens": message.cache_creation_input_tokens,
        "output_tokens": message.output_tokens,
        "estimated": message.tokens_estimated,
    }


@api_view("GET", "POST")
async def conversations(request: HttpRequest, user: User) -> HttpResponseBase:
    """GET: the user's newest conversations. POST: a new one (`title`, `model`,
    `system_prompt`, `thinking_budget`, all optional)."""
    if request.method == "GET":
        listed = await database_sync_to_async(_newest_conversations_json)(user)
        return JsonResponse({"conversations": listed})
    try:
        data = _json_body(request)
    except InvalidMessage as exc:
        return _invalid(exc)
    title = data.get("title", "")
    if not isinstance(title, str) or len(title) > 200:
        return error(400, "invalid_request_error", "The title must be text of 200 characters.")
    form = ConversationSettingsForm(
        {
            "model": data.get("model") or settings.CHAT_MODEL,
            "system_prompt": data.get("system_prompt", ""),
            "thinking_budget": data.get("thinking_budget", settings.CHAT_THINKING_BUDGET),
        }
    )
    if not form.is_valid():
        problems = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in form.errors.items())
        return error(400, "invalid_request_error", problems)
    conversation = await database_sync_to_async(services.conversation_create)(
        user=user, title=title.strip(), **form.cleaned_data
    )
    return JsonResponse(_conversation_json(conversation), status=201)


@api_view("GET")
async def conversation(request: HttpRequest, user: User, conversation_id: str) -> HttpResponseBase:
    """The conversation with all its messages, oldest first."""
    found = await selectors.aconversation_for_user(conversation_id=conversation_id, user=user)
    if found is None:
        return _not_found()
    messages = await database_sync_to_async(selectors.all_messages)(conversation=found)
    return JsonResponse(
        _conversation_json(found) | {"messages": [_message_json(m, request) for m in messages]}
    )


@api_view("POST")
async def conversation_stop(
    request: HttpRequest, user: User, conversation_id: str
) -> HttpResponseBase:
    """Stop the conversation's streaming reply, wherever it runs (as the page's stop endpoint)."""
    found = await selectors.aconversation_for_user(conversation_id=conversation_id, user=user)
    if found is None:
        return _not_found()
    result = await turns.stop(found.pk)
    if result.outcome == "unavailable":
        return error(503, "unavailable", result.text)
    return JsonResponse(
        {
            "outcome": result.outcome,
            "message": result.message_id,
            "chars_saved": result.chars,
            "detail": result.text,
        }
    )


@api_view("POST")
async def messages(request: HttpRequest, user: User, conversation_id: str) -> HttpResponseBase:
    """Send `{"message": "…", "attachments": [{"name", "media_type", "data"}]}` (files in
    base64, optional); the reply streams back as server-sent events. A refused message (a bad
    file included) keeps nothing."""
    found = await selectors.aconversation_for_user(conversation_id=conversation_id, user=user)
    if found is None:
        return _not_found()
    try:
        # Read, parsed and checked in a worker thread: a body of 10 MB files is 13 MB of JSON.
        text, files = await sync_to_async(_read_message, thread_sensitive=False)(request)
    except InvalidMessage as exc:
        return _invalid(exc)
    except AttachmentRefused as exc:
        return _turn_refused(exc, found)
    if not text and not files:
        return error(
            400, "invalid_request_error", 'Send {"message": "…"} with some text (or files).'
        )
    ids: list[uuid.UUID] = []
    try:
        for checked in files:
            stored = await database_sync_to_async(store.attachment_create)(
                user=user, checked=checked
            )
            ids.append(stored.pk)
        turn = await turns.start(conversation=found, text=text, attachments=ids)
    except (turns.TurnRefused, AttachmentRefused) as exc:
        await database_sync_to_async(store.discard_all_unsent)(ids=ids, user=user)
        return _turn_refused(exc, found)
    except BaseException:
        await database_sync_to_async(store.discard_all_unsent)(ids=ids, user=user)
        raise
    # The reply never outlives its request: when the request ends in any way (the caller hung
    # up before the stream began, a server error), it is stopped. The stream below stops it
    # first in the usual cases; a second stop is a no-op.
    request_task = asyncio.current_task()
    if request_task is not None:
        request_task.add_done_callback(lambda _: turn.hang_up())
    response = StreamingHttpResponse(_event_stream(turn), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front must not hold the batches back
    return response


def _turn_refused(
    exc: turns.TurnRefused | AttachmentRefused, conversation: Conversation
) -> JsonResponse:
    """A message that was not taken (nothing of it kept), as the API says it."""
    if isinstance(exc, AttachmentRefused):
        return error(exc.status, exc.error_type, str(exc))
    if isinstance(exc, turns.ReplyAlreadyStreaming):
        stop = reverse("chat:api_conversation_stop", args=[conversation.pk])
        return error(409, "conflict", f"{exc} (POST {stop})")
    if isinstance(exc, turns.LimitReached):
        return error(429, "rate_limit_error", str(exc))
    if isinstance(exc, turns.ServerBusy):
        busy = error(503, "overloaded_error", str(exc))
        busy["Retry-After"] = str(exc.retry_after)
        return busy
    return error(409, "conflict", str(exc))


def _read_message(request: HttpRequest) -> tuple[str, list[checks.CheckedFile]]:
    """The message's text and its files, checked (the parsed body is dropped on return)."""
    data = _json_body(request, limit=body_limit())
    text = clean_message(data.get("message", ""), max_chars=settings.CHAT_MAX_MESSAGE_CHARS)
    return text, _checked_files(data.pop("attachments", None))


def _checked_files(value: object) -> list[checks.CheckedFile]:
    """The request's `attachments`, each decoded and checked (in a worker thread: base64 and
    Pillow take a while on 10 MB). AttachmentRefused (nothing kept) for the first bad one."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise AttachmentRefused('"attachments" must be a list of {"name", "media_type", "data"}.')
    checks.check_count(len(value))
    checked = []
    for index, item in enumerate(value, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("data"), str):
            raise AttachmentRefused(
                f'Attachment {index} must be {{"name", "media_type", "data"}} with the file in '
                'base64 as "data".'
            )
        name = checks.clean_name(item.get("name") or f"file {index}")
        encoded = item["data"]
        checks.check_size(name, len(encoded) * 3 // 4 - encoded[-2:].count("="))
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise AttachmentRefused(f'{name}: "data" is not valid base64.') from None
        checked.append(checks.check_file(name, data, item.get("media_type", "")))
        checks.check_total([len(file.data) for file in checked])
    return checked


async def _event_stream(turn: turns.Turn) -> AsyncIterator[bytes]:
    """The reply's events as SSE. Django cancels this when the caller disconnects, and leaving
    the turn then stops the reply at once (saved as interrupted / disconnect)."""
    async with turn:
        async for event in turn:
            if isinstance(event, TurnStarted):
                yield _sse(
                    "start",
                    {
                        "conversation": str(event.assistant_message.conversation_id),
                        "user_message": event.user_message.pk if event.user_message else None,
                        "message": event.assistant_message.pk,
                        "model": event.assistant_message.model,
                        "trimmed": event.trimmed,
                    },
                )
            elif isinstance(event, TextBatch):
                # Thinking comes before the answer: within one batch, too.
                if event.thinking:
                    yield _sse("thinking", {"text": event.thinking})
                if event.text:
                    yield _sse("text", {"text": event.text})
            elif isinstance(event, ReplyFinished):
                message = event.message
                yield _sse(
                    "end",
                    {
                        "message": message.pk,
                        "status": message.status,
                        "stop_reason": message.stop_reason,
                        "stop_note": message.stop_note,
                        "error": message.error,
                        "chars": len(message.content),
                        "thinking_chars": len(message.thinking),
                        "usage": _usage_json(message),
                    },
                )
                return
            # (A title comes after the end, if at all: the caller has gone by then.)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _not_found() -> JsonResponse:
    return error(404, "not_found_error", "No such conversation (or it is not yours).")
