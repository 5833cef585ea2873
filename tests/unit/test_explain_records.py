"""Records the explainer builds without validation are exactly what pydantic would build, and satisfy the contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, Field, PrivateAttr

from contracts import EventType, Evidence, Explanation, Reason, ReasonKind
from explain.explainer import Explainer
from explain.records import DETAIL_MAX, _plain, construct, reason
from model.backends import EagerTorchBackend
from model.baselines import RecentItemsScorer
from model.scoring import ItemContext, PastEvent, ScoredItem, UserState
from model.vocab import ItemVocab
from tests.unit.test_explain_attribution import _marker_model

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
LONG = "Very long title " * 50  # 800 characters: over the 512 of `Reason.detail`


def _state(record: BaseModel) -> dict[str, object]:
    return dict(record.__getstate__())


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (Evidence, {"event_id": "e1", "item_id": "i1", "type": EventType.VIEW, "ts": T0, "weight": 0.25}),
        (Evidence, {"event_id": "e2", "item_id": None, "type": EventType.SEARCH, "ts": T0, "weight": 1.0}),
        (Reason, {"kind": ReasonKind.TRENDING, "detail": "", "weight": 0.5}),
        (Explanation, {"evidence": [], "reasons": [], "text": "Recommended for you"}),
    ],
)
def test_construct_sets_the_state_model_construct_sets(cls: type[BaseModel], fields: dict[str, Any]) -> None:
    built = construct(cls, dict(fields))
    assert _state(built) == _state(cls.model_construct(**fields))
    assert built == cls.model_validate(fields)
    assert _state(cls.model_validate(built.model_dump())) == _state(built)
    assert built.model_dump_json() == cls.model_validate(fields).model_dump_json()
    assert built.model_fields_set == set(fields)


def test_reason_clips_its_detail_to_the_contract() -> None:
    long = reason(ReasonKind.SIMILAR_TO, LONG, 1)
    assert len(long.detail) == DETAIL_MAX and isinstance(long.weight, float)
    assert Reason.model_validate(long.model_dump()) == long
    with pytest.raises(ValueError, match="at most 512"):
        Reason.model_validate({"kind": "similar_to", "detail": LONG, "weight": 1.0})  # why the clip matters


def test_only_plain_models_can_be_constructed() -> None:
    class Aliased(BaseModel):
        x: int = Field(alias="y")

    class Private(BaseModel):
        x: int
        _cache: int = PrivateAttr(default=0)

    for cls in (Aliased, Private):
        with pytest.raises(TypeError, match="not a plain model"):
            _plain(cls)
    assert _plain(Evidence) is Evidence


def _users() -> list[UserState]:
    t = [T0 + timedelta(minutes=n) for n in range(6)]
    alice = UserState(
        "alice",
        (
            PastEvent("a0", "i2", EventType.VIEW, t[0]),
            PastEvent("a1", None, EventType.SEARCH, t[1], query="lamp " + LONG),
            PastEvent("a2", "i1", EventType.ADD_TO_CART, t[2]),
            PastEvent("a3", "i3", EventType.VIEW, t[3]),
            PastEvent("a4", "zz", EventType.VIEW, t[4]),  # unknown to the model
        ),
        category_affinity={"Lighting": 2.0, "Other": -1.0},
        cart=frozenset({"i1"}),
    )
    bob = UserState(
        "bob", (PastEvent("b0", "i7", EventType.PURCHASE, t[0]), PastEvent("b1", "i1", EventType.VIEW, t[5]))
    )
    return [alice, bob, UserState("empty", ())]


ITEMS = ItemContext(
    popular=[("i7", 3.0), ("i9", 1.0)],
    popular_by_category={"Lighting": [("i7", 2.0)]},
    cooccurring={"i1": [("i7", 0.6), ("i9", 0.2)]},
    item_category={"i1": "Lighting", "i7": "Lighting", "i9": "Decor " + LONG},
    item_title={"i1": LONG, "i7": "Target lamp", "i9": "lamp " + LONG},
)


@pytest.mark.parametrize("method", [None, "occlusion", "baseline"])
def test_every_produced_record_validates_against_the_contract(method: str | None) -> None:
    users = _users()
    if method == "baseline":
        explainer = Explainer()
        scored = RecentItemsScorer().score(users, ITEMS, k=3)
    else:
        model = _marker_model()
        vocab = ItemVocab([f"i{row}" for row in range(1, 10)], capacity=10)
        backend = EagerTorchBackend(model)
        explainer = Explainer(encoder=backend, model=model, vocab=vocab, config=model.config, method=method)
        scored = [[ScoredItem("i7", 2.0), ScoredItem("i9", 1.0), ScoredItem("i1", 0.5)] for _ in users]
    out = explainer.explain(users, ITEMS, scored)
    records = [expl for row in out for expl in row]
    assert sum(len(e.evidence) for e in records) > 0 and sum(len(e.reasons) for e in records) > 0
    kinds = {r.kind for e in records for r in e.reasons}
    assert len(kinds) >= 3  # several reason builders are exercised, not just one
    for expl in records:
        again = Explanation.model_validate(expl.model_dump())  # the full contract validation, nested records too
        assert again == expl and _state(again) == _state(expl)
        assert Explanation.model_validate_json(expl.model_dump_json()) == expl
        for ev in expl.evidence:
            assert _state(Evidence.model_validate(ev.model_dump())) == _state(ev)
            assert type(ev.weight) is float


def test_constructed_records_share_one_fields_set_that_copies_do_not_touch() -> None:
    one = reason(ReasonKind.TRENDING, "Lighting", 0.5)
    two = reason(ReasonKind.SEEN_BEFORE, "2x", 2.0)
    assert one.model_fields_set == two.model_fields_set == set(Reason.model_fields)
    copied = one.model_copy(update={"weight": 0.25})
    assert copied.weight == 0.25 and one.weight == 0.5
    assert copied.model_fields_set is not one.model_fields_set  # pydantic copies the set it would add to
    assert two.model_fields_set == set(Reason.model_fields)
    assert two.model_dump(exclude_unset=True) == Reason.model_validate(two.model_dump()).model_dump(exclude_unset=True)


def test_only_frozen_models_can_be_constructed() -> None:
    class Mutable(BaseModel):  # a shared fields set would see pydantic's `add` on assignment
        x: int

    with pytest.raises(TypeError, match="not a plain model"):
        _plain(Mutable)
