"""Fine-tuning a bot's embedding model on its own text, and judging the result on held-out cases (no Django).

Training pairs are (query, positive passage):

- from a test set: a training case's question and the passage of one of its expected
  documents that the current model finds closest to it;
- unsupervised, by inverse cloze: a sentence of a passage as the query, and the passage
  without that sentence as the positive.

The model learns with sentence-transformers' MultipleNegativesRankingLoss (the other
positives of a batch are the negatives) on the CPU, for a bounded number of steps.

The held-out evaluation is like for like: both models embed the same passages in memory,
rank documents by their best passage (dense retrieval only, so nothing but the model
differs), and evaluation.metrics scores the rankings. The candidate is promotable only
when its nDCG@10 on the held-out cases is higher than the baseline's (see is_promotable).

torch, sentence_transformers and datasets load inside the functions that need them, so
importing this module stays cheap.
"""

from __future__ import annotations

import random
import re
import tempfile
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import metrics as measures

# Bounds that keep a default run on a small bot well under a few minutes on two cores.
MAX_PAIRS = 2000
MAX_STEPS = 200
BATCH_SIZE = 16
LEARNING_RATE = 3e-5
# Held-out share of a test set's answerable cases (at least one case is held out).
HELD_OUT_SHARE = 0.3
# Inverse cloze: passages set aside for evaluation, at most this share and this many.
ICT_HELD_OUT_SHARE, ICT_MAX_HELD_OUT = 0.2, 200
MIN_QUERY_WORDS = 5
# Documents ranked per held-out case (recall@10 and nDCG@10 need ten; more costs nothing here).
RANK_DEPTH = 100
REPORTED = ("hit@1", "hit@5", "mrr@10", "ndcg@10", "recall@10")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass(frozen=True)
class Passage:
    """One indexed chunk of the bot: its id, its document's id, its text."""

    chunk_id: Hashable
    document_id: Hashable
    text: str


@dataclass(frozen=True)
class LabelledQuestion:
    """A test-set question and its relevant documents with grades (> 0 is relevant)."""

    case_id: Hashable
    question: str
    relevant: Mapping[Hashable, int]


@dataclass(frozen=True)
class Pair:
    query: str
    positive: str


@dataclass
class TrainingData:
    """What a fine-tune learns from and what it is judged on.

    `corpus` is the passages both models search in the held-out evaluation; inverse cloze
    replaces each held-out passage by its text without the query sentence, so the answer
    cannot be found by matching the sentence itself.
    """

    pairs: list[Pair]
    held_out: list[LabelledQuestion]
    corpus: list[Passage]
    notes: dict[str, int] = field(default_factory=dict)


def sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(" ".join(text.split())) if part.strip()]


def split_cases(
    cases: Sequence[LabelledQuestion], seed: int = 0
) -> tuple[list[LabelledQuestion], list[LabelledQuestion]]:
    """(training, held out): a seeded shuffle, HELD_OUT_SHARE held out, at least one case on each side."""
    answerable = [case for case in cases if any(grade > 0 for grade in case.relevant.values())]
    if len(answerable) < 2:
        raise ValueError("Fine-tuning from a test set needs at least two answerable cases: one to learn, one to test.")
    shuffled = sorted(answerable, key=lambda case: str(case.case_id))
    random.Random(seed).shuffle(shuffled)
    held = min(len(shuffled) - 1, max(1, round(len(shuffled) * HELD_OUT_SHARE)))
    return shuffled[held:], shuffled[:held]


