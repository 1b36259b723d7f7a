"""Split parsed pages into chunks measured in the embedding model's tokens.

Pure Python, no Django. A chunker takes ParsedPage objects and a Tokenizer (anything
that returns the character span of each token of a text) and yields ChunkDrafts.
Measuring in model tokens, not characters, is what keeps every chunk inside the
embedding model's window (256 word pieces for all-MiniLM-L6-v2).

Three strategies, picked per bot through `chunk_pages`:

- "fixed": windows of a fixed number of tokens that stay within a page.
- "structure": sections under Markdown-style "#" heading lines, packed paragraph by
  paragraph (sentence by sentence for paragraphs too big for one chunk). A chunk
  never mixes two sections, the section's first chunk starts with its heading line,
  and every chunk carries the path of headings above it ("Benefits › Vacation").
- "sentence": whole consecutive sentences, overlapping by whole sentences.

Every strategy gives each chunk the path of the headings it is under, which citations
show as the passage's location in documents without pages.

Every strategy keeps all the text (each word of a page ends up in at least one chunk)
and every chunk lies on one page, so a citation's page number is exact. A section
runs on across a page break (its heading path goes with it) but its chunks start
afresh on the new page; the one exception is a heading at the very bottom of a page,
which joins the text it introduces on the next page, with that page's number.
"""

from __future__ import annotations

import dataclasses
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

STRATEGIES = {
    "structure": "By headings and paragraphs: keeps each section together (best for manuals and policies).",
    "fixed": "Fixed-size windows: the same number of tokens in every passage, whatever the text's layout.",
    "sentence": "Sentence windows: whole sentences up to the passage size, overlapping by whole sentences.",
}
HEADING_PATH_SEPARATOR = " › "


class Page(Protocol):
    """What a chunker reads from a page: a ParsedPage, or anything with its two fields."""

    @property
    def number(self) -> int: ...

    @property
    def text(self) -> str: ...


class Tokenizer(Protocol):
    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character offsets of each token of `text`, in order."""


@dataclass(frozen=True)
class ChunkDraft:
    text: str
    page: int | None
    token_count: int
    heading_path: str = ""


def chunk_pages(
    pages: Iterable[Page], tokenizer: Tokenizer, strategy: str, size: int, overlap: int
) -> Iterator[ChunkDraft]:
    """Chunk `pages` with the named strategy (a key of STRATEGIES); ValueError for any other name."""
    if strategy == "fixed":
        return fixed_token_chunks(pages, tokenizer, size, overlap)
    if strategy == "structure":
        return structure_chunks(pages, tokenizer, size, overlap)
    if strategy == "sentence":
        return sentence_window_chunks(pages, tokenizer, size, overlap)
    raise ValueError(f"Unknown chunking strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")


def _check_sizes(size: int, overlap: int) -> None:
    if size < 1:
        raise ValueError("chunk size must be at least 1 token")
    if not 0 <= overlap < size:
        raise ValueError("chunk overlap must be at least 0 and smaller than the chunk size")


def fixed_token_chunks(pages: Iterable[Page], tokenizer: Tokenizer, size: int, overlap: int) -> Iterator[ChunkDraft]:
    """Windows of at most `size` tokens, each starting `size - overlap` tokens after the last.

    Windows stay within a page so every chunk has exactly one page number. A window
    never ends inside a word when a shorter one can end at a word boundary, so
    "Vacation" is not cut into "Vac" and "##ation".
    """
    _check_sizes(size, overlap)
    headings = _HeadingPath()
    for page in pages:
        if not page.text.strip():
            continue
        spans = tokenizer.token_spans(page.text)
        page_headings = headings.on_page(page.text)
        start = 0
        while start < len(spans):
            end = min(start + size, len(spans))
            end = _back_off_to_word_boundary(spans, start, end)
            text = page.text[spans[start][0] : spans[end - 1][1]].strip()
            if text:
                path = page_headings.at(spans[start][0])
                yield ChunkDraft(text=text, page=page.number, token_count=end - start, heading_path=path)
            if end == len(spans):
                break
            next_start = max(end - overlap, start + 1)
            start = _forward_to_word_start(spans, next_start, end)


class _HeadingPath:
    """The headings open at a point of the text, page after page, for strategies that cut without regard to them."""

    def __init__(self) -> None:
        self.open: list[tuple[int, str]] = []
        self.in_fence = [False]
        self.pending: list[tuple[int, int, str]] = []

    def on_page(self, text: str) -> _HeadingPath:
        self.pending = [
            (start, level, title) for kind, start, _, level, title in _blocks(text, self.in_fence) if kind == "heading"
        ]
        self.pending.reverse()
        return self

    def at(self, offset: int) -> str:
        """The heading path at `offset` of the page (a heading line starting there counts); offsets only grow."""
        while self.pending and self.pending[-1][0] <= offset:
            _, level, title = self.pending.pop()
            _open_heading(self.open, level, title)
        return HEADING_PATH_SEPARATOR.join(title for _, title in self.open)


def _open_heading(open_headings: list[tuple[int, str]], level: int, title: str) -> None:
    while open_headings and open_headings[-1][0] >= level:
        open_headings.pop()
    open_headings.append((level, title))


def _glued(spans: list[tuple[int, int]], index: int) -> bool:
    """True when token `index` continues the previous token's word (no gap between them)."""
    return index > 0 and spans[index][0] == spans[index - 1][1]


