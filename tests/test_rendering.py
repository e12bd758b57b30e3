"""Finished replies are rendered from Markdown, highlighted, and sanitized (chat/web/markdown.py);
thinking is shown as escaped text."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.utils import timezone
from django.utils.html import escape

from chat.models import Message
from chat.replies.events import ReplyFinished, Snapshot, TextBatch
from chat.web.markdown import render_markdown
from chat.ws import render


def test_markdown_renders_paragraphs_emphasis_lists_and_tables() -> None:
    html = render_markdown(
        "Hello **world**, *you*.\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    )
    assert "<p>Hello <strong>world</strong>, <em>you</em>.</p>" in html
    assert "<ul>" in html and "<li>one</li>" in html
    assert "<table>" in html and "<td>1</td>" in html


def test_table_alignment_is_a_class_not_a_style_attribute_the_csp_would_block() -> None:
    html = render_markdown("| l | c | r |\n|:--|:-:|--:|\n| 1 | 2 | 3 |")
    assert "style=" not in html
    assert '<td class="align-left">1</td>' in html
    assert '<td class="align-center">2</td>' in html
    assert '<th class="align-right">r</th>' in html
    # A class smuggled in by the model's HTML is not kept (raw HTML is text anyway).
    assert '<td class="evil"' not in render_markdown('<td class="evil">x</td>')


def test_code_blocks_are_highlighted_escaped_and_get_a_copy_button() -> None:
    html = render_markdown('```python\nprint("<b>hi</b>")\n```')
    assert 'class="code-block"' in html and 'class="copy-btn"' in html
    assert '<span class="code-lang">python</span>' in html
    assert '<span class="nb">print</span>' in html  # Pygments token classes
    assert "&lt;b&gt;hi&lt;/b&gt;" in html and "<b>" not in html


def test_hostile_code_in_a_highlighted_block_stays_text() -> None:
    elements = Elements(render_markdown("```html\n<script>alert(1)</script><img onerror=x>\n```"))
    assert {tag for tag, _ in elements.found} <= {"div", "span", "button", "pre", "code"}
    assert all(not name.startswith("on") for _, attrs in elements.found for name in attrs)


def test_an_unknown_language_is_shown_as_plain_code() -> None:
    html = render_markdown("```no-such-language\nx = 1\n```")
    assert "x = 1" in html


HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![img](javascript:alert(1))",
    '![img](x" onerror="alert(1))',
    '<a href="javascript:alert(1)">x</a>',
    "<iframe src=https://evil.example></iframe>",
    "<div onclick=alert(1)>unclosed",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    '[x](https://ok.example "title" onmouseover=alert(1))',
    "<svg><script>alert(1)</script></svg>",
    "<style>body{display:none}</style>",
    "x" * 20000,
]


class Elements(HTMLParser):
    """Every real element and its attributes, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_and_html_never_become_active_markup(text: str) -> None:
    elements = Elements(render_markdown(text)).found
    # Only allowlisted elements exist (anything else was escaped into text or removed) ...
    assert {tag for tag, _ in elements} <= {"p", "a", "div", "span", "pre", "code", "button"}
    for tag, attrs in elements:
        # ... with no event-handler attribute, and links only to http(s) and mailto.
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        if tag == "a":
            assert (attrs.get("href") or "").startswith(("http://", "https://", "mailto:"))


def test_links_open_safely() -> None:
    html = render_markdown("[site](https://example.com)")
    assert 'href="https://example.com"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


@pytest.mark.parametrize("text", HOSTILE[:8])
def test_hostile_thinking_stays_text_in_every_frame_that_carries_it(text: str) -> None:
    """Claude's thinking is shown as plain text, never as Markdown or HTML: in a batch, in the
    snapshot a page joining mid-reply gets, and in the final bubble."""
    streaming = Message(
        pk=7, role="assistant", status="streaming", thinking_budget=2048, created_at=timezone.now()
    )
    done = Message(
        pk=7, role="assistant", status="complete", content="ok", thinking=text, thinking_ms=1200
    )
    frames = [
        render.for_event(TextBatch(message_id=7, text="", thinking=text)),
        render.for_event(Snapshot(streaming, "", text)),
        render.for_event(ReplyFinished(message=done)),
    ]
    for frame in frames:
        for tag, attrs in Elements(frame).found:
            assert tag not in {"script", "img", "svg", "style", "a"}, (tag, frame)
            assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        assert escape(text) in frame
