"""Pure fidelity/exposure metrics, the deletion-order helper, and the HTML report's self-containment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explain.evaluate import pair_ranks
from explain.metrics import curve_auc, decile_shares, eraser_sizes, gini, normaliser, shares
from explain.report import render_report, svg_lines


def test_gini() -> None:
    assert gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)  # (n - 1) / n for everything on one of n items
    assert gini([]) == 0.0 and gini([0, 0]) == 0.0
    assert gini([1, 2, 3]) < gini([0, 1, 5])


def test_normaliser_and_curve_auc() -> None:
    assert normaliser(np.array([3.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(1.5)
    curves = np.array([[1.0, 2.0, 9.0], [3.0, 3.0, 3.0]])
    valid = np.array([[True, True, False], [True, True, True]])
    # per pair: mean(1, 2) = 1.5 and 3; mean 2.25; / scale 1.5
    assert curve_auc(curves, valid, 1.5) == pytest.approx(1.5)
    assert math.isnan(curve_auc(curves, np.zeros_like(valid), 1.0))


def test_eraser_sizes() -> None:
    assert eraser_sizes(50) == [1, 2, 5, 10, 25]
    assert eraser_sizes(3) == [1, 1, 1, 1, 2]
    assert eraser_sizes(0) == []


def test_shares_and_deciles() -> None:
    out = shares({"a": 3, "b": 1, "c": 1, "z": 5}, {"a": "x", "b": "y", "c": "y"}, top=2)
    assert out == {"(none)": 0.5, "x": 0.3, "(other)": 0.2}
    popularity = {f"i{n}": float(100 - n) for n in range(20)}  # i0 most popular; 2 items per decile
    deciles = decile_shares(popularity, {"i0": 2, "i1": 1, "i19": 1, "unknown": 7})
    assert deciles[0] == pytest.approx(0.75) and deciles[9] == pytest.approx(0.25) and sum(deciles) == pytest.approx(1)


def test_pair_ranks_orders_by_weight_and_prefers_newer_on_ties() -> None:
    weights = torch.tensor([[0.0, 0.2, 0.5, 0.2, 0.1]])
    real = torch.tensor([[False, True, True, True, True]])
    assert pair_ranks(weights, real).tolist() == [[5, 2, 0, 1, 3]]


def test_report_is_self_contained() -> None:
    method = {
        "deletion_auc": 0.5,
        "insertion_auc": 0.4,
        "comprehensiveness": 0.3,
        "sufficiency": 0.1,
        "cost_ms": 1.0,
        "text_agreement": None,
        "deletion_curve": [0.1, float("nan")],
        "insertion_curve": [0.2, 0.3],
        "deletion_rank_curve": [1.0, 2.0],
    }
    exposure = {
        "catalog_size": 10,
        "catalog_coverage": 0.2,
        "gini_recommendations": 0.9,
        "gini_data": 0.5,
        "popularity_deciles_recommendations": [0.1] * 10,
        "popularity_deciles_data": [0.1] * 10,
        "categories_recommendations": {"c<1>": 1.0},
        "categories_data": {"c<1>": 1.0},
    }
    result = {
        "model_version": "m",
        "n_users": 2,
        "n_pairs": 4,
        "k": 2,
        "default_method": "occlusion",
        "backend": "torch",
        "score_scale": 1.0,
        "methods": {"occlusion": method, "random": method},
        "exposure": exposure,
    }
    page = render_report(result)
    assert page.count("<svg") == 5 and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "c&lt;1&gt;" in page and "<script" not in page
    assert "polyline" in svg_lines({"a": [1.0, 2.0]}, "t")
