"""The ownership check every page view of a conversation makes, in one place."""

from __future__ import annotations

from django.http import Http404, HttpRequest

from chat.data import selectors
from chat.models import Conversation


def owned_or_404(request: HttpRequest, conversation_id: str) -> Conversation:
    """The signed-in user's conversation; 404 for anyone else's (never a hint it exists)."""
    conversation = selectors.conversation_for_user(
        conversation_id=conversation_id, user=request.user
    )
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation
