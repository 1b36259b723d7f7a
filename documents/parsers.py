"""Turn an uploaded file into pages of plain text.

Pure Python, no Django. `parse()` yields ParsedPage objects one page at a time so a
long PDF never sits in memory as a whole. Anything wrong with the *input* raises
ParseError with a sentence meant for the person who uploaded the file.

Structure survives as Markdown: headings of Word documents and web pages become
"#" lines (and Markdown files keep theirs), which is what the structure chunker
splits on. Only PDFs have more than one page.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import posixpath
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

logger = logging.getLogger(__name__)

# How many leading bytes are enough to tell a file's type.
SNIFF_BYTES = 8192

TEXT_EXTENSIONS = {".txt", ".text", ".log"}
MARKDOWN_EXTENSIONS = {".md", ".markdown", ".mdown"}
HTML_EXTENSIONS = {".html", ".htm", ".xhtml"}
CSV_EXTENSIONS = {".csv", ".tsv"}
SUPPORTED_DESCRIPTION = (
    "PDF, Word (.docx), web pages (.html), Markdown (.md), plain text (.txt) and spreadsheets saved as CSV (.csv, .tsv)"
)

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy Office files, and password-protected new ones
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

MB = 1024 * 1024

DAMAGED_PDF = "This PDF is damaged and can't be read. Try saving or exporting it again."
EXCEL_REFUSAL = "Excel workbooks can't be read yet. Save the sheet as CSV and upload that instead."
POWERPOINT_REFUSAL = "PowerPoint presentations can't be read yet. Save it as PDF and upload that instead."
DAMAGED_DOCX = "This Word document is damaged and can't be read. Open it in Word, save it again and re-upload it."


@dataclass(frozen=True)
class ParsedPage:
    number: int  # 1-based; every format but PDF is a single page 1
    text: str


class ParseError(Exception):
    """The file itself is the problem. The message is shown to the user as is."""


@dataclass(frozen=True)
class ZipLimits:
    """What a ZIP-based upload (a .docx) may unpack to.

    A 1 MB file can inflate to gigabytes (a "zip bomb"), so these are checked on the
    archive's table of contents, before any part is read. The ratio limit is Apache
    POI's (1:100); it applies only to parts over a MB, since small ones such as empty
    XML pack far tighter and are harmless.
    """

    max_unzipped_bytes: int = 200 * MB
    max_parts: int = 10_000
    max_ratio: int = 100

    @classmethod
    def from_settings(cls, settings) -> ZipLimits:
        """From Django settings (any object with the DOCENT_ attributes; this module does not import Django)."""
        return cls(
            max_unzipped_bytes=settings.DOCENT_MAX_UNZIPPED_MB * MB,
            max_parts=settings.DOCENT_MAX_ZIP_PARTS,
            max_ratio=settings.DOCENT_MAX_ZIP_RATIO,
        )


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
        text = csv_text(decode_text(path.read_bytes()), tab_separated=Path(filename).suffix.lower() == ".tsv")
    elif kind == "markdown":
        text = markdown_text(decode_text(path.read_bytes()))
    else:
        text = normalize_whitespace(decode_text(path.read_bytes()))
    if kind in ("docx", "html") and not text:
        raise ParseError("No text was found in this file; there is nothing to index.")
    yield ParsedPage(number=1, text=text)


def page_count(path: Path) -> int:
    """Pages the parser will yield, cheaply, for progress reporting (0 if unknown)."""
    with open(path, "rb") as handle:
        if not _is_pdf(handle.read(SNIFF_BYTES)):
            return 1
    try:
        return len(_open_pdf(path).pages)
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
    return head.lstrip(b"\x00\t\n\r ").startswith(b"%PDF-")


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
    start = start[_HTML_PREAMBLE.match(start).end() :].lower()
    return start.startswith(("<!doctype html", "<html"))


# --- PDF -------------------------------------------------------------------------------


def _open_pdf(path: Path):
    from pypdf import PdfReader

    try:
        reader = PdfReader(path)
        encrypted = reader.is_encrypted
    except Exception as exc:  # pypdf reports malformed files through many unrelated exception types
        raise ParseError(DAMAGED_PDF) from exc
    if encrypted:
        # Many PDFs are "encrypted" only against editing, with an empty open-password.
        try:
            opened = reader.decrypt("")
        except Exception:  # pypdf raises several types for unsupported ciphers
            opened = 0
        if not opened:
            raise ParseError("This PDF is password-protected. Remove the password and upload it again.")
    return reader


def parse_pdf(path: Path) -> Iterator[ParsedPage]:
    """Yield every page, with text "" where none can be extracted (scans, damaged pages).

    Raises ParseError at the end when no page at all had text.
    """
    reader = _open_pdf(path)
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


def describe_page_ranges(numbers: list[int]) -> str:
    """Page numbers as a short phrase: [3, 4, 5, 6, 7, 9] → "3–7, 9" (en dash); [] → ""."""
    ranges: list[list[int]] = []
    for number in sorted(set(numbers)):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    return ", ".join(str(first) if first == last else f"{first}–{last}" for first, last in ranges)


# --- Word ------------------------------------------------------------------------------


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


def _docx_blocks(container, document) -> Iterator[str]:
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

_END_OF_DIRECTORY = struct.Struct("<4s4H2LH")
# A table-of-contents entry is 46 bytes plus its name; zipfile keeps ~500 bytes per entry in memory.
_DIRECTORY_BYTES_PER_PART = 512
_RATIO_FLOOR = MB
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
        _check_end_of_directory(handle, limits)
        try:
            package = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise ParseError(DAMAGED_DOCX) from exc
        with package:
            infos = package.infolist()
            _identify_docx(infos)
            _check_zip_limits(infos, limits)
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


def _check_end_of_directory(handle, limits: ZipLimits) -> None:
    """Refuse on the archive's last 22 bytes when it has too many parts.

    zipfile reads the whole table of contents into memory when it opens an archive (a
    50 MB upload can list 600,000 empty parts: 300 MB and ten seconds), so the count and
    the table's size that the end record declares are checked first. A damaged end
    record is left for zipfile to report.
    """
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - _END_OF_DIRECTORY.size - 65535))  # the record, then a comment of up to 64 KiB
    tail = handle.read()
    found = tail.rfind(b"PK\x05\x06")
    handle.seek(0)
    if found < 0 or len(tail) - found < _END_OF_DIRECTORY.size:
        return
    record = _END_OF_DIRECTORY.unpack_from(tail, found)
    parts, directory_bytes = record[4], record[5]
    # The count may understate (zipfile reads as many entries as the table's size holds), hence both checks;
    # a count that doesn't fit the field (0xFFFF) or a size over 4 GB (0xFFFFFFFF) is past any limit too.
    if parts > limits.max_parts or directory_bytes > limits.max_parts * _DIRECTORY_BYTES_PER_PART:
        raise ParseError(_too_many_parts(limits))


def _check_zip_limits(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    """Refuse a package over `limits`, judged from its table of contents alone.

    The sizes there are what the archive claims; zipfile stops inflating a part at its
    claimed size (and `_read_part` reads in bounded steps), so a part that lies is
    reported as damaged rather than inflated.
    """
    if len(infos) > limits.max_parts:
        raise ParseError(_too_many_parts(limits))
    unzipped = sum(info.file_size for info in infos)
    if unzipped > limits.max_unzipped_bytes:
        raise ParseError(
            f"This Word document unpacks to {unzipped // MB:,} MB, more than the "
            f"{limits.max_unzipped_bytes // MB:,} MB Docent accepts. "
            "Remove large pictures or split the document, and upload it again."
        )
    for info in infos:
        if info.file_size > _RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ParseError(
                f"This Word document is packed unusually tightly: {info.filename} unpacks to "
                f"{info.file_size // max(info.compress_size, 1):,} times its stored size, and Docent accepts at most "
                f"{limits.max_ratio:,}. Files made to exhaust servers look like this; if yours is genuine, "
                "save it again from Word and upload it again."
            )


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
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def _read_part(package: zipfile.ZipFile, name: str) -> bytes:
    """One part, inflated a MB at a time: zipfile's read() of a whole part may inflate a GB in one step."""
    chunks = []
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


