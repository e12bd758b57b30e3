"""Pages. Small function views; ownership is checked through the selectors on every one."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat.data import selectors, services
from chat.files import store
from chat.models import Conversation, Message
from chat.providers import get_provider
from chat.web.forms import ConversationSettingsForm
from chat.web.ownership import owned_or_404


def _provider_context() -> dict[str, str]:
    return {"provider_name": get_provider().name, "default_model": settings.CHAT_MODEL}


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("chat:home")
    form: UserCreationForm[Any] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:home")
    return render(request, "registration/signup.html", {"form": form})


@login_required
@require_GET
def conversation_list(request: HttpRequest) -> HttpResponse:
    """Every conversation of the user, or with `?q=` those whose title or text matches."""
    query = request.GET.get("q", "").strip()[:200]
    conversations = (
        selectors.conversation_search(user=request.user, query=query)  # type: ignore[arg-type]
        if query
        else selectors.conversation_list(user=request.user)  # type: ignore[arg-type]
    )
    return render(
        request,
        "chat/conversation_list.html",
        {"conversations": conversations, "search_query": query, **_provider_context()},
    )


@login_required
@require_POST
def conversation_create(request: HttpRequest) -> HttpResponse:
    """An empty conversation, and its page (for scripts and the test clients: the page's New
    chat goes to the composer at `/`, where the first message makes the conversation). It is
    listed nowhere until it has a message."""
    conversation = services.conversation_create(user=request.user)  # type: ignore[arg-type]
    return redirect("chat:conversation_detail", conversation_id=conversation.pk)


def _conversation_page(
    request: HttpRequest, conversation: Conversation, form: ConversationSettingsForm, status: int
) -> HttpResponse:
    messages = selectors.conversation_messages(conversation=conversation)
    streaming = any(m.status == Message.Status.STREAMING for m in messages)
    return render(
        request,
        "chat/conversation.html",
        {
            "conversation": conversation,
            "messages": messages,
            "streaming": streaming,
            # The socket catches the page up on anything newer (chat/consumers.py).
            "last_message_id": messages[-1].pk if messages else 0,
            "model": conversation.model or settings.CHAT_MODEL,
            "settings_form": form,
            "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
            "max_attachments": settings.CHAT_MAX_ATTACHMENTS,
            "max_attachment_bytes": settings.CHAT_MAX_ATTACHMENT_BYTES,
            # Files attached here and not sent yet: their chips are back after a reload.
            "drafts": store.drafts(user=request.user, conversation_id=conversation.pk),  # type: ignore[arg-type]
            # The sidebar's list and the heading's tokens and cost (chat/_usage.html).
            "sidebar_conversations": selectors.sidebar_conversations(
                user=request.user,  # type: ignore[arg-type]
                limit=50,
                current=conversation,
            ),
            "usage": selectors.conversation_usage(conversation_id=conversation.pk),
            **_provider_context(),
        },
        status=status,
    )


def _message_id(value: str) -> int | None:
    """A message id from a query string; None for anything else (never a server error)."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


@login_required
@require_GET
def conversation_detail(request: HttpRequest, conversation_id: str) -> HttpResponse:
    conversation = owned_or_404(request, conversation_id)
    before = _message_id(request.GET.get("before", ""))
    if before is not None and request.headers.get("HX-Request") == "true":
        # "Show earlier messages": the page of messages before that one, in the button's place
        # (with the next such button first, if there are older ones still).
        messages = selectors.conversation_messages(conversation=conversation, before=before)
        response = render(request, "chat/conversation.html#message_list", {"messages": messages})
    else:
        form = ConversationSettingsForm(instance=conversation)
        response = _conversation_page(request, conversation, form, status=200)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def conversation_settings(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """Save the conversation's model and system prompt (they apply from the next reply)."""
    conversation = owned_or_404(request, conversation_id)
    form = ConversationSettingsForm(request.POST, instance=conversation)
    if not form.is_valid():
        return _conversation_page(request, conversation, form, status=400)
    form.save()
    return redirect("chat:conversation_detail", conversation_id=conversation.pk)
