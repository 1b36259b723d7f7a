"""Turn an uploaded file into pages of plain text.

Pure Python, no Django. `parse()` yields ParsedPage objects one page at a time so a
long PDF never sits in memory as a whole. Anything wrong with the *input* raises
ParseError with a sentence meant for the person who uploaded the file.

Structure survives as Markdown: headings of Word documents and web pages become
"#" lines (and Markdown files keep theirs), which is what the structure chunker
splits on. Only PDFs have more than one page.

One module per format (pdf, docx, html, markdown, text, csv), what they share in
`common`, and in `dispatch` the sniffing that picks the format and `parse()` itself.
Callers import from this package, never from the modules, so the split stays free to
change. Heavy libraries (pypdf, python-docx, lxml, trafilatura) are imported inside
the functions that use them, so importing this package stays cheap.
"""

from documents.parsers.common import (
    ParsedPage,
    ParseError,
    ZipLimits,
    ZipOverLimit,
    declares_too_many_entries,
    describe_page_ranges,
    describe_text_problems,
    looks_garbled,
    readable_part,
    text_plausibility,
    zip_over_limit,
)
from documents.parsers.csv import csv_row_numbers, csv_text
from documents.parsers.dispatch import SUPPORTED_DESCRIPTION, page_count, parse, sniff_kind, spreadsheet_rows
from documents.parsers.docx import DAMAGED_DOCX, docx_text
from documents.parsers.html import decode_html, html_to_text, visible_text
from documents.parsers.markdown import markdown_text
from documents.parsers.pdf import DAMAGED_PDF, parse_pdf
from documents.parsers.text import decode_text, normalize_whitespace

__all__ = [
    "DAMAGED_DOCX",
    "DAMAGED_PDF",
    "SUPPORTED_DESCRIPTION",
    "ParseError",
    "ParsedPage",
    "ZipLimits",
    "ZipOverLimit",
    "declares_too_many_entries",
    "csv_row_numbers",
    "csv_text",
    "decode_html",
    "decode_text",
    "describe_page_ranges",
    "describe_text_problems",
    "docx_text",
    "html_to_text",
    "looks_garbled",
    "markdown_text",
    "normalize_whitespace",
    "page_count",
    "parse",
    "parse_pdf",
    "readable_part",
    "sniff_kind",
    "spreadsheet_rows",
    "text_plausibility",
    "zip_over_limit",
    "visible_text",
]
