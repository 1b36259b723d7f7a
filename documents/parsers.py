"""Turn an uploaded file into pages of plain text.

Pure Python, no Django. `parse()` yields ParsedPage objects one page at a time so a
long PDF never sits in memory as a whole. Anything wrong with the *input* raises
ParseError with a sentence meant for the person who uploaded the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# How many leading bytes are enough to tell a file's type.
SNIFF_BYTES = 8192

TEXT_EXTENSIONS = {".txt", ".text", ".log"}
MARKDOWN_EXTENSIONS = {".md", ".markdown", ".mdown"}
SUPPORTED_DESCRIPTION = "PDF, plain text (.txt) and Markdown (.md)"


@dataclass(frozen=True)
class ParsedPage:
    number: int  # 1-based; text files are a single page 1
    text: str


class ParseError(Exception):
    """The file itself is the problem. The message is shown to the user as is."""


def sniff_kind(head: bytes, filename: str) -> str:
    """Return "pdf", "markdown" or "text" from the file's first bytes and its name.

    Content wins over the extension: a PDF renamed to .txt is still read as a PDF,
    and a binary file named .txt is refused rather than indexed as gibberish.
    """
    extension = Path(filename).suffix.lower()
    if head.lstrip(b"\x00\t\n\r ").startswith(b"%PDF-"):
        return "pdf"
    if extension == ".pdf":
        raise ParseError("This file is named .pdf but is not a PDF; it may be damaged or mislabelled.")
    if _looks_binary(head):
        raise ParseError(
            f"Docent can't read this kind of file ({extension or 'no extension'}). Supported: {SUPPORTED_DESCRIPTION}."
        )
    if extension in MARKDOWN_EXTENSIONS:
        return "markdown"
    if extension in TEXT_EXTENSIONS or extension == "":
        return "text"
    raise ParseError(f"Docent can't read {extension} files yet. Supported: {SUPPORTED_DESCRIPTION}.")


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    if not head:
        return False
    control = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13))
    return control / len(head) > 0.05


def parse(path: Path, filename: str) -> Iterator[ParsedPage]:
    """Yield the pages of the file at `path`; `filename` is the name the user gave it."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head.strip():
        raise ParseError("The file is empty.")
    kind = sniff_kind(head, filename)
    if kind == "pdf":
        yield from parse_pdf(path)
    else:
        yield ParsedPage(number=1, text=normalize_whitespace(decode_text(path.read_bytes())))


def page_count(path: Path) -> int:
    """Pages the parser will yield, cheaply, for progress reporting (0 if unknown)."""
    with open(path, "rb") as handle:
        if not handle.read(SNIFF_BYTES).lstrip().startswith(b"%PDF-"):
            return 1
    try:
        return len(_open_pdf(path).pages)
    except ParseError:
        return 0


def _open_pdf(path: Path):
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError("This PDF is damaged and can't be read. Try saving or exporting it again.") from exc
    if reader.is_encrypted:
        # Many PDFs are "encrypted" only against editing, with an empty open-password.
        try:
            opened = reader.decrypt("")
        except Exception:  # pypdf raises several types for unsupported ciphers
            opened = 0
        if not opened:
            raise ParseError("This PDF is password-protected. Remove the password and upload it again.")
    return reader


def parse_pdf(path: Path) -> Iterator[ParsedPage]:
    reader = _open_pdf(path)
    try:
        page_total = len(reader.pages)
    except Exception as exc:
        raise ParseError("This PDF is damaged and can't be read. Try saving or exporting it again.") from exc
    if page_total == 0:
        raise ParseError("This PDF has no pages.")
    found_text = False
    for index in range(page_total):
        try:
            raw = reader.pages[index].extract_text() or ""
        except Exception as exc:
            raise ParseError(
                f"Page {index + 1} of this PDF is damaged and can't be read. Try saving or exporting it again."
            ) from exc
        text = normalize_whitespace(raw)
        if _undecodable(text):
            text = ""  # glyph ids, not words: as good as no text
        found_text = found_text or bool(text)
        yield ParsedPage(number=index + 1, text=text)
    if not found_text:
        raise ParseError(
            "No text could be extracted from this PDF. It is probably scanned images; "
            "Docent does not read text from images (OCR) yet."
        )


_GLYPH_IDS = re.compile(r"(?:/g\d+)+")


def _undecodable(text: str) -> bool:
    """True when most of a page is "/g18/g152/g135…": fonts whose glyphs map to no characters."""
    glyph_chars = sum(len(match) for match in _GLYPH_IDS.findall(text))
    return glyph_chars > 0.5 * len(text)


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding: UTF-8 (with or without BOM), UTF-16 by BOM, else cp1252."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")


def normalize_whitespace(text: str) -> str:
    """Collapse runs of spaces, keep paragraph breaks, drop trailing blanks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()
