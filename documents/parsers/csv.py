"""Spreadsheets saved as CSV or TSV: each row as "column: value; column: value", named by the header row.

`import csv` below is the standard library's module (imports are absolute). The guards
exist because labelling every value with its column name multiplies a wide file's
size (capped at MAX_CSV_TEXT_CHARS), and because the csv module's errors (an unclosed
quote, an oversized cell) need translating into a line number and a fix.
"""

from __future__ import annotations

import _csv
import csv
import io
from collections.abc import Iterator
from itertools import zip_longest

from documents.parsers.common import ParseError

_CSV_DELIMITERS = ",;\t|"
# Every value is written with its column's name, so a wide file with long names and short
# values grows ~50 times (a 5 MB file: 200 million characters, 450 MB of memory). This is
# more text than the default passage budget per document (DOCENT_MAX_CHUNKS_PER_DOCUMENT)
# holds even at 512-token passages, so nothing indexable is lost.
MAX_CSV_TEXT_CHARS = 50_000_000


def csv_text(text: str, tab_separated: bool = False) -> str:
    """Rows as "column: value; column: value" lines, blank line between rows, named by the header row.

    Empty values are left out, and so are rows without any value. The delimiter is
    sniffed (comma, semicolon, tab or bar).
    """
    return "\n\n".join(line for _, line in _data_rows(text, tab_separated))


def csv_row_numbers(text: str, tab_separated: bool = False) -> list[int]:
    """The spreadsheet row number of each paragraph of csv_text(text), as a spreadsheet shows the file.

    Row 1 is the file's first record (usually the header). A blank row, or one without
    any value, has a number but no paragraph, so after one the paragraphs' numbers skip it.
    """
    return [number for number, _ in _data_rows(text, tab_separated)]


def _data_rows(text: str, tab_separated: bool) -> Iterator[tuple[int, str]]:
    """(spreadsheet row number, "column: value; ..." line) of each data row that has a value."""
    delimiter = _csv_delimiter(text, tab_separated)
    reader = _CsvRows(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=delimiter))
    rows = 0
    length = 0
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            raise ParseError("The file is empty.")
        names = [" ".join(name.split()) or f"column {index + 1}" for index, name in enumerate(header)]
        for row in reader:
            pairs = [
                f"{name or f'column {index + 1}'}: {' '.join(value.split())}"
                for index, (name, value) in enumerate(zip_longest(names, row, fillvalue=""))
                if value.strip()
            ]
            if not pairs:
                continue
            line = "; ".join(pairs)
            length += len(line)
            if length > MAX_CSV_TEXT_CHARS:
                raise ParseError(
                    f"With each value labelled by its column name, this CSV file makes more than "
                    f"{MAX_CSV_TEXT_CHARS // 1_000_000:,} million characters of text, more than Docent indexes from "
                    "one file. Split it into smaller files (fewer rows or columns) and upload them."
                )
            rows += 1
            yield reader.records, line
    except csv.Error as exc:
        raise ParseError(_csv_problem(exc, text, reader.start)) from exc
    if not rows:
        raise ParseError("This CSV file has a header row but no data rows.")


class _CsvRows:
    """A csv reader's rows that remember the line the row being read starts on (for error messages)
    and count the records read so far (a spreadsheet's row number: a quoted cell may span lines)."""

    def __init__(self, reader: _csv.Reader) -> None:
        self.reader = reader
        self.start = 1
        self.records = 0

    def __iter__(self) -> Iterator[list[str]]:
        while True:
            self.start = self.reader.line_num + 1
            try:
                row = next(self.reader)
            except StopIteration:
                return
            self.records += 1
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
