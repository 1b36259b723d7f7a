"""PDF: one ParsedPage per page, read a page at a time so a long PDF never sits in memory whole.

The guards exist because PDFs fail in many ways that are not the reader's fault: a
damaged file or page (pypdf reports those through unrelated exception types, so they
are caught broadly and named as damage), an open-password (an empty one is tried,
since many PDFs are "encrypted" only against editing), scans with no text layer, and
fonts whose glyphs map to no characters ("/g18/g152…", as good as no text).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from documents.parsers.common import ParsedPage, ParseError
from documents.parsers.text import normalize_whitespace

if TYPE_CHECKING:  # for annotations only: pypdf is imported inside the function that uses it
    from pypdf import PdfReader

logger = logging.getLogger(__name__)

DAMAGED_PDF = "This PDF is damaged and can't be read. Try saving or exporting it again."


def open_pdf(path: Path) -> PdfReader:
    from pypdf import PdfReader

    try:
        reader = PdfReader(path)
        encrypted = reader.is_encrypted
    except Exception as exc:  # pypdf reports malformed files through many unrelated exception types
        raise ParseError(DAMAGED_PDF) from exc
    if encrypted:
        # Many PDFs are "encrypted" only against editing, with an empty open-password.
        try:
            opened = bool(reader.decrypt(""))  # PasswordType.NOT_DECRYPTED is 0
        except Exception:  # pypdf raises several types for unsupported ciphers
            opened = False
        if not opened:
            raise ParseError("This PDF is password-protected. Remove the password and upload it again.")
    return reader


def parse_pdf(path: Path) -> Iterator[ParsedPage]:
    """Yield every page, with text "" where none can be extracted (scans, damaged pages).

    Raises ParseError at the end when no page at all had text.
    """
    reader = open_pdf(path)
    try:
        page_total = len(reader.pages)
    except Exception as exc:
        raise ParseError(DAMAGED_PDF) from exc
    if page_total == 0:
        raise ParseError("This PDF has no pages.")
    found_text = False
    damaged_pages = 0
    for index in range(page_total):
        try:
            raw = reader.pages[index].extract_text() or ""
        except Exception:
            # One broken page should not cost the reader the other ninety-nine.
            logger.warning("Page %d of %s can't be read", index + 1, path.name, exc_info=True)
            damaged_pages += 1
            raw = ""
        text = normalize_whitespace(raw)
        if _undecodable(text):
            text = ""  # glyph ids, not words: as good as no text
        found_text = found_text or bool(text)
        yield ParsedPage(number=index + 1, text=text)
    if not found_text and damaged_pages:
        raise ParseError(DAMAGED_PDF)
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
