"""The model catalogue follows the installed SDK: its names are the SDK's, and the default is
the newest Sonnet the SDK names."""

from __future__ import annotations

import re
import typing

import anthropic
from anthropic._data import DEPRECATED_MODELS
from django.conf import settings

from chat.providers import catalog

SONNET = re.compile(r"^claude-sonnet-(\d+)(?:-(\d))?$")


def sdk_model_names() -> set[str]:
    (literal, _str) = typing.get_args(anthropic.types.Model)
    return set(typing.get_args(literal))


def test_every_model_in_the_catalogue_is_named_by_the_sdk() -> None:
    assert set(catalog.MODELS) <= sdk_model_names()
    assert set(catalog.OFFERED) <= set(catalog.MODELS)
    assert catalog.TITLE_MODEL in catalog.MODELS


def test_the_default_is_the_newest_sonnet_the_sdk_names() -> None:
    versions = {
        (int(m[1]), int(m[2] or 0)): name for name in sdk_model_names() if (m := SONNET.match(name))
    }
    assert versions[max(versions)] == catalog.DEFAULT_MODEL
    assert settings.CHAT_MODEL == catalog.DEFAULT_MODEL
    assert settings.CHAT_MODELS[0] == catalog.DEFAULT_MODEL


def test_no_deprecated_model_is_offered_and_every_offered_one_is_priced() -> None:
    assert not set(catalog.OFFERED) & set(DEPRECATED_MODELS)
    assert set(catalog.OFFERED) <= set(settings.CHAT_PRICES)


def test_thinking_asks_no_more_than_the_model_allows() -> None:
    haiku = catalog.spec("claude-haiku-4-5")
    budget = catalog.thinking_budget_for(haiku, 10**9, answer_tokens=4096)
    max_tokens = catalog.request_max_tokens(haiku, answer_tokens=4096, thinking_budget=budget)
    assert max_tokens == haiku.max_output_tokens and budget < max_tokens
    assert catalog.thinking_budget_for(haiku, 100, answer_tokens=4096) == 1024
    assert catalog.thinking_budget_for(haiku, 0, answer_tokens=4096) == 0
    unknown = catalog.spec("claude-from-elsewhere")
    assert unknown.thinking == "none"
    assert catalog.thinking_budget_for(unknown, 8192, answer_tokens=4096) == 0
    assert [catalog.thinking_effort(b) for b in (2048, 8192, 24576)] == ["low", "medium", "high"]
