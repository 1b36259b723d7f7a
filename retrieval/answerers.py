"""The built-in extractive answerer: quote the passages' best sentences, cited.

Pure Python, no Django. It never invents text: every sentence of an answer is a
sentence of a retrieved chunk, followed by the [n] of that chunk. When no sentence
is similar enough to the question, it says the documents don't cover it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

NOT_COVERED = "I couldn't find this in the documents, so I can't answer it."

# End of a sentence: . ! ? or a CJK full stop, then white space.
# A sentence ends at . ! ? (or their CJK forms) and a space, but not after an initial
# ("William H. Maxwell", "safety T. J. Ward") or a title or abbreviation that takes a name
# or more text after it.
_SENTENCE_END = re.compile(
    r"(?<=[.!?。！？])(?<!\b[A-Z]\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bMrs\.)(?<!\bvs\.)"
    r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bNo\.)\s+"
)
_BLOCK_BREAK = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*•+]|\d+[.)])\s)")
_BULLETS = ("-", "*", "•", "+")
# Sentences shorter than this are headings or fragments, not answers.
MIN_SENTENCE_WORDS = 3
# How the chunker joins a chunk's heading path (documents.chunkers.HEADING_PATH_SEPARATOR).
HEADING_PATH_SEPARATOR = " › "

# Sentence choice (see _Scorer). Measured with bench/qa.py; the figures are in its docstring.
# A sentence qualifies with at least this share of the question's key-term weight...
MIN_COVERAGE = 0.4
# ...or without it, when it is at least this similar to the question.
CLOSE_MATCH = 0.6
# A heading or term at least this similar to the question names what is asked: the
# sentence right under it (the definition) is as good a match as the heading.
LABEL_MATCH = 0.7
# A term in this share of the retrieved passages is the topic ("PDF.js" in the PDF.js
# README): matching it says little about whether a sentence answers the question.
TOPIC_SHARE = 0.6
TOPIC_DISCOUNT = 0.25
# A sentence holding only topic words ranks at this share of its score.
TOPIC_ONLY_FACTOR = 0.5
# Ranking: similarity plus this much of the key-term coverage.
COVERAGE_WEIGHT = 0.3
# Sentences ranked this far below the best one are left out.
RANK_MARGIN = 0.15

_TERM = re.compile(r"\w[\w.\-']*\w|\w")
_STOP_WORD_TEXT = """a about above after again all also am an and any are as at be been before being below between
    both but by can could did do does doing done down during each few for from further get gets
    got had has have having he her here hers him his how i if in into is it its itself just
    kind me might more most must my no nor not now of off on once only or other our ours out
    over own same shall she should so some such than that the their theirs them then there
    these they this those through to too under until up upon very was we were what whatever
    when where whether which while who whom whose why will with within would yes yet you your
    yours"""
_STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())


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


@dataclass(frozen=True)
class SentenceUnit:
    """A sentence that may answer a question, with the heading, term or question line it sits under."""

    text: str
    context: str = ""  # the heading path down to the label
    leads: bool = False  # the first sentence under `label`: where a definition or a direct answer sits
    label: str = ""  # the heading, glossary term or question line right above


def scoring_texts(text: str, heading_path: str = "") -> list[str]:
    """Every text of a chunk the answerer compares with a question: its sentences, then their headings and labels.

    What retrieval.sentences embeds once per chunk, so an answer embeds only its question.
    """
    units = sentence_units(text, heading_path)
    contexts = [context for unit in units for context in (unit.context, unit.label) if context]
    return list(dict.fromkeys([unit.text for unit in units] + contexts))


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, with wrapped lines rejoined and heading lines set apart."""
    return [unit.text for unit in sentence_units(text)]


