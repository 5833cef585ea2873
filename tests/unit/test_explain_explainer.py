"""`Explainer`: evidence indices map back to the user's own events, baselines keep their evidence, backend rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import torch

from contracts import EventType, Explanation, ReasonKind
from explain.explainer import DEFAULT_METHOD, FORWARD_ONLY_METHODS, Explainer, default_method
from model.backends import EagerTorchBackend
from model.baselines import RecentItemsScorer
from model.scoring import ItemContext, PastEvent, ScoredItem, UserState
from model.torch_scorer import TorchScorer
from model.vocab import ItemVocab
from tests.unit.test_explain_attribution import _marker_model

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
VOCAB = ItemVocab([f"i{row}" for row in range(1, 10)], capacity=10)
TITLES = {"i1": "Marker lamp", "i7": "Target lamp"}


def _user(user_id: str, items: list[str | None]) -> UserState:
    events = tuple(
        PastEvent(
            f"{user_id}-e{n}",
            item,
            EventType.VIEW if item else EventType.SEARCH,
            T0 + timedelta(minutes=n),
            None if item else "lamp",
        )
        for n, item in enumerate(items)
    )
    return UserState(user_id, events)


@pytest.mark.parametrize("method", [None, "occlusion", "integrated_gradients"])
def test_model_evidence_points_at_the_users_own_driving_event(method: str | None) -> None:
    model = _marker_model()
    scorer = TorchScorer(EagerTorchBackend(model), VOCAB, model.config, "v1")
    explainer = Explainer.for_scorer(scorer, model, method=method)
    assert explainer.method == (method or DEFAULT_METHOD["torch"])
    # "zz" is unknown to the vocabulary: it is dropped from the model input, so positions != event indices.
    alice = _user("a", ["i2", "zz", "i1", "i3", "i4"])
    bob = _user("b", ["i5", "i6", "i2", "i3", "i1", "i4", "i5"])  # 7 events: the oldest falls out of max_len 6
    scored = [[ScoredItem("i7", 1.0)], [ScoredItem("i7", 1.0), ScoredItem("i9", 0.5)]]
    items = ItemContext(item_title=TITLES)
    out = explainer.explain([alice, bob], items, scored)
    assert [len(row) for row in out] == [1, 2]
    assert out[0][0].evidence[0].event_id == "a-e2"
    assert out[1][0].evidence[0].event_id == "b-e4"
    for user, row in zip((alice, bob), out, strict=True):
        assert all(Explanation.model_validate_json(expl.model_dump_json()) == expl for expl in row)
        own = {e.event_id for e in user.events}
        assert all(ev.event_id in own for expl in row for ev in expl.evidence)
        weights = [ev.weight for expl in row for ev in expl.evidence]
        assert all(w > 0 for w in weights)
    assert out[0][0].text.startswith("Because you viewed 'Marker lamp' 2 minutes ago")  # relative to the newest event
    assert out[0][0].reasons[0].kind is ReasonKind.SIMILAR_TO


def test_explicit_trigger_time_and_empty_history() -> None:
    model = _marker_model()
    explainer = Explainer(encoder=EagerTorchBackend(model), model=model, vocab=VOCAB, config=model.config)
    alice = _user("a", ["i1", "i2"])
    empty = UserState("e", ())
    out = explainer.explain(
        [alice, empty],
        ItemContext(),
        [[ScoredItem("i7", 1.0)], [ScoredItem("i7", 1.0)]],
        now=[T0 + timedelta(hours=3), T0],
    )
    assert "3 hours ago" in out[0][0].text
    assert out[1][0].evidence == [] and out[1][0].text == "Recommended for you"


def test_baseline_scorer_evidence_becomes_evidence_records() -> None:
    user = UserState(
        "u",
        (
            PastEvent("e0", "a", EventType.VIEW, T0),
            PastEvent("e1", "b", EventType.ADD_TO_CART, T0 + timedelta(minutes=1)),
            PastEvent("e2", "a", EventType.VIEW, T0 + timedelta(minutes=6)),
        ),
    )
    items = ItemContext(item_title={"a": "Alpha", "b": "Beta"})
    scored = RecentItemsScorer().score([user], items, k=2)
    out = Explainer().explain([user], items, scored)
    for s, expl in zip(scored[0], out[0], strict=True):
        assert [ev.event_id for ev in expl.evidence] == [user.events[i].event_id for i, w in s.evidence if w > 0][:5]
        assert ReasonKind.SEEN_BEFORE in {r.kind for r in expl.reasons}
    assert out[0][0].text == "You viewed this just now; you looked at it 2 times"  # its own event leads


def test_forward_only_backends_explain_with_occlusion() -> None:
    assert default_method("tensorrt") in FORWARD_ONLY_METHODS and default_method("exported") in FORWARD_ONLY_METHODS
    assert "occlusion" in FORWARD_ONLY_METHODS and "integrated_gradients" not in FORWARD_ONLY_METHODS
    model = _marker_model()
    with pytest.raises(ValueError, match="forward-only"):
        Explainer(
            encoder=EagerTorchBackend(model),
            model=model,
            vocab=VOCAB,
            config=model.config,
            backend="tensorrt",
            method="integrated_gradients",
        )
    with pytest.raises(ValueError, match="vocab and config"):
        Explainer(encoder=EagerTorchBackend(model), model=model)


def test_select_method_rule() -> None:
    from explain.explainer import select_method

    auc = {"occlusion": 0.80, "integrated_gradients": 0.85, "item_similarity": 0.78, "random": 0.9}
    cost = {"occlusion": 40.0, "integrated_gradients": 30.0, "item_similarity": 0.4, "random": 0.0}
    assert select_method(auc, cost, "torch") == "item_similarity"  # within 10 % of the best, and cheapest
    assert select_method(auc, cost, "torch", tolerance=0.05) == "integrated_gradients"
    assert select_method(auc, cost, "tensorrt", tolerance=0.01) == "occlusion"  # no gradients on an engine
    with pytest.raises(ValueError, match="no measured method"):
        select_method({"attention": 0.5}, {"attention": 1.0}, "tensorrt")


def test_item_similarity_fast_path_matches_the_batched_attributor() -> None:
    from explain.attribution import ItemSimilarity
    from model.sequences import batch_from_states

    model = _marker_model()
    explainer = Explainer(encoder=EagerTorchBackend(model), model=model, vocab=VOCAB, config=model.config)
    assert explainer.method == "item_similarity"
    users = [_user("a", ["i2", "zz", None, "i1", "i3"]), _user("b", ["i5", "i6", "i2", "i3", "i1", "i4", "i7", "i7"])]
    scored = [[ScoredItem("i7", 1.0), ScoredItem("i2", 0.5)], [ScoredItem("i7", 1.0), ScoredItem("i3", 0.5)]]
    fast = explainer.evidence(users, scored)
    batch, encoded = batch_from_states(users, VOCAB, model.config)
    rows = torch.tensor([[7, 2], [7, 3]])
    weights = ItemSimilarity(EagerTorchBackend(model)).attribute(batch, rows)
    for u, rows_u in enumerate(encoded):
        n = min(len(rows_u.items), 6)
        kept = rows_u.kept[len(rows_u.items) - n :].tolist()
        for j in range(2):
            expected = sorted(
                ((i, round(w, 6)) for i, w in zip(kept, weights[u, j, 6 - n :].tolist(), strict=True) if w > 0),
                key=lambda p: (-p[1], -p[0]),
            )[:5]
            assert [i for i, _ in fast[u][j]] == [i for i, _ in expected]
            assert [w for _, w in fast[u][j]] == pytest.approx([w for _, w in expected], abs=1e-5)
    assert [i for i, _ in fast[1][0]] == [4, 7, 6]  # the marker, then the two i7 repeats (tied: newer first)


@pytest.mark.parametrize("with_nan", [False, True])
def test_top_evidence_is_the_strongest_positive_events_newest_first_on_ties(with_nan: bool) -> None:
    torch.manual_seed(0)
    weights = torch.randn(4, 3, 8).round(decimals=1)  # ties and negatives
    kept = torch.arange(8).repeat(4, 1)
    kept[1, :3] = -1  # padding
    if with_nan:
        weights[2, 1, 5] = float("nan")
    sizes = [3, 2, 3, 0]
    explainer = Explainer(max_evidence=4)

    def reference(u: int, k: int) -> list[tuple[int, float]]:  # filter entry by entry, newest first on ties
        pairs = [(int(kept[u, p]), float(weights[u, k, p])) for p in reversed(range(8)) if kept[u, p] >= 0]
        ranked = sorted(pairs, key=lambda ev: -ev[1] if ev[1] == ev[1] else float("-inf"))[:4]
        return [(e, round(w, 6)) for e, w in ranked if w > 0.0]

    top = explainer._top(weights, kept, sizes)
    assert [len(row) for row in top] == sizes
    for u, row in enumerate(top):
        for k, evidence in enumerate(row):
            expected = reference(u, k)
            assert [e for e, _ in evidence] == [e for e, _ in expected]
            assert [w for _, w in evidence] == pytest.approx([w for _, w in expected])
