"""File names as people give them, shortened for the places that limit them.

A document keeps the name it was uploaded with for display, up to a generous cap in
characters. The stored file gets a shorter name: filesystems limit each path
component to 255 *bytes*, and a name of 100 Chinese characters is already 300 bytes
in UTF-8. Both keep the extension, which tells people (and parsers) what the file is.
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

# An extension longer than this is not one ("notes.from-the-meeting-with-finance").
MAX_EXTENSION_CHARS = 16


def split_extension(name: str) -> tuple[str, str]:
    """("report", ".pdf") for "report.pdf"; a name without a plausible extension keeps it all."""
    suffix = PurePosixPath(name).suffix
    if suffix and len(suffix) <= MAX_EXTENSION_CHARS and suffix[1:].isalnum():
        return name[: -len(suffix)], suffix
    return name, ""


def display_name(raw: str, max_chars: int) -> str:
    """The name to show: no folders, no control characters, at most `max_chars`, extension kept."""
    # Browsers send a bare name, but some clients send a Windows path; keep its last part.
    name = PurePosixPath(raw or "").name.rsplit("\\", 1)[-1]
    name = "".join(char for char in name if unicodedata.category(char)[0] != "C").strip()
    if name in {"", ".", ".."}:
        return "untitled"
    if len(name) <= max_chars:
        return name
    stem, extension = split_extension(name)
    return stem[: max_chars - len(extension)].rstrip() + extension


def fit_bytes(name: str, max_bytes: int) -> str:
    """`name` cut so that its UTF-8 encoding is at most `max_bytes`, extension kept.

    The cut never splits a multi-byte character.
    """
    if len(name.encode()) <= max_bytes:
        return name
    stem, extension = split_extension(name)
    budget = max_bytes - len(extension.encode())
    if budget <= 0:  # only a file name made of nothing but a long extension; keep its start
        stem, extension, budget = name, "", max_bytes
    return stem.encode()[:budget].decode(errors="ignore") + extension