def _back_off_to_word_boundary(spans: list[tuple[int, int]], start: int, end: int) -> int:
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


def _forward_to_word_start(spans: list[tuple[int, int]], start: int, limit: int) -> int:
    """Move the next window's start forward to a word start, if one is near."""
    candidate = start
    while candidate < limit and _glued(spans, candidate):
        candidate += 1
    return candidate if candidate < limit else start


def structure_chunks(pages: Iterable[Page], tokenizer: Tokenizer, size: int, overlap: int = 0) -> Iterator[ChunkDraft]:
    """Chunks that follow the document's sections, each at most `size` tokens.

    A section is the text under a "#" … "######" heading line (outside code fences),
    up to the next heading. Its paragraphs are packed whole into chunks; a paragraph
    too big for one chunk is packed sentence by sentence, and a single sentence too big
    for one chunk is cut into token windows. The heading line opens the section's first
    chunk; headings directly above one another (a chapter heading straight followed by
    a section heading) share a chunk with the first text below them. Every chunk's
    heading_path is the section's headings joined by " › ". With `overlap`, a chunk
    repeats up to that many tokens of whole pieces from the end of the chunk before it
    in the same section and page. A chunk never crosses a page break, except for
    headings at the bottom of a page, which open the next page's first chunk.
    """
    _check_sizes(size, overlap)
    packer = _Packer(tokenizer, size, overlap)
    open_headings: list[tuple[int, str]] = []
    in_fence = [False]
    for page in pages:
        if not packer.holds_only_headings():
            yield from packer.finish()  # one page per chunk, so citations point at the right page
        for piece in _page_pieces(page, tokenizer, size, in_fence, sentences_always=False):
            if piece.heading_level:
                if not packer.holds_only_headings():
                    yield from packer.finish()  # a chunk never mixes two sections
                _open_heading(open_headings, piece.heading_level, piece.heading_title)
            path = HEADING_PATH_SEPARATOR.join(title for _, title in open_headings)
            yield from packer.add(dataclasses.replace(piece, heading_path=path))
    yield from packer.finish()


def sentence_window_chunks(
    pages: Iterable[Page], tokenizer: Tokenizer, size: int, overlap: int
) -> Iterator[ChunkDraft]:
    """Chunks of whole consecutive sentences, each at most `size` tokens and on one page.

    Each chunk after the first on a page starts with the last sentences of the chunk
    before it, as many as fit in `overlap` tokens. Paragraph ends, heading lines and
    new list items also end a sentence. A sentence longer than `size` tokens is cut
    into token windows, the only time a sentence is split. A chunk's heading_path is the
    one its first sentence is under.
    """
    _check_sizes(size, overlap)
    packer = _Packer(tokenizer, size, overlap)
    in_fence = [False]
    open_headings: list[tuple[int, str]] = []
    for page in pages:
        for piece in _page_pieces(page, tokenizer, size, in_fence, sentences_always=True):
            if piece.heading_level:
                _open_heading(open_headings, piece.heading_level, piece.heading_title)
            path = HEADING_PATH_SEPARATOR.join(title for _, title in open_headings)
            yield from packer.add(dataclasses.replace(piece, heading_path=path))
        yield from packer.finish()  # a chunk has exactly one page


@dataclass(frozen=True)
class _Piece:
    """A stretch of one page's text that is packed whole: a paragraph, a sentence, a heading line or a token window."""

    page: int
    text: str
    tokens: int
    separator: str  # the page's own white space between the previous piece and this one
    heading_level: int = 0
    heading_title: str = ""
    sentences: tuple[_Piece, ...] = ()  # a paragraph's sentences, for when it must be packed by sentence
    heading_path: str = ""  # the headings it is under (a heading line: including itself)


