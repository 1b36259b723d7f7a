"""Split parsed pages into chunks measured in the embedding model's tokens.

Pure Python, no Django. A chunker takes ParsedPage objects and a Tokenizer (anything
that returns the character span of each token of a text) and yields ChunkDrafts.
Measuring in model tokens, not characters, is what keeps every chunk inside the
embedding model's window (256 word pieces for all-MiniLM-L6-v2).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol


class Tokenizer(Protocol):
    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character offsets of each token of `text`, in order."""


@dataclass(frozen=True)
class ChunkDraft:
    text: str
    page: int | None
    token_count: int
    heading_path: str = ""


def fixed_token_chunks(pages: Iterable, tokenizer: Tokenizer, size: int, overlap: int) -> Iterator[ChunkDraft]:
    """Windows of at most `size` tokens, each starting `size - overlap` tokens after the last.

    Windows stay within a page so every chunk has exactly one page number. A window
    never ends inside a word when a shorter one can end at a word boundary, so
    "Vacation" is not cut into "Vac" and "##ation".
    """
    if size < 1:
        raise ValueError("chunk size must be at least 1 token")
    if not 0 <= overlap < size:
        raise ValueError("chunk overlap must be at least 0 and smaller than the chunk size")
    for page in pages:
        if not page.text.strip():
            continue
        spans = tokenizer.token_spans(page.text)
        start = 0
        while start < len(spans):
            end = min(start + size, len(spans))
            end = _back_off_to_word_boundary(spans, start, end)
            text = page.text[spans[start][0] : spans[end - 1][1]].strip()
            if text:
                yield ChunkDraft(text=text, page=page.number, token_count=end - start)
            if end == len(spans):
                break
            next_start = max(end - overlap, start + 1)
            start = _forward_to_word_start(spans, next_start, end)


def _glued(spans: list[tuple[int, int]], index: int) -> bool:
    """True when token `index` continues the previous token's word (no gap between them)."""
    return index > 0 and spans[index][0] == spans[index - 1][1]


def _back_off_to_word_boundary(spans, start: int, end: int) -> int:
    """Move the window's end back to a word boundary, but never below half the window.

    Text without spaces (CJK, long identifiers, URLs) has no boundary to find; there
    the window is cut where it is rather than shrunk to nothing.
    """
    if end >= len(spans):
        return end
    floor = start + max(1, (end - start) // 2)
    candidate = end
    while candidate > floor and _glued(spans, candidate):
        candidate -= 1
    return end if _glued(spans, candidate) else candidate


def _forward_to_word_start(spans, start: int, limit: int) -> int:
    """Move the next window's start forward to a word start, if one is near."""
    candidate = start
    while candidate < limit and _glued(spans, candidate):
        candidate += 1
    return candidate if candidate < limit else start
