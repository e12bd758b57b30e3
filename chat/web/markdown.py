"""Model output as safe HTML: Markdown (markdown-it-py), code (Pygments), sanitized (nh3).

Only a finished reply is rendered (the streaming bubble shows plain escaped text, so it never
re-renders and never jumps). Raw HTML in the model's Markdown is shown as text, links are
limited to http(s) and mailto, and nh3 removes anything outside a small allowlist afterwards,
so a prompt-injected reply cannot run script in the page.
"""

from __future__ import annotations

from typing import Any

import nh3
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "a",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "span", "div", "button",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "span": {"class"},
    "div": {"class"},
    "code": {"class"},
    "pre": {"class"},
    "button": {"class", "type", "title", "aria-label"},
}
ALLOWED_SCHEMES = {"http", "https", "mailto"}
# Table cells are aligned by class, never by a style attribute: the page's Content-Security-Policy
# (style-src 'self', chatsite/settings.py) blocks inline styles. The rules are in chat.css.
ALIGN_CLASSES = {"left": "align-left", "center": "align-center", "right": "align-right"}
# (nh3 wants "class" of these tags only here, not in ALLOWED_ATTRIBUTES too.)
ALLOWED_CLASSES = {"th": set(ALIGN_CLASSES.values()), "td": set(ALIGN_CLASSES.values())}

_formatter = HtmlFormatter(nowrap=True, classnames=None)


def _fence(renderer: Any, tokens: list[Any], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    language = (token.info or "").strip().split(maxsplit=1)[0] if token.info else ""
    try:
        lexer = get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    # Pygments escapes the code; the result is sanitized anyway before it may be trusted.
    code = _sanitized(highlight(token.content, lexer, _formatter), tags={"span"})
    return render_to_string("chat/_code_block.html", {"code": code, "language": language})


def _align_by_class(state: Any) -> None:
    """markdown-it writes a column's alignment as style="text-align:X"; make it a class."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrs.get("style"):
            align = str(token.attrs.pop("style")).removeprefix("text-align:")
            if align in ALIGN_CLASSES:
                token.attrs["class"] = ALIGN_CLASSES[align]


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _fence)
    md.core.ruler.push("align_by_class", _align_by_class)
    return md


_md = _parser()


def _sanitized(html: str, *, tags: set[str] = ALLOWED_TAGS) -> SafeString:
    """The only way HTML leaves this module as safe: through nh3's allowlist."""
    clean = nh3.clean(
        html,
        tags=tags,
        attributes={tag: attrs for tag, attrs in ALLOWED_ATTRIBUTES.items() if tag in tags},
        url_schemes=ALLOWED_SCHEMES,
        allowed_classes={tag: c for tag, c in ALLOWED_CLASSES.items() if tag in tags},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    # Safe because it is nh3's output: only the allowlisted tags, attributes, classes and URL
    # schemes above survive; model text reaches here only through markdown-it with raw HTML off.
    return mark_safe(clean)


def render_markdown(text: str) -> SafeString:
    """The reply's Markdown as sanitized HTML."""
    return _sanitized(_md.render(text).strip())
