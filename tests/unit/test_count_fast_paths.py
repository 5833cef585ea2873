"""The two-stage hot path reads CSR arrays directly; these pin it to the matrix forms it replaced, bit for bit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import scipy.sparse as sp

from contracts import EventType
from model.count_parts import CountParts
from model.rank_features import _weighted_rows
from model.scoring import PastEvent, UserState
from model.sessions import Sequences, top_rows
from model.sknn import SessionKnnScorer

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _sequences(seed: int, n: int = 400, items: int = 60) -> Sequences:
    rng = np.random.default_rng(seed)
    rows = [rng.zipf(1.6, size=rng.integers(1, 12)).clip(max=items) - 1 for _ in range(n)]
    vocab = [f"i{k}" for k in range(items)]
    last_ts = rng.integers(0, 50, size=n).astype(np.float64)  # many ties: the recency sample's tie rule matters
    return Sequences(vocab, {v: k for k, v in enumerate(vocab)}, [r.astype(np.int64) for r in rows], last_ts)


def _user(seed: int, items: int = 60) -> UserState:
    rng = np.random.default_rng(seed)
    picks = (rng.zipf(1.6, size=rng.integers(1, 30)).clip(max=items + 5) - 1).tolist()  # some unknown items
    past = tuple(PastEvent(f"e{n}", f"i{p}", EventType.VIEW, T0 + timedelta(minutes=n)) for n, p in enumerate(picks))
    return UserState("u", past)


def _matrix_form(knn: SessionKnnScorer, user: UserState) -> np.ndarray | None:
    """V-SKNN as scipy matrix products (the form the module docstring states)."""
    seq, incidence = knn._seq, knn._incidence
    known = [r for r in (seq.index.get(e.item_id or "") for e in user.events) if r is not None]
    if not known:
        return None
    n = len(known)
    latest = {r: p for p, r in enumerate(known, start=1)}
    distinct = np.fromiter(latest, dtype=np.int64)
    position = np.fromiter(latest.values(), dtype=np.float64)
    weight, steps = np.zeros(len(seq.vocab)), np.zeros(len(seq.vocab))
    weight[distinct] = position / n
    steps[distinct] = 1.0 / (n + 1 - position)
    candidates = np.unique(knn._sessions_of[distinct].indices)
    if candidates.size == 0:
        return None
    if candidates.size > knn._sample_size:
        candidates = candidates[np.lexsort((candidates, -seq.last_ts[candidates]))[: knn._sample_size]]
    part = incidence[candidates]
    sim = np.asarray(part @ weight).ravel() / np.sqrt(distinct.size * knn._sizes[candidates])
    best = top_rows(sim, knn._k)
    neighbours = part[best]
    decay = np.asarray(neighbours.multiply(steps).max(axis=1).todense()).ravel()
    return np.asarray(neighbours.T @ (sim[best] * decay)).ravel()


@pytest.mark.parametrize("seed", range(6))
def test_vsknn_scores_equal_the_matrix_form_exactly(seed: int) -> None:
    knn = SessionKnnScorer(_sequences(seed), k=20, sample_size=50)  # small k and sample: cuts and ties everywhere
    for u in range(40):
        user = _user(1000 * seed + u)
        fast, reference = knn.item_scores(user), _matrix_form(knn, user)
        if reference is None:
            assert fast is None
        else:
            assert fast is not None and np.array_equal(fast, reference), u


def test_vsknn_of_a_user_without_known_items_is_none() -> None:
    knn = SessionKnnScorer(_sequences(0))
    assert knn.item_scores(UserState("u", (PastEvent("e", "unknown", EventType.VIEW, T0),))) is None


def test_weighted_transition_rows_equal_the_matrix_product() -> None:
    parts = CountParts(_sequences(3))
    size = len(parts.vocab)
    matrix: sp.csr_matrix = parts.transitions
    rng = np.random.default_rng(0)
    for _ in range(50):
        rows = rng.choice(size, size=int(rng.integers(1, 6)), replace=False).tolist()
        weights = 0.5 ** np.arange(len(rows))
        expected = np.asarray(matrix[rows].T @ weights).ravel()
        assert np.array_equal(_weighted_rows(matrix, rows, weights, size), expected)
    assert not _weighted_rows(matrix, [], np.ones(0), size).any()
