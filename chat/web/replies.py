"""HTTP control of replies, for htmx and scripts: stop one, stop all, list the active ones.

Owner-only and CSRF-protected (POST). Each answers with the outcome, as an HTML fragment for
htmx (or a browser) and as JSON when the client asks for it with `Accept: application/json`.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext, ngettext
from django.views.decorators.http import require_GET, require_POST

from chat.data import selectors
from chat.replies import turns


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@login_required
@require_POST
async def conversation_stop(request: HttpRequest, conversation_id: str) -> HttpResponse:
    user = await request.auser()
    conversation = await selectors.aconversation_for_user(
        conversation_id=conversation_id, user=user
    )
    if conversation is None:
        raise Http404("No such conversation.")
    result = await turns.stop(conversation.pk)
    status = 503 if result.outcome == "unavailable" else 200
    if _wants_json(request):
        return JsonResponse(
            {
                "outcome": result.outcome,
                "conversation": result.conversation_id,
                "message": result.message_id,
                "chars_saved": result.chars,
                "detail": result.text,
            },
            status=status,
        )
    level = "error" if status != 200 else "info"
    return render(
        request, "chat/frames.html#notice", {"text": result.text, "level": level}, status=status
    )


@login_required
@require_POST
async def conversation_stop_all(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    assert user.pk is not None
    results = await turns.stop_all(user.pk)
    stopped = sum(r.outcome in {"stopped", "orphan"} for r in results)
    failed = sum(r.outcome == "unavailable" for r in results)
    text = ngettext("Stopped %(count)d reply.", "Stopped %(count)d replies.", stopped) % {
        "count": stopped
    }
    if failed:
        text += " " + gettext(
            "%(count)d could not be reached (the message bus is unreachable)."
        ) % {"count": failed}
    status = 503 if failed else 200
    if _wants_json(request):
        return JsonResponse(
            {
                "stopped": stopped,
                "unreachable": failed,
                "results": [
                    {
                        "conversation": r.conversation_id,
                        "outcome": r.outcome,
                        "message": r.message_id,
                        "chars_saved": r.chars,
                    }
                    for r in results
                ],
                "detail": text,
            },
            status=status,
        )
    level = "error" if failed else "info"
    return render(request, "chat/frames.html#notice", {"text": text, "level": level}, status=status)


@login_required
@require_GET
async def active_replies(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    # The page's layout reads request.user, which would load it again, synchronously.
    request.user = user
    replies = await selectors.aactive_replies(user=user)
    if _wants_json(request):
        return JsonResponse(
            {
                "active": [
                    {
                        "conversation": str(m.conversation_id),
                        "title": str(m.conversation),
                        "message": m.pk,
                        "started": m.created_at.isoformat(),
                        "chars_so_far": len(m.content),
                    }
                    for m in replies
                ]
            }
        )
    return render(request, "chat/active.html", {"replies": replies})