def test_set_data(
    cases: Sequence[LabelledQuestion],
    passages: Sequence[Passage],
    encode: Callable[[list[str]], np.ndarray],
    *,
    seed: int = 0,
    max_pairs: int = MAX_PAIRS,
) -> TrainingData:
    """Pairs from the training part of a test set; the rest is held out.

    Each relevant document of a training case gives one pair, with the document's passage
    closest to the question under the current model (`encode`) as the positive.
    """
    if not passages:
        raise ValueError("The bot has no indexed passages to learn from yet.")
    training, held_out = split_cases(cases, seed)
    by_document: dict[Hashable, list[int]] = {}
    for index, passage in enumerate(passages):
        by_document.setdefault(passage.document_id, []).append(index)
    wanted = [
        (case, document)
        for case in training
        for document, grade in case.relevant.items()
        if grade > 0 and document in by_document
    ]
    if not wanted:
        raise ValueError("None of the training cases' expected documents has indexed passages.")
    # Sampled before anything is encoded: a BEIR query judges dozens of documents, and
    # only max_pairs pairs are kept, so only their passages and questions are embedded.
    random.Random(seed).shuffle(wanted)
    wanted = wanted[:max_pairs]
    used = sorted({index for _, document in wanted for index in by_document[document]})
    passage_vectors = dict(zip(used, encode([passages[index].text for index in used]), strict=True))
    questions = list(dict.fromkeys(case.question for case, _ in wanted))
    question_vectors = dict(zip(questions, encode(questions), strict=True))
    pairs = []
    for case, document in wanted:
        question_vector = question_vectors[case.question]
        best = max(by_document[document], key=lambda index: float(passage_vectors[index] @ question_vector))
        pairs.append(Pair(case.question, passages[best].text))
    return TrainingData(
        pairs=pairs,
        held_out=held_out,
        corpus=list(passages),
        notes={"training_cases": len(training), "held_out_cases": len(held_out)},
    )


def inverse_cloze_data(passages: Sequence[Passage], *, seed: int = 0, max_pairs: int = MAX_PAIRS) -> TrainingData:
    """Inverse-cloze pairs from the passages; some passages are set aside as held-out cases.

    A passage qualifies when it has at least two sentences and one of them has
    MIN_QUERY_WORDS words or more. A held-out passage gives one query (its sentence)
    whose relevant document is the passage's, and stays in the corpus without that sentence.
    """
    rng = random.Random(seed)
    candidates = []
    for index, passage in enumerate(passages):
        parts = sentences(passage.text)
        queries = [n for n, sentence in enumerate(parts) if len(sentence.split()) >= MIN_QUERY_WORDS]
        if len(parts) >= 2 and queries:
            candidates.append((index, parts, queries))
    if len(candidates) < 4:
        raise ValueError(
            "The bot's documents have too few passages of several sentences to learn from; "
            "add documents, or fine-tune from a test set."
        )
    rng.shuffle(candidates)
    held = min(ICT_MAX_HELD_OUT, max(1, round(len(candidates) * ICT_HELD_OUT_SHARE)))
    held_out, corpus = [], list(passages)
    for index, parts, queries in candidates[:held]:
        n = rng.choice(queries)
        passage = passages[index]
        held_out.append(LabelledQuestion(passage.chunk_id, parts[n], {passage.document_id: 1}))
        corpus[index] = Passage(passage.chunk_id, passage.document_id, " ".join(parts[:n] + parts[n + 1 :]))
    pairs: list[Pair] = []
    # Round-robin over the training passages, one sentence each per round, so a cap keeps the variety.
    pools = [(parts, rng.sample(queries, len(queries))) for _, parts, queries in candidates[held:]]
    for round_ in range(max(len(queries) for _, queries in pools)):
        for parts, queries in pools:
            if round_ < len(queries) and len(pairs) < max_pairs:
                n = queries[round_]
                pairs.append(Pair(parts[n], " ".join(parts[:n] + parts[n + 1 :])))
    return TrainingData(
        pairs=pairs, held_out=held_out, corpus=corpus, notes={"training_passages": len(pools), "held_out_cases": held}
    )


