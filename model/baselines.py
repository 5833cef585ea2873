"""Baseline scorers: popularity, repeat-aware recent items, co-occurrence, and a blend of them.

Each implements `model.scoring.Scorer` from `UserState` + `ItemContext` alone (what the streaming worker reads
from the feature store). All filter unavailable and just-purchased items and never filter seen items. Evidence
indices point into `UserState.events`.

Example:
    >>> from datetime import UTC, datetime
    >>> from contracts import EventType
    >>> from model.scoring import ItemContext, PastEvent, UserState
    >>> t, view = datetime(2024, 1, 1, tzinfo=UTC), EventType.VIEW
    >>> user = UserState("u", (PastEvent("e0", "a", view, t), PastEvent("e1", "b", view, t)))
    >>> [s.item_id for s in RecentItemsScorer().score([user], ItemContext(), k=2)[0]]
    ['b', 'a']
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from contracts import EventType, Reason, ReasonKind
from model.candidates import Candidate, Ranker, RankingScorer
from model.cooccurrence import CooccurrenceScorer
from model.recency import RecencyConfig, is_blocked, weight_list
from model.scoring import ItemContext, Pick, ScoredItem, Scorer, UserState

if TYPE_CHECKING:
    from model.evaluate import ScorerFactory

__all__ = [
    "REPEAT_TYPE_WEIGHTS",
    "BlendScorer",
    "CooccurrenceScorer",
    "PopularityScorer",
    "RecentItemsScorer",
    "all_baselines",
    "default_blend",
]

# Repeat-awareness: carted items come back most; a bought item (outside the just-bought filter) less so.
REPEAT_TYPE_WEIGHTS = {
    EventType.VIEW: 1.0,
    EventType.CLICK: 1.0,
    EventType.ADD_TO_CART: 2.0,
    EventType.REMOVE_FROM_CART: -1.0,
    EventType.PURCHASE: 0.5,
    EventType.SEARCH: 0.0,
}
_VERBS = {
    EventType.VIEW: "viewed",
    EventType.CLICK: "clicked",
    EventType.ADD_TO_CART: "carted",
    EventType.REMOVE_FROM_CART: "removed",
    EventType.PURCHASE: "bought",
}


class RecentItemsScorer(RankingScorer):
    """Re-ranks the user's own recent items: sum over their events of recency x event-type weight.

    Summing over events makes frequency count: an item viewed three times beats one viewed once at the same time.
    """

    label = "recent-v1"

    def __init__(self, recency: RecencyConfig | None = None, max_evidence: int = 5) -> None:
        """Args: recency = event weighting (default: `REPEAT_TYPE_WEIGHTS`); max_evidence per item."""
        self._recency = recency or RecencyConfig(type_weights=dict(REPEAT_TYPE_WEIGHTS))
        self._max_evidence = max_evidence

    def rank(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[Candidate]]:
        """Top-`k` of each user's own items (fewer if the user has touched fewer items), explanations deferred."""
        return [self._rank_user(user, items, k) for user in users]

    def _rank_user(self, user: UserState, items: ItemContext, k: int) -> list[Candidate]:
        weights = weight_list(user, self._recency)
        by_item: dict[str, list[tuple[int, float]]] = {}
        for index, event in enumerate(user.events):
            if event.item_id is not None and weights[index] != 0.0:
                by_item.setdefault(event.item_id, []).append((index, weights[index]))
        ranked = []
        for item_id, events in by_item.items():
            total = sum(w for _, w in events)
            if total > 0.0 and not is_blocked(item_id, user, items):
                ranked.append((total, events[-1][0], item_id, events))
        ranked.sort(key=lambda r: (-r[0], -r[1]))  # ties: the more recent item first
        return [
            Candidate(item_id, total, partial(self._explain, Pick(user, items, item_id, total), events))
            for total, _, item_id, events in ranked[:k]
        ]

    def _explain(self, pick: Pick, events: list[tuple[int, float]]) -> ScoredItem:
        counts = Counter(pick.user.events[i].type for i, _ in events)
        detail = "you " + ", ".join(f"{_VERBS.get(t, str(t))} it {n}x" for t, n in counts.most_common())
        evidence = sorted(events, key=lambda e: -e[1])[: self._max_evidence]
        return pick.with_reason(ReasonKind.SEEN_BEFORE, detail, evidence)


