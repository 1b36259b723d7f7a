"""What every format module shares: the page a parser yields, the error it raises, the limits on ZIP packages.

Pure Python, no Django. ParseError carries a sentence meant for the person who
uploaded the file; anything wrong with the *input* raises it, so callers catch one
type. The ZIP limits live here because `parse()` takes them and passes them to the
Word reader, the only format that is a ZIP package.
"""

from __future__ import annotations

import os
import re
import struct
import unicodedata
import zipfile
from dataclasses import dataclass
from typing import IO, Protocol

MB = 1024 * 1024

# How many leading bytes are enough to tell a file's type.
SNIFF_BYTES = 8192

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# Refusals both the sniffer (from a ZIP's first bytes) and the Word reader (from its table of contents) give.
EXCEL_REFUSAL = "Excel workbooks can't be read yet. Save the sheet as CSV and upload that instead."
POWERPOINT_REFUSAL = "PowerPoint presentations can't be read yet. Save it as PDF and upload that instead."


# Why a page's text is missing or partial (ParsedPage.problem); "" when the text is whole.
GARBLED = "garbled"  # fonts that don't say which characters they draw; only the readable part is kept
SCANNED = "scanned"  # no text layer, but images: needs OCR
FORM = "form"  # no text layer: form fields only
DRAWING = "drawing"  # no text layer: vector drawings only
BLANK = "blank"  # nothing on the page


@dataclass(frozen=True)
class ParsedPage:
    number: int  # 1-based; every format but PDF is a single page 1
    text: str
    problem: str = ""  # one of the constants above when the text is missing or partial


class ParseError(Exception):
    """The file itself is the problem. The message is shown to the user as is."""


class ZipSettings(Protocol):
    """The settings ZipLimits reads (Django's settings object has them; so may any test double)."""

    DOCENT_MAX_UNZIPPED_MB: int
    DOCENT_MAX_ZIP_PARTS: int
    DOCENT_MAX_ZIP_RATIO: int


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
    def from_settings(cls, settings: ZipSettings) -> ZipLimits:
        """From Django settings (any object with the DOCENT_ attributes; this module does not import Django)."""
        return cls(
            max_unzipped_bytes=settings.DOCENT_MAX_UNZIPPED_MB * MB,
            max_parts=settings.DOCENT_MAX_ZIP_PARTS,
            max_ratio=settings.DOCENT_MAX_ZIP_RATIO,
        )


_END_OF_DIRECTORY = struct.Struct("<4s4H2LH")
_DIRECTORY_BYTES_PER_ENTRY = 512  # a table-of-contents entry is 46 bytes plus its name
_RATIO_FLOOR = MB  # small entries (empty XML, blank text) pack far tighter and are harmless


def declares_too_many_entries(handle: IO[bytes], limits: ZipLimits) -> bool:
    """Whether the ZIP's end record declares more entries than `limits` allow, read before zipfile opens it.

    zipfile holds the whole table of contents in memory once it opens an archive (a
    50 MB upload can list 600,000 empty entries: 300 MB and ten seconds), so the count
    and the table's size that the end record declares are checked first. A damaged end
    record is left for zipfile to report. Leaves `handle` at its start.
    """
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - _END_OF_DIRECTORY.size - 65535))  # the record, then a comment of up to 64 KiB
    tail = handle.read()
    handle.seek(0)
    found = tail.rfind(b"PK\x05\x06")
    if found < 0 or len(tail) - found < _END_OF_DIRECTORY.size:
        return False
    record = _END_OF_DIRECTORY.unpack_from(tail, found)
    count, directory_bytes = record[4], record[5]
    # The count may understate (zipfile reads as many entries as the table's size holds), hence both checks;
    # a count that doesn't fit the field (0xFFFF) or a size over 4 GB (0xFFFFFFFF) is past any limit too.
    return bool(count > limits.max_parts or directory_bytes > limits.max_parts * _DIRECTORY_BYTES_PER_ENTRY)


@dataclass(frozen=True)
class ZipOverLimit:
    """Which limit a ZIP's table of contents is over; the caller words the refusal for its kind of file."""

    limit: str  # "entries", "unpacked" or "ratio"
    unpacked_bytes: int = 0  # the total the entries claim ("unpacked")
    entry: zipfile.ZipInfo | None = None  # the entry packed too tightly ("ratio")

    @property
    def ratio(self) -> int:
        return self.entry.file_size // max(self.entry.compress_size, 1) if self.entry else 0


def zip_over_limit(infos: list[zipfile.ZipInfo], limits: ZipLimits) -> ZipOverLimit | None:
    """The first limit a ZIP's table of contents is over, judged before anything is inflated.

    The sizes there are what the archive claims; zipfile stops inflating an entry at its
    claimed size, so an entry that lies is reported as damaged rather than inflated.
    """
    if len(infos) > limits.max_parts:
        return ZipOverLimit("entries")
    unpacked = sum(info.file_size for info in infos)
    if unpacked > limits.max_unzipped_bytes:
        return ZipOverLimit("unpacked", unpacked_bytes=unpacked)
    for info in infos:
        if info.file_size > _RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            return ZipOverLimit("ratio", entry=info)
    return None


