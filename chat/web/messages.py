"""One message on the page: show another of its versions, or delete it (and what follows).

Both are refused while a reply streams in the conversation (the page would no longer match
what is being answered). Ownership is checked through the selectors, as on every page.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from chat.data import selectors, services
from chat.data.services import TurnRefused
from chat.models import Message
from chat.web.ownership import owned_or_404


@login_required
@require_POST
def message_select(request: HttpRequest, conversation_id: str, message_id: int) -> HttpResponse:
    """`< k/N >`: show that version (htmx: the message list of the branch it leads to; a
    plain form: the page again). Refused with a notice while a reply streams."""
    conversation = owned_or_404(request, conversation_id)
    htmx = request.headers.get("HX-Request") == "true"
    try:
        if not services.version_select(conversation=conversation, message_id=message_id):
            raise Http404("No such message.")
    except TurnRefused as exc:
        if not htmx:
            return redirect("chat:conversation_detail", conversation_id=conversation.pk)
        # Only the notice: the list stays as it is (a reply streaming in it goes on showing).
        refused = render(request, "chat/_version_switched.html", {"notice": str(exc)})
        refused["HX-Reswap"] = "none"
        return refused
    if not htmx:
        return redirect("chat:conversation_detail", conversation_id=conversation.pk)
    messages = selectors.conversation_messages(conversation=conversation)
    return render(request, "chat/_version_switched.html", {"messages": messages})


@login_required
@require_http_methods(["GET", "POST"])
def message_delete(request: HttpRequest, conversation_id: str, message_id: int) -> HttpResponse:
    """GET: ask for confirmation (saying how many messages go). POST: delete it and every
    reply after it, and show the conversation."""
    conversation = owned_or_404(request, conversation_id)
    message = Message.objects.filter(conversation=conversation, pk=message_id).first()
    if message is None:
        raise Http404("No such message.")
    error = ""
    if request.method == "POST":
        try:
            services.message_delete(conversation=conversation, message_id=message_id)
        except TurnRefused as exc:
            error = str(exc)
        else:
            return redirect("chat:conversation_detail", conversation_id=conversation.pk)
    shown = selectors.branch(conversation_id=conversation.pk).ids
    following = len([pk for pk in shown if pk > message.pk]) if message.pk in shown else 0
    below = services.messages_below(conversation=conversation, message_id=message.pk)
    return render(
        request,
        "chat/message_delete.html",
        {
            "conversation": conversation,
            "message": message,
            "following": following,
            "hidden": below - following,
            "error": error,
        },
        status=409 if error else 200,
    )
