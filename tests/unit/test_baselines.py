"""Baseline scorers on tiny hand-built states: rankings, filters, repeat-awareness, evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts import Event, EventType, ReasonKind
from model.baselines import BlendScorer, CooccurrenceScorer, PopularityScorer, RecentItemsScorer, default_blend
from model.interactions import InteractionIndex
from model.scoring import ItemContext, PastEvent, UserState

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _user(*events: tuple[str, EventType], **fields: object) -> UserState:
    # Same timestamp: only position decay (0.9 per newer event) and type weights shape the hand-computed scores.
    past = tuple(PastEvent(f"e{i}", item, kind, T0) for i, (item, kind) in enumerate(events))
    return UserState("u1", past, **fields)  # type: ignore[arg-type]


# e0 view a, e1 view b, e2 view a, e3 cart c, e4 purchase d
USER = _user(
    ("a", EventType.VIEW),
    ("b", EventType.VIEW),
    ("a", EventType.VIEW),
    ("c", EventType.ADD_TO_CART),
    ("d", EventType.PURCHASE),
)


def _ids(scored: list) -> list[str]:  # type: ignore[type-arg]
    return [s.item_id for s in scored]


def test_recent_items_ranks_by_recency_type_and_frequency() -> None:
    # Weights (position decay 0.9): a = .9^4 + .9^2 = 1.466, b = .9^3 = .729,
    # c = 2 * .9 = 1.8 (cart), d = 0.5 (purchase).
    [ranked] = RecentItemsScorer().score([USER], ItemContext(), k=10)
    assert _ids(ranked) == ["c", "a", "b", "d"]
    a = ranked[1]
    assert a.score == pytest.approx(0.9**4 + 0.9**2, rel=1e-4)
    assert [i for i, _ in a.evidence] == [2, 0]  # both views of `a`, strongest (newest) first
    assert a.evidence[0][1] == pytest.approx(0.81, rel=1e-4)
    assert a.reasons[0].kind is ReasonKind.SEEN_BEFORE
    assert "2x" in a.reasons[0].detail


def test_recent_items_filters_just_bought_and_unavailable_but_not_seen() -> None:
    user = UserState("u1", USER.events, purchased_recently=frozenset({"d"}))
    [ranked] = RecentItemsScorer().score([user], ItemContext(unavailable=frozenset({"b"})), k=10)
    assert _ids(ranked) == ["c", "a"]


def test_recent_items_removal_cancels_interest() -> None:
    user = _user(("a", EventType.ADD_TO_CART), ("a", EventType.REMOVE_FROM_CART), ("b", EventType.VIEW))
    [ranked] = RecentItemsScorer().score([user], ItemContext(), k=10)
    assert _ids(ranked) == ["b", "a"]  # a: 2*.81 - .9 = .72 < b: 1
    assert ranked[1].score == pytest.approx(2 * 0.81 - 0.9, rel=1e-4)


COOC = {"a": [("x", 1.0), ("y", 0.5)], "c": [("y", 1.0), ("z", 0.2)]}


def test_cooccurrence_scores_and_explains() -> None:
    items = ItemContext(cooccurring=COOC, item_title={"a": "Alpha", "c": "Cee"})
    [ranked] = CooccurrenceScorer().score([USER], items, k=10)
    # Event weights (type x .9^steps): e0 .6561, e2 .81 (a: 1.4661), e3 3 * .9 = 2.7 (c).
    assert _ids(ranked) == ["y", "x", "z"]
    y, x, z = ranked
    assert y.score == pytest.approx(0.5 * 1.4661 + 2.7, rel=1e-4)
    assert x.score == pytest.approx(1.4661, rel=1e-4)
    assert z.score == pytest.approx(0.54, rel=1e-4)
    assert [i for i, _ in y.evidence] == [3, 2, 0]
    assert y.evidence[0][1] == pytest.approx(2.7, rel=1e-4)
    assert y.evidence[1][1] == pytest.approx(0.405, rel=1e-4)
    assert y.reasons[0].kind is ReasonKind.BOUGHT_TOGETHER and "Cee" in y.reasons[0].detail
    assert x.reasons[0].kind is ReasonKind.SIMILAR_TO and x.reasons[0].detail == "similar to Alpha"
    assert [i for i, _ in x.evidence] == [2, 0]


def test_cooccurrence_filters_and_keeps_seen_items() -> None:
    cooc = {"c": [("a", 2.0), ("x", 1.0)], "a": [("x", 0.1)]}
    user = UserState("u1", USER.events, purchased_recently=frozenset({"d"}))
    [ranked] = CooccurrenceScorer().score([user], ItemContext(cooccurring=cooc, unavailable=frozenset({"x"})), k=5)
    assert _ids(ranked) == ["a"]  # seen item `a` stays eligible; unavailable `x` is filtered


def test_cooccurrence_same_result_from_neighbour_table() -> None:
    events = [
        Event(event_id=f"h{n}", user_id=f"v{n // 2}", item_id=item, type="view", ts=T0 + timedelta(seconds=n))
        for n, item in enumerate(["a", "x", "a", "y", "c", "y", "c", "z", "a", "x"])
    ]
    table = InteractionIndex.build(events).item_context()
    as_dict = ItemContext(cooccurring={item: list(table.cooccurring[item]) for item in table.cooccurring})
    fast = CooccurrenceScorer().score([USER], table, k=10)[0]
    slow = CooccurrenceScorer().score([USER], as_dict, k=10)[0]
    assert len(fast) >= 3
    assert _ids(fast) == _ids(slow)
    assert [s.score for s in fast] == pytest.approx([s.score for s in slow])
    assert [s.evidence for s in fast] == [s.evidence for s in slow]


POP = ItemContext(
    popular=[("p1", 10.0), ("p2", 5.0), ("p3", 1.0)],
    popular_by_category={"shoes": [("s1", 4.0), ("s2", 2.0)]},
    item_category={"a": "shoes", "s1": "shoes", "s2": "shoes"},
)


def test_popularity_follows_affinity_then_global() -> None:
    user = UserState("u1", USER.events, category_affinity={"shoes": 2.0, "hats": 1.0})
    [ranked] = PopularityScorer().score([user], POP, k=10)
    # shoes share 1.0 (hats has no list): s1 1.0, s2 0.5; global weight .25: p1 .25, p2 .125, p3 .025
    assert _ids(ranked) == ["s1", "s2", "p1", "p2", "p3"]
    assert [s.score for s in ranked] == pytest.approx([1.0, 0.5, 0.25, 0.125, 0.025])
    s1 = ranked[0]
    assert s1.reasons[0].kind is ReasonKind.TRENDING and s1.reasons[0].detail == "popular in shoes"
    assert [i for i, _ in s1.evidence] == [2, 0]  # the two views of `a`, the user's shoes events
    assert ranked[2].evidence == () and ranked[2].reasons[0].detail == "popular right now"


def test_popularity_without_affinity_is_global_and_filtered() -> None:
    user = UserState("u1", (), purchased_recently=frozenset({"p1"}))
    [ranked] = PopularityScorer().score([user], POP, k=2)
    assert _ids(ranked) == ["p2", "p3"]


def test_blend_merges_parts_and_evidence() -> None:
    items = ItemContext(cooccurring=COOC, popular=[("p1", 1.0)])
    blend = BlendScorer([(RecentItemsScorer(), 1.0), (CooccurrenceScorer(), 1.0)])
    [ranked] = blend.score([USER], items, k=3)
    # normalised: recent c 1.0, a .81; cooc y 1.0, x .427 -> c, y, a
    assert _ids(ranked) == ["c", "y", "a"]
    assert ranked[0].score == pytest.approx(1.0)
    assert "recent-v1" in blend.version and "cooccurrence-v1" in blend.version


@pytest.mark.parametrize(
    "scorer", [PopularityScorer(), CooccurrenceScorer(), RecentItemsScorer(), default_blend()], ids=lambda s: s.version
)
def test_every_baseline_gives_valid_evidence_and_one_list_per_user(scorer) -> None:  # type: ignore[no-untyped-def]
    items = ItemContext(
        cooccurring=COOC,
        popular=POP.popular,
        popular_by_category=POP.popular_by_category,
        item_category=POP.item_category,
        unavailable=frozenset({"x"}),
    )
    users = [UserState("u1", USER.events, {"shoes": 1.0}, purchased_recently=frozenset({"d"})), _user(), USER]
    out = scorer.score(users, items, k=4)
    assert len(out) == 3
    for user, ranked in zip(users, out, strict=True):
        assert len(ranked) <= 4
        assert len({s.item_id for s in ranked}) == len(ranked)
        assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
        for scored in ranked:
            assert scored.item_id not in items.unavailable | user.purchased_recently
            assert scored.reasons
            for index, _ in scored.evidence:
                assert 0 <= index < len(user.events) and user.events[index].item_id is not None


@pytest.mark.parametrize(
    "scorer", [PopularityScorer(), CooccurrenceScorer(), RecentItemsScorer(), default_blend()], ids=lambda s: s.version
)
def test_a_batch_scores_each_user_as_alone(scorer) -> None:  # type: ignore[no-untyped-def]
    # The scorers rank a whole micro-batch at once (co-occurrence: one numpy pass keyed by user): users sharing
    # items, neighbours and categories must not leak into each other's scores, evidence or reasons.
    cooc = {**COOC, "b": [("x", 0.7), ("z", 0.6)], "d": [("a", 0.3), ("y", 0.2)]}  # no ties: ties go by batch order
    items = ItemContext(cooccurring=cooc, popular=POP.popular, popular_by_category=POP.popular_by_category)
    users = [
        USER,
        _user(("b", EventType.VIEW), ("d", EventType.PURCHASE)),
        UserState("u3", USER.events[:3], {"shoes": 1.0}, purchased_recently=frozenset({"y"})),
        _user(),
        _user(("c", EventType.ADD_TO_CART)),
    ]
    together = scorer.score(users, items, k=4)
    alone = [scorer.score([user], items, k=4)[0] for user in users]
    assert together == alone
    assert any(len(row) >= 3 for row in together)
