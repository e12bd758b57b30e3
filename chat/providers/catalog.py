"""The Claude models this app offers, with the limits it must respect for each.

The names are the installed `anthropic` SDK's (its `anthropic.types.Model`); tests/test_catalog.py
fails when a name here is not the SDK's, or when the SDK names a newer Sonnet than the default.
The SDK carries names, not limits: the output limits, context windows and thinking styles below
are Anthropic's published figures per model line, kept here by hand (the Models API reports them,
but this app must start without the network). Importing this module does not import the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ThinkingStyle = Literal["budget", "adaptive", "none"]

#: The least `budget_tokens` the API accepts for extended thinking.
MIN_THINKING_BUDGET = 1024

#: The thinking choices a conversation's settings offer: a token budget, or off. On a model that
#: thinks adaptively the budget picks the effort instead (see `thinking_effort`).
THINKING_CHOICES: dict[int, str] = {
    0: "Off",
    2048: "Light (2,048 tokens)",
    8192: "Medium (8,192 tokens)",
    24576: "Deep (24,576 tokens)",
}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    label: str
    max_output_tokens: int
    """The largest `max_tokens` the model accepts (thinking counts toward it)."""
    context_tokens: int
    thinking: ThinkingStyle
    """`budget`: `{"type": "enabled", "budget_tokens": N}`; `adaptive`: `{"type": "adaptive"}`
    with an effort (the SDK warns against `enabled` on these); `none`: no thinking."""


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("claude-sonnet-5-5", "Claude Sonnet 5.5", 64_000, 200_000, "adaptive"),
        ModelSpec("claude-opus-5-5", "Claude Opus 5.5", 128_000, 200_000, "adaptive"),
        ModelSpec("claude-haiku-5-5", "Claude Haiku 5.5", 64_000, 200_000, "adaptive"),
        ModelSpec("claude-sonnet-5", "Claude Sonnet 5", 64_000, 200_000, "adaptive"),
        ModelSpec("claude-opus-5", "Claude Opus 5", 128_000, 200_000, "adaptive"),
        ModelSpec("claude-opus-4-8", "Claude Opus 4.8", 128_000, 200_000, "adaptive"),
        ModelSpec("claude-opus-4-7", "Claude Opus 4.7", 128_000, 200_000, "adaptive"),
        ModelSpec("claude-opus-4-6", "Claude Opus 4.6", 128_000, 200_000, "adaptive"),
        ModelSpec("claude-sonnet-4-6", "Claude Sonnet 4.6", 64_000, 200_000, "adaptive"),
        ModelSpec("claude-haiku-4-5", "Claude Haiku 4.5", 64_000, 200_000, "budget"),
        ModelSpec("claude-opus-4-5", "Claude Opus 4.5", 64_000, 200_000, "budget"),
        ModelSpec("claude-sonnet-4-5", "Claude Sonnet 4.5", 64_000, 200_000, "budget"),
    )
}

#: The newest Sonnet the installed SDK names: the site's default model (CHAT_MODEL).
DEFAULT_MODEL = "claude-sonnet-5-5"
#: The models offered when CHAT_MODELS does not say: the newest of each line, then the last
#: generation's Sonnet.
OFFERED = ["claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5", "claude-sonnet-4-6"]
#: A small fast model for titles.
TITLE_MODEL = "claude-haiku-5-5"

#: The offline demo provider's "model".
DEMO = ModelSpec("demo", "Offline demo", 64_000, 200_000, "budget")


def spec(name: str) -> ModelSpec:
    """What the app knows of a model; a name it does not know (set in CHAT_MODELS) gets
    conservative limits and no thinking, so a request never asks more than it may."""
    if name == DEMO.name:
        return DEMO
    return MODELS.get(name) or ModelSpec(name, name, 8192, 200_000, "none")


def thinking_effort(budget: int) -> Literal["low", "medium", "high"]:
    """The effort an adaptive model is asked for, from the conversation's thinking budget."""
    if budget <= 2048:
        return "low"
    return "medium" if budget <= 8192 else "high"


def request_max_tokens(model: ModelSpec, *, answer_tokens: int, thinking_budget: int) -> int:
    """`max_tokens` for a request: the answer's limit plus the thinking budget (thinking counts
    toward `max_tokens`), never above what the model accepts."""
    return min(model.max_output_tokens, answer_tokens + thinking_budget)


def thinking_budget_for(model: ModelSpec, budget: int, *, answer_tokens: int) -> int:
    """The thinking budget a request can carry: 0 when the model does not think or the
    conversation has thinking off; else at least the API's minimum, and always below
    `max_tokens` with room left for an answer."""
    if model.thinking == "none" or budget <= 0:
        return 0
    room = model.max_output_tokens - min(answer_tokens, model.max_output_tokens // 2)
    return max(MIN_THINKING_BUDGET, min(budget, room))
