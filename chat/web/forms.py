"""Forms: a conversation's settings."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from chat.models import Conversation


class ConversationSettingsForm(forms.ModelForm):
    """Model (one of settings.CHAT_MODELS) and system prompt; both apply from the next reply."""

    model = forms.ChoiceField(label="Model", required=True)
    system_prompt = forms.CharField(
        label="System prompt",
        required=False,
        max_length=settings.CHAT_MAX_SYSTEM_PROMPT_CHARS,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Instructions Claude reads before the conversation. Applies from the next reply.",
    )

    class Meta:
        model = Conversation
        fields = ["model", "system_prompt"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(m, m) for m in settings.CHAT_MODELS]  # type: ignore[attr-defined]
        if not self.initial.get("model"):
            self.initial["model"] = settings.CHAT_MODEL