def _docx_paragraph(paragraph) -> str:
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


def _docx_style_names(paragraph) -> list[str]:
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


def _docx_table_rows(table) -> list[str]:
    rows = []
    for row in table.rows:
        cells = []
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


# --- HTML ------------------------------------------------------------------------------

# Below this many characters of visible text a page is too small for boilerplate detection
# to judge (trafilatura then drops short headings and paragraphs); we keep all of it.
SMALL_PAGE_CHARS = 2000

_NOT_CONTENT_TAGS = {
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed",
    "nav", "aside", "footer", "button", "select", "textarea", "input", "option", "dialog", "head",
}  # fmt: skip
_NOT_CONTENT_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "dialog"}
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "body", "center", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "html", "li", "main",
    "ol", "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "caption", "ul",
    # trafilatura's own vocabulary
    "doc", "list", "item", "quote",
}  # fmt: skip
_ROW_TAGS = {"tr", "row"}
_CELL_TAGS = {"td", "th", "cell"}
_LIST_ITEM_TAGS = {"li", "item"}
_LINE_BREAK_TAGS = {"br", "lb"}
_PREFORMATTED_TAGS = {"pre", "code"}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*>")


def decode_html(data: bytes) -> str:
    """Decode a web page: byte-order mark, then the charset its <meta> declares, then `decode_text`."""
    if data.startswith((b"\xef\xbb\xbf", *UTF16_BOMS)):
        return decode_text(data)
    declared = _META_CHARSET.search(data[:SNIFF_BYTES])
    if declared:
        encoding = declared.group(1).decode("ascii").lower()
        if encoding in ("iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"):
            encoding = "cp1252"  # what browsers do: these labels mean windows-1252 on the web
        try:
            return data.decode(encoding)
        except LookupError:
            pass
        except UnicodeDecodeError:
            if encoding.replace("-", "").replace("_", "") == "utf8":
                return data.decode("utf-8", errors="replace")
    return decode_text(data)


