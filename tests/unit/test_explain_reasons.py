"""Reasons are attached only when true for this user and item; the text is templated, relative and private."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts import EventType, Reason, ReasonKind
from explain.reasons import item_reasons, title_tokens
from explain.text import TEMPLATES, Lead, explanation_text, relative_time
from model.scoring import ItemContext, PastEvent, UserState

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
ITEMS = ItemContext(
    popular=[("hot", 9.0), ("shoe", 5.0)],
    popular_by_category={"Outdoor": [("tent", 3.0), ("shoe", 2.0)]},
    cooccurring={"socks": [("shoe", 0.7), ("tent", 0.1)]},
    item_category={"shoe": "Outdoor", "tent": "Outdoor", "socks": "Apparel", "mug": "Kitchen", "hot": "Kitchen"},
    item_title={"shoe": "Trail running shoes", "socks": "Wool socks", "tent": "Dome tent", "mug": "Coffee mug"},
)


def _user() -> UserState:
    events = (
        PastEvent("e0", "tent", EventType.VIEW, T0 - timedelta(hours=2)),
        PastEvent("e1", None, EventType.SEARCH, T0 - timedelta(hours=1), query="running shoes"),
        PastEvent("e2", "socks", EventType.ADD_TO_CART, T0 - timedelta(minutes=5)),
    )
    return UserState("u1", events, category_affinity={"Outdoor": 3.0, "Apparel": 1.0}, cart=frozenset({"socks"}))


def _kinds(reasons: list[Reason]) -> set[ReasonKind]:
    return {r.kind for r in reasons}


def test_every_true_reason_and_nothing_else() -> None:
    reasons = item_reasons(_user(), "shoe", [(2, 0.8), (0, 0.1)], ITEMS)
    assert _kinds(reasons) == {
        ReasonKind.SIMILAR_TO,
        ReasonKind.CART_COMPLEMENT,
        ReasonKind.SEARCH_MATCH,
        ReasonKind.CATEGORY_AFFINITY,
        ReasonKind.TRENDING,
    }
    by_kind = {r.kind: r for r in reasons}
    assert by_kind[ReasonKind.SIMILAR_TO].detail == "Wool socks"
    assert by_kind[ReasonKind.CART_COMPLEMENT].weight == 0.7
    assert by_kind[ReasonKind.CATEGORY_AFFINITY].weight == 0.75  # 3 of 4 affinity
    assert by_kind[ReasonKind.SEARCH_MATCH].detail == "running shoes"
    assert by_kind[ReasonKind.TRENDING].detail == "Outdoor"


def test_false_reasons_are_absent() -> None:
    # mug: not in the cart's neighbours, no affinity to Kitchen, no title overlap, not popular, never seen.
    assert item_reasons(_user(), "mug", [], ITEMS) == []
    # no positive evidence -> no similar_to; evidence on the item itself is a repeat, not similarity.
    assert ReasonKind.SIMILAR_TO not in _kinds(item_reasons(_user(), "tent", [(0, 0.9)], ITEMS))
    assert ReasonKind.SIMILAR_TO not in _kinds(item_reasons(_user(), "shoe", [(2, -0.5)], ITEMS))


def test_seen_before_counts_the_users_own_interactions() -> None:
    reasons = item_reasons(_user(), "tent", [], ITEMS)
    seen = [r for r in reasons if r.kind is ReasonKind.SEEN_BEFORE]
    assert len(seen) == 1 and seen[0].weight == 1.0
    assert ReasonKind.SEEN_BEFORE not in _kinds(item_reasons(_user(), "shoe", [], ITEMS))


def test_title_tokens() -> None:
    assert title_tokens("Trail-running Shoes, size 9") == frozenset({"trail", "running", "shoes", "size"})
    assert title_tokens(None) == frozenset()


def test_relative_time_uses_the_trigger_time() -> None:
    en = TEMPLATES["en"]
    assert relative_time(T0 - timedelta(minutes=5), T0, en) == "5 minutes ago"
    assert relative_time(T0 - timedelta(hours=1, minutes=3), T0, en) == "1 hour ago"
    assert relative_time(T0 - timedelta(days=3), T0, en) == "3 days ago"
    assert relative_time(T0 - timedelta(seconds=20), T0, en) == "just now"
    assert relative_time(T0 + timedelta(minutes=1), T0, en) == "just now"  # clock skew never goes negative


def test_text_example_and_determinism() -> None:
    lead = Lead(EventType.ADD_TO_CART, "Trail running shoes", T0 - timedelta(minutes=5))
    trending = Reason(kind=ReasonKind.TRENDING, detail="Outdoor", weight=0.5)
    text = explanation_text(lead, [trending], T0)
    assert text == "Because you added 'Trail running shoes' to your cart 5 minutes ago; popular in Outdoor right now"
    assert explanation_text(lead, [trending], T0) == text
    assert explanation_text(None, [], T0) == "Recommended for you"
    assert explanation_text(None, [trending], T0) == "Popular in Outdoor right now"
    assert explanation_text(lead, [], T0, language="xx").startswith("Because you added")  # English fallback


def test_search_lead_quotes_the_users_query() -> None:
    lead = Lead(EventType.SEARCH, "running shoes", T0 - timedelta(hours=1))
    assert explanation_text(lead, [], T0) == "Because you searched for 'running shoes' 1 hour ago"


def test_similar_to_with_an_item_space_needs_a_positive_cosine() -> None:
    def alike(a: str, b: str) -> float:
        return 0.6 if {a, b} == {"socks", "shoe"} else -0.2

    reasons = item_reasons(_user(), "shoe", [(2, 0.8)], ITEMS, similarity=alike)
    similar = [r for r in reasons if r.kind is ReasonKind.SIMILAR_TO]
    assert len(similar) == 1 and similar[0].weight == 0.6 and similar[0].detail == "Wool socks"
    # the evidence item drove the score but is not alike in item space: no similar_to claim
    assert ReasonKind.SIMILAR_TO not in _kinds(item_reasons(_user(), "tent", [(2, 0.8)], ITEMS, similarity=alike))
