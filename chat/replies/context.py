"""Fitting a conversation into the model's context window.

Token counts here are estimates: text's from its length (about three characters a token, on the
safe side of the four a token that English usually takes), so the budget errs towards trimming a
little early rather than failing at the API. A file costs what chat/files/checks.py estimated
when it was attached (an image at most 1,600 tokens, a PDF page 1,500, a text file its text's).
"""

from __future__ import annotations

from dataclasses import dataclass

from chat.files.checks import MAX_REQUEST_FILE_BYTES
from chat.providers import ChatTurn


def estimate_prompt_tokens(text: str) -> int:
    return (len(text) + 2) // 3


def turn_tokens(turn: ChatTurn) -> int:
    """A turn's estimated cost: its text's, and its files' (chat/files/checks.py estimates)."""
    return estimate_prompt_tokens(turn.content) + sum(part.tokens for part in turn.files)


@dataclass(frozen=True, slots=True)
class Fitted:
    turns: list[ChatTurn]
    dropped: int
    """How many of the oldest turns were left out."""


class ContextTooSmall(ValueError):
    """Even the newest message alone does not fit."""


def fit_history(
    turns: list[ChatTurn],
    *,
    context_tokens: int,
    max_tokens: int,
    system: str,
    file_bytes: int = MAX_REQUEST_FILE_BYTES,
) -> Fitted:
    """The newest turns that fit the window, oldest first, starting with a user turn.

    The budget is the window less the reply's `max_tokens` and the system prompt. Turns are
    dropped from the oldest; the last turn (the message being answered, or a reply being
    continued with the message before it) is always kept, or ContextTooSmall is raised.

    Where the kept history starts moves in steps, not turn by turn: it starts at the first user
    turn past one of the lines a quarter of the budget apart, counted from the conversation's
    beginning. The next turns then send the same start, and so the same prefix, which Anthropic's
    prompt cache can read back; trimmed one turn at a time, every turn's prefix would be new and
    would be written to the cache again (at 1.25x the input price) instead of read (0.1x).
    """
    start = _first_within_file_bytes(turns, file_bytes)
    if start:
        kept = fit_history(
            turns[start:], context_tokens=context_tokens, max_tokens=max_tokens, system=system
        )
        return Fitted(turns=kept.turns, dropped=kept.dropped + start)
    budget = context_tokens - max_tokens - estimate_prompt_tokens(system)
    costs = [turn_tokens(turn) for turn in turns]
    total = sum(costs)
    if total <= budget:
        return Fitted(turns=list(turns), dropped=0)
    step = max(1, budget // 4)
    offset = 0
    line = -1
    past_a_line = False  # a line was crossed, and no user turn has started since
    for index, (turn, cost) in enumerate(zip(turns, costs, strict=True)):
        if offset // step > line:
            line, past_a_line = offset // step, True
        if past_a_line and turn.role == "user":
            past_a_line = False
            if total - offset <= budget:
                return Fitted(turns=turns[index:], dropped=index)
        offset += cost
    return _newest_that_fit(turns, costs, budget)


def _first_within_file_bytes(turns: list[ChatTurn], budget: int) -> int:
    """Where the history must start for its files to fit one request (Anthropic takes 32 MB):
    0 when they all do; else the first user turn after which they do."""
    sizes = [sum(part.size for part in turn.files) for turn in turns]
    if sum(sizes) <= budget:
        return 0
    used = 0
    start = len(turns)
    while start > 0 and used + sizes[start - 1] <= budget:
        start -= 1
        used += sizes[start]
    while start < len(turns) and turns[start].role != "user":
        start += 1
    if start == len(turns):
        raise ContextTooSmall(
            "This message's files are too large together for one request to Claude. Send fewer."
        )
    return start


def _newest_that_fit(turns: list[ChatTurn], costs: list[int], budget: int) -> Fitted:
    """The newest turns that fit, turn by turn (when no step's line gives a start that fits)."""
    kept = 0
    used = 0
    for cost in reversed(costs):
        if used + cost > budget:
            break
        kept += 1
        used += cost
    start = len(turns) - kept
    # The Messages API wants the first turn to be the user's.
    while start < len(turns) and turns[start].role != "user":
        start += 1
    if start == len(turns) and turns:
        raise ContextTooSmall(
            "This message is too long for the model's context window. Shorten it, or lower "
            "the reply length."
        )
    return Fitted(turns=turns[start:], dropped=start)