class _Packer:
    """Packs pieces into chunks of at most `size` tokens, repeating up to `overlap` tokens of whole pieces."""

    def __init__(self, tokenizer: Tokenizer, size: int, overlap: int) -> None:
        self.tokenizer = tokenizer
        self.size = size
        self.overlap = overlap
        self.pieces: list[_Piece] = []
        self.tokens = 0
        self.new_pieces = 0  # pieces not yet in any emitted chunk

    def holds_only_headings(self) -> bool:
        return all(piece.heading_level for piece in self.pieces[len(self.pieces) - self.new_pieces :])

    def add(self, piece: _Piece) -> Iterator[ChunkDraft]:
        if self.new_pieces and self.tokens + piece.tokens > self.size:
            if piece.sentences and self.holds_only_headings():
                # Headings alone make a poor chunk: the paragraph joins them, sentence by sentence.
                for sentence in piece.sentences:
                    yield from self.add(dataclasses.replace(sentence, heading_path=piece.heading_path))
                return
            yield from self._emit()
            self._keep_overlap(room=self.size - piece.tokens)
        self.pieces.append(piece)
        self.tokens += piece.tokens
        self.new_pieces += 1

    def finish(self) -> Iterator[ChunkDraft]:
        """Emit what is pending; the next chunk starts afresh, without overlap."""
        if self.new_pieces:
            yield from self._emit()
        self.pieces, self.tokens, self.new_pieces = [], 0, 0

    def _keep_overlap(self, room: int) -> None:
        budget = min(self.overlap, room)
        kept: list[_Piece] = []
        kept_tokens = 0
        for piece in reversed(self.pieces):
            if kept_tokens + piece.tokens > budget:
                break
            kept.insert(0, piece)
            kept_tokens += piece.tokens
        self.pieces, self.tokens, self.new_pieces = kept, kept_tokens, 0

    def _emit(self) -> Iterator[ChunkDraft]:
        first = self.pieces[0]
        parts = [first.text]
        for previous, piece in zip(self.pieces, self.pieces[1:], strict=False):
            parts.append(piece.separator if piece.page == previous.page else "\n\n")
            parts.append(piece.text)
        text = "".join(parts)
        # The chunk is where its first new text is (a chunk of whole sections: its section).
        new = self.pieces[len(self.pieces) - self.new_pieces :]
        path = next((piece.heading_path for piece in new if not piece.heading_level), new[-1].heading_path)
        # Headings carried over from the bottom of the previous page belong with their text.
        page = next((piece.page for piece in self.pieces if not piece.heading_level), first.page)
        # Pieces were counted within their page; counting the chunk itself is what guarantees
        # the limit for tokenizers whose tokens depend on the neighbouring text.
        token_count = len(self.tokenizer.token_spans(text))
        if token_count <= self.size:
            yield ChunkDraft(text=text, page=page, token_count=token_count, heading_path=path)
            return
        windows = fixed_token_chunks([_PageText(page, text)], self.tokenizer, self.size, 0)
        for window in windows:
            yield dataclasses.replace(window, heading_path=path)


@dataclass(frozen=True)
class _PageText:
    number: int
    text: str


_HEADING_LINE = re.compile(r" {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*")
_FENCE_LINE = re.compile(r" {0,3}(?:```|~~~)")
_LINES = re.compile(r"[^\n]*\n?")


def _page_pieces(
    page: Page, tokenizer: Tokenizer, size: int, in_fence: list[bool], sentences_always: bool
) -> Iterator[_Piece]:
    """The pieces of one page in order; together they hold every non-blank character of it.

    Paragraphs are one piece (carrying their sentences) when they fit in `size` tokens
    and `sentences_always` is false, else one piece per sentence; a sentence longer than
    `size` becomes token windows. `in_fence` is a one-item list carrying "inside a ```
    code fence" from page to page.
    """
    text = page.text
    if not text.strip():
        return
    spans = tokenizer.token_spans(text)
    token_starts = [start for start, _ in spans]
    cut = _PieceCutter(page.number, text, token_starts)
    for kind, start, end, level, title in _blocks(text, in_fence):
        if kind == "heading":
            yield from cut([(start, end)], heading_level=level, heading_title=title)
            continue
        ranges: list[tuple[int, int]] = []
        for sentence_start, sentence_end in _sentences(text, start, end):
            first_token, last_token = bisect_left(token_starts, sentence_start), bisect_left(token_starts, sentence_end)
            if last_token - first_token <= size:
                ranges.append((sentence_start, sentence_end))
            else:
                ranges += _token_windows(spans[first_token:last_token], sentence_start, sentence_end, size)
        paragraph = cut([(start, end)], advance=False)
        if sentences_always or not paragraph or paragraph[0].tokens > size:
            yield from cut(ranges)
            continue
        sentences = cut(ranges)  # kept on the paragraph, for packing it beside a lone heading
        yield dataclasses.replace(paragraph[0], sentences=tuple(sentences) if len(sentences) > 1 else ())