def sentence_units(text: str, heading_path: str = "") -> list[SentenceUnit]:
    """The sentences of a chunk that could answer a question, each with its context.

    Heading lines, glossary terms (a short list item followed by its definition) and
    sentences that are themselves questions are never answers: they become the context
    of the sentences after them. A chunk continuing a section starts under the last
    heading of its `heading_path`.
    """
    path = _plain(heading_path)
    context, leads, label = path, False, ""
    units: list[SentenceUnit] = []
    groups = [group for block in _BLOCK_BREAK.split(text) for group in _join_wrapped_lines(block.split("\n"))]
    for index, group in enumerate(groups):
        following = groups[index + 1] if index + 1 < len(groups) else ""
        if _looks_like_heading(group):  # the section's own heading (the path ends with it), or a subheading
            label = _plain(_label_text(group))
            context, leads = (path if path.endswith(label) else _under(path, label)), True
            continue
        if _is_term(group, following):
            label = _label_text(group)
            context, leads = _under(path, label), True
            continue
        for part in _sentences(group):
            sentence = " ".join(part.split())
            if len(_label_text(sentence).split()) < MIN_SENTENCE_WORDS and not _is_cjk(sentence):
                continue
            if sentence.endswith(("?", "？")):
                label = sentence  # a FAQ's question: the next sentence answers it
                context, leads = _under(path, label), True
                continue
            units.append(SentenceUnit(sentence, context, leads, label if leads else ""))
            leads = False
    return units


_MARKDOWN_LINK = re.compile(r"!?\[([^\[\]]*)\]\([^()]*\)")


def _sentences(text: str) -> list[str]:
    """`text` cut at its sentence ends, except inside a Markdown link.

    "[Or Popular? We Polled Americans](https://…)" is one title: cut at its "?", the
    first half would pass for a FAQ's question and the second for its answer.
    """
    links = [match.span() for match in _MARKDOWN_LINK.finditer(text)]
    parts, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        if not any(link_start < end.start() < link_end for link_start, link_end in links):
            parts.append(text[start : end.start()])
            start = end.end()
    return [*parts, text[start:]]


def _plain(text: str) -> str:
    """Markdown links reduced to their text and images dropped ("PDF.js [![CI](…)](…)" → "PDF.js")."""
    for _ in range(2):  # a badge is an image inside a link
        text = _MARKDOWN_LINK.sub(lambda match: "" if match.group(0).startswith("!") else match.group(1), text)
    return " ".join(text.split())


def _under(path: str, label: str) -> str:
    return f"{path}{HEADING_PATH_SEPARATOR}{label}" if path and label else path or label


def _label_text(line: str) -> str:
    return line.lstrip("#-*•+ \t").strip()


def _is_term(line: str, following: str) -> bool:
    """A glossary term: a short list item without closing punctuation, followed by another list item."""
    if not line.startswith(_BULLETS) or not following.startswith(_BULLETS):
        return False
    term = _label_text(line)
    return 0 < len(term.split()) <= 4 and not term.endswith(tuple(".,;:!?"))


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
    if line.startswith(_BULLETS) or line[:1].isdigit():
        return False  # a list item
    return len(line) <= 50 and len(line.split()) <= 7 and not line.endswith(tuple(".,;:!?"))


def _starts_a_sentence(line: str) -> bool:
    return line[:1].isupper() or line[:1].isdigit() or line.startswith(("#", *_BULLETS))