class PopularityScorer(RankingScorer):
    """Decayed popularity within the categories of the user's affinity mix, topped up by global popularity.

    score(i) = sum_c share(c) * pop_c(i) / max pop_c + global_weight * pop(i) / max pop, over the user's
    `top_categories` categories (share = normalised affinity). Users without affinity get global popularity.
    """

    label = "popularity-v1"

    def __init__(self, top_categories: int = 3, global_weight: float = 0.25, recency: RecencyConfig | None = None):
        """Args: categories used per user, weight of the global list, event weighting for evidence."""
        self._top_categories = top_categories
        self._global_weight = global_weight
        self._recency = recency or RecencyConfig()

    def rank(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[Candidate]]:
        """Top-`k` popular items per user, explanations deferred."""
        depth = 2 * k + 16  # candidates per list: enough to fill k after filtering
        cache: dict[str | None, list[tuple[str, float]]] = {None: _normalised(items.popular, depth)}
        out = []
        for user in users:
            shares = self._shares(user, items)
            for category in shares:
                if category not in cache:
                    cache[category] = _normalised(items.popular_by_category.get(category, ()), depth)
            out.append(self._rank_user(user, items, shares, cache, k))
        return out

    def _shares(self, user: UserState, items: ItemContext) -> dict[str, float]:
        top = heapq.nlargest(self._top_categories, user.category_affinity.items(), key=_value)  # ties: dict order
        top = [(c, a) for c, a in top if a > 0.0 and c in items.popular_by_category]
        total = sum(a for _, a in top)
        return {c: a / total for c, a in top}

    def _rank_user(
        self,
        user: UserState,
        items: ItemContext,
        shares: dict[str, float],
        cache: dict[str | None, list[tuple[str, float]]],
        k: int,
    ) -> list[Candidate]:
        lists: list[tuple[str | None, float]] = [*shares.items(), (None, self._global_weight if shares else 1.0)]
        # Summed list by list in this order, so each total is the same float as a per-category sum would give.
        totals: dict[str, float] = {}
        get = totals.get
        for category, share in lists:
            for item_id, value in cache[category]:
                totals[item_id] = get(item_id, 0.0) + share * value
        unavailable, bought = items.unavailable, user.purchased_recently
        memo: dict[str, list[tuple[int, float]]] = {}  # evidence by category, built by the first explanation
        picked = []
        for item_id, total in sorted(totals.items(), key=_negated_value):  # stable: ties keep first-seen order
            if item_id not in unavailable and item_id not in bought:
                explain = partial(self._explain, Pick(user, items, item_id, total), lists, cache, memo)
                picked.append(Candidate(item_id, total, explain))
                if len(picked) == k:
                    break
        return picked

    def _evidence(
        self, user: UserState, items: ItemContext, memo: dict[str, list[tuple[int, float]]]
    ) -> dict[str, list[tuple[int, float]]]:
        if not memo:
            memo.update(self._evidence_by_category(user, items))
            memo.setdefault("", [])  # marks the memo as built
        return memo

    def _evidence_by_category(self, user: UserState, items: ItemContext) -> dict[str, list[tuple[int, float]]]:
        """The user's weighted events per category (what made the affinity), strongest first."""
        weights = weight_list(user, self._recency)
        out: dict[str, list[tuple[int, float]]] = {}
        for index, event in enumerate(user.events):
            category = items.item_category.get(event.item_id) if event.item_id is not None else None
            if category is not None and weights[index] > 0.0:
                out.setdefault(category, []).append((index, weights[index]))
        for events in out.values():
            events.sort(key=lambda e: -e[1])
        return out

    def _explain(
        self,
        pick: Pick,
        lists: list[tuple[str | None, float]],
        cache: dict[str | None, list[tuple[str, float]]],
        memo: dict[str, list[tuple[int, float]]],
    ) -> ScoredItem:
        item_id = pick.item_id
        parts: dict[str | None, float] = {}  # the item's contribution per list
        for category, share in lists:
            ranked = cache[category]
            if len(ranked) <= _SCAN or (found := _positions(ranked)) is None:
                for other, value in ranked:
                    if other == item_id:
                        parts[category] = parts.get(category, 0.0) + share * value
            elif (at := found.get(item_id)) is not None:
                parts[category] = share * ranked[at][1]
        by_category = self._evidence(pick.user, pick.items, memo) if len(parts) > 1 or None not in parts else {}
        reasons = []
        evidence: list[tuple[int, float]] = []
        for category, weight in sorted(parts.items(), key=lambda kv: -kv[1]):
            detail = f"popular in {category}" if category is not None else "popular right now"
            reasons.append(Reason(kind=ReasonKind.TRENDING, detail=detail[:512], weight=weight))
            if category is not None:
                evidence.extend(by_category.get(category, ())[:5])
        # Global popularity has no evidence in the user's events; category popularity points at their events there.
        evidence.sort(key=lambda e: -e[1])
        return ScoredItem(item_id=item_id, score=pick.score, evidence=tuple(evidence[:5]), reasons=tuple(reasons))


_SCAN = 8  # lists this short are scanned; longer ones are looked up by position
_POSITIONS: dict[int, tuple[list[tuple[str, float]], dict[str, int] | None]] = {}


def _positions(ranked: list[tuple[str, float]]) -> dict[str, int] | None:
    """item -> position in `ranked` (None when an item repeats), memoised per list object (lists are not mutated)."""
    found = _POSITIONS.get(id(ranked))
    if found is None or found[0] is not ranked:
        index = {item: i for i, (item, _) in enumerate(ranked)}
        if len(_POSITIONS) >= 1024:
            _POSITIONS.clear()
        found = _POSITIONS[id(ranked)] = (ranked, index if len(index) == len(ranked) else None)
    return found[1]


