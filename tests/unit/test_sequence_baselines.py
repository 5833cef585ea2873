"""The counting baselines (transitions, repeat-then-transitions, V-SKNN) on a hand-made sequence set: exact lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts import Event, EventType
from model.exclude import ExcludeCurrentItem
from model.scoring import ItemContext, PastEvent, ScoredItem, UserState
from model.sknn import SessionKnnScorer
from model.transitions import RepeatThenTransitionsScorer, TransitionScorer

T0 = datetime(2024, 5, 1, tzinfo=UTC)
# Training sequences, oldest first: u1 a b c | u2 a b d | u3 b c c e (the c -> c re-click is no transition) | u4 x a
SEQUENCES = {"u1": "abc", "u2": "abd", "u3": "bcce", "u4": "xa"}
# Vocabulary by count, then id: a(3) b(3) c(3) d e x. Transitions: a->b 2, b->c 2, b->d 1, c->e 1, x->a 1.
POPULAR = ItemContext(popular=[("e", 5.0), ("c", 4.0), ("x", 1.0)])


def _events() -> list[Event]:
    out = []
    for n, (user, items) in enumerate(SEQUENCES.items()):
        for m, item in enumerate(items):
            ts = T0 + timedelta(hours=10 * n, minutes=m)
            out.append(Event(event_id=f"{user}-{m}", user_id=user, item_id=item, type="view", ts=ts))
    return out


def _user(items: str, **fields: object) -> UserState:
    past = tuple(
        PastEvent(f"q{i}", item, EventType.VIEW, T0 + timedelta(days=9, minutes=i)) for i, item in enumerate(items)
    )
    return UserState("q", past, **fields)  # type: ignore[arg-type]


def _ids(rows: list[list[ScoredItem]]) -> list[str]:
    [row] = rows
    return [s.item_id for s in row]


USER = _user("xab")  # current item b; context b (1), a (.5), x (.25)


def test_transitions_exact_ranking_decay_and_popularity_back_off() -> None:
    scorer = TransitionScorer.fit(_events())
    [row] = scorer.score([USER], POPULAR, k=10)
    # c = 1 * C[b,c] = 2; b = .5 * C[a,b] = 1 and d = 1 * C[b,d] = 1 (tie: b is more frequent); a = .25 * C[x,a]
    assert [s.item_id for s in row] == ["c", "b", "d", "a", "e", "x"]  # then popularity: e, (c taken), x
    assert [s.score for s in row] == pytest.approx([2.0, 1.0, 1.0, 0.25, 0.0, 0.0])
    assert row[0].evidence == ((2, 2.0),)  # the event of b (index 2) contributed all of c's score
    assert row[1].evidence == ((1, 1.0),)
    assert _ids(ExcludeCurrentItem(scorer).score([USER], POPULAR, k=10)) == ["c", "d", "a", "e", "x"]
    assert _ids(scorer.score([USER], POPULAR, k=2)) == ["c", "b"]


def test_transitions_only_last_five_distinct_items_count_and_filters_apply() -> None:
    scorer = TransitionScorer.fit(_events())
    # context (distinct, newest first): b a c d e; x is the 6th and drops out
    far = _user("xedcab")
    ranked = _ids(scorer.score([far], ItemContext(), k=10))
    # b -> c 2, d 1; a (.5) -> b 1; c (.25) -> e .25; d, e lead nowhere; x (6th) is ignored, so a gets nothing
    assert ranked == ["c", "b", "d", "e"]
    blocked = _user("xab", purchased_recently=frozenset({"c"}))
    assert _ids(scorer.score([blocked], ItemContext(unavailable=frozenset({"d"})), k=10)) == ["b", "a"]


def test_repeat_then_transitions_exact_ranking() -> None:
    scorer = RepeatThenTransitionsScorer.fit(_events())
    [row] = scorer.score([USER], POPULAR, k=10)
    # own earlier items newest first without the current b: a, x; then transitions without those: c, d; popular e
    assert [s.item_id for s in row] == ["a", "x", "c", "d", "e"]
    assert [s.score for s in row] == sorted((s.score for s in row), reverse=True)
    assert row[0].evidence == ((1, 1.0),)
    assert _ids(scorer.score([_user("aba")], POPULAR, k=10)) == ["b", "c", "d", "e", "x"]  # a is current


def test_vsknn_exact_ranking() -> None:
    scorer = SessionKnnScorer.fit(_events())
    # s = x a b: weights x 1/3, a 2/3, b 1; sims u1 = u2 = (2/3 + 1)/3, u3 = 1/3, u4 = 1/sqrt(6);
    # newest shared item: b for u1-u3 (1/1), a for u4 (1/2)
    sim12, sim3, sim4 = 5 / 9, 1 / 3, 1 / 6**0.5
    [row] = scorer.score([USER], POPULAR, k=10)
    assert [s.item_id for s in row] == ["b", "a", "c", "d", "e", "x"]
    expected = [2 * sim12 + sim3, 2 * sim12 + sim4 / 2, sim12 + sim3, sim12, sim3, sim4 / 2]
    assert [s.score for s in row] == pytest.approx(expected)
    assert _ids(ExcludeCurrentItem(scorer).score([USER], POPULAR, k=10)) == ["a", "c", "d", "e", "x"]


def test_vsknn_k_neighbours_and_recent_sampling() -> None:
    events = _events()
    # k = 2: only u1 and u2 (tied, older first): a = b = 2 * 5/9, c = d = 5/9 (ties by frequency), then popularity
    assert _ids(SessionKnnScorer.fit(events, k=2).score([USER], POPULAR, k=10)) == ["a", "b", "c", "d", "e", "x"]
    # 2 sampled sessions: the most recent candidates u3, u4 only: b = c = e = 1/3, then a = x = 1/(2 sqrt 6)
    sampled = SessionKnnScorer.fit(events, sample_size=2)
    assert _ids(sampled.score([USER], ItemContext(), k=10)) == ["b", "c", "e", "a", "x"]
    assert _ids(sampled.score([_user("zz")], POPULAR, k=2)) == ["e", "c"]  # unknown items: popularity only
