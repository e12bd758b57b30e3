"""`{{ text|markdown }}`: a finished reply's Markdown as sanitized HTML (chat/rendering.py)."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from chat.web.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    return render_markdown(text)
