"""The built-in extractive answerer: quote the passages' best sentences, cited.

Pure Python, no Django. It never invents text: every sentence of an answer is a
sentence of a retrieved chunk, followed by the [n] of that chunk. When no sentence
is similar enough to the question, it says the documents don't cover it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

NOT_COVERED = "I couldn't find this in the documents, so I can't answer it."

# End of a sentence: . ! ? or a CJK full stop, then white space.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_BLOCK_BREAK = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)")
# Sentences shorter than this are headings or fragments, not answers.
MIN_SENTENCE_WORDS = 3


@dataclass(frozen=True)
class ScoredChunk:
    chunk_id: int
    document_id: int
    document_name: str
    page: int | None
    text: str
    ordinal: int = 0
    heading_path: str = ""
    score: float = 0.0
    vector_score: float | None = None
    keyword_score: float | None = None
    location: str = ""  # where the passage is, for citations ("page 3", "rows 18–24", "Benefits › Dental")


@dataclass(frozen=True)
class Citation:
    n: int
    chunk: ScoredChunk
    sentences: tuple[str, ...] = ()

    @property
    def snippet(self) -> str:
        return " ".join(self.sentences) or self.chunk.text[:300]


@dataclass
class Answer:
    text: str
    citations: list[Citation] = field(default_factory=list)
    refused: bool = False
    best_similarity: float = 0.0


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, with wrapped lines rejoined and heading lines set apart."""
    sentences = []
    for block in _BLOCK_BREAK.split(text):
        for line_group in _join_wrapped_lines(block.split("\n")):
            if _looks_like_heading(line_group):
                continue
            for part in _SENTENCE_END.split(line_group):
                sentence = " ".join(part.split())
                if len(sentence.split()) >= MIN_SENTENCE_WORDS or _is_cjk(sentence):
                    sentences.append(sentence)
    return sentences


def _join_wrapped_lines(lines: list[str]) -> list[str]:
    groups: list[str] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if groups and not (_looks_like_heading(groups[-1]) and _starts_a_sentence(line)):
            groups[-1] += " " + line
        else:
            groups.append(line)
    return groups


def _looks_like_heading(line: str) -> bool:
    """A short line without closing punctuation ("Vacation and leave", "# Tools")."""
    if line.startswith("#"):
        return True
    if line.startswith(("-", "*", "•")) or line[:1].isdigit():
        return False  # a list item
    return len(line) <= 50 and len(line.split()) <= 7 and not line.endswith(tuple(".,;:!?"))


def _starts_a_sentence(line: str) -> bool:
    return line[:1].isupper() or line[:1].isdigit() or line.startswith(("#", "-", "*", "•"))


def _is_cjk(text: str) -> bool:
    return any("\u3040" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af" for char in text)


def extractive_answer(
    question_vector: np.ndarray,
    chunks: Sequence[ScoredChunk],
    encode: Callable[[list[str]], np.ndarray],
    threshold: float,
    max_sentences: int = 3,
) -> Answer:
    """Compose an answer from the sentences of `chunks` most similar to the question.

    `encode` returns unit vectors, so a dot product is the cosine similarity. Chosen
    sentences are shown in document order (document, then chunk, then position), and
    citation numbers follow that order.
    """
    candidates: list[tuple[int, int, str]] = []  # (chunk index, position, sentence)
    for chunk_index, chunk in enumerate(chunks):
        for position, sentence in enumerate(split_sentences(chunk.text)):
            candidates.append((chunk_index, position, sentence))
    if not candidates:
        return Answer(text=NOT_COVERED, refused=True)

    similarities = encode([sentence for _, _, sentence in candidates]) @ question_vector
    best = float(similarities.max())
    if best < threshold:
        return Answer(text=NOT_COVERED, refused=True, best_similarity=best)

    # Keep sentences close to the best one, so a strong match isn't padded with weak ones.
    floor = max(threshold, best - 0.15)
    ranked = sorted(range(len(candidates)), key=lambda i: -similarities[i])
    chosen: list[int] = []  # indexes into candidates
    seen: set[str] = set()
    for i in ranked:
        # The same sentence in two documents (a PDF and its Word original) is quoted once.
        key = " ".join(candidates[i][2].lower().split())
        if similarities[i] < floor or len(chosen) == max_sentences:
            break
        if key not in seen:
            seen.add(key)
            chosen.append(i)
    chosen.sort(
        key=lambda i: (chunks[candidates[i][0]].document_id, chunks[candidates[i][0]].ordinal, candidates[i][1])
    )

    numbers: dict[int, int] = {}
    sentences_by_chunk: dict[int, list[str]] = {}
    parts = []
    for i in chosen:
        chunk_index, _, sentence = candidates[i]
        n = numbers.setdefault(chunk_index, len(numbers) + 1)
        sentences_by_chunk.setdefault(chunk_index, []).append(sentence)
        parts.append(f"{sentence} [{n}]")
    citations = [
        Citation(n=n, chunk=chunks[chunk_index], sentences=tuple(sentences_by_chunk[chunk_index]))
        for chunk_index, n in numbers.items()
    ]
    return Answer(text=" ".join(parts), citations=citations, best_similarity=best)
