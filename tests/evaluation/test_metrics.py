"""Metrics against values worked out by hand (log2 discounts written out in each test)."""

import math

import pytest

from evaluation.metrics import (
    AnswerCase,
    RetrievalCase,
    answer_metrics,
    first_relevant_rank,
    metric_deltas,
    retrieval_metrics,
    retrieval_per_case,
)

# Relevant d1 and d3 at distinct ranks 2 and 3 (d1 repeats: a second chunk of the same document).
SECOND_AND_THIRD = RetrievalCase("a", ["d2", "d1", "d3", "d1"], {"d1": 1, "d3": 1})
MISSED = RetrievalCase("b", ["d5", "d6"], {"d9": 1})
FIRST = RetrievalCase("c", ["d4"], {"d4": 2})
UNANSWERABLE = RetrievalCase("d", ["d1", "d2"], {})
NOTHING_RETRIEVED = RetrievalCase("e", [], {"d7": 1})


def test_a_document_found_in_several_chunks_counts_once_at_its_best_rank():
    values = retrieval_per_case([SECOND_AND_THIRD])["a"]
    # DCG = 1/log2(3) + 1/log2(4); ideal = 1/log2(2) + 1/log2(3)
    ndcg = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert values["hit@1"] == 0
    assert values["hit@3"] == 1
    assert values["mrr@10"] == 0.5
    assert values["ndcg@10"] == pytest.approx(ndcg)  # 0.6934
    assert values["recall@10"] == 1
    assert first_relevant_rank(SECOND_AND_THIRD.ranked_documents, SECOND_AND_THIRD.relevant) == 2


def test_means_leave_out_cases_without_a_relevant_document_and_count_empty_results_as_zero():
    metrics = retrieval_metrics([SECOND_AND_THIRD, MISSED, FIRST, UNANSWERABLE, NOTHING_RETRIEVED])
    # Four cases count (a, b, c, e); d has nothing relevant to find.
    assert metrics["hit@1"] == pytest.approx(1 / 4)  # only c
    assert metrics["hit@3"] == pytest.approx(2 / 4)  # a and c
    assert metrics["mrr@10"] == pytest.approx((0.5 + 0 + 1 + 0) / 4)
    assert metrics["ndcg@10"] == pytest.approx((0.693426 + 0 + 1 + 0) / 4, abs=1e-6)
    assert metrics["recall@10"] == pytest.approx(2 / 4)
    assert metrics["recall@100"] == pytest.approx(2 / 4)


def test_ties_in_score_keep_the_order_search_returned():
    # Two chunks scored equally: the bot showed "b" first. trec_eval alone would break the
    # tie by document id; the metrics must judge the order the person actually saw.
    shown_first_irrelevant = RetrievalCase("tie", ["b", "a"], {"a": 1})
    shown_first_relevant = RetrievalCase("tie", ["a", "b"], {"a": 1})
    assert retrieval_metrics([shown_first_irrelevant])["hit@1"] == 0
    assert retrieval_metrics([shown_first_irrelevant])["mrr@10"] == 0.5
    assert retrieval_metrics([shown_first_relevant])["hit@1"] == 1
    shown_z_first = RetrievalCase("tie", ["z", "y"], {"y": 1})
    assert retrieval_metrics([shown_z_first])["mrr@10"] == 0.5


def test_graded_relevance_weighs_ndcg_and_recall_counts_each_relevant_document():
    case = RetrievalCase("g", ["x", "y", "n"], {"x": 1, "y": 2, "w": 1})
    values = retrieval_per_case([case])["g"]
    # Gains are the grades (trec_eval): DCG = 1/1 + 2/log2(3); ideal = 2/1 + 1/log2(3) + 1/log2(4)
    ideal = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert values["ndcg@10"] == pytest.approx((1 + 2 / math.log2(3)) / ideal)
    assert values["recall@10"] == pytest.approx(2 / 3)
    assert values["mrr@10"] == 1


def test_a_relevant_document_beyond_rank_ten_counts_for_recall_at_100_only():
    ranked = [f"n{i}" for i in range(12)] + ["r"]
    values = retrieval_per_case([RetrievalCase("far", ranked, {"r": 1})])["far"]
    assert values["hit@10"] == 0
    assert values["mrr@10"] == 0
    assert values["recall@10"] == 0
    assert values["recall@100"] == 1
    assert first_relevant_rank(ranked, {"r"}) == 13


def test_no_case_with_a_relevant_document_gives_no_retrieval_figures_rather_than_zeros():
    assert set(retrieval_metrics([UNANSWERABLE]).values()) == {None}
    assert set(retrieval_metrics([]).values()) == {None}


def test_answer_metrics_separate_refusals_of_unanswerable_and_answerable_questions():
    cases = [
        # answered, 2 of 3 citations from an expected document
        AnswerCase(answerable=True, refused=False, cited_documents=[1, 1, 2], expected_documents=frozenset({1})),
        # answered, every citation expected
        AnswerCase(answerable=True, refused=False, cited_documents=[3], expected_documents=frozenset({3})),
        # wrongly refused: no citation precision, counts as a wrong refusal
        AnswerCase(answerable=True, refused=True, expected_documents=frozenset({4})),
        AnswerCase(answerable=False, refused=True),  # rightly refused
        AnswerCase(answerable=False, refused=False, cited_documents=[5]),  # answered what it could not know
    ]
    metrics = answer_metrics(cases)
    assert metrics["citation_precision"] == pytest.approx((2 / 3 + 1) / 2)
    assert metrics["refusal_accuracy"] == pytest.approx(1 / 2)
    assert metrics["wrong_refusals"] == pytest.approx(1 / 3)


def test_answer_metrics_without_qualifying_cases_are_none():
    assert answer_metrics([AnswerCase(answerable=True, refused=True)]) == {
        "citation_precision": None,
        "refusal_accuracy": None,
        "wrong_refusals": 1.0,
    }


def test_deltas_are_after_minus_before_and_none_when_either_side_is_missing():
    deltas = metric_deltas({"hit@1": 0.5, "mrr@10": None}, {"hit@1": 0.75, "mrr@10": 0.4, "ndcg@10": 0.3})
    assert deltas == {"hit@1": 0.25, "mrr@10": None, "ndcg@10": None}


def test_two_cases_with_the_same_id_are_refused():
    with pytest.raises(ValueError, match="own case_id"):
        retrieval_metrics([FIRST, FIRST])
