"""What every format module shares: the page a parser yields, the error it raises, the limits on ZIP packages.

Pure Python, no Django. ParseError carries a sentence meant for the person who
uploaded the file; anything wrong with the *input* raises it, so callers catch one
type. The ZIP limits live here because `parse()` takes them and passes them to the
Word reader, the only format that is a ZIP package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

MB = 1024 * 1024

# How many leading bytes are enough to tell a file's type.
SNIFF_BYTES = 8192

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# Refusals both the sniffer (from a ZIP's first bytes) and the Word reader (from its table of contents) give.
EXCEL_REFUSAL = "Excel workbooks can't be read yet. Save the sheet as CSV and upload that instead."
POWERPOINT_REFUSAL = "PowerPoint presentations can't be read yet. Save it as PDF and upload that instead."


@dataclass(frozen=True)
class ParsedPage:
    number: int  # 1-based; every format but PDF is a single page 1
    text: str


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


def describe_page_ranges(numbers: list[int]) -> str:
    """Page numbers as a short phrase: [3, 4, 5, 6, 7, 9] → "3–7, 9" (en dash); [] → ""."""
    ranges: list[list[int]] = []
    for number in sorted(set(numbers)):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    return ", ".join(str(first) if first == last else f"{first}–{last}" for first, last in ranges)
