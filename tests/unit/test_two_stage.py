"""Two-stage model: exact candidate features on a hand-made sequence set, the ranker's safetensors round trip,
and the served scorer (loaded the way the worker loads it) never returning the trigger item, with explanations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from contracts import ChecksumMismatch, Event, EventType, ModelError, Settings
from model.artifacts import load_model, load_scorer
from model.count_parts import CountParts
from model.evaluate import split_context
from model.rank_features import FEATURES, Sources, build_candidates
from model.ranker import RankerConfig, fit_ranker, list_ndcg, load_ranker, save_ranker
from model.scoring import PastEvent, UserState
from model.splits import split_at, time_split
from model.store import ModelStore
from model.synthetic import synthetic_catalog, synthetic_events
from model.two_stage import TwoStageScorer
from streams.serving import load_serving

torch.set_num_threads(1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _event(n: int, user: str, item: str) -> Event:
    return Event(event_id=f"{user}-{n}", user_id=user, item_id=item, type=EventType.VIEW, ts=T0 + timedelta(n))


def _parts() -> CountParts:
    # u1: a b c, u2: a b d, u3: b c  ->  vocabulary b a c d (by count, then id); C[a,b] = 2, C[b,c] = 2, C[b,d] = 1
    rows = {"u1": "abc", "u2": "abd", "u3": "bc"}
    return CountParts.fit([_event(n, user, item) for user, items in rows.items() for n, item in enumerate(items)])


def _user() -> UserState:
    events = (
        PastEvent("e0", "c", EventType.VIEW, T0),
        PastEvent("e1", "a", EventType.ADD_TO_CART, T0 + timedelta(seconds=10)),
        PastEvent("e2", "b", EventType.VIEW, T0 + timedelta(seconds=70)),  # the trigger: never a candidate
    )
    return UserState("me", events)


def _features(blocked: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    parts = _parts()
    mask = np.zeros(4, dtype=bool)
    mask[[parts.index[i] for i in blocked]] = True
    t_logp = np.asarray([-1.0, -2.0, -3.0, -4.0])  # b a c d
    category = {"a": "x", "b": "x", "c": "y", "d": "x"}
    sources = Sources(t_logp, [parts.index["d"]], [3.0], np.zeros(4), mask, category)
    found = build_candidates(_user(), parts, sources, depth=50)
    return {
        parts.vocab[int(r)]: dict(zip(FEATURES, row.tolist(), strict=True))
        for r, row in zip(found.rows, found.features, strict=True)
    }


def test_count_parts_are_the_hand_counted_ones() -> None:
    parts = _parts()
    assert parts.vocab == ["b", "a", "c", "d"]
    assert parts.transitions.toarray().tolist() == [[0, 0, 2, 1], [2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert parts.item_counts.tolist() == [3, 2, 2, 1]


def test_candidates_exclude_the_current_and_blocked_items() -> None:
    assert set(_features()) == {"a", "c", "d"}
    assert set(_features(blocked=("d",))) == {"a", "c"}


def test_features_have_the_hand_computed_values() -> None:
    f = _features()
    log = np.log1p
    expected = {
        # transitions: context b (1), a (0.5), c (0.25): tr(c) = 2, tr(d) = 1, tr(b) = 0.5 * 2; list c, b, d
        "c": {"tr_log": log(2), "tr_share": 0.5, "tr_rank": 0.0, "tr_listed": 1.0, "last_log": log(2),
              "last_prob": 2 / 3, "rev_log": 0.0, "last3_log": log(2), "hist_in": 1.0, "hist_ago": log(2),
              "hist_count": log(1), "hist_view": 1.0, "hist_cart": 0.0, "hist_secs": log(70), "prev_item": 0.0,
              "t_logp": -3.0, "t_gap": -1.0, "t_rank": log(2), "co_listed": 0.0, "pop_log": log(2)},
        "a": {"tr_log": 0.0, "tr_listed": 0.0, "tr_rank": log(50), "last_log": 0.0, "rev_log": log(2),
              "hist_in": 1.0, "hist_ago": log(1), "hist_view": 0.0, "hist_cart": 1.0, "hist_secs": log(60),
              "prev_item": 1.0, "t_gap": 0.0, "t_rank": log(1), "pop_log": log(2)},
        "d": {"tr_log": log(1), "tr_share": 0.25, "tr_rank": log(2), "last_prob": 1 / 3, "hist_in": 0.0,
              "hist_ago": 0.0, "co_log": log(3), "co_rel": 1.0, "co_rank": 0.0, "co_listed": 1.0,
              "t_gap": -2.0, "pop_log": log(1)},
    }  # fmt: skip
    for item, values in expected.items():
        for name, value in values.items():
            assert f[item][name] == pytest.approx(value, abs=1e-6), (item, name)
    # categories of the events c a b: y x x; the current item's is x
    assert [f[i]["cat_same"] for i in "acd"] == [1.0, 0.0, 1.0]
    assert [f[i]["cat_share"] for i in "acd"] == pytest.approx([2 / 3, 1 / 3, 2 / 3])
    for item in f:  # per-user context: 3 events, 60 s between the last two
        assert f[item]["sess_len"] == pytest.approx(np.log1p(3))
        assert f[item]["sess_gap"] == pytest.approx(np.log1p(60))


def _examples(n: int, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    """Lists where the target is the row with the largest first feature (learnable)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        features = rng.normal(size=(12, len(FEATURES))).astype(np.float32)
        out.append((features, int(np.argmax(features[:, 0]))))
    return out