def html_to_text(markup: str) -> str:
    """The main content of a web page as text, headings h1–h6 as Markdown "#" lines.

    Scripts, styles, navigation, sidebars, footers and forms never count as content.
    Large pages go through trafilatura's boilerplate detection (article text without
    menus, teasers and comment sections); small pages are kept whole, because there is
    too little on them for the detection to judge and losing a heading costs more.
    """
    markup = _XML_DECLARATION.sub("", markup, count=1)  # lxml refuses str input that declares an encoding
    tree = _html_tree(markup)
    if tree is None:
        return ""
    elements = sum(1 for _ in tree.iter())
    _drop_non_content(tree)
    whole_page, depth = _render_blocks(_content_root(tree))
    # trafilatura's parser stops at 255 nested elements (old pages with unclosed <font> tags
    # get there) and would return a truncated page; ours is told to read such trees whole.
    # Some of its steps are quadratic (40,000 adjacent <i> tags, a 300 kB page: 15 s and
    # 900 MB), so very large pages are read whole too.
    if len(whole_page) < SMALL_PAGE_CHARS or depth >= _PARSER_DEPTH_LIMIT or elements > BOILERPLATE_MAX_ELEMENTS:
        return whole_page
    return _main_content(markup) or whole_page


_PARSER_DEPTH_LIMIT = 255
# The largest real page we test on (Wikipedia) has 9,900 elements.
BOILERPLATE_MAX_ELEMENTS = 20_000


def _html_tree(markup: str):
    import lxml.html
    from lxml.etree import ParserError

    try:
        return lxml.html.document_fromstring(markup, parser=lxml.html.HTMLParser(huge_tree=True))
    except (ParserError, ValueError):
        return None  # nothing that parses as markup, e.g. an empty document


def _drop_non_content(tree) -> None:
    for element in list(tree.iter()):
        if element.getparent() is None:
            continue  # the root, or inside a subtree dropped already
        tag = _tag(element)
        if tag is None:
            element.drop_tree()  # comments, keeping the text that follows them
            continue
        role = (element.get("role") or "").lower()
        # A page-wide <header> is a banner, unless it holds the page's title; one inside an article is content.
        banner = (
            tag == "header"
            and not any(_tag(up) in ("article", "main") for up in element.iterancestors())
            and not element.xpath(".//h1 | .//h2 | .//h3")
        )
        hidden = element.get("hidden") is not None or element.get("aria-hidden") == "true"
        style = (element.get("style") or "").replace(" ", "").lower()
        if tag in _NOT_CONTENT_TAGS or role in _NOT_CONTENT_ROLES or banner or hidden or "display:none" in style:
            element.drop_tree()  # keeps the element's tail text, which belongs to its parent


