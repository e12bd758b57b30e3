"""Managing conversations: search (the sidebar and the list page), rename, delete.

Owner-only like every page: another user's conversation is a 404, never a hint it exists.
Writes are POSTs with CSRF. Deleting is async because it first stops a reply streaming in the
conversation (wherever it runs, through the channel layer), then tells its open tabs it is gone.
"""

from __future__ import annotations

import contextlib
import uuid

from channels.db import database_sync_to_async
from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat.data import selectors, services
from chat.replies import layer, turns
from chat.web.ownership import owned_or_404
from chat.web.pages import _provider_context

SIDEBAR_LIMIT = 50
MAX_QUERY_CHARS = 200


class ConversationRenameForm(forms.Form):
    title = forms.CharField(
        max_length=200,
        error_messages={
            "required": gettext_lazy("Give the conversation a title."),
            "max_length": gettext_lazy("Keep the title to %(limit_value)d characters or fewer."),
        },
    )


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def search_query(request: HttpRequest) -> str:
    """The `q` of a search, trimmed (a longer one is cut: it would only slow the LIKE)."""
    return request.GET.get("q", "").strip()[:MAX_QUERY_CHARS]


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


@login_required
@require_GET
def conversation_search(request: HttpRequest) -> HttpResponse:
    """The list items matching `q` (title or any message, newest first); without `q`, the
    newest. `current` is the open conversation's id, so that it stays highlighted."""
    query = search_query(request)
    user: AbstractBaseUser = request.user  # type: ignore[assignment]  # signed in
    found = (
        list(selectors.conversation_search(user=user, query=query)[: SIDEBAR_LIMIT + 1])
        if query
        else selectors.sidebar_conversations(user=user, limit=SIDEBAR_LIMIT + 1)
    )
    return render(
        request,
        "chat/_conversation_items.html",
        {
            "conversations": found[:SIDEBAR_LIMIT],
            "truncated": len(found) > SIDEBAR_LIMIT,
            "search_query": query,
            "current_id": _uuid_or_none(request.GET.get("current", "")),
        },
    )


@login_required
@require_POST
def conversation_rename(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """Set the title (1-200 characters once trimmed). A page gets a redirect back to the
    conversation; htmx gets the new heading, with the rename form and the sidebar's item out of
    band. Invalid: 400, with the form and its error."""
    conversation = owned_or_404(request, conversation_id)
    form = ConversationRenameForm(request.POST)
    if not form.is_valid():
        context = {"conversation": conversation, "rename_form": form, **_provider_context()}
        if _is_htmx(request):
            return render(request, "chat/conversation.html#rename", context, status=400)
        return render(request, "chat/conversation_rename.html", context, status=400)
    services.conversation_rename(conversation=conversation, title=form.cleaned_data["title"])
    if _is_htmx(request):
        return render(request, "chat/_renamed.html", {"conversation": conversation})
    return redirect("chat:conversation_detail", conversation_id=conversation.pk)


@login_required
@require_http_methods(["GET", "POST"])
async def conversation_delete(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """GET: ask for confirmation. POST: stop a streaming reply, delete the conversation with
    its messages, tell its open tabs, and go to the list."""
    user = await request.auser()
    # The page's layout reads request.user, which would load it again, synchronously.
    request.user = user
    conversation = await selectors.aconversation_for_user(
        conversation_id=conversation_id, user=user
    )
    if conversation is None:
        raise Http404("No such conversation.")
    error = ""
    if request.method == "POST":
        # Stopped first, so that its owner is not left streaming (and billing) into a reply
        # that no longer exists.
        stop = await turns.stop(conversation.pk)
        if stop.outcome != "unavailable":
            await database_sync_to_async(services.conversation_delete)(
                conversation_id=conversation.pk
            )
            with contextlib.suppress(layer.LayerUnavailable):
                await layer.group_send(conversation.pk, {"type": "chat.gone"})
            return redirect("chat:conversation_list")
        error = gettext(
            "A reply is streaming in this conversation and it could not be stopped: the "
            "message bus (Redis) is unreachable. Nothing was deleted; try again in a moment."
        )
    message_count = await conversation.messages.acount()
    return render(
        request,
        "chat/conversation_delete.html",
        {
            "conversation": conversation,
            "message_count": message_count,
            "error": error,
            **_provider_context(),
        },
        status=503 if error else 200,
    )
