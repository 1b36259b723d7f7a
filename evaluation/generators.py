"""Test cases from a bot's own passages, by rule or written by a language model (no Django).

Rule-based: an informative sentence (long enough, carrying a number or a name, not a
question) becomes a question about its key terms, answered by the sentence's document.
These questions share words with their answers, so they test whether retrieval finds the
right document for a specific fact, not paraphrase understanding; the LLM generator
(llm_generate) writes harder ones, one question per sampled passage.
Unanswerable cases are rule-based questions about a held-out corpus of general-knowledge
passages shipped with Docent (heldout/general.jsonl); the caller keeps only those the
bot's own documents do not cover.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
HELD_OUT_CORPUS = Path(__file__).with_name("heldout") / "general.jsonl"
MAX_UNANSWERABLE = 20
# What the LLM generator sends of one passage: enough for a fact, small enough for any model.
MAX_PASSAGE_CHARS = 2000
MAX_QUESTION_CHARS = 300
# Passages asked about per wanted question at most: some replies are unusable and dropped.
LLM_ATTEMPTS_PER_QUESTION = 2

Message = dict[str, str]
# Sends chat messages to a language model and returns its reply's text.
Ask = Callable[[list[Message]], str]

QUESTION_PROMPT = """You write test questions for a search system over an organisation's documents.
Given one passage, write one question that the passage answers, the way a person who has not \
seen the passage would ask it. Do not mention "the passage", "the text" or "the document". \
Also give the short answer the passage supports.
Reply with JSON only, like {"question": "...", "answer": "..."}. If the passage holds no fact \
worth asking about, reply {"question": ""}."""


@dataclass(frozen=True)
class Passage:
    document: str  # the file name of the passage's document
    text: str


@dataclass(frozen=True)
class GeneratedCase:
    question: str
    document: str | None  # None: unanswerable
    source: str = ""  # the sentence the question was made from, or the answer the LLM gave


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


def generate(passages: Sequence[Passage], count: int, seed: int = 0) -> list[GeneratedCase]:
    """Up to `count` answerable cases from distinct sentences, spread over documents."""
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
    return cases


def held_out_passages(path: Path = HELD_OUT_CORPUS) -> list[Passage]:
    """The held-out corpus: one passage per JSON line {"topic", "text"}, its topic as the document."""
    passages = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entry = json.loads(line)
            passages.append(Passage(document=f"held-out:{entry['topic']}", text=entry["text"]))
    return passages


def held_out_cases(seed: int = 0) -> list[GeneratedCase]:
    """Candidate unanswerable cases: rule-based questions about the held-out corpus, one topic after another.

    The caller checks each against the bot's documents and keeps the ones they do not cover.
    """
    passages = held_out_passages()
    return [
        GeneratedCase(case.question, None, case.source)
        for case in generate(passages, count=sum(len(informative_sentences(p.text)) for p in passages), seed=seed)
    ]


def sample_passages(passages: Sequence[Passage], seed: int = 0) -> list[Passage]:
    """`passages` worth asking about (MIN_WORDS words or more), shuffled and taken in turn from each document."""
    rng = random.Random(seed)
    by_document: dict[str, list[Passage]] = {}
    for passage in passages:
        if len(passage.text.split()) >= MIN_WORDS:
            by_document.setdefault(passage.document, []).append(passage)
    for group in by_document.values():
        rng.shuffle(group)
    order = sorted(by_document)
    rng.shuffle(order)
    sampled = []
    while any(by_document.values()):
        for document in order:
            if by_document[document]:
                sampled.append(by_document[document].pop())
    return sampled


def question_messages(passage: Passage) -> list[Message]:
    text = passage.text if len(passage.text) <= MAX_PASSAGE_CHARS else passage.text[:MAX_PASSAGE_CHARS] + "…"
    return [
        {"role": "system", "content": QUESTION_PROMPT},
        {"role": "user", "content": f"Passage from {passage.document}:\n\n{text}"},
    ]


def json_object(reply: str) -> dict[str, Any] | None:
    """The first JSON object in a model's reply, also inside a Markdown fence or after some prose; None if none."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", reply):
        try:
            value, _ = decoder.raw_decode(reply, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def parse_question(reply: str) -> tuple[str, str] | None:
    """(question, answer) from the LLM's reply, or None when it gave no usable question."""
    found = json_object(reply)
    if found is None:
        return None
    question, answer = found.get("question"), found.get("answer")
    if not isinstance(question, str):
        return None
    question = " ".join(question.split())
    if len(question.split()) < 3 or len(question) > MAX_QUESTION_CHARS or "\x00" in question:
        return None
    return question, " ".join(answer.split()) if isinstance(answer, str) else ""


def llm_generate(passages: Sequence[Passage], count: int, ask: Ask, seed: int = 0) -> list[GeneratedCase]:
    """Up to `count` cases, one question per sampled passage, written by a language model through `ask`.

    Replies without a usable question (not JSON, empty, too short or long, a repeat) are
    dropped; at most LLM_ATTEMPTS_PER_QUESTION passages are asked per wanted question.
    Errors of `ask` reach the caller. The expected document is the passage's document.
    """
    cases: list[GeneratedCase] = []
    seen: set[str] = set()
    for passage in sample_passages(passages, seed)[: count * LLM_ATTEMPTS_PER_QUESTION]:
        if len(cases) == count:
            break
        parsed = parse_question(ask(question_messages(passage)))
        if parsed is None or parsed[0].lower() in seen:
            continue
        seen.add(parsed[0].lower())
        cases.append(GeneratedCase(parsed[0], passage.document, parsed[1]))
    return cases
