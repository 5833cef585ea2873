"""Learned fusion of scorers: exact candidate features, and weights that learn which part to trust."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from contracts import EventType
from model.rerank import RerankScorer, candidate_features, fit_weights
from model.scoring import ItemContext, PastEvent, ScoredItem, UserState
from model.splits import TestPoint

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class _Fixed:
    """Lists fixed items; `first(u)` puts a user-specific item on top."""

    def __init__(self, name: str, top: str | None, rest: Sequence[str]) -> None:
        self.version, self._top, self._rest = name, top, list(rest)

    def score(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[ScoredItem]]:
        out = []
        for user in users:
            ids = [f"{user.user_id}-{self._top}"] if self._top else []
            ids += self._rest
            out.append([ScoredItem(i, float(len(ids) - n)) for n, i in enumerate(ids[:k])])
        return out


def _user(name: str) -> UserState:
    return UserState(name, (PastEvent("e", "x", EventType.VIEW, T0),))


def test_candidate_features_are_exact() -> None:
    a = [ScoredItem("p", 3.0), ScoredItem("q", 1.0)]
    b = [ScoredItem("q", 5.0)]
    candidates, features = candidate_features([a, b])
    assert [c.item_id for c in candidates] == ["p", "q"]
    assert features.tolist() == [[1.0, 1.0, 1.0, 0.0, 0.0, 0.0], [1.0, 0.5, 0.0, 1.0, 1.0, 1.0]]


def test_fitted_weights_trust_the_part_that_finds_the_targets() -> None:
    good = _Fixed("good", "hit", ["g1", "g2"])  # the target is its own top item for every user
    bad = _Fixed("bad", None, ["b1", "b2", "b3"])
    points = [TestPoint(_user(f"u{n}"), f"u{n}-hit", EventType.VIEW) for n in range(30)]
    weights = fit_weights([bad, good], points, ItemContext())
    fused = RerankScorer([("bad", bad), ("good", good)], weights)
    [row] = fused.score([_user("new")], ItemContext(), k=3)
    assert row[0].item_id == "new-hit"
    assert fused.version == "rerank(bad+good)"
    with pytest.raises(ValueError, match="nothing to fit"):
        fit_weights([bad], points, ItemContext())
    with pytest.raises(ValueError, match="do not fit"):
        RerankScorer([("bad", bad)], np.zeros(6))
