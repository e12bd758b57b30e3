"""Fitting a conversation into the model's context window.

Token counts here are estimates from the text (about three characters a token, on the safe side
of the four a token that English usually takes), so the budget errs towards trimming a little
early rather than failing at the API.
"""

from __future__ import annotations

from dataclasses import dataclass

from chat.providers import ChatTurn


def estimate_prompt_tokens(text: str) -> int:
    return (len(text) + 2) // 3


@dataclass(frozen=True, slots=True)
class Fitted:
    turns: list[ChatTurn]
    dropped: int
    """How many of the oldest turns were left out."""


class ContextTooSmall(ValueError):
    """Even the newest message alone does not fit."""


def fit_history(
    turns: list[ChatTurn], *, context_tokens: int, max_tokens: int, system: str
) -> Fitted:
    """The newest turns that fit the window, oldest first, starting with a user turn.

    The budget is the window less the reply's `max_tokens` and the system prompt. Turns are
    dropped from the oldest; the last turn (the message being answered, or a reply being
    continued with the message before it) is always kept, or ContextTooSmall is raised.
    """
    budget = context_tokens - max_tokens - estimate_prompt_tokens(system)
    kept: list[ChatTurn] = []
    used = 0
    for turn in reversed(turns):
        cost = estimate_prompt_tokens(turn.content)
        if used + cost > budget:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    # The Messages API wants the first turn to be the user's.
    while kept and kept[0].role != "user":
        kept.pop(0)
    if not kept and turns:
        raise ContextTooSmall(
            "This message is too long for the model's context window. Shorten it, or lower "
            "the reply length."
        )
    return Fitted(turns=kept, dropped=len(turns) - len(kept))