def _value(kv: tuple[str, float]) -> float:
    return kv[1]


def _negated_value(kv: tuple[str, float]) -> float:
    return -kv[1]


def _normalised(ranked: Sequence[tuple[str, float]], depth: int) -> list[tuple[str, float]]:
    head = list(ranked[:depth])
    top = head[0][1] if head and head[0][1] > 0.0 else 1.0
    return [(item, value / top) for item, value in head]


class BlendScorer:
    """Weighted sum of other scorers' per-user max-normalised scores; merges their evidence and reasons.

    With weights falling steeply (e.g. recent 1, co-occurrence 0.3, popularity 0.02) it acts as a fallback chain:
    the lighter scorers mostly fill the list up to `k`.
    """

    def __init__(self, parts: Sequence[tuple[Scorer, float]], depth_factor: int = 1, max_evidence: int = 5) -> None:
        """Args: (scorer, weight) pairs; each part is asked for `depth_factor * k` items."""
        if not parts:
            msg = "BlendScorer needs at least one part"
            raise ValueError(msg)
        self._parts = list(parts)
        self._depth_factor = depth_factor
        self._max_evidence = max_evidence

    @property
    def version(self) -> str:
        """Model version stamped on recommendations."""
        return "blend(" + "+".join(f"{s.version}*{w:g}" for s, w in self._parts) + ")"

    def score(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[ScoredItem]]:
        """Top-`k` items per user by blended score."""
        depth = self._depth_factor * k
        outputs = [_rank(scorer, users, items, depth) for scorer, _ in self._parts]
        return [self._merge([out[u] for out in outputs], k) for u in range(len(users))]

    def _merge(self, lists: list[list[Candidate]], k: int) -> list[ScoredItem]:
        scores: dict[str, float] = {}
        found: dict[str, list[tuple[float, Candidate]]] = {}  # item -> (scale, candidate) per part that has it
        for (_, weight), ranked in zip(self._parts, lists, strict=True):
            top = ranked[0].score if ranked and ranked[0].score > 0.0 else 1.0
            scale = weight / top
            for cand in ranked:
                scores[cand.item_id] = scores.get(cand.item_id, 0.0) + cand.score * scale
                found.setdefault(cand.item_id, []).append((scale, cand))
        best = sorted(scores.items(), key=lambda kv: -kv[1])[:k]
        evidence: dict[str, dict[int, float]] = {}
        reasons: dict[str, list[tuple[float, Reason]]] = {}
        for item_id, _ in best:  # only the winners are explained
            merged = evidence[item_id] = {}
            why = reasons[item_id] = []
            for scale, cand in found[item_id]:
                scored = cand.scored()
                for index, w in scored.evidence:
                    merged[index] = merged.get(index, 0.0) + w * scale
                why.extend((scored.score * scale, r) for r in scored.reasons)
        return [
            ScoredItem(
                item_id=item_id,
                score=total,
                evidence=tuple(sorted(evidence[item_id].items(), key=lambda e: -e[1])[: self._max_evidence]),
                reasons=tuple(r for _, r in sorted(reasons[item_id], key=lambda cr: -cr[0])),
            )
            for item_id, total in best
        ]


def _rank(scorer: Scorer, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[Candidate]]:
    """A part's ranking, lazily explained when it can rank (`Ranker`), else explained eagerly and wrapped."""
    if hasattr(scorer, "rank"):
        ranker: Ranker = scorer  # type: ignore[assignment]
        return ranker.rank(users, items, k)
    return [[Candidate(s.item_id, s.score, partial(_same, s)) for s in row] for row in scorer.score(users, items, k)]


def _same(scored: ScoredItem) -> ScoredItem:
    return scored


def default_blend() -> BlendScorer:
    """Repeat first, then co-occurrence, popularity filling the list.

    Weights chosen on validation windows (Taobao day 7, YooChoose last train day, Beauty LOO validation item):
    best or tied on the repeat-heavy streams; on streams without repeats (Beauty) co-occurrence alone is better.
    """
    recency = RecencyConfig()  # one object: co-occurrence and popularity then share each user's memoised weights
    return BlendScorer(
        [
            (RecentItemsScorer(), 1.0),
            (CooccurrenceScorer(recency=recency), 0.3),
            (PopularityScorer(recency=recency), 0.02),
        ]
    )


def all_baselines() -> dict[str, Scorer | ScorerFactory]:
    """Every baseline by name (`streamrec evaluate --baseline`); the counting ones are factories fitted on a
    split's training events (`model.transitions`, `model.sknn`)."""
    from model.sknn import SessionKnnScorer
    from model.transitions import RepeatThenTransitionsScorer, TransitionScorer

    return {
        "popularity": PopularityScorer(),
        "cooccurrence": CooccurrenceScorer(),
        "recent": RecentItemsScorer(),
        "blend": default_blend(),
        "transitions": lambda train, _: TransitionScorer.fit(train),
        "repeat-transitions": lambda train, _: RepeatThenTransitionsScorer.fit(train),
        "vsknn": lambda train, _: SessionKnnScorer.fit(train),
    }
