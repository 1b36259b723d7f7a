"""A test case before it is stored, and the checks every way of adding one goes through.

Typed cases, CSV and JSONL rows, and API bodies arrive as mappings with the keys of a
typed case; draft_of() turns one into a CaseDraft or raises ValueError with a sentence
that names the case's number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from documents import services as documents

TRUE_WORDS = {"", "1", "true", "yes", "y"}
FALSE_WORDS = {"0", "false", "no", "n"}


@dataclass
class CaseDraft:
    """A case before it is stored: expected documents by file name (grades only from BEIR qrels)."""

    question: str
    expected_documents: list[str] = field(default_factory=list)
    pages: list[int] = field(default_factory=list)
    reference_answer: str = ""
    answerable: bool = True
    grades: dict[str, int] = field(default_factory=dict)
    external_id: str = ""


def draft_of(case: CaseDraft | Mapping, number: int, *, needs_documents: bool = True) -> CaseDraft:
    """A checked CaseDraft; `needs_documents=False` lets an answerable case wait for its expected documents."""
    if isinstance(case, Mapping):
        unknown = set(case) - {"question", "expected_documents", "pages", "reference_answer", "answerable"}
        if unknown:
            raise ValueError(f"Case {number}: unknown field(s) {', '.join(sorted(unknown))}.")
        case = CaseDraft(
            question=_text(case.get("question"), number, "question"),
            expected_documents=_names(case.get("expected_documents"), number),
            pages=_pages(case.get("pages"), number),
            reference_answer=_text(case.get("reference_answer"), number, "reference_answer"),
            answerable=_answerable(case.get("answerable"), number),
        )
    case.question = case.question.strip()
    if not case.question:
        raise ValueError(f"Case {number} has no question.")
    if "\x00" in case.question + case.reference_answer + "".join(case.expected_documents):
        raise ValueError(f"Case {number} contains a NUL character, which text cannot hold.")
    if case.answerable and not case.expected_documents and needs_documents:
        raise ValueError(f"Case {number} is answerable but names no expected document.")
    if not case.answerable and case.expected_documents:
        raise ValueError(f"Case {number} is unanswerable, so it cannot expect documents.")
    return case


def _text(value, number: int, key: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"Case {number}: {key} must be text.")
    return value.strip()


def _names(value, number: int) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.split(";")
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError(f"Case {number}: expected_documents must be a list of file names.")
    return [documents.clean_filename(name.strip()) for name in value if name.strip()]


def _pages(value, number: int) -> list[int]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(";") if part.strip()]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    try:
        pages = [int(page) for page in value]
    except (TypeError, ValueError):
        raise ValueError(f"Case {number}: pages must be page numbers (separated by ';' in CSV).") from None
    if any(page < 1 for page in pages):
        raise ValueError(f"Case {number}: page numbers start at 1.")
    return pages


def _answerable(value, number: int) -> bool:
    if isinstance(value, bool):
        return value
    word = "" if value is None else str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"Case {number}: answerable must be yes or no, not {value!r}.")
