"""Markdown: kept as written, minus front matter, with every heading as a "#" line for the structure chunker.

Only line ends and runs of blank lines are tidied, because indentation means
something in Markdown (nested lists, code blocks whose "# comment" lines are not
headings); front matter is dropped only when it looks like YAML/TOML keys, so a
thematic break at the top is not mistaken for it.
"""

from __future__ import annotations

import re

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
