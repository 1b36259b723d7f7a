"""Retrieval and answer metrics over plain data (no Django).

Retrieval metrics are document-level: a case lists the documents of its ranked
chunks in the order search returned them, and a document found in several chunks
counts once, at its best rank. The per-case values come from ir-measures (which
runs trec_eval through pytrec-eval-terrier); this module only decides what goes in:

- Order is the order search returned. trec_eval sorts by score and breaks ties by
  document id, which would let an id decide between two equally scored chunks; we
  hand it strictly decreasing scores from the ranks instead, so a tie keeps the
  order the bot actually showed.
- A case without a relevant document (an unanswerable question, or a BEIR query
  whose qrels are all grade 0) is excluded from the retrieval metrics: it has no
  right answer to rank. It still counts for the answer metrics (refusal accuracy).
- A case with relevant documents but nothing retrieved scores 0 (trec_eval would
  silently skip it, inflating the mean).
- Means are over the cases that count; a metric with no such case is None, not 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import ir_measures

# Our name → the ir-measures measure that computes it.
RETRIEVAL_MEASURES = {
    "hit@1": ir_measures.Success @ 1,
    "hit@3": ir_measures.Success @ 3,
    "hit@5": ir_measures.Success @ 5,
    "hit@10": ir_measures.Success @ 10,
    "mrr@10": ir_measures.RR @ 10,
    "ndcg@10": ir_measures.nDCG @ 10,
    "recall@10": ir_measures.R @ 10,
    "recall@100": ir_measures.R @ 100,
}
ANSWER_METRICS = ("citation_precision", "refusal_accuracy", "wrong_refusals")
# Larger is better for every metric except these.
LOWER_IS_BETTER = frozenset({"wrong_refusals"})


@dataclass(frozen=True)
class RetrievalCase:
    """One question's ranked documents (duplicates allowed) and its relevant ones with grades (> 0 is relevant)."""

    case_id: Hashable
    ranked_documents: Sequence[Hashable]
    relevant: Mapping[Hashable, int] = field(default_factory=dict)

    @property
    def has_relevant(self) -> bool:
        return any(grade > 0 for grade in self.relevant.values())


@dataclass(frozen=True)
class AnswerCase:
    """One answer: was the question answerable, did the bot refuse, which documents its citations came from."""

    answerable: bool
    refused: bool
    cited_documents: Sequence[Hashable] = ()
    expected_documents: frozenset[Hashable] = frozenset()


def unique_in_order(items: Iterable[Hashable]) -> list[Hashable]:
    """`items` without repeats, each at its first position."""
    return list(dict.fromkeys(items))


def first_relevant_rank(ranked_documents: Sequence[Hashable], relevant: Iterable[Hashable]) -> int | None:
    """The 1-based rank of the first relevant document among the distinct ranked ones, or None."""
    wanted = set(relevant)
    for rank, document in enumerate(unique_in_order(ranked_documents), start=1):
        if document in wanted:
            return rank
    return None


def retrieval_per_case(cases: Sequence[RetrievalCase]) -> dict[Hashable, dict[str, float]]:
    """Every retrieval metric for each case that has a relevant document (others are left out)."""
    counted = [case for case in cases if case.has_relevant]
    if len({case.case_id for case in counted}) != len(counted):
        raise ValueError("Each case needs its own case_id.")
    # ir-measures wants string ids; the case's position keeps them unique whatever case_id is.
    qrels = [
        ir_measures.Qrel(str(index), str(document), int(grade))
        for index, case in enumerate(counted)
        for document, grade in case.relevant.items()
    ]
    run = []
    for index, case in enumerate(counted):
        ranked = unique_in_order(case.ranked_documents)
        run += [
            ir_measures.ScoredDoc(str(index), str(document), float(len(ranked) - rank))
            for rank, document in enumerate(ranked)
        ]
    values: dict[Hashable, dict[str, float]] = {
        case.case_id: dict.fromkeys(RETRIEVAL_MEASURES, 0.0) for case in counted
    }
    if qrels and run:
        names = {measure: name for name, measure in RETRIEVAL_MEASURES.items()}
        for metric in ir_measures.iter_calc(list(RETRIEVAL_MEASURES.values()), qrels, run):
            values[counted[int(metric.query_id)].case_id][names[metric.measure]] = float(metric.value)
    return values


def retrieval_metrics(cases: Sequence[RetrievalCase]) -> dict[str, float | None]:
    """The mean of each retrieval metric over the cases with a relevant document (None if there are none)."""
    per_case = retrieval_per_case(cases)
    if not per_case:
        return dict.fromkeys(RETRIEVAL_MEASURES)
    return {name: sum(values[name] for values in per_case.values()) / len(per_case) for name in RETRIEVAL_MEASURES}


def answer_metrics(cases: Sequence[AnswerCase]) -> dict[str, float | None]:
    """Answer quality over all cases.

    - citation_precision: per answerable, answered (not refused) case that cites
      something and names expected documents, the share of its citations that come
      from an expected document; the mean over those cases.
    - refusal_accuracy: the share of unanswerable cases the bot refused.
    - wrong_refusals: the share of answerable cases the bot refused (lower is better).
    Each is None when no case qualifies.
    """
    precisions = [
        sum(document in case.expected_documents for document in case.cited_documents) / len(case.cited_documents)
        for case in cases
        if case.answerable and not case.refused and case.cited_documents and case.expected_documents
    ]
    unanswerable = [case for case in cases if not case.answerable]
    answerable = [case for case in cases if case.answerable]
    return {
        "citation_precision": _mean(precisions),
        "refusal_accuracy": _mean([case.refused for case in unanswerable]),
        "wrong_refusals": _mean([case.refused for case in answerable]),
    }


def metric_deltas(before: Mapping[str, float | None], after: Mapping[str, float | None]) -> dict[str, float | None]:
    """after − before for each metric either run has; None where one of them has no value."""
    deltas = {}
    for name in [*before, *(name for name in after if name not in before)]:
        old, new = before.get(name), after.get(name)
        deltas[name] = None if old is None or new is None else round(new - old, 6)
    return deltas


def _mean(values: Sequence[float | bool]) -> float | None:
    return sum(values) / len(values) if values else None
