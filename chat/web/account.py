"""The user's account page (their data: export, import, share links) and API tokens page (make
a token, shown once; see them; revoke one)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat.data.api_tokens import token_create, token_revoke, tokens_of
from chat.web import shares


@login_required
@require_GET
def account(request: HttpRequest) -> HttpResponse:
    """The account page: each section is its own template (chat/_account_*.html)."""
    return render(request, "chat/account.html", {**shares.account_context(request)})


@never_cache  # the one response that shows a new token must not be kept by any cache
@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    new_token = ""
    name = ""
    error = ""
    status = 200
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        if not name or len(name) > 100:
            error = gettext("Give the token a name of 1 to 100 characters (what it is for).")
            status = 400
        else:
            _row, new_token = token_create(user=request.user, name=name)  # type: ignore[arg-type]
            name = ""
    return render(
        request,
        "chat/api_tokens.html",
        {
            "tokens": tokens_of(user=request.user),  # type: ignore[arg-type]
            "new_token": new_token,
            "name": name,
            "error": error,
        },
        status=status,
    )


@login_required
@require_POST
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    # Someone else's token id, or one already revoked, changes nothing either way.
    token_revoke(user=request.user, token_id=token_id)  # type: ignore[arg-type]
    return redirect("chat:api_tokens")
