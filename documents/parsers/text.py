"""Plain text: decoding bytes of unknown encoding and tidying whitespace, which the other formats reuse.

Uploads come in every encoding; the guard is the decoding order (byte-order marks,
then UTF-8, then cp1252 unless the bytes are clearly East Asian), so a legacy file is
read as words rather than replacement characters.
"""

from __future__ import annotations

import re

from documents.parsers.common import UTF16_BOMS


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