def planned_steps(pair_count: int, epochs: int, batch_size: int = BATCH_SIZE, max_steps: int = MAX_STEPS) -> int:
    """Optimizer steps a run takes: every batch of every epoch, at most max_steps."""
    per_epoch = -(-pair_count // batch_size)
    return max(1, min(max_steps, per_epoch * epochs))


def train(
    base_path: str,
    pairs: Sequence[Pair],
    output_dir: str | Path,
    *,
    epochs: int = 1,
    batch_size: int = BATCH_SIZE,
    max_steps: int = MAX_STEPS,
    seed: int = 0,
    on_step: Callable[[int, int], None] | None = None,
) -> int:
    """Fine-tune the sentence-transformers model at `base_path` on `pairs` and save it to `output_dir`.

    Returns the number of steps taken. `on_step(done, total)` is called after each step.
    """
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import TrainerCallback

    if len(pairs) < 2:
        raise ValueError("Fine-tuning needs at least two training pairs.")
    total = planned_steps(len(pairs), epochs, batch_size, max_steps)

    class Progress(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if on_step is not None:
                on_step(state.global_step, total)

    model = SentenceTransformer(base_path, device="cpu")
    dataset = Dataset.from_dict(
        {"anchor": [pair.query for pair in pairs], "positive": [pair.positive for pair in pairs]}
    )
    with tempfile.TemporaryDirectory(prefix="docent-fine-tune-") as scratch:
        arguments = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            max_steps=total,
            per_device_train_batch_size=min(batch_size, len(pairs)),
            learning_rate=LEARNING_RATE,
            warmup_steps=total // 10,  # none for a short run: its first step would learn nothing
            # A repeated positive in one batch would be its own false negative.
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            seed=seed,
            use_cpu=True,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=arguments,
            train_dataset=dataset,
            loss=MultipleNegativesRankingLoss(model),
            callbacks=[Progress()],
        )
        trainer.train()
        steps = trainer.state.global_step
    model.save(str(output_dir))
    return steps


def rank_documents(
    question_vectors: np.ndarray, passage_vectors: np.ndarray, passages: Sequence[Passage], depth: int = RANK_DEPTH
) -> list[list[Hashable]]:
    """Per question, document ids best first, each document scored by its best passage (dot = cosine)."""
    if not len(passages):
        return [[] for _ in range(len(question_vectors))]
    scores = question_vectors @ passage_vectors.T
    rankings = []
    for row in scores:
        ranked: list[Hashable] = []
        for index in np.argsort(-row, kind="stable"):
            document = passages[int(index)].document_id
            if document not in ranked:
                ranked.append(document)
                if len(ranked) == depth:
                    break
        rankings.append(ranked)
    return rankings


def held_out_metrics(
    encode: Callable[[list[str]], np.ndarray], corpus: Sequence[Passage], held_out: Sequence[LabelledQuestion]
) -> dict[str, float | None]:
    """The REPORTED retrieval metrics of one model (`encode`) on the held-out cases, over `corpus`."""
    passage_vectors = encode([passage.text for passage in corpus])
    question_vectors = encode([case.question for case in held_out])
    rankings = rank_documents(question_vectors, passage_vectors, corpus)
    cases = [
        measures.RetrievalCase(case.case_id, ranking, dict(case.relevant))
        for case, ranking in zip(held_out, rankings, strict=True)
    ]
    values = measures.retrieval_metrics(cases)
    return {**{name: values[name] for name in REPORTED}, "cases": len(held_out)}


def is_promotable(baseline: Mapping[str, float | None], candidate: Mapping[str, float | None]) -> bool:
    """The rule: promote only when the candidate's held-out nDCG@10 is strictly higher than the baseline's.

    A tie is not an improvement (re-embedding the bot would cost work for nothing), and
    without a value on either side there is nothing to compare.
    """
    before, after = baseline.get("ndcg@10"), candidate.get("ndcg@10")
    return before is not None and after is not None and after > before + 1e-9


def encoder(path: str | Path) -> Callable[[list[str]], np.ndarray]:
    """An encode function (unit vectors, like retrieval's) for the model saved at `path`, loaded afresh."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(
            texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    return encode
