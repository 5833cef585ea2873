"""Explanation text quotes real catalog titles and only the explained user's own data, whatever the batch holds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts import EventType, Explanation
from explain.explainer import Explainer
from model.backends import EagerTorchBackend
from model.scoring import ItemContext, PastEvent, ScoredItem, UserState
from model.vocab import ItemVocab
from tests.unit.test_explain_attribution import _marker_model

T0 = datetime(2024, 3, 1, 9, tzinfo=UTC)
VOCAB = ItemVocab([f"i{row}" for row in range(1, 10)], capacity=10)
TITLES = {
    "i1": "Brass desk lamp",
    "i2": "Linen lampshade",
    "i3": "Oak side table",
    "i4": "LED bulb pack",
    "i5": "Velvet armchair",
    "i6": "Wool throw blanket",
    "i7": "Reading lamp",
    "i8": "Ceramic vase",
    "i9": "Picture frame",
}
ITEMS = ItemContext(
    popular=[("i7", 9.0), ("i9", 4.0), ("i2", 1.0)],
    popular_by_category={"Lighting": [("i7", 5.0), ("i2", 1.0)], "Decor": [("i9", 2.0)]},
    cooccurring={"i4": [("i7", 0.8)], "i8": [("i9", 0.9), ("i7", 0.2)]},
    item_category={f"i{n}": "Lighting" if n in (1, 2, 4, 7) else "Decor" for n in range(1, 10)},
    item_title=TITLES,
)
SCORED = [ScoredItem("i7", 2.0), ScoredItem("i9", 1.0), ScoredItem("i2", 0.5)]


def _user(user_id: str, items: list[str | None], query: str, cart: str) -> UserState:
    events = tuple(
        PastEvent(
            f"{user_id}-e{n}",
            item,
            EventType.VIEW if item else EventType.SEARCH,
            T0 - timedelta(minutes=10 * (len(items) - n)),
            None if item else query,
        )
        for n, item in enumerate(items)
    )
    return UserState(
        user_id,
        events,
        category_affinity={"Lighting": 2.0, "Decor": 1.0},
        cart=frozenset({cart}),
    )


ALICE = _user("alice", ["i3", "i1", None, "i2"], "alice secret gift idea lamp", "i4")
BOB = _user("bob", ["i5", "i6", None, "i1", "i8"], "bob private reading lamp", "i8")


def _explainer() -> Explainer:
    model = _marker_model()
    return Explainer(encoder=EagerTorchBackend(model), model=model, vocab=VOCAB, config=model.config)


def _quoted(explanation: Explanation) -> list[str]:
    """Everything the text and the reason details quote or name."""
    quoted = re.findall(r"'([^']*)'", explanation.text)
    return quoted + [r.detail for r in explanation.reasons]


def _own(user: UserState) -> set[str]:
    """What may be named for `user`: their items' titles and ids, their cart, their queries, shared category names."""
    items = {e.item_id for e in user.events if e.item_id} | set(user.cart)
    return (
        {TITLES[i] for i in items}
        | items
        | {e.query for e in user.events if e.query}
        | set(ITEMS.item_category.values())
        | {"", "1x", "2x"}
    )


@pytest.mark.parametrize("method", [None, "occlusion"])
def test_text_quotes_only_the_users_own_events_and_catalog_titles(method: str | None) -> None:
    explainer = _explainer() if method is None else Explainer(**{**_explainer_kwargs(), "method": method})
    out = explainer.explain([ALICE, BOB], ITEMS, [SCORED, SCORED])
    for user, other, row in ((ALICE, BOB, out[0]), (BOB, ALICE, out[1])):
        foreign = _own(other) - _own(user)
        assert foreign  # the two users really differ (queries, items, cart)
        for expl in row:
            named = _quoted(expl)
            assert set(named) <= _own(user), (user.user_id, expl.text, named)
            assert not any(f and f in expl.text for f in foreign), (user.user_id, expl.text)
            assert {ev.event_id for ev in expl.evidence} <= {e.event_id for e in user.events}
    # the marker lamp drives the reading lamp for both, quoted by its catalog title, not its id
    assert out[0][0].text.startswith("Because you viewed 'Brass desk lamp' 20 minutes ago")
    assert out[1][0].text.startswith("Because you viewed 'Brass desk lamp' 10 minutes ago")
    assert any("'LED bulb pack' in your cart" in e.text for e in out[0])  # alice's own cart, by title


def _explainer_kwargs() -> dict[str, Any]:
    model = _marker_model()
    return {"encoder": EagerTorchBackend(model), "model": model, "vocab": VOCAB, "config": model.config}


def test_a_users_explanations_do_not_depend_on_who_else_is_in_the_batch() -> None:
    explainer = _explainer()
    together = explainer.explain([BOB, ALICE], ITEMS, [SCORED, SCORED])
    alone = _explainer().explain([ALICE], ITEMS, [SCORED])
    assert together[1] == alone[0]
    # and an explainer that served bob before (memoised item-side lookups) gives alice the same result
    explainer.explain([BOB], ITEMS, [SCORED])
    assert explainer.explain([ALICE], ITEMS, [SCORED]) == alone


def test_item_ids_are_named_only_without_a_title() -> None:
    untitled = ItemContext(item_category=ITEMS.item_category, item_title={"i7": "Reading lamp"})
    out = _explainer().explain([ALICE], untitled, [SCORED])
    assert out[0][0].text.startswith("Because you viewed 'i1' ")  # no catalog title: the id, never another title


def test_batch_text_composes_what_compose_composes() -> None:
    from contracts import ReasonKind
    from explain.records import reason
    from explain.text import BatchText, compose, templates

    t = templates("en")
    cases = [
        [reason(ReasonKind.SEEN_BEFORE, "1x", 1.0)],
        [reason(ReasonKind.SEEN_BEFORE, "2x", 2.0)],
        [reason(ReasonKind.SEEN_BEFORE, "3x", 3.0)],
        [reason(ReasonKind.TRENDING, "", 0.5)],
        [reason(ReasonKind.TRENDING, "Lighting", 0.5)],
        [reason(ReasonKind.CART_COMPLEMENT, "Brass desk lamp", 0.8), reason(ReasonKind.TRENDING, "Decor", 1.0)],
        [reason(ReasonKind.CART_COMPLEMENT, "Brass desk lamp", 0.3)],  # same clause, another weight
        [reason(ReasonKind.SIMILAR_TO, "Oak side table", 0.9)],
        [],
    ]
    text = BatchText(t)
    for _ in range(2):  # the second pass is served from the memo
        for reasons in cases:
            for lead, on_item in (
                (None, False),
                ("Because you viewed 'x' 5 minutes ago", False),
                ("You viewed this", True),
            ):
                assert text.compose(lead, reasons, on_item) == compose(lead, reasons, t, on_item)
