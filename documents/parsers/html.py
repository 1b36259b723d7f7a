"""Web pages: the main content as text, headings h1–h6 as Markdown "#" lines.

The guards exist for what real pages hold: charsets declared only in a <meta> tag,
scripts, navigation and hidden elements that are not content, markup nested
thousands of elements deep (walked without recursion, so it can't exhaust the stack)
and pages so deep or so large that trafilatura's boilerplate detection would truncate
them or take quadratic time; those are read whole instead.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from documents.parsers.common import SNIFF_BYTES, UTF16_BOMS
from documents.parsers.text import decode_text, normalize_whitespace

if TYPE_CHECKING:  # for annotations only; lxml ships no types, so mypy reads this as Any
    from lxml.etree import _Element

logger = logging.getLogger(__name__)

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
    main = _main_content(markup)
    # Boilerplate detection sometimes keeps the teasers and drops the article (a news page whose
    # article sat in a container named like a comment section kept only its headline links).
    # Menus and link lists are list items, so the page's running prose is the yardstick: main
    # content that is a small part of it has lost the article, and the whole page is safer.
    if len(main) < MAIN_CONTENT_MIN_SHARE * _prose_chars(whole_page):
        return whole_page
    return main


_PARSER_DEPTH_LIMIT = 255
# Main content under this share of the page's running prose has lost the article. On the 30
# Readability test pages the lowest share is 0.56, so none of them falls back.
MAIN_CONTENT_MIN_SHARE = 1 / 3


def _prose_chars(text: str) -> int:
    """Characters of running prose in rendered text: blocks that are not list items, headings, code or table rows."""
    blocks = text.split("\n\n")
    return sum(len(block) for block in blocks if not block.startswith(("- ", "#", "```")) and " | " not in block)


def visible_text(markup: str) -> str:
    """Everything a reader sees on the page, menus and footers included, as one line of words.

    The yardstick for main-content extraction: scripts, styles, templates and hidden
    elements are not seen, so they don't count.
    """
    tree = _html_tree(_XML_DECLARATION.sub("", markup, count=1))
    if tree is None:
        return ""
    for element in list(tree.iter()):
        if element.getparent() is None:
            continue
        tag = _tag(element)
        style = (element.get("style") or "").replace(" ", "").lower()
        hidden = element.get("hidden") is not None or "display:none" in style
        if tag is None or tag in _UNSEEN_TAGS or hidden:
            element.drop_tree()
    body = tree.find("body")
    return " ".join(" ".join((body if body is not None else tree).itertext()).split())


_UNSEEN_TAGS = {"script", "style", "noscript", "template", "head", "title", "meta", "link"}
# The largest real page we test on (Wikipedia) has 9,900 elements.
BOILERPLATE_MAX_ELEMENTS = 20_000


def _html_tree(markup: str) -> _Element | None:
    import lxml.html
    from lxml.etree import ParserError

    try:
        return lxml.html.document_fromstring(markup, parser=lxml.html.HTMLParser(huge_tree=True))
    except (ParserError, ValueError):
        return None  # nothing that parses as markup, e.g. an empty document


def _drop_non_content(tree: _Element) -> None:
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


def _content_root(tree: _Element) -> _Element:
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


def _tag(element: _Element) -> str | None:
    """Lower-case tag name, or None for comments and processing instructions."""
    return element.tag.lower() if isinstance(element.tag, str) else None


def _heading_level(element: _Element) -> int:
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


def _render_blocks(root: _Element) -> tuple[str, int]:
    """Text of `root`'s content (not its tail), and how deeply its elements nest."""
    writer = _BlockWriter()
    depth = _render_into(root, writer)
    writer.end_block()
    return normalize_whitespace("\n\n".join(writer.blocks)), depth


def _inline_text(element: _Element) -> str:
    """Everything inside `element` on one line."""
    writer = _BlockWriter()
    _render_into(element, writer)
    writer.end_block()
    return " ".join(" ".join(writer.blocks).split())


def _render_into(root: _Element, writer: _BlockWriter) -> int:
    """Write `root`'s content into `writer`; returns the deepest nesting seen.

    Walks with lxml's iterwalk rather than recursion, so a page nested thousands of
    elements deep can't exhaust Python's stack.
    """
    from lxml import etree

    depth = deepest = 0
    whole: set[_Element] = set()  # elements rendered in one go at their start; their end only adds their tail
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


def _render_whole(element: _Element, tag: str, writer: _BlockWriter) -> bool:
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


def _holds_blocks(element: _Element) -> bool:
    """True for broken markup such as an <h1> wrapping whole paragraphs: that is no heading."""
    return any(_tag(inner) in _BLOCK_TAGS or _heading_level(inner) for inner in element.iterdescendants())


def _is_layout_row(row: _Element) -> bool:
    """True for a table row used for page layout (it holds headings, tables or pages of text), not data."""
    nested = any(_tag(inner) == "table" or _heading_level(inner) for inner in row.iterdescendants())
    return nested or sum(len(text) for text in row.itertext()) > 1000
