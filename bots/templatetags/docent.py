"""Template helpers for rendering answers with their citation markers."""

import re

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

register = template.Library()

_MARKER = re.compile(r"\[(\d+)\]")


@register.filter
def with_citations(message) -> str:
    """The message text, escaped, with each [n] that has a citation turned into a link to its source."""
    by_number = {citation["n"]: citation for citation in message.citations}

    def link(match: re.Match) -> str:
        citation = by_number.get(int(match.group(1)))
        if citation is None:
            return match.group(0)
        where = citation["document_name"] + (f", page {citation['page']}" if citation.get("page") else "")
        return format_html(
            '<a class="cite" href="#cite-{}-{}" title="{}">[{}]</a>', message.pk, citation["n"], where, citation["n"]
        )

    return mark_safe(_MARKER.sub(link, str(escape(message.text))))


@register.filter
def highlight(passage: str, sentences) -> str:
    """The passage, escaped, with each of `sentences` that occurs in it wrapped in <mark>."""
    html = str(escape(passage))
    for sentence in sorted(set(sentences or []), key=len, reverse=True):
        escaped = str(escape(sentence))
        if escaped and escaped in html:
            html = html.replace(escaped, f"<mark>{escaped}</mark>", 1)
    return mark_safe(html)
