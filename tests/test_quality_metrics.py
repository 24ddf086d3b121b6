from __future__ import annotations

import math

import pytest

from bench.quality_metrics import dcg, judged_useless_at, mean, ndcg_at, recall_at

LOG2_3 = math.log2(3)  # the discount at rank 2


def test_dcg_uses_gain_two_to_the_grade_minus_one_and_a_log2_discount() -> None:
    # 7/log2(2) + 0/log2(3) + 1/log2(4)
    assert dcg([3, 0, 1]) == pytest.approx(7.5)


def test_ndcg_of_the_ideal_order_is_one() -> None:
    assert ndcg_at(["a", "b", "c"], {"a": 3, "b": 2, "c": 1}, k=10) == pytest.approx(1.0)


def test_ndcg_with_an_unjudged_seed_in_between() -> None:
    # DCG 7 + 0 + 1/2 = 7.5; ideal 7 + 1/log2(3) = 7.6309 -> 0.9828
    assert ndcg_at(["a", "b", "c"], {"a": 3, "c": 1}, k=10) == pytest.approx(7.5 / (7 + 1 / LOG2_3))
    assert ndcg_at(["a", "b", "c"], {"a": 3, "c": 1}, k=10) == pytest.approx(0.9828, abs=1e-4)


def test_ndcg_of_the_reversed_order() -> None:
    # DCG 1 + 7/log2(3) = 5.4165; ideal 7.6309 -> 0.7098
    assert ndcg_at(["c", "a"], {"a": 3, "c": 1}, k=10) == pytest.approx(0.7098, abs=1e-4)


def test_ndcg_cuts_both_the_ranking_and_the_ideal_at_k() -> None:
    # top 2 holds one grade-3 seed: 7; ideal top 2 holds two: 7 + 7/log2(3) = 11.4165 -> 0.6131
    assert ndcg_at(["a", "x", "b"], {"a": 3, "b": 3, "c": 3}, k=2) == pytest.approx(0.6131, abs=1e-4)


def test_ndcg_is_zero_when_no_relevant_seed_is_ranked_or_none_exists() -> None:
    assert ndcg_at(["x", "y"], {"a": 2}, k=10) == 0.0
    assert ndcg_at(["x", "y"], {"t": 0}, k=10) == 0.0


def test_recall_counts_only_seeds_graded_two_or_better() -> None:
    grades = {"a": 3, "b": 2, "c": 1}
    assert recall_at(["c", "a", "x"], grades, k=20) == pytest.approx(0.5)
    assert recall_at(["c", "a", "b"], grades, k=20) == pytest.approx(1.0)
    assert recall_at(["c", "a", "b"], grades, k=1) == 0.0


def test_recall_is_undefined_without_good_seeds() -> None:
    assert recall_at(["c"], {"c": 1, "t": 0}, k=20) is None


def test_judged_useless_counts_explicit_zero_grades_not_unjudged_seeds() -> None:
    assert judged_useless_at(["t", "u", "a"], {"t": 0, "a": 3}, k=10) == 1
    assert judged_useless_at(["a", "u", "t"], {"t": 0, "a": 3}, k=2) == 0


def test_a_ranking_that_lists_a_seed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        ndcg_at(["a", "a"], {"a": 3}, k=10)


def test_mean_skips_undefined_values() -> None:
    assert mean([1.0, None, 0.0]) == pytest.approx(0.5)
    assert mean([None]) is None
