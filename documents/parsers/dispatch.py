"""Which format a file is, and the reader that turns it into pages.

`parse()` sniffs the first bytes before trusting the name, because uploads are often
mislabelled: a PDF renamed .txt, a saved web page named .txt, a binary file that
would otherwise be indexed as gibberish, a spreadsheet or presentation zipped like a
Word document. Each refusal says what the file is and what to do about it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from documents.parsers.common import (
    EXCEL_REFUSAL,
    POWERPOINT_REFUSAL,
    SNIFF_BYTES,
    UTF16_BOMS,
    ParsedPage,
    ParseError,
    ZipLimits,
)
from documents.parsers.csv import csv_row_numbers, csv_text
from documents.parsers.docx import docx_text
from documents.parsers.html import decode_html, html_to_text
from documents.parsers.markdown import markdown_text
from documents.parsers.pdf import open_pdf, parse_pdf, pdf_header_offset
from documents.parsers.text import decode_text, normalize_whitespace

TEXT_EXTENSIONS = {".txt", ".text", ".log"}
MARKDOWN_EXTENSIONS = {".md", ".markdown", ".mdown"}
HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}
CSV_EXTENSIONS = {".csv", ".tsv"}
SUPPORTED_DESCRIPTION = (
    "PDF, Word (.docx), web pages (.html), Markdown (.md), plain text (.txt) and spreadsheets saved as CSV (.csv, .tsv)"
)

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy Office files, and password-protected new ones


def parse(path: Path, filename: str, zip_limits: ZipLimits | None = None) -> Iterator[ParsedPage]:
    """Yield the pages of the file at `path`; `filename` is the name the user gave it.

    Raises ParseError, and nothing else, for any file Docent can't read. PDF pages
    without extractable text are yielded with text "" so the caller can name them.
    """
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head.strip():
        raise ParseError("The file is empty.")
    kind = sniff_kind(head, filename)
    if kind == "pdf":
        yield from parse_pdf(path)
        return
    if kind == "docx":
        text = docx_text(path, zip_limits or ZipLimits())  # reads only the parts it needs, never the whole file
    elif kind == "html":
        text = html_to_text(decode_html(path.read_bytes()))
    elif kind == "csv":
        text = csv_text(decode_text(path.read_bytes()), tab_separated=_is_tsv(filename))
    elif kind == "markdown":
        text = markdown_text(decode_text(path.read_bytes()))
    else:
        text = normalize_whitespace(decode_text(path.read_bytes()))
    if kind in ("docx", "html") and not text:
        raise ParseError("No text was found in this file; there is nothing to index.")
    yield ParsedPage(number=1, text=text)


def spreadsheet_rows(path: Path, filename: str) -> list[int]:
    """The spreadsheet row number of each paragraph parse() makes of this CSV file (csv_row_numbers)."""
    return csv_row_numbers(decode_text(path.read_bytes()), tab_separated=_is_tsv(filename))


def _is_tsv(filename: str) -> bool:
    return Path(filename).suffix.lower() == ".tsv"


def page_count(path: Path) -> int:
    """Pages the parser will yield, cheaply, for progress reporting (0 if unknown)."""
    with open(path, "rb") as handle:
        if not _is_pdf(handle.read(SNIFF_BYTES)):
            return 1
    try:
        return len(open_pdf(path).pages)
    except Exception:  # a damaged PDF: parse() will say so in words
        return 0


def sniff_kind(head: bytes, filename: str) -> str:
    """Return "pdf", "docx", "html", "csv", "markdown" or "text" from the first bytes and the name.

    Content wins over the extension: a PDF renamed to .txt is still read as a PDF, a
    saved web page named .txt is read as HTML, and a binary file named .txt is refused
    rather than indexed as gibberish. A ZIP is taken as a Word document unless its
    first entries show it is something else; `docx_text` checks its table of contents.
    """
    extension = Path(filename).suffix.lower()
    if _is_pdf(head):
        return "pdf"
    if extension == ".pdf":
        raise ParseError("This file is named .pdf but is not a PDF; it may be damaged or mislabelled.")
    if head.startswith(ZIP_MAGIC):
        _refuse_other_zip_formats(head)
        return "docx"
    if head.startswith(OLE_MAGIC):
        raise ParseError(
            "This is an older Microsoft Office file (.doc, .xls or .ppt) or a password-protected Office document. "
            "Remove any password, save it as .docx or PDF, and upload it again."
        )
    if extension == ".docx":
        raise ParseError("This file is named .docx but is not a Word document; it may be damaged or mislabelled.")
    text = _decode_head(head)
    if text is None:
        raise ParseError(
            f"Docent can't read this kind of file ({extension or 'no extension'}). Supported: {SUPPORTED_DESCRIPTION}."
        )
    if extension in HTML_EXTENSIONS or _starts_like_html(text):
        return "html"
    if extension in CSV_EXTENSIONS:
        return "csv"
    if extension in MARKDOWN_EXTENSIONS:
        return "markdown"
    if extension in TEXT_EXTENSIONS or extension == "":
        return "text"
    raise ParseError(f"Docent can't read {extension} files yet. Supported: {SUPPORTED_DESCRIPTION}.")


def _is_pdf(head: bytes) -> bool:
    """A "%PDF-" header at the start, or after junk within the first 1,024 bytes of a file that has PDF objects.

    Readers skip such junk (mail gateways and download scripts prepend it); the object
    check keeps a text file that merely mentions "%PDF-" from being taken for a PDF.
    """
    offset = pdf_header_offset(head)
    if offset is None:
        return False
    return not head[:offset].strip(b"\x00\t\n\r ") or re.search(rb"\d+\s+\d+\s+obj\b", head[offset:]) is not None


def _refuse_other_zip_formats(head: bytes) -> None:
    """Office formats name their main folder in the first entries; refuse the ones we can't read."""
    if b"xl/" in head:
        raise ParseError(EXCEL_REFUSAL)
    if b"ppt/" in head:
        raise ParseError(POWERPOINT_REFUSAL)
    if b"mimetypeapplication/vnd.oasis.opendocument" in head:
        raise ParseError(
            "OpenDocument files (.odt, .ods, .odp) can't be read yet. Save it as .docx or PDF and upload that instead."
        )


def _decode_head(head: bytes) -> str | None:
    """The head as text for sniffing, or None when it is binary."""
    if head.startswith(UTF16_BOMS):
        return head.decode("utf-16", errors="ignore")
    if _looks_binary(head):
        return None
    return head.decode("utf-8", errors="ignore")


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    if not head:
        return False
    control = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13))
    return control / len(head) > 0.05


_HTML_PREAMBLE = re.compile(r"^(?:\s|<\?xml[^>]*>|<!--.*?-->)*", re.DOTALL)


def _starts_like_html(text: str) -> bool:
    """True for a doctype or <html> first thing, after any XML declaration and comments."""
    start = text.lstrip("\ufeff")
    start = _HTML_PREAMBLE.sub("", start, count=1).lower()
    return start.startswith(("<!doctype html", "<html"))
