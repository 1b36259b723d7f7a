"""PDF: one ParsedPage per page, read a page at a time so a long PDF never sits in memory whole.

The guards exist because PDFs fail in many ways that are not the reader's fault: a
damaged file or page (pypdf reports those through unrelated exception types, so they
are caught broadly and named as damage), bytes before the "%PDF" header (mail
gateways and download scripts prepend them; readers skip them), an open-password (an
empty one is tried, since many PDFs are "encrypted" only against editing), and pages
with no text layer, whose cause is named (scanned images, form fields, drawings, blank).

Text that is indexed wrong is worse than none, so a page whose pypdf text is empty,
implausible (glyph names, replacement or private-use characters; see
`text_plausibility`) or read through an encoding pypdf says it has not implemented is
read again with a second engine, PDFium (pypdfium2), and the more plausible text kept.
When both fail, only the page's readable words are kept and the page is marked
GARBLED, so the document says so.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from documents.parsers.common import (
    BLANK,
    DRAWING,
    FORM,
    GARBLED,
    SCANNED,
    ParsedPage,
    ParseError,
    looks_garbled,
    readable_part,
    text_plausibility,
)
from documents.parsers.text import normalize_whitespace

if TYPE_CHECKING:  # for annotations only: pypdf is imported inside the function that uses it
    from pypdf import PageObject, PdfReader

logger = logging.getLogger(__name__)

DAMAGED_PDF = "This PDF is damaged and can't be read. Try saving or exporting it again."
# Readers accept a header anywhere in the first 1,024 bytes (PDF 1.7, Implementation note 13).
HEADER_WINDOW = 1024
# The second engine's text must be this much more readable to replace pypdf's when both are (im)plausible
# alike: pypdf keeps word spaces PDFium sometimes drops.
SECOND_ENGINE_MARGIN = 1.1


def pdf_header_offset(head: bytes) -> int | None:
    """Where "%PDF-" starts within the first 1,024 bytes, or None."""
    offset = head.find(b"%PDF-", 0, HEADER_WINDOW + 5)
    return offset if offset >= 0 else None


def open_pdf(path: Path) -> PdfReader:
    from pypdf import PdfReader

    try:
        reader = PdfReader(_from_header(path), strict=False)
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


def _from_header(path: Path) -> Path | io.BytesIO:
    """The file, or its bytes from the "%PDF" header on when junk precedes it (so offsets in the file add up)."""
    with open(path, "rb") as handle:
        offset = pdf_header_offset(handle.read(HEADER_WINDOW + 5))
        if not offset:
            return path
        handle.seek(offset)
        return io.BytesIO(handle.read())


def parse_pdf(path: Path) -> Iterator[ParsedPage]:
    """Yield every page, with text "" and a `problem` where none can be extracted.

    Raises ParseError at the end when no page at all had text, naming the cause.
    """
    reader = open_pdf(path)
    try:
        page_total = len(reader.pages)
    except Exception as exc:
        raise ParseError(DAMAGED_PDF) from exc
    if page_total == 0:
        raise ParseError("This PDF has no pages.")
    second = _SecondEngine(path)
    found_text = False
    damaged_pages = 0
    problems: list[str] = []
    try:
        for index in range(page_total):
            page = None
            try:
                page = reader.pages[index]
                with _pypdf_complaints() as complaints:
                    text = normalize_whitespace(page.extract_text() or "")
            except Exception:
                # One broken page should not cost the reader the other ninety-nine.
                logger.warning("Page %d of %s can't be read by pypdf", index + 1, path.name, exc_info=True)
                damaged_pages += 1
                text, complaints = "", []
            if not text or looks_garbled(text) or any("not implemented" in line for line in complaints):
                text = better_text(text, second.page_text(index))
            problem = ""
            if looks_garbled(text):
                text, problem = readable_part(text), GARBLED
            elif not text:
                problem = _why_no_text(page) if page is not None else ""
            found_text = found_text or bool(text)
            problems.append(problem)
            yield ParsedPage(number=index + 1, text=text, problem=problem)
    finally:
        second.close()
    if not found_text:
        raise ParseError(_no_text_reason(problems, damaged_pages))


def better_text(first: str, second: str) -> str:
    """The more plausible of two engines' texts for a page, `first` (pypdf's) when they are alike.

    Plausible text wins over garbled text; between two texts both plausible, the one
    with clearly more readable characters (visible characters × `text_plausibility`)
    wins, and between two garbled ones, the one whose `readable_part` has more.
    """
    if looks_garbled(first) != looks_garbled(second):
        return second if looks_garbled(first) else first
    if looks_garbled(first):  # both: what counts is what is left once the junk is taken out
        return (
            second
            if _readable_chars(readable_part(second)) > SECOND_ENGINE_MARGIN * _readable_chars(readable_part(first))
            else first
        )
    return second if _readable_chars(second) > SECOND_ENGINE_MARGIN * _readable_chars(first) else first


def _readable_chars(text: str) -> float:
    return sum(1 for char in text if not char.isspace()) * text_plausibility(text)


class _SecondEngine:
    """PDFium's text for single pages, the document opened on first use and closed at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.document: Any = None
        self.failed = False

    def page_text(self, index: int) -> str:
        if self.failed:
            return ""
        try:
            if self.document is None:
                import pypdfium2

                source = _from_header(self.path)
                self.document = pypdfium2.PdfDocument(source.getvalue() if isinstance(source, io.BytesIO) else source)
            page = self.document[index]
            try:
                textpage = page.get_textpage()
                try:
                    return normalize_whitespace(textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n"))
                finally:
                    textpage.close()
            finally:
                page.close()
        except Exception:  # PDFium refuses some files pypdf reads (or can't decrypt them): pypdf's text stands
            logger.info("PDFium can't read page %d of %s", index + 1, self.path.name, exc_info=True)
            if self.document is None:
                self.failed = True
            return ""

    def close(self) -> None:
        if self.document is not None:
            self.document.close()


@contextmanager
def _pypdf_complaints() -> Iterator[list[str]]:
    """Collect what pypdf logs while reading (it says "Advanced encoding /EUC-H not implemented yet" there)."""
    complaints: list[str] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            complaints.append(record.getMessage())

    handler = Collector(logging.WARNING)
    pypdf_logger = logging.getLogger("pypdf")
    pypdf_logger.addHandler(handler)
    try:
        yield complaints
    finally:
        pypdf_logger.removeHandler(handler)


# Content-stream operators that paint paths or shadings: a page with these but no text and no
# images is a drawing.
_PAINT_OPERATORS = {b"f", b"F", b"f*", b"S", b"s", b"B", b"B*", b"b", b"b*", b"sh"}
_FORM_DEPTH = 5  # how deep to look into form XObjects nested in each other


def _why_no_text(page: PageObject) -> str:
    """SCANNED, FORM, DRAWING or BLANK for a page without text, from what its content draws."""
    try:
        if _has_images(page.get("/Resources"), _FORM_DEPTH) or _draws(page, {b"INLINE IMAGE"}):
            return SCANNED
        annotations = page.get("/Annots")
        annotations = annotations.get_object() if annotations is not None else []
        if any(annotation.get_object().get("/Subtype") == "/Widget" for annotation in annotations):
            return FORM
        if _draws(page, _PAINT_OPERATORS) or _has_forms(page.get("/Resources")):
            return DRAWING
    except Exception:  # a damaged resource dictionary: say no more than that the page is empty
        logger.info("Can't tell why a page has no text", exc_info=True)
    return BLANK


def _has_images(resources: Any, depth: int) -> bool:
    """True when the resources (or form XObjects inside them, `depth` levels down) hold an image."""
    for xobject in _xobjects(resources):
        subtype = xobject.get("/Subtype")
        if subtype == "/Image" or (
            subtype == "/Form" and depth > 0 and _has_images(xobject.get("/Resources"), depth - 1)
        ):
            return True
    return False


def _has_forms(resources: Any) -> bool:
    return any(xobject.get("/Subtype") == "/Form" for xobject in _xobjects(resources))


def _xobjects(resources: Any) -> list[Any]:
    """The XObjects (images, forms) a resource dictionary names, resolved."""
    if resources is None:
        return []
    xobjects = resources.get_object().get("/XObject")
    if xobjects is None:
        return []
    return [xobject.get_object() for xobject in xobjects.get_object().values()]


def _draws(page: PageObject, operators: set[bytes]) -> bool:
    from pypdf.generic import ContentStream

    contents = page.get_contents()
    if contents is None:
        return False
    return any(operator in operators for _, operator in ContentStream(contents, page.pdf).operations)


_NO_TEXT_CAUSES = {
    SCANNED: "its pages are scanned images, and Docent does not read text from images (OCR) yet",
    GARBLED: (
        "its fonts don't say which characters they draw, so its text comes out garbled "
        "(two PDF engines tried). Exporting it again from the original, or printing it to PDF, usually helps"
    ),
    FORM: "it has no text layer, only form fields",
    DRAWING: "it has no text layer, only drawings",
    BLANK: "its pages are blank",
}


def _no_text_reason(problems: list[str], damaged_pages: int) -> str:
    """The sentence for a PDF with no text at all, naming the cause that covers most of its pages."""
    found = [problem for problem in problems if problem]
    if damaged_pages or not found:
        return DAMAGED_PDF
    # A scan or a garbled font explains the whole file even if some pages are blank; else the commonest cause.
    for cause in (SCANNED, GARBLED):
        if cause in found:
            return f"No text could be extracted from this PDF: {_NO_TEXT_CAUSES[cause]}."
    commonest = max(_NO_TEXT_CAUSES, key=found.count)
    return f"No text could be extracted from this PDF: {_NO_TEXT_CAUSES[commonest]}; there is nothing to index."
