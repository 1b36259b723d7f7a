import pytest

from retrieval.fusion import reciprocal_rank_fusion


def test_rrf_scores_follow_the_formula():
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)


def test_an_item_both_lists_agree_on_beats_one_list_winner():
    fused = reciprocal_rank_fusion([["x", "shared"], ["y", "shared"]], k=1)
    # x: 1/2, y: 1/2, shared: 1/3 + 1/3 = 2/3
    assert fused[0][0] == "shared"


def test_weights_tilt_the_fusion():
    fused = reciprocal_rank_fusion([["v"], ["kw"]], k=60, weights=[1.0, 2.0])
    assert [item for item, _ in fused] == ["kw", "v"]


def test_ties_keep_first_seen_order_and_mismatched_weights_are_refused():
    assert [item for item, _ in reciprocal_rank_fusion([["a"], ["b"]])] == ["a", "b"]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], weights=[1.0, 2.0])
