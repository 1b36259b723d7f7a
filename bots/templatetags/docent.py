"""Template helpers for rendering answers with their citation markers."""

import re

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

register = template.Library()

_MARKER = re.compile(r"\[(\d+)\]")


@register.filter
def with_citations(message) -> str:
    """The message text, escaped, with each [n] that has a citation turned into a link to its source.

    Markdown links of quoted passages become links too (http and https only).
    """
    by_number = {citation["n"]: citation for citation in message.citations}

    def link(match: re.Match) -> str:
        citation = by_number.get(int(match.group(1)))
        if citation is None:
            return match.group(0)
        location = citation.get("location") or (f"page {citation['page']}" if citation.get("page") else "")
        where = citation["document_name"] + (f", {location}" if location else "")
        return format_html(
            '<a class="cite" href="#cite-{}-{}" title="{}">[{}]</a>', message.pk, citation["n"], where, citation["n"]
        )

    return mark_safe(_MARKER.sub(link, _markdown_links(str(escape(message.text)))))


# A Markdown link or image in escaped text, to an http(s) address: quoted passages keep their
# documents' Markdown. The text part holds no brackets, so a citation marker is never inside one.
_LINK = re.compile(r"(!?)\[([^\[\]]+)\]\((https?://[^\s()<>\"']+)\)")


def _markdown_links(html: str) -> str:
    """Escaped text with [text](https://…) as a link and ![alt](…) as its alt text (no remote images)."""

    def render(match: re.Match) -> str:
        image, text, url = match.groups()
        if image:
            return text
        # The parts are escaped already: the URL's "&" is "&amp;", as an attribute wants it.
        return f'<a href="{url}" target="_blank" rel="noopener noreferrer nofollow">{text}</a>'

    return _LINK.sub(render, html)


@register.filter
def highlight(passage: str, sentences) -> str:
    """The passage, escaped, with each of `sentences` that occurs in it wrapped in <mark>."""
    html = str(escape(passage))
    for sentence in sorted(set(sentences or []), key=len, reverse=True):
        words = str(escape(sentence)).split()
        if not words:
            continue
        # The quote joins the passage's wrapped lines: match any run of whitespace between words.
        pattern = re.compile(r"\s+".join(re.escape(word) for word in words))
        html = pattern.sub(lambda match: f"<mark>{match.group(0)}</mark>", html, count=1)
    return mark_safe(html)


@register.filter
def metric(value) -> str:
    """A 0–1 metric as three decimals; "–" where a run has no value (no case counted)."""
    return "–" if value is None else f"{value:.3f}"


@register.filter
def delta(value) -> str:
    """A change in a metric with its sign: +0.120, −0.045, ±0 (no change), – (not comparable)."""
    if value is None:
        return "–"
    if abs(value) < 0.0005:
        return "±0"
    return f"{'+' if value > 0 else '−'}{abs(value):.3f}"


@register.filter
def delta_class(value, lower_is_better: bool = False) -> str:
    """The CSS class of a delta: better, worse or none; for some metrics a drop is the improvement."""
    if value is None or abs(value) < 0.0005:
        return ""
    return "better" if (value > 0) != bool(lower_is_better) else "worse"


@register.filter
def get_item(mapping, key):
    """mapping[key] for keys a template can't spell ("ndcg@10"); None when missing."""
    return mapping.get(key) if hasattr(mapping, "get") else None
