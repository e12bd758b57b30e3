"""Forms: a conversation's settings."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.formats import number_format
from django.utils.translation import gettext, gettext_lazy

from chat.models import Conversation
from chat.providers import catalog


class ConversationSettingsForm(forms.ModelForm):
    """Model (one of settings.CHAT_MODELS), system prompt and thinking; they apply from the next
    reply."""

    model = forms.ChoiceField(label=gettext_lazy("Model"), required=True)
    system_prompt = forms.CharField(
        label=gettext_lazy("System prompt"),
        required=False,
        max_length=settings.CHAT_MAX_SYSTEM_PROMPT_CHARS,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=gettext_lazy(
            "Instructions Claude reads before the conversation. Applies from the next reply."
        ),
    )

    thinking_budget = forms.TypedChoiceField(
        label=gettext_lazy("Thinking"),
        coerce=int,
        required=False,
        help_text=gettext_lazy(
            "Let Claude think before it answers (you can watch it, and stop it). Thinking "
            "tokens are billed as output. On models that think adaptively this sets the effort."
        ),
    )

    class Meta:
        model = Conversation
        fields = ["model", "system_prompt", "thinking_budget"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [  # type: ignore[attr-defined]
            (m, catalog.spec(m).label) for m in settings.CHAT_MODELS
        ]
        if not self.initial.get("model"):
            self.initial["model"] = settings.CHAT_MODEL
        choices = dict(catalog.THINKING_CHOICES)
        for budget in (settings.CHAT_THINKING_BUDGET, self.initial.get("thinking_budget")):
            if budget and budget not in choices:  # the site's default, or a value set before
                choices[budget] = gettext("%(count)s tokens") % {
                    "count": number_format(budget, force_grouping=True)
                }
        self.fields["thinking_budget"].choices = sorted(choices.items())  # type: ignore[attr-defined]

    def clean_thinking_budget(self) -> int:
        budget: int = self.cleaned_data.get("thinking_budget") or 0
        if 0 < budget < catalog.MIN_THINKING_BUDGET:
            raise forms.ValidationError(
                gettext("Thinking needs at least %(count)s tokens, or 0 for off.")
                % {"count": number_format(catalog.MIN_THINKING_BUDGET, force_grouping=True)}
            )
        return budget
