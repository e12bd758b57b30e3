"""A page that opens ready: at `/`, a signed-in user is in a composer, with the sidebar, and
the conversation is made by the first message sent there (never by a New chat click, so no
empty conversation is ever left behind).

The composer's form posts the message (and the files uploaded into it) here; the conversation
and its first turn are saved together, the reply starts, and the browser goes to the
conversation's page, whose socket picks the reply up as it streams. Until that page shows it
(at most HANDOVER_SECONDS), this request's turn holds the reply, so even with no disconnect
grace it is not stopped for want of a page.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from chat.data import selectors, services
from chat.files import store
from chat.files.checks import AttachmentRefused, clean_ids
from chat.providers import get_provider
from chat.replies import turns
from chat.replies.inputs import InvalidMessage, clean_message

logger = logging.getLogger(__name__)

#: How long a started reply waits for the page the browser is sent to.
HANDOVER_SECONDS = 15.0

# Tasks handing a reply over to its page (kept so that they are not collected mid-way).
_handovers: set[asyncio.Task[None]] = set()


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """`/`: a new conversation's composer for a signed-in user; the sign-in page otherwise."""
    if not request.user.is_authenticated:
        return redirect("login")
    return _page(request)


def _page(
    request: HttpRequest, *, text: str = "", error: str = "", status: int = 200
) -> HttpResponse:
    return render(
        request,
        "chat/new_chat.html",
        {
            "text": text,
            "error": error,
            "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
            "max_attachments": settings.CHAT_MAX_ATTACHMENTS,
            "max_attachment_bytes": settings.CHAT_MAX_ATTACHMENT_BYTES,
            # Files attached in a new chat and not sent yet (a reload, a refused first message).
            "drafts": store.drafts(user=request.user, conversation_id=None),  # type: ignore[arg-type]
            "sidebar_conversations": selectors.sidebar_conversations(user=request.user),  # type: ignore[arg-type]
            "provider_name": get_provider().name,
            "model": settings.CHAT_MODEL,
        },
        status=status,
    )


@login_required
@require_POST
async def start(request: HttpRequest) -> HttpResponse:
    """The first message: a new conversation, its turn started, and the browser sent to it.
    A message that cannot start saves nothing (no conversation either) and comes back in the
    box with the reason."""
    user = await request.auser()
    request.user = user  # (the page's layout reads it; loaded once, here)
    raw = request.POST.get("message", "")
    try:
        text = clean_message(raw, max_chars=settings.CHAT_MAX_MESSAGE_CHARS)
        attachments = clean_ids(request.POST.getlist("attachments"))
        if not text and not attachments:
            raise InvalidMessage(gettext("Type a message first."))
    except (InvalidMessage, AttachmentRefused) as exc:
        return await _refused(request, raw, str(exc), 400)
    conversation = await database_sync_to_async(services.conversation_create)(user=user)
    try:
        turn = await turns.start(conversation=conversation, text=text, attachments=attachments)
    except turns.TurnRefused as exc:
        await database_sync_to_async(services.conversation_delete)(conversation_id=conversation.pk)
        status = (
            503
            if isinstance(exc, turns.ServerBusy)
            else 429
            if isinstance(exc, turns.LimitReached)
            else 409
        )
        return await _refused(request, raw, str(exc), status)
    task = asyncio.create_task(turn.hand_over(within=HANDOVER_SECONDS))
    _handovers.add(task)
    task.add_done_callback(_handovers.discard)
    return redirect("chat:conversation_detail", conversation_id=conversation.pk)


async def _refused(request: HttpRequest, text: str, error: str, status: int) -> HttpResponse:
    page: Any = await database_sync_to_async(_page)(request, text=text, error=error, status=status)
    return page