def _content_root(tree):
    """The page's single <main> or <article> when it has exactly one, else its <body>."""
    for query in ("//main | //*[@role='main']", "//article"):
        found = tree.xpath(query)
        if len(found) == 1:
            return found[0]
    body = tree.find("body")
    return body if body is not None else tree


def _main_content(markup: str) -> str:
    import trafilatura

    try:
        document = trafilatura.bare_extraction(
            markup,
            favor_recall=True,  # measured on the Readability test pages: more reference text, no more boilerplate
            include_comments=False,
            include_tables=True,
            include_images=False,
            include_links=False,
            include_formatting=True,
            with_metadata=False,
            deduplicate=False,
        )
    except Exception:  # a crash in the heuristics leaves us the whole-page text, which is still correct
        logger.warning("trafilatura failed; keeping the whole page", exc_info=True)
        return ""
    body = getattr(document, "body", None)
    return _render_blocks(body)[0] if body is not None else ""


def _tag(element) -> str | None:
    """Lower-case tag name, or None for comments and processing instructions."""
    return element.tag.lower() if isinstance(element.tag, str) else None


def _heading_level(element) -> int:
    tag = _tag(element) or ""
    if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
        return int(tag[1])
    if tag == "head":  # trafilatura's <head rend="h2">; a document's <head> never reaches the renderer
        rend = element.get("rend") or ""
        return int(rend[1]) if re.fullmatch(r"h[1-6]", rend) else 2
    return 0


class _BlockWriter:
    """Collects text into blocks split by blank lines; rows of a table, and items of a list, stay on adjacent lines."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.inline: list[str] = []
        self.prefix = ""
        self.last_kind = ""

    def add_text(self, text: str) -> None:
        self.inline.append(re.sub(r"\s+", " ", text))

    def line_break(self) -> None:
        self.inline.append("\n")

    def end_block(self) -> None:
        lines = (line.strip() for line in "".join(self.inline).split("\n"))
        text = "\n".join(line for line in lines if line)
        self.inline = []
        if text:
            self._append(self.prefix + text, "item" if self.prefix else "")
            self.prefix = ""

    def add_block(self, text: str, kind: str = "") -> None:
        self.end_block()
        if text:
            self._append(text, kind)

    def _append(self, text: str, kind: str) -> None:
        if kind and kind == self.last_kind:
            self.blocks[-1] += "\n" + text
        else:
            self.blocks.append(text)
        self.last_kind = kind


def _render_blocks(root) -> tuple[str, int]:
    """Text of `root`'s content (not its tail), and how deeply its elements nest."""
    writer = _BlockWriter()
    depth = _render_into(root, writer)
    writer.end_block()
    return normalize_whitespace("\n\n".join(writer.blocks)), depth


def _inline_text(element) -> str:
    """Everything inside `element` on one line."""
    writer = _BlockWriter()
    _render_into(element, writer)
    writer.end_block()
    return " ".join(" ".join(writer.blocks).split())


def _render_into(root, writer: _BlockWriter) -> int:
    """Write `root`'s content into `writer`; returns the deepest nesting seen.

    Walks with lxml's iterwalk rather than recursion, so a page nested thousands of
    elements deep can't exhaust Python's stack.
    """
    from lxml import etree

    depth = deepest = 0
    whole = set()  # elements rendered in one go at their start; their end only adds their tail
    walker = etree.iterwalk(root, events=("start", "end"))
    for event, element in walker:
        tag = _tag(element) or ""
        if event == "start":
            depth += 1
            deepest = max(deepest, depth)
            if element is not root and _render_whole(element, tag, writer):
                whole.add(element)
                walker.skip_subtree()
                continue
            if tag in _BLOCK_TAGS or tag in _ROW_TAGS or _heading_level(element):
                writer.end_block()
            if tag in _LIST_ITEM_TAGS:
                writer.prefix = "- "
            if tag in _LINE_BREAK_TAGS:
                writer.line_break()
            if element.text:
                writer.add_text(element.text)
            continue
        depth -= 1
        if element not in whole and (tag in _BLOCK_TAGS or tag in _ROW_TAGS or _heading_level(element)):
            writer.end_block()
        if element is not root and element.tail:
            writer.add_text(element.tail)
    return deepest


