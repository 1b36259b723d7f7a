"""Rule-based test cases from a bot's own passages, for when no LLM provider is configured (no Django).

An informative sentence (long enough, carrying a number or a name, not a question) becomes a
question about its key terms, answered by the sentence's document. These questions share
words with their answers, so they test whether retrieval finds the right document for a
specific fact, not paraphrase understanding; an LLM generator writes harder ones.
Unanswerable cases come from held-out questions about things no workplace document covers.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

MIN_WORDS, MAX_WORDS = 8, 45
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
# Words, numbers and codes such as E-4417 or 11:30, kept whole.
_WORD = re.compile(r"\w[\w'.:/-]*\w|\w")
STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "a about after all also an and any are as at be been before being but by can could did do does each for from "
        "had has have how if in into is it its may more most must no not of on or other our should so some such than "
        "that the their them then there these they this those through to under up was we were what when where which "
        "while who will with within would you your",
    )
)
HELD_OUT_QUESTIONS = (
    "What is the boiling point of mercury at sea level?",
    "Who painted the ceiling of the Sistine Chapel?",
    "How many moons does Neptune have?",
    "What was the population of Lisbon in 1755?",
    "Which river flows through Ulaanbaatar?",
    "What is the airspeed velocity of a migrating swallow?",
    "Who won the 1954 FIFA World Cup final?",
    "What is the melting point of tungsten?",
)


@dataclass(frozen=True)
class Passage:
    document: str  # the file name of the passage's document
    text: str


@dataclass(frozen=True)
class GeneratedCase:
    question: str
    document: str | None  # None: unanswerable
    source: str = ""  # the sentence the question was made from


def informative_sentences(text: str) -> list[str]:
    """Sentences worth asking about: MIN_WORDS to MAX_WORDS words, with a number or a capitalised term."""
    found = []
    for part in _SENTENCE_END.split(" ".join(text.split())):
        words = part.split()
        if not MIN_WORDS <= len(words) <= MAX_WORDS or part.endswith("?"):
            continue
        if any(word[0].isdigit() for word in words) or any(word[0].isupper() for word in words[1:]):
            found.append(part)
    return found


def key_terms(sentence: str, limit: int = 5) -> list[str]:
    """The sentence's content words in order: numbers and names first, then the longest others."""
    words = _WORD.findall(sentence)
    content = [word for word in dict.fromkeys(words) if word and word.lower() not in STOPWORDS]
    specific = [word for word in content if word[0].isdigit() or word[0].isupper()]
    others = sorted((word for word in content if word not in specific), key=len, reverse=True)
    chosen = set((specific + others)[:limit])
    return [word for word in content if word in chosen]


def question_for(sentence: str) -> str:
    return f"What do the documents say about {' '.join(key_terms(sentence))}?"


def generate(passages: Sequence[Passage], count: int, unanswerable: int = 0, seed: int = 0) -> list[GeneratedCase]:
    """Up to `count` answerable cases from distinct sentences spread over documents, then held-out unanswerable ones."""
    rng = random.Random(seed)
    by_document: dict[str, list[str]] = {}
    for passage in passages:
        by_document.setdefault(passage.document, []).extend(informative_sentences(passage.text))
    for sentences in by_document.values():
        rng.shuffle(sentences)
    cases: list[GeneratedCase] = []
    seen: set[str] = set()
    # Round-robin over documents so one long document does not supply every question.
    while len(cases) < count and any(by_document.values()):
        for document in sorted(by_document):
            if by_document[document] and len(cases) < count:
                sentence = by_document[document].pop()
                question = question_for(sentence)
                if question not in seen:
                    seen.add(question)
                    cases.append(GeneratedCase(question, document, sentence))
    held_out = rng.sample(HELD_OUT_QUESTIONS, min(unanswerable, len(HELD_OUT_QUESTIONS)))
    return cases + [GeneratedCase(question, None) for question in held_out]
