"""Ranking metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crossmodal_search.errors import InvalidInputError
from crossmodal_search.evaluation import (
    has_relevant,
    hit_rate_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)

L2 = math.log2

# a b c d e ranked; b and d relevant, f relevant but never retrieved.
RANKED = ["a", "b", "c", "d", "e"]
REL = {"b": 1.0, "d": 1.0, "f": 1.0}


@pytest.mark.parametrize(
    ("k", "expected"), [(1, 0.0), (2, 1 / 3), (3, 1 / 3), (5, 2 / 3), (10, 2 / 3)]
)
def test_recall(k, expected):
    assert recall_at_k(RANKED, REL, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("k", "expected"), [(1, 0.0), (2, 1 / 2), (3, 1 / 3), (5, 2 / 5), (10, 2 / 10)]
)
def test_precision_divides_by_k_even_past_the_list(k, expected):
    assert precision_at_k(RANKED, REL, k) == pytest.approx(expected)


def test_reciprocal_rank_and_cutoff():
    assert reciprocal_rank(RANKED, REL) == pytest.approx(1 / 2)
    assert reciprocal_rank(RANKED, REL, k=1) == 0.0
    assert reciprocal_rank(["x", "y", "d"], REL) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y"], REL) == 0.0


def test_hit_rate():
    assert hit_rate_at_k(RANKED, REL, 1) == 0.0
    assert hit_rate_at_k(RANKED, REL, 2) == 1.0
    assert hit_rate_at_k([], REL, 5) == 0.0


def test_binary_ndcg_by_hand():
    dcg = 1 / L2(3) + 1 / L2(5)  # b at rank 2, d at rank 4
    idcg = 1 + 1 / L2(3) + 1 / L2(4)  # three relevant items, ideally at ranks 1..3
    assert ndcg_at_k(RANKED, REL, 5) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(RANKED, REL, 5) == pytest.approx(0.49819, abs=1e-5)


def test_graded_ndcg_ideal_built_from_the_grades():
    ranked = ["a", "b", "c"]
    grades = {"a": 1, "b": 3, "c": 0, "d": 2}  # c judged non-relevant, d never retrieved
    dcg = 1 / 1 + 3 / L2(3) + 0
    idcg = 3 / 1 + 2 / L2(3) + 1 / L2(4)
    assert ndcg_at_k(ranked, grades, 3) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(ranked, grades, 3) == pytest.approx(0.60749, abs=1e-5)
    assert ndcg_at_k(ranked, grades, 1) == pytest.approx(1 / 3)
    assert ndcg_at_k(["b", "d", "a"], grades, 3) == pytest.approx(1.0)


def test_tied_grades_either_order_is_ideal():
    grades = {"a": 2, "b": 2, "c": 1}
    assert ndcg_at_k(["a", "b", "c"], grades, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["b", "a", "c"], grades, 3) == pytest.approx(1.0)
    # The tie in grades does not excuse putting the lower grade first.
    assert ndcg_at_k(["c", "a", "b"], grades, 3) < 1.0


def test_tied_scores_use_the_result_order_as_given():
    # Two results with the same similarity: whichever the searcher listed first takes rank 1.
    assert reciprocal_rank(["x", "a"], ["a"]) == pytest.approx(1 / 2)
    assert reciprocal_rank(["a", "x"], ["a"]) == 1.0


def test_duplicates_are_ignored_and_later_items_move_up():
    ranked = ["a", "a", "a", "b"]
    assert reciprocal_rank(ranked, ["b"]) == pytest.approx(1 / 2)
    assert precision_at_k(ranked, ["a", "b"], 2) == pytest.approx(1.0)
    assert recall_at_k(ranked, ["a", "b"], 2) == pytest.approx(1.0)
    # a repeated relevant hit scores once, not three times
    assert ndcg_at_k(ranked, ["a"], 3) == pytest.approx(1.0)
    assert precision_at_k(ranked, ["a"], 3) == pytest.approx(1 / 3)


def test_k_larger_than_the_list():
    assert recall_at_k(["a"], ["a"], 10) == 1.0
    assert precision_at_k(["a"], ["a"], 10) == pytest.approx(0.1)
    assert ndcg_at_k(["a"], ["a"], 10) == 1.0
    assert hit_rate_at_k(["a"], ["a"], 10) == 1.0
    assert ndcg_at_k([], ["a"], 10) == 0.0


@pytest.mark.parametrize("relevant", [{}, [], {"a": 0}, {"a": 0.0, "b": 0}])
def test_no_relevant_items_give_zero_and_are_detectable(relevant):
    assert not has_relevant(relevant)
    for fn in (recall_at_k, precision_at_k, ndcg_at_k, hit_rate_at_k):
        assert fn(["a", "b"], relevant, 2) == 0.0
    assert reciprocal_rank(["a", "b"], relevant) == 0.0


def test_list_relevance_means_grade_one():
    assert ndcg_at_k(["b", "a"], ["a", "b"], 2) == ndcg_at_k(["b", "a"], {"a": 1, "b": 1}, 2)
    assert has_relevant(["a"])


@pytest.mark.parametrize("bad", [{"a": -1}, {"a": float("nan")}, {"a": float("inf")}, "ab"])
def test_bad_grades_rejected(bad):
    with pytest.raises(InvalidInputError):
        recall_at_k(["a"], bad, 1)


@pytest.mark.parametrize("k", [0, -1, True, 1.5])
def test_bad_k_rejected(k):
    with pytest.raises(InvalidInputError, match="k must be"):
        precision_at_k(["a"], ["a"], k)


ids = st.sampled_from(list("abcdefgh"))


@given(
    ranked=st.lists(ids, max_size=10),
    grades=st.dictionaries(ids, st.integers(min_value=0, max_value=3), max_size=8),
    k=st.integers(min_value=1, max_value=12),
)
def test_metric_ranges_and_ideal_order(ranked, grades, k):
    for fn in (recall_at_k, precision_at_k, ndcg_at_k, hit_rate_at_k):
        assert 0.0 <= fn(ranked, grades, k) <= 1.0 + 1e-12
    ideal = sorted((p for p, g in grades.items() if g > 0), key=lambda p: -grades[p])
    if ideal:
        assert ndcg_at_k(ideal, grades, k) == pytest.approx(1.0)
        assert recall_at_k(ideal, grades, max(k, len(ideal))) == 1.0
