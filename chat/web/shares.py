"""Share links on the web: make one, revoke them, and the public page a link opens.

Making and revoking are the owner's (another user's conversation is a 404), POSTs with CSRF.
Each answers JSON to `Accept: application/json`, the conversation page's Share panel to htmx,
and otherwise sends the browser to the account page, which lists the links.

The public page (`/share/<token>/`) needs no sign-in. It renders the link's copy of the
conversation (chat/data/shares.py) read-only: the same bubbles and the same sanitising Markdown
filter as the chat page, no form, no socket, no link to a file, and it asks not to be indexed
(a meta tag and X-Robots-Tag). It is never cached, so a revoked link is a 404 at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from chat.data import shares
from chat.data.services import TurnRefused
from chat.models import ShareLink
from chat.web.ownership import owned_or_404

if TYPE_CHECKING:
    from django_htmx.middleware import HtmxDetails

    class HtmxHttpRequest(HttpRequest):
        htmx: HtmxDetails  # set by django_htmx's middleware


#: The Share panel of the conversation page (templates/chat/conversation.html).
SHARE_PANEL = "chat/conversation.html#share_panel"


@dataclass(frozen=True, slots=True)
class LinkRow:
    """A link on the account page, with the address to give out."""

    link: ShareLink
    url: str


def share_url(request: HttpRequest, link: ShareLink) -> str:
    """The link's absolute address (the host the request came to, checked by ALLOWED_HOSTS)."""
    return request.build_absolute_uri(reverse("chat:share", kwargs={"token": link.token}))


def account_context(request: HttpRequest) -> dict[str, object]:
    """The account page's share-links section (templates/chat/_account_shares.html)."""
    links = shares.share_links_of(user=request.user)  # type: ignore[arg-type]
    return {"share_links": [LinkRow(link=link, url=share_url(request, link)) for link in links]}


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _to_account(anchor: str) -> HttpResponse:
    return redirect(f"{reverse('chat:account')}#{anchor}")


@login_required
@require_POST
def conversation_share(request: HtmxHttpRequest, conversation_id: str) -> HttpResponse:
    """A new link to the conversation as it is now. JSON: `{"url": ...}` (201); htmx: the
    Share panel showing it; a plain form: the account page, at the new link. Refused while a
    reply streams (409 with the reason; htmx: the panel says it)."""
    conversation = owned_or_404(request, conversation_id)
    try:
        link = shares.share_create(conversation=conversation)
    except TurnRefused as exc:
        if _wants_json(request):
            return JsonResponse({"error": str(exc)}, status=409)
        context = {"conversation": conversation, "share_error": str(exc)}
        if request.htmx:
            return render(request, SHARE_PANEL, context)  # (htmx swaps only a 2xx)
        return render(request, "chat/account.html", context | account_context(request), status=409)
    url = share_url(request, link)
    if _wants_json(request):
        return JsonResponse({"url": url}, status=201)
    if request.htmx:
        return render(request, SHARE_PANEL, {"conversation": conversation, "share_url": url})
    return _to_account(f"share-{link.pk}")


@login_required
@require_POST
def conversation_unshare(request: HtmxHttpRequest, conversation_id: str) -> HttpResponse:
    """Revoke every link to the conversation: each answers 404 from now on."""
    conversation = owned_or_404(request, conversation_id)
    revoked = shares.shares_revoke(conversation=conversation)
    if _wants_json(request):
        return JsonResponse({"revoked": revoked})
    if request.htmx:
        return render(
            request, SHARE_PANEL, {"conversation": conversation, "share_revoked": revoked}
        )
    return _to_account("shares")


@login_required
@require_POST
def share_revoke(request: HttpRequest, token: str) -> HttpResponse:
    """Revoke one link (the account page's Revoke); a link that is not the user's is a 404."""
    if not shares.share_revoke(user=request.user, token=token):  # type: ignore[arg-type]
        raise Http404("No such link.")
    if _wants_json(request):
        return JsonResponse({"revoked": 1})
    return _to_account("shares")


@never_cache
@require_GET
def share_page(request: HttpRequest, token: str) -> HttpResponse:
    """The shared copy, for anyone with the link; a 404 for a revoked or unknown one."""
    link = shares.share_by_token(token=token)
    if link is None:
        raise Http404("No such link.")
    response = render(
        request, "chat/share.html", {"link": link, "messages": shares.shared_messages(link)}
    )
    response["X-Robots-Tag"] = "noindex"
    return response