def _render_whole(element, tag: str, writer: _BlockWriter) -> bool:
    """Write a heading, a data row or a code block as one block; False for any other element."""
    level = _heading_level(element)
    if level and not _holds_blocks(element):
        title = _inline_text(element)
        writer.add_block("#" * level + " " + title if title else "")
        return True
    if tag in _ROW_TAGS and not _is_layout_row(element):
        cells = (_inline_text(cell) for cell in element if _tag(cell) in _CELL_TAGS)
        writer.add_block(" | ".join(cell for cell in cells if cell), kind="row")
        return True
    if tag in _PREFORMATTED_TAGS:
        code = "".join(element.itertext()).strip("\n")
        # Fenced like Markdown, so a "# comment" line in a code sample is not taken for a heading.
        writer.add_block(f"```\n{code}\n```" if "\n" in code.strip() else code.strip())
        return True
    return False


def _holds_blocks(element) -> bool:
    """True for broken markup such as an <h1> wrapping whole paragraphs: that is no heading."""
    return any(_tag(inner) in _BLOCK_TAGS or _heading_level(inner) for inner in element.iterdescendants())


def _is_layout_row(row) -> bool:
    """True for a table row used for page layout (it holds headings, tables or pages of text), not data."""
    nested = any(_tag(inner) == "table" or _heading_level(inner) for inner in row.iterdescendants())
    return nested or sum(len(text) for text in row.itertext()) > 1000


# --- Markdown and plain text -----------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A(---|\+\+\+)[ \t]*\n(.*?\n)?(?:---|\.\.\.|\+\+\+)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_KEY = re.compile(r"[\w-]+[ \t]*[:=]")
_FENCE = re.compile(r" {0,3}(```|~~~)")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(=+|-+)[ \t]*")
_NOT_A_SETEXT_TITLE = re.compile(r" {0,3}(?:[-*+]\s|[>#|]|\d+[.)]\s|```|~~~)")  # list items, quotes, tables, code


def markdown_text(text: str) -> str:
    """Markdown without its YAML/TOML front matter, "Title\\n=====" headings rewritten as "# Title".

    Everything else is kept as written, indentation included.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    front_matter = _FRONT_MATTER.match(text)
    if front_matter and _FRONT_MATTER_KEY.match((front_matter.group(2) or "").lstrip()):
        text = text[front_matter.end() :]
    text = _setext_to_atx(text).replace("\x00", "")
    # Indentation means something in Markdown (nested lists, code blocks whose "# comment"
    # lines are not headings), so only line ends and runs of blank lines are tidied.
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def _setext_to_atx(text: str) -> str:
    """Rewrite one-line setext headings as "#" lines, so every heading looks alike to the chunker."""
    lines = text.split("\n")
    output: list[str] = []
    in_fence = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if _FENCE.match(line):
            in_fence = not in_fence
        elif (
            not in_fence
            and index + 1 < len(lines)
            and line.strip()
            and not _NOT_A_SETEXT_TITLE.match(line)
            and (not output or not output[-1].strip())  # a one-line paragraph, not the end of a longer one
            and _SETEXT_UNDERLINE.fullmatch(lines[index + 1])
        ):
            level = 1 if lines[index + 1].strip().startswith("=") else 2
            output.append("#" * level + " " + line.strip())
            index += 2
            continue
        output.append(line)
        index += 1
    return "\n".join(output)


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding.

    UTF-8 (with or without BOM) and UTF-16 by BOM first; then, since most legacy files
    are Western European, cp1252, unless charset-normalizer is sure the bytes are one of
    the common East Asian encodings (Shift-JIS, GB18030, Big5, EUC-KR).
    """
    if data.startswith(UTF16_BOMS):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    east_asian = _east_asian_encoding(data)
    if east_asian:
        return data.decode(east_asian, errors="replace")
    return data.decode("cp1252", errors="replace")