class _PieceCutter:
    """Makes pieces from character ranges of one page, remembering where the last one ended."""

    def __init__(self, page: int, text: str, token_starts: list[int]) -> None:
        self.page = page
        self.text = text
        self.token_starts = token_starts
        self.previous_end = 0

    def __call__(
        self, ranges: Iterable[tuple[int, int]], advance: bool = True, heading_level: int = 0, heading_title: str = ""
    ) -> list[_Piece]:
        """Pieces for `ranges` (white space trimmed, empty ones dropped); with advance=False, a trial cut."""
        pieces: list[_Piece] = []
        previous_end = self.previous_end
        for start, end in ranges:
            raw = self.text[start:end]
            start += len(raw) - len(raw.lstrip())
            end = start + len(raw.strip())
            if start >= end:
                continue
            tokens = bisect_left(self.token_starts, end) - bisect_left(self.token_starts, start)
            separator = self.text[previous_end:start]
            pieces.append(_Piece(self.page, self.text[start:end], tokens, separator, heading_level, heading_title))
            previous_end = end
        if advance:
            self.previous_end = previous_end
        return pieces


def _blocks(text: str, in_fence: list[bool]) -> Iterator[tuple[str, int, int, int, str]]:
    """("heading", start, end, level, title) for heading lines and ("paragraph", start, end, 0, "") for
    runs of other non-blank lines; fenced code is paragraph text, whatever its lines look like."""
    paragraph_start: int | None = None
    paragraph_end = 0  # meaningful only while paragraph_start is set
    for match in _LINES.finditer(text):
        if not match.group():
            break  # the empty match at the very end
        line = match.group().rstrip("\n")
        start, end = match.start(), match.start() + len(line)
        heading = None if in_fence[0] else _HEADING_LINE.fullmatch(line)
        if _FENCE_LINE.match(line):
            in_fence[0] = not in_fence[0]
        if heading and heading.group(2).strip():
            if paragraph_start is not None:
                yield "paragraph", paragraph_start, paragraph_end, 0, ""
                paragraph_start = None
            yield "heading", start, end, len(heading.group(1)), " ".join(heading.group(2).split())
        elif not line.strip() and not in_fence[0]:
            if paragraph_start is not None:
                yield "paragraph", paragraph_start, paragraph_end, 0, ""
                paragraph_start = None
        else:
            if paragraph_start is None:
                paragraph_start = start
            paragraph_end = end
    if paragraph_start is not None:
        yield "paragraph", paragraph_start, paragraph_end, 0, ""


# A sentence ends at . ! ? … (and any closing quotes or brackets) before white space, at
# Chinese/Japanese full stops even without white space, and before a new list item or table row.
_SENTENCE_BREAK = re.compile(
    r"(?P<western>[.!?…]+[\"'”’»)\]]*)\s+(?=\S)"
    r"|[。！？]+[」』）]*\s*(?=\S)"
    r"|\n(?=[ \t]*(?:[-*+•][ \t]|\d{1,3}[.)][ \t]|\|))"
)
# Words whose full stop rarely ends a sentence.
_ABBREVIATIONS = {"e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "prof.", "no.", "fig.", "approx.", "cf."}
_INITIAL = re.compile(r"(?:^|\s)\(?[A-Z]\.$")  # "J. R. Doe"


def _sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(start, end) of consecutive sentences that together tile text[start:end]."""
    sentence_start = start
    for match in _SENTENCE_BREAK.finditer(text, start, end):
        if match.group("western") and match.group("western").endswith("."):
            before = text[sentence_start : match.start("western") + 1]
            last_word = before.rsplit(None, 1)[-1].lower() if before.strip() else ""
            if last_word in _ABBREVIATIONS or _INITIAL.search(before):
                continue
        yield sentence_start, match.end()
        sentence_start = match.end()
    if sentence_start < end:
        yield sentence_start, end


def _token_windows(spans: list[tuple[int, int]], start: int, end: int, size: int) -> list[tuple[int, int]]:
    """Cut text[start:end], whose tokens are `spans`, into ranges of at most `size` tokens that tile it.

    Cuts fall between words where a word boundary is near, as in fixed_token_chunks.
    """
    ranges: list[tuple[int, int]] = []
    first = 0
    range_start = start
    while first < len(spans):
        last = _back_off_to_word_boundary(spans, first, min(first + size, len(spans)))
        range_end = spans[last][0] if last < len(spans) else end
        ranges.append((range_start, range_end))
        first, range_start = last, range_end
    return ranges
