"""Ranking metrics on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.metrics import bootstrap_ci, hit_rate_at_k, mrr_at_k, ndcg_at_k, recall_at_k

RANKED = ["a", "b", "c", "d", "e"]


def test_single_target_at_rank_three() -> None:
    assert hit_rate_at_k(RANKED, "c", 3) == 1.0
    assert hit_rate_at_k(RANKED, "c", 2) == 0.0
    assert recall_at_k(RANKED, "c", 5) == 1.0
    assert ndcg_at_k(RANKED, "c", 5) == pytest.approx(1.0 / math.log2(4))
    assert mrr_at_k(RANKED, "c", 5) == pytest.approx(1.0 / 3.0)
    assert mrr_at_k(RANKED, "c", 2) == 0.0


def test_target_missing_scores_zero() -> None:
    for fn in (hit_rate_at_k, recall_at_k, ndcg_at_k, mrr_at_k):
        assert fn(RANKED, "z", 5) == 0.0
    assert ndcg_at_k([], "a", 10) == 0.0


def test_multi_target() -> None:
    targets = {"b", "d", "z"}
    assert hit_rate_at_k(RANKED, targets, 5) == 1.0
    assert recall_at_k(RANKED, targets, 5) == pytest.approx(2.0 / 3.0)
    assert recall_at_k(RANKED, targets, 2) == pytest.approx(1.0 / 3.0)
    dcg = 1.0 / math.log2(3) + 1.0 / math.log2(5)
    ideal = 1.0 + 1.0 / math.log2(3) + 1.0 / math.log2(4)
    assert ndcg_at_k(RANKED, targets, 5) == pytest.approx(dcg / ideal)
    assert mrr_at_k(RANKED, targets, 5) == pytest.approx(0.5)


def test_ndcg_ideal_limited_by_k_and_duplicates_count_once() -> None:
    assert ndcg_at_k(["a", "b"], {"a", "b", "c"}, 2) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "a", "b"], {"a", "b"}, 3) == pytest.approx(
        (1.0 + 1.0 / math.log2(4)) / (1.0 + 1.0 / math.log2(3))
    )


def test_string_target_is_one_item_not_characters() -> None:
    assert recall_at_k(["ab"], "ab", 1) == 1.0
    assert hit_rate_at_k(["a"], "ab", 1) == 0.0


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(RANKED, "a", 0)


def test_bootstrap_ci_brackets_mean_and_is_seeded() -> None:
    values = np.random.default_rng(1).random(500)
    mean, low, high = bootstrap_ci(values, n=500, seed=3)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    # Standard error of a U(0,1) mean over 500 points is ~0.013: a 95 % interval is ~0.05 wide.
    assert 0.03 < high - low < 0.08
    assert bootstrap_ci(values, n=500, seed=3) == (mean, low, high)
    assert bootstrap_ci(values, n=500, seed=4) != (mean, low, high)


def test_bootstrap_ci_constant_and_empty() -> None:
    assert bootstrap_ci([1.0, 1.0, 1.0], n=50) == (1.0, 1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_ci([], n=10))
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0], alpha=1.5)