def describe_page_ranges(numbers: list[int]) -> str:
    """Page numbers as a short phrase: [3, 4, 5, 6, 7, 9] → "3–7, 9" (en dash); [] → ""."""
    ranges: list[list[int]] = []
    for number in sorted(set(numbers)):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    return ", ".join(str(first) if first == last else f"{first}–{last}" for first, last in ranges)


# Extracted text below this plausibility is taken for garbage: a font's codes, not its words.
GARBLED_BELOW = 0.8
# Fewer visible characters than this are too few to judge (a page number, a lone symbol).
MIN_JUDGED_CHARS = 4
_GLYPH_CODES = re.compile(r"/g\d+|/uni[0-9A-Fa-f]{4,6}|\(cid:\d+\)|/G[0-9A-F]{2}\b")
# Scripts written together in one word; Latin mixes with all of them (product names, "PDF文件").
_SCRIPT_FAMILIES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "CJK": "CJK", "HANGUL": "CJK", "HALFWIDTH": "CJK"}


def text_plausibility(text: str) -> float:
    """The share (0–1) of the visible characters that look like a real writing system's text; 1.0 for no text.

    Counted as implausible: the replacement character U+FFFD, private-use, unassigned
    and control characters (codes a PDF font never mapped to Unicode), glyph names
    such as "/g18" or "(cid:42)", combining marks with no letter to sit on, and
    letters of a word that mixes two non-Latin scripts (Lao next to Thaana inside one
    word is a font's codes read as Unicode, not a language).
    """
    junk = _junk_mask(text)
    visible = [bad for char, bad in zip(text, junk, strict=True) if not char.isspace()]
    return 1.0 - sum(visible) / len(visible) if visible else 1.0


def readable_part(text: str) -> str:
    """What is left of garbled text once the implausible characters are taken out, line by line.

    Junk becomes a word break (a font's "/g3" is often its space), and leftovers that are
    not mostly letters or digits (stray codes that happen to be punctuation, "-./01") are dropped.
    """
    junk = _junk_mask(text)
    cleaned = "".join(" " if bad else char for char, bad in zip(text, junk, strict=True))
    lines = (" ".join(word for word in line.split() if _mostly_alphanumeric(word)) for line in cleaned.split("\n"))
    return "\n".join(line for line in lines if line)


def _mostly_alphanumeric(word: str) -> bool:
    alphanumeric = sum(char.isalnum() for char in word)
    return alphanumeric >= 2 and alphanumeric > len(word) / 2


def _junk_mask(text: str) -> list[bool]:
    """For each character of `text`, whether it is implausible (see `text_plausibility`)."""
    junk = [False] * len(text)
    for match in _GLYPH_CODES.finditer(text):
        junk[match.start() : match.end()] = [True] * (match.end() - match.start())
    for word in re.finditer(r"\S+", text):
        letters = {_script(char) for char in word[0] if char.isalpha()} - {"LATIN", ""}
        mixed = len(letters) > 1
        base = False  # whether a combining mark here has a letter to sit on
        for index in range(word.start(), word.end()):
            char = text[index]
            category = unicodedata.category(char)
            if junk[index]:
                base = False
            elif char == "\ufffd" or category in ("Co", "Cn", "Cc", "Cs") or (mixed and char.isalpha()):
                junk[index] = True
                base = False
            elif category == "Mn":
                junk[index] = not base
            else:
                base = char.isalpha()
    return junk


def looks_garbled(text: str) -> bool:
    """True when `text` is mostly characters no reader could use (see `text_plausibility`)."""
    visible = sum(1 for char in text if not char.isspace())
    return visible >= MIN_JUDGED_CHARS and text_plausibility(text) < GARBLED_BELOW


def _script(char: str) -> str:
    """The script a letter belongs to, from its Unicode name ("LATIN SMALL LETTER A" → "LATIN")."""
    first = unicodedata.name(char, "").split(" ", 1)[0]
    return _SCRIPT_FAMILIES.get(first, first)


# What a problem means, said of one page and of several.
_PROBLEM_PHRASES = {
    GARBLED: (
        "uses fonts that don't say which characters they draw; only its readable words are indexed",
        "use fonts that don't say which characters they draw; only their readable words are indexed",
    ),
    SCANNED: (
        "is a scanned image with no text layer; Docent does not read text from images (OCR) yet",
        "are scanned images with no text layer; Docent does not read text from images (OCR) yet",
    ),
    FORM: ("holds only form fields, no text", "hold only form fields, no text"),
    DRAWING: ("holds only drawings, no text", "hold only drawings, no text"),
    BLANK: ("is blank", "are blank"),
}


def describe_text_problems(problems: dict[int, str]) -> str:
    """A note for the person who uploaded the file, from {page number: problem}; "" when there are none.

    {2: "garbled", 3: "garbled", 7: "blank"} → "Pages 2–3 use fonts that don't say which characters
    they draw; only their readable words are indexed. Page 7 is blank." The pages are named so the
    reader can check them, and the cause so they know what would help (OCR, another export).
    """
    sentences = []
    for problem, (one, several) in _PROBLEM_PHRASES.items():
        numbers = [number for number, found in problems.items() if found == problem]
        if numbers:
            label, phrase = ("Page", one) if len(numbers) == 1 else ("Pages", several)
            sentences.append(f"{label} {describe_page_ranges(numbers)} {phrase}.")
    return " ".join(sentences)