def test_ranker_learns_and_round_trips_through_safetensors(tmp_path: Path) -> None:
    model, metrics = fit_ranker(_examples(300), RankerConfig(epochs=15, patience=15))
    held = _examples(50, seed=1)
    assert np.mean([list_ndcg(model.predict(f), g) for f, g in held]) > 0.8
    assert metrics["ranker_holdout_ndcg@10"] > 0.8
    path = tmp_path / "ranker.safetensors"
    save_ranker(path, model, FEATURES)
    from model.artifacts import file_sha256

    loaded = load_ranker(path, file_sha256(path), FEATURES)
    assert np.array_equal(loaded.predict(held[0][0]), model.predict(held[0][0]))
    with pytest.raises(ChecksumMismatch):
        load_ranker(path, "0" * 64, FEATURES)
    with pytest.raises(ModelError, match="features"):
        load_ranker(path, file_sha256(path), (*FEATURES[:-1], "other"))


def test_serving_loads_a_two_stage_scorer_that_never_returns_the_trigger(two_stage_dir: Path, tmp_path: Path) -> None:
    serving = load_serving(two_stage_dir, Settings(model_dir=tmp_path / "store", backend="torch", device="cpu"))
    assert isinstance(serving.scorer, TwoStageScorer)
    events, catalog = synthetic_events(n_users=80, length=12), synthetic_catalog()
    fit, held_out = split_at(events, events[-1].ts - timedelta(days=2))
    split = time_split(fit, held_out, catalog, max_points=40, targets="every")
    users = [p.state for p in split.points]
    items = split_context(split)
    scored = serving.scorer.score(users, items, 10)
    assert all(len(row) == 10 for row in scored)
    for user, row in zip(users, scored, strict=True):
        trigger = user.events[-1].item_id
        assert trigger is None or trigger not in {s.item_id for s in row}
        assert [s.score for s in row] == sorted((s.score for s in row), reverse=True)
    explained = serving.explainer.explain(users[:4], items, scored[:4])
    assert [len(row) for row in explained] == [10] * 4
    assert all(e.text for row in explained for e in row)


def test_the_store_copies_and_verifies_every_two_stage_file(two_stage_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    manifest = store.promote(two_stage_dir)
    copied = store.path(manifest.version)
    assert (copied / "ranker.safetensors").is_file() and (copied / "parts.safetensors").is_file()
    (copied / "ranker.safetensors").write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatch):
        load_model(copied)


def test_a_fine_tune_of_a_two_stage_version_stays_two_stage(two_stage_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    parent = store.promote(two_stage_dir)
    loaded = store.load(parent.version)
    with torch.no_grad():
        next(loaded.model.parameters()).add_(0.01)  # stands in for the learner's fine-tuning steps
    child = store.save(loaded.model, loaded.vocab, parent_version=parent.version)
    assert child.two_stage == parent.two_stage and child.extra_files == parent.extra_files
    assert child.version != parent.version
    scorer = load_scorer(store.path(child.version), backend="torch", device="cpu")
    assert isinstance(scorer, TwoStageScorer) and scorer.version == child.version


def test_a_batch_ranks_each_user_as_scoring_them_alone_would(two_stage_dir: Path) -> None:
    # The serving path batches the transformer's top-k, the ranker forward and the category codes over users:
    # none of that may leak between users of one batch.
    scorer = load_scorer(two_stage_dir, backend="torch", device="cpu")
    assert isinstance(scorer, TwoStageScorer)
    events, catalog = synthetic_events(n_users=80, length=12), synthetic_catalog()
    fit, held_out = split_at(events, events[-1].ts - timedelta(days=2))
    split = time_split(fit, held_out, catalog, max_points=30, targets="every")
    users, items = [p.state for p in split.points], split_context(split)
    together = scorer.score(users, items, 10)
    alone = [scorer.score([user], items, 10)[0] for user in users]
    assert [[s.item_id for s in row] for row in together] == [[s.item_id for s in row] for row in alone]
    for row_together, row_alone in zip(together, alone, strict=True):
        assert [s.score for s in row_together] == pytest.approx([s.score for s in row_alone], abs=1e-5)
