"""Word (.docx): the document body as text, headings as "#" lines, tables as "cell | cell" rows.

A .docx is a ZIP package, and the guards here are for what a ZIP can do to a server:
a 1 MB upload can inflate to gigabytes or list hundreds of thousands of parts, so the
end record and the table of contents are checked against ZipLimits before any part is
read, parts are inflated a MB at a time, and python-docx is handed a slim copy holding
only the parts text extraction needs (it would otherwise inflate every picture and
embedded file). The package's XML is parsed without entity resolution or network.

`import docx` below is python-docx, not this module (imports are absolute).
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from documents.parsers.common import (
    EXCEL_REFUSAL,
    MB,
    POWERPOINT_REFUSAL,
    ParseError,
    ZipLimits,
    ZipOverLimit,
    declares_too_many_entries,
    zip_over_limit,
)
from documents.parsers.text import normalize_whitespace

if TYPE_CHECKING:  # for annotations only: python-docx is imported inside the functions that use it
    from docx.document import Document
    from docx.oxml.xmlchemy import BaseOxmlElement
    from docx.table import Table
    from docx.text.paragraph import Paragraph

DAMAGED_DOCX = "This Word document is damaged and can't be read. Open it in Word, save it again and re-upload it."


def docx_text(source: Path | bytes, limits: ZipLimits | None = None) -> str:
    """The body of a .docx as text: headings as "#" lines, paragraphs apart, table rows as "cell | cell".

    Headers, footers, footnotes, comments and text boxes are left out.
    """
    import docx

    package = _docx_text_package(source, limits or ZipLimits())
    try:
        document = docx.Document(package)
        blocks = list(_docx_blocks(document.element.body, document))
    except Exception as exc:  # python-docx reports broken packages through many unrelated exception types
        raise ParseError(DAMAGED_DOCX) from exc
    return normalize_whitespace("\n\n".join(block for block in blocks if block.strip()))


def _docx_blocks(container: BaseOxmlElement, document: Document) -> Iterator[str]:
    """Paragraphs and tables in document order, including those inside content controls (<w:sdt>),
    which templates and forms wrap around whole sections and python-docx's iterators skip."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for element in container.iterchildren():
        if not isinstance(element.tag, str):
            continue  # an XML comment
        kind = element.tag.rsplit("}", 1)[-1]
        if kind == "p":
            yield _docx_paragraph(Paragraph(element, document))
        elif kind == "tbl":
            yield "\n".join(_docx_table_rows(Table(element, document)))
        elif kind == "sdt":
            for content in element.iterchildren("{*}sdtContent"):
                yield from _docx_blocks(content, document)


# --- Word packages ----------------------------------------------------------------------

# A table-of-contents entry is 46 bytes plus its name; zipfile keeps ~500 bytes per entry in memory.
_RELATIONSHIPS = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_XML_PARSER_OPTIONS = {"resolve_entities": False, "no_network": True}


def _docx_text_package(source: Path | bytes, limits: ZipLimits) -> io.BytesIO:
    """A copy of the .docx holding only what text extraction needs, for python-docx to open.

    python-docx inflates every part the document links to (pictures, embedded files,
    fonts, thumbnails) into memory; this copy has the main document, its styles and the
    package's bookkeeping, nothing else. Raises ParseError when the ZIP is not a readable
    Word document or is over `limits`.
    """
    with open(source, "rb") if isinstance(source, Path) else io.BytesIO(source) as handle:
        if declares_too_many_entries(handle, limits):
            raise ParseError(_too_many_parts(limits))
        try:
            package = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise ParseError(DAMAGED_DOCX) from exc
        with package:
            infos = package.infolist()
            _identify_docx(infos)
            if over := zip_over_limit(infos, limits):
                raise ParseError(_refusal(over, limits))
            slim = io.BytesIO()
            with zipfile.ZipFile(slim, "w", zipfile.ZIP_STORED) as copy:
                for name, data in _docx_text_parts(package):
                    copy.writestr(name, data)
    slim.seek(0)
    return slim


def _identify_docx(infos: list[zipfile.ZipInfo]) -> None:
    """Raise a ParseError that names the problem when the ZIP is not a Word document (names only, nothing read)."""
    names = {info.filename: info for info in infos}
    main = names.get("word/document.xml")
    if main is None:
        if "xl/workbook.xml" in names:
            raise ParseError(EXCEL_REFUSAL)
        if "ppt/presentation.xml" in names:
            raise ParseError(POWERPOINT_REFUSAL)
        raise ParseError(
            "This is a ZIP archive, not a Word document. Unzip it and upload the documents inside one by one."
        )
    if main.flag_bits & 0x1:
        raise ParseError("This Word document is password-protected. Remove the password and upload it again.")