def _is_cjk(text: str) -> bool:
    return any("\u3040" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af" for char in text)


def key_terms(text: str) -> list[str]:
    """The words of `text` that carry its meaning, lightly stemmed ("Questions" and "question" agree)."""
    terms = []
    for word in _TERM.findall(text.lower()):
        word = word.removesuffix("'s").strip(".'-")
        if not word or word in _STOP_WORDS:
            continue
        if any(char.isdigit() for char in word):
            terms.append(word)  # an identifier ("PAS-0257127", "v2.3"): cut short, its neighbours would match
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        terms.append(word[:6])  # a crude stem: "monitoring" and "monitored" agree
    return terms


@dataclass(frozen=True)
class _Scored:
    similarity: float  # the sentence's own cosine similarity to the question
    semantic: float  # the same, raised by a heading or term that matches the question
    coverage: float  # share of the question's key-term weight in the sentence and its context
    topic_only: bool  # of the question's key terms it holds only the topic's, where the question has others

    def qualifies(self, threshold: float) -> bool:
        if self.semantic < threshold:
            return False
        return self.coverage >= MIN_COVERAGE or (self.semantic >= CLOSE_MATCH and not self.topic_only)

    @property
    def rank(self) -> float:
        return (self.semantic + COVERAGE_WEIGHT * self.coverage) * (TOPIC_ONLY_FACTOR if self.topic_only else 1.0)


class _Scorer:
    """Scores sentences by how well they answer the question, not only by shared words.

    Semantic: the sentence's similarity to the question; the first sentence under a
    heading or term that matches the question (a definition) scores as the heading does.
    Lexical: the share of the question's key terms, weighted by rarity among the
    retrieved sentences, that the sentence or its heading holds; the topic's own words
    (in most retrieved passages) weigh little, so matching only them is not enough.
    """

    def __init__(
        self,
        question: str,
        question_vector: np.ndarray,
        encode: Callable[[list[str]], np.ndarray],
        chunks: Sequence[ScoredChunk],
        known: Mapping[str, np.ndarray] | None = None,
    ):
        self.question_vector = question_vector
        self.encode = encode
        self.known = known or {}
        self.question_terms = list(dict.fromkeys(key_terms(question)))
        chunk_terms = [set(key_terms(chunk.text + " " + chunk.heading_path)) for chunk in chunks]
        enough = max(2, TOPIC_SHARE * len(chunk_terms))
        self.topic_terms = {
            term for term in self.question_terms if sum(term in terms for terms in chunk_terms) >= enough
        }

    def score(self, units: Sequence[SentenceUnit]) -> list[_Scored]:
        contexts = list(dict.fromkeys(text for unit in units for text in (unit.context, unit.label) if text))
        similarity_of = self._similarities([unit.text for unit in units] + contexts)
        similarities = [similarity_of[unit.text] for unit in units]
        context_similarity = {text: similarity_of[text] for text in contexts}
        unit_terms = [set(key_terms(unit.text + " " + unit.context)) for unit in units]
        weights = self._term_weights(unit_terms)
        total = sum(weights.values())
        specific = {term for term in weights if term not in self.topic_terms}
        scored = []
        for unit, similarity, terms in zip(units, similarities, unit_terms, strict=True):
            # A term names what it defines better than its heading path ("Black-box monitoring").
            label = max(context_similarity.get(text, 0.0) for text in (unit.context, unit.label))
            if unit.leads and label >= LABEL_MATCH:
                semantic = max(similarity, label)
            else:
                semantic = max(similarity, 0.75 * similarity + 0.25 * label)
            covered = sum(weight for term, weight in weights.items() if term in terms)
            coverage = covered / total if total else 1.0  # no key terms (CJK, say): similarity decides
            topic_only = bool(specific) and not specific & terms
            scored.append(_Scored(similarity, semantic, coverage, topic_only))
        return scored

    def _similarities(self, texts: list[str]) -> dict[str, float]:
        """Each text's cosine similarity to the question: stored vectors where known, one encode for the rest."""
        missing = [text for text in dict.fromkeys(texts) if text not in self.known]
        vectors = dict(zip(missing, self.encode(missing), strict=True)) if missing else {}
        return {
            text: float(np.dot(self.known[text] if text in self.known else vectors[text], self.question_vector))
            for text in dict.fromkeys(texts)
        }

    def _term_weights(self, unit_terms: list[set[str]]) -> dict[str, float]:
        """Each key term's weight: rarer among the retrieved sentences weighs more; a topic word little."""
        count = len(unit_terms)
        weights = {}
        for term in self.question_terms:
            # A word found nowhere weighs as a rare one, not more: the text may use a synonym.
            frequency = max(1, sum(term in terms for terms in unit_terms))
            weight = float(np.log((count + 1) / (frequency + 0.5)))
            weights[term] = weight * TOPIC_DISCOUNT if term in self.topic_terms else weight
        return weights


def extractive_answer(
    question_vector: np.ndarray,
    chunks: Sequence[ScoredChunk],
    encode: Callable[[list[str]], np.ndarray],
    threshold: float,
    max_sentences: int = 3,
    question: str = "",
    known: Mapping[str, np.ndarray] | None = None,
) -> Answer:
    """The whole extractive answer at once (see stream_extractive_answer)."""
    stream = stream_extractive_answer(question_vector, chunks, encode, threshold, max_sentences, question, known)
    while True:
        try:
            next(stream)
        except StopIteration as finished:
            answer: Answer = finished.value
            return answer


def stream_extractive_answer(
    question_vector: np.ndarray,
    chunks: Sequence[ScoredChunk],
    encode: Callable[[list[str]], np.ndarray],
    threshold: float,
    max_sentences: int = 3,
    question: str = "",
    known: Mapping[str, np.ndarray] | None = None,
) -> Generator[str, None, Answer]:
    """Yield the answer a sentence at a time as each is chosen (best first, each with its [n]); return the Answer.

    The pieces joined are exactly `Answer.text`. A sentence qualifies when it is at
    least `threshold` similar to the question and either holds enough of the question's
    key terms (counting the heading or term it sits under) or is a close semantic match
    (see _Scorer). Without the question's text (`question=""`), similarity alone decides.
    `encode` returns unit vectors, so a dot product is the cosine similarity; it is
    called once, for the texts `known` (text → stored unit vector, see
    retrieval.sentences) lacks, and not at all when every text is known. Citation
    numbers follow the order of the text.
    """
    candidates = [
        (chunk_index, unit)
        for chunk_index, chunk in enumerate(chunks)
        for unit in sentence_units(chunk.text, chunk.heading_path)
    ]
    if not candidates:
        yield NOT_COVERED
        return Answer(text=NOT_COVERED, refused=True)

    scored = _Scorer(question, question_vector, encode, chunks, known).score([unit for _, unit in candidates])
    best_similarity = max(candidate.similarity for candidate in scored)
    qualified = [i for i, candidate in enumerate(scored) if candidate.qualifies(threshold)]
    if not qualified:
        yield NOT_COVERED
        return Answer(text=NOT_COVERED, refused=True, best_similarity=best_similarity)

    ranked = sorted(qualified, key=lambda i: -scored[i].rank)
    # Keep sentences close to the best one, so a strong match isn't padded with weak ones.
    floor = scored[ranked[0]].rank - RANK_MARGIN
    numbers: dict[int, int] = {}
    sentences_by_chunk: dict[int, list[str]] = {}
    parts: list[str] = []
    seen: set[str] = set()
    for i in ranked:
        if scored[i].rank < floor or len(parts) == max_sentences:
            break
        chunk_index, unit = candidates[i]
        # The same sentence in two documents (a PDF and its Word original) is quoted once.
        key = " ".join(unit.text.lower().split())
        if key in seen:
            continue
        seen.add(key)
        n = numbers.setdefault(chunk_index, len(numbers) + 1)
        sentences_by_chunk.setdefault(chunk_index, []).append(unit.text)
        piece = f"{unit.text} [{n}]"
        yield piece if not parts else " " + piece
        parts.append(piece)
    citations = [
        Citation(n=n, chunk=chunks[chunk_index], sentences=tuple(sentences_by_chunk[chunk_index]))
        for chunk_index, n in numbers.items()
    ]
    return Answer(text=" ".join(parts), citations=citations, best_similarity=best_similarity)