def _east_asian_encoding(data: bytes) -> str | None:
    import charset_normalizer

    # Short Western texts are often mistaken for Cyrillic or Central European code pages,
    # so cp1252 is the only single-byte candidate and wins every tie.
    candidates = ["cp1252", "shift_jis", "gb18030", "big5", "euc_kr"]
    best = charset_normalizer.from_bytes(data[:200_000], cp_isolation=candidates).best()
    if best is None or best.encoding == "cp1252":
        return None
    return best.encoding


_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")


def normalize_whitespace(text: str) -> str:
    """Collapse runs of spaces, keep paragraph breaks, drop trailing blanks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


# --- CSV -------------------------------------------------------------------------------

_CSV_DELIMITERS = ",;\t|"
# Every value is written with its column's name, so a wide file with long names and short
# values grows ~50 times (a 5 MB file: 200 million characters, 450 MB of memory). This is
# more text than the default passage budget per document (DOCENT_MAX_CHUNKS_PER_DOCUMENT)
# holds even at 512-token passages, so nothing indexable is lost.
MAX_CSV_TEXT_CHARS = 50_000_000


def csv_text(text: str, tab_separated: bool = False) -> str:
    """Rows as "column: value; column: value" lines, blank line between rows, named by the header row.

    Empty values are left out. The delimiter is sniffed (comma, semicolon, tab or bar).
    """
    delimiter = _csv_delimiter(text, tab_separated)
    reader = _CsvRows(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=delimiter))
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            raise ParseError("The file is empty.")
        names = [" ".join(name.split()) or f"column {index + 1}" for index, name in enumerate(header)]
        rows = []
        length = 0
        for row in reader:
            pairs = [
                f"{name or f'column {index + 1}'}: {' '.join(value.split())}"
                for index, (name, value) in enumerate(zip_longest(names, row, fillvalue=""))
                if value.strip()
            ]
            if pairs:
                rows.append("; ".join(pairs))
                length += len(rows[-1])
            if length > MAX_CSV_TEXT_CHARS:
                raise ParseError(
                    f"With each value labelled by its column name, this CSV file makes more than "
                    f"{MAX_CSV_TEXT_CHARS // 1_000_000:,} million characters of text, more than Docent indexes from "
                    "one file. Split it into smaller files (fewer rows or columns) and upload them."
                )
    except csv.Error as exc:
        raise ParseError(_csv_problem(exc, text, reader.start)) from exc
    if not rows:
        raise ParseError("This CSV file has a header row but no data rows.")
    return "\n\n".join(rows)


class _CsvRows:
    """A csv reader's rows that remember the line the row being read starts on, for error messages."""

    def __init__(self, reader):
        self.reader = reader
        self.start = 1

    def __iter__(self) -> Iterator[list[str]]:
        while True:
            self.start = self.reader.line_num + 1
            try:
                row = next(self.reader)
            except StopIteration:
                return
            yield row


def _csv_problem(error: csv.Error, text: str, line: int) -> str:
    """What is wrong with a CSV file the csv module gave up on, in words."""
    if "field larger than field limit" in str(error):
        # An unclosed quote swallows the rest of the file into one cell, which then outgrows
        # the limit too; an odd number of quotes in the file tells the two apart.
        if text.count('"') % 2:
            return f"This CSV file has a quote that is never closed, in the row that starts on line {line}. " + (
                "Fix it and upload it again."
            )
        return (
            f"A single cell in this CSV file, on line {line}, is longer than {csv.field_size_limit():,} characters, "
            "the most Docent reads in one cell. Shorten it, or save that text as a document of its own."
        )
    return f"This CSV file is malformed near line {line}. Fix it and upload it again."


def _csv_delimiter(text: str, tab_separated: bool) -> str:
    if tab_separated and "\t" in text[:4096].split("\n", 1)[0]:
        return "\t"  # a .tsv whose header has tabs: values with commas must not fool the sniffer
    sample = text[:16384]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only, or the sniffer miscounts columns
    try:
        return csv.Sniffer().sniff(sample, delimiters=_CSV_DELIMITERS).delimiter
    except csv.Error:
        return "\t" if tab_separated else ","