def _refusal(over: ZipOverLimit, limits: ZipLimits) -> str:
    if over.limit == "unpacked":
        return (
            f"This Word document unpacks to {over.unpacked_bytes // MB:,} MB, more than the "
            f"{limits.max_unzipped_bytes // MB:,} MB Docent accepts. "
            "Remove large pictures or split the document, and upload it again."
        )
    if over.limit == "ratio" and over.entry is not None:
        return (
            f"This Word document is packed unusually tightly: {over.entry.filename} unpacks to "
            f"{over.ratio:,} times its stored size, and Docent accepts at most "
            f"{limits.max_ratio:,}. Files made to exhaust servers look like this; if yours is genuine, "
            "save it again from Word and upload it again."
        )
    return _too_many_parts(limits)


def _too_many_parts(limits: ZipLimits) -> str:
    return (
        f"This Word document holds more than {limits.max_parts:,} files inside it, the most Docent accepts. "
        "Split it into smaller documents and upload them."
    )


def _docx_text_parts(package: zipfile.ZipFile) -> Iterator[tuple[str, bytes]]:
    """(name, data) of the parts python-docx needs for the text: content types, the main document and its styles.

    The relationship lists are cut down to the parts kept (links to web pages stay: they
    name no part), so python-docx never asks for the others.
    """
    yield "[Content_Types].xml", _read_part(package, "[Content_Types].xml")
    main = "word/document.xml"
    yield "_rels/.rels", _relationships_to(package, "_rels/.rels", "", {"officeDocument": main})
    yield main, _read_part(package, main)
    styles = "word/styles.xml"
    main_relationships = "word/_rels/document.xml.rels"
    if main_relationships in package.NameToInfo:
        yield main_relationships, _relationships_to(package, main_relationships, "word", {"styles": styles})
    if styles in package.NameToInfo:
        yield styles, _read_part(package, styles)


def _relationships_to(package: zipfile.ZipFile, name: str, folder: str, keep: dict[str, str]) -> bytes:
    """The relationship list `name` with only links outside the package and links of a type in `keep`.

    `keep` maps a relationship type's last word to the part it must point at (resolved
    from `folder`); any other target would make python-docx read a part not copied.
    """
    from lxml import etree

    try:
        root = etree.fromstring(_read_part(package, name), etree.XMLParser(**_XML_PARSER_OPTIONS))
    except etree.XMLSyntaxError as exc:
        raise ParseError(DAMAGED_DOCX) from exc
    for relationship in root.iter(_RELATIONSHIPS):
        if relationship.get("TargetMode") == "External":
            continue
        kind = (relationship.get("Type") or "").rsplit("/", 1)[-1]
        target = relationship.get("Target") or ""
        resolved = posixpath.normpath(posixpath.join("/" + folder, target)).lstrip("/")
        if keep.get(kind) != resolved or resolved not in package.NameToInfo:
            root.remove(relationship)
    slim: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)
    return slim


def _read_part(package: zipfile.ZipFile, name: str) -> bytes:
    """One part, inflated a MB at a time: zipfile's read() of a whole part may inflate a GB in one step."""
    chunks: list[bytes] = []
    try:
        with package.open(name) as stream:
            while chunk := stream.read(MB):
                chunks.append(chunk)
    except KeyError as exc:  # a part the package needs is missing
        raise ParseError(DAMAGED_DOCX) from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as exc:
        raise ParseError(DAMAGED_DOCX) from exc
    return b"".join(chunks)


_DOCX_HEADING_STYLE = re.compile(r"heading ([1-9])")


def _docx_paragraph(paragraph: Paragraph) -> str:
    text = paragraph.text.strip()
    if not text:
        return ""
    style_names = _docx_style_names(paragraph)
    for name in style_names:
        if name == "title":
            return "# " + " ".join(text.split())
        if match := _DOCX_HEADING_STYLE.fullmatch(name):
            return "#" * min(int(match.group(1)), 6) + " " + " ".join(text.split())
    if any(name.startswith("list") for name in style_names):
        return "- " + text
    return text


def _docx_style_names(paragraph: Paragraph) -> list[str]:
    """Lower-case names of the paragraph's style and the styles it is based on, nearest first."""
    names = []
    style = paragraph.style
    # Custom styles are often "based on Heading 2"; a short walk finds that without risking a cycle.
    for _ in range(6):
        if style is None:
            break
        names.append((style.name or "").strip().lower())
        style = style.base_style
    return names


def _docx_table_rows(table: Table) -> list[str]:
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if previous is not None and cell._tc is previous._tc:
                continue  # a merged cell is repeated once per grid column it spans
            previous = cell
            parts = [paragraph.text for paragraph in cell.paragraphs]
            parts += ["; ".join(_docx_table_rows(inner)) for inner in cell.tables]
            cells.append(" ".join(" ".join(parts).split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return rows
