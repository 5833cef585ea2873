"""Structured reasons (`contracts.Reason`) for one recommended item: only reasons TRUE for this user and item.

Each check reads only this user's own state (`UserState`) and the shared item-side context (`ItemContext`):

    similar_to         the top positive evidence event's item is another item, alike in the model's item space
                       (weight = cosine > 0; without a model: the event's share of the positive attribution)
    category_affinity  the user has a positive decayed affinity to the item's category (weight = its share)
    cart_complement    the item co-occurs with an item in the user's cart (weight = co-occurrence weight)
    search_match       a recent search query shares title tokens with the item (weight = token overlap, Jaccard)
    trending           the item is in the head (top `trending_top`, 20) of the popular list of its category, else
                       of the overall one (weight = 1 - rank / length)
    seen_before        the user already interacted with the item (weight = number of interactions)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter

from contracts import Reason, ReasonKind
from explain.records import reason as _reason
from model.scoring import ItemContext, UserState

__all__ = [
    "ReasonConfig",
    "ReasonIndex",
    "Similarity",
    "UserFacts",
    "item_reasons",
    "similar_candidate",
    "title_tokens",
    "user_reasons",
]

Similarity = Callable[[str, str], float]  # (item a, item b) -> cosine in the model's item space

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_first = itemgetter(0)


class ReasonConfig:
    """Thresholds of the reason checks."""

    def __init__(self, trending_top: int = 20, min_search_overlap: float = 0.2, searches: int = 5) -> None:
        """Args: popular-list prefix that counts as trending; least query/title Jaccard; recent searches read."""
        self.trending_top = trending_top
        self.min_search_overlap = min_search_overlap
        self.searches = searches


def title_tokens(text: str | None) -> frozenset[str]:
    """Lower-cased word tokens of a title or query (tokens shorter than 2 characters dropped)."""
    return frozenset(t for t in _TOKEN.findall((text or "").lower()) if len(t) > 1)


def _rank_weight(ids: list[str], item_id: str) -> float | None:
    """1 - rank / length of `item_id`'s first occurrence in `ids` (a popular list's head), else None."""
    if item_id not in ids:  # membership and `index` scan in C; heads are short (`trending_top`)
        return None
    return 1.0 - ids.index(item_id) / max(1, len(ids))


@dataclass(frozen=True, slots=True)
class UserFacts:
    """Aggregates of one user's state that every item's checks read."""

    seen: Counter[str | None]  # item -> interactions (None: searches, never asked for)
    affinity_total: float  # sum of the positive category affinities
    queries: tuple[tuple[str, frozenset[str]], ...]  # newest searches and their tokens

    @classmethod
    def of(cls, user: UserState, searches: int) -> UserFacts:
        """Compute them from `user`."""
        seen = Counter([e.item_id for e in user.events])  # a list is counted in C; None (searches) is never asked
        total = sum(v for v in user.category_affinity.values() if v > 0.0)
        queries = [e.query for e in reversed(user.events) if e.query][:searches]
        return cls(seen, total, tuple((q, title_tokens(q)) for q in queries))


class ReasonIndex:
    """Memoised item-side lookups for one micro-batch (popular-list heads, each item's category and trending)."""

    def __init__(
        self, items: ItemContext, config: ReasonConfig | None = None, reuse: ReasonIndex | None = None
    ) -> None:
        """Args: the batch's item context; thresholds; an earlier index over the same (frozen) context whose
        item-side memos to share (per-user aggregates are never shared, so concurrent batches stay apart)."""
        self.items = items
        self.config = config or ReasonConfig()
        self._users: dict[int, tuple[UserState, UserFacts]] = {}
        self._seen: dict[int, Reason] = {}
        self._popular: list[str] | None = None  # ids of the head of the overall popular list, on first use
        self._item_side: dict[str, tuple[str | None, Reason | None]]
        self._categories: dict[str, list[str]]  # category -> ids of its popular list's head
        self._titles: dict[str, frozenset[str]]
        if reuse is not None and reuse.items is items and reuse.config is self.config:
            self._popular, self._item_side, self._categories = reuse._popular, reuse._item_side, reuse._categories
            self._titles = reuse._titles
        else:
            self._item_side, self._categories, self._titles = {}, {}, {}

    def user_facts(self, user: UserState) -> UserFacts:
        """Per-user aggregates, computed once per user (the `is` check guards against reused ids)."""
        found = self._users.get(id(user))
        if found is None or found[0] is not user:
            found = (user, UserFacts.of(user, self.config.searches))
            self._users[id(user)] = found
        return found[1]

    def _head(self, ranked: Sequence[tuple[str, float]]) -> list[str]:
        return list(map(_first, ranked[: self.config.trending_top]))

    def popular_rank(self, item_id: str) -> float | None:
        """Rank weight (1 - rank / length) of `item_id` in the head of the overall popular list, else None."""
        if self._popular is None:
            self._popular = self._head(self.items.popular)
        return _rank_weight(self._popular, item_id)

    def category_rank(self, category: str, item_id: str) -> float | None:
        """Rank weight (1 - rank / length) of `item_id` in the head of the category's popular list, else None."""
        ids = self._categories.get(category)
        if ids is None:
            ids = self._categories[category] = self._head(self.items.popular_by_category.get(category) or ())
        return _rank_weight(ids, item_id)

    def item_side(self, item_id: str) -> tuple[str | None, Reason | None]:
        """The item's category and its `trending` reason (None if not trending), once per item and context."""
        found = self._item_side.get(item_id)
        if found is None:
            found = self.prepare((item_id,))[item_id]
        return found

    def prepare(self, item_ids: Iterable[str]) -> dict[str, tuple[str | None, Reason | None]]:
        """`item_side` of all `item_ids` (a batch's recommended items) in one loop; returns the whole memo.

        One pass with the lookups bound once, instead of a chain of method calls per item: with a fresh context
        per micro-batch, every recommended item is looked up here once per batch.
        """
        memo, item_category, by_category = self._item_side, self.items.item_category, self._categories
        popular_by_category, head = self.items.popular_by_category, self._head
        for item_id in item_ids:
            if item_id in memo:
                continue
            category = item_category.get(item_id)
            trending = None
            if category is not None:
                ids = by_category.get(category)
                if ids is None:
                    ids = by_category[category] = head(popular_by_category.get(category) or ())
                if (weight := _rank_weight(ids, item_id)) is not None:
                    trending = _reason(ReasonKind.TRENDING, category, round(weight, 4))
            if trending is None and (weight := self.popular_rank(item_id)) is not None:
                trending = _reason(ReasonKind.TRENDING, "", round(weight, 4))
            memo[item_id] = (category, trending)
        return memo

    def seen_before(self, count: int) -> Reason:
        """The `seen_before` reason of `count` interactions (one instance per count)."""
        found = self._seen.get(count)
        if found is None:
            found = self._seen[count] = _reason(ReasonKind.SEEN_BEFORE, f"{count}x", float(count))
        return found

    def title_tokens(self, item_id: str) -> frozenset[str]:
        """`title_tokens` of the item's catalog title, once per item and context."""
        found = self._titles.get(item_id)
        if found is None:
            found = self._titles[item_id] = title_tokens(self.items.item_title.get(item_id))
        return found

    def cart_neighbours(self, cart: frozenset[str], wanted: Collection[str]) -> dict[str, tuple[float, str]]:
        """neighbour -> (best co-occurrence weight, the cart item it comes from), for the `wanted` neighbours only.

        On ties the first cart item in sorted order wins. Only the recommended items are ever asked for, so the
        scan tests membership in `wanted` (a cheap check) instead of ranking every neighbour of every cart item.
        """
        best: dict[str, tuple[float, str]] = {}
        cooccurring = self.items.cooccurring
        for cart_item in sorted(cart):
            for neighbour, weight in cooccurring.get(cart_item) or ():
                if neighbour in wanted and weight > 0.0 and neighbour != cart_item:
                    found = best.get(neighbour)
                    if found is None or weight > found[0]:
                        best[neighbour] = (weight, cart_item)
        return best


def similar_candidate(user: UserState, item_id: str, evidence: Sequence[tuple[int, float]]) -> tuple[str, float] | None:
    """The item of the strongest positive evidence event on another item than `item_id` (and its weight)."""
    for i, w in evidence:
        other = user.events[i].item_id
        if w > 0.0 and other is not None and other != item_id:
            return other, w
    return None


def _search(title: frozenset[str], queries: UserFacts, least: float) -> Reason | None:
    best: tuple[float, str] | None = None
    for query, words in queries.queries:
        overlap = len(words & title) / len(words | title) if words and title else 0.0
        if overlap >= least and (best is None or overlap > best[0]):
            best = (overlap, query)
    if best is None:
        return None
    return _reason(ReasonKind.SEARCH_MATCH, best[1], round(best[0], 4))


def user_reasons(
    user: UserState,
    rows: Sequence[tuple[str, Sequence[tuple[int, float]]]],
    index: ReasonIndex,
    similarity: Similarity | None = None,
    candidates: Sequence[tuple[str, float] | None] | None = None,
) -> list[list[Reason]]:
    """`item_reasons` for each (item, evidence) of one user: the per-user lookups are done once, not per item.

    Every check runs only when its input exists. Records that recur (`seen_before` per count, `category_affinity`
    per category of this user, `trending` per item) are one shared frozen instance. `candidates`: each row's
    `similar_candidate`, if the caller already has them (the explainer needs them for its cosines first).
    """
    if candidates is None:
        candidates = [similar_candidate(user, item_id, evidence) for item_id, evidence in rows]
    facts = index.user_facts(user)
    seen, queries, affinity = facts.seen, facts.queries, user.category_affinity
    # never from the item itself
    neighbours = index.cart_neighbours(user.cart, {item_id for item_id, _ in rows}) if user.cart else None
    titles, least = index.items.item_title, index.config.min_search_overlap
    sides = index.prepare(item_id for item_id, _ in rows)
    by_category: dict[str, Reason | None] = {}  # this user's affinity reason per category
    out = []
    for (item_id, evidence), candidate in zip(rows, candidates, strict=True):
        category, trending = sides[item_id]
        reasons: list[Reason] = []
        if seen and (count := seen.get(item_id)):
            reasons.append(index.seen_before(count))
        if candidate is not None:
            other, weight = candidate
            if similarity is None:  # no item space (baselines): the evidence item's share of the positive attribution
                strength: float | None = weight / sum(w for _, w in evidence if w > 0.0)
            else:  # the learned item space says whether the two items are actually alike
                strength = similarity(other, item_id)
                if strength <= 0.0:
                    strength = None
            if strength is not None:
                reasons.append(_reason(ReasonKind.SIMILAR_TO, titles.get(other) or other, round(strength, 4)))
        if neighbours and (best := neighbours.get(item_id)) is not None:
            cart_item = best[1]
            reasons.append(_reason(ReasonKind.CART_COMPLEMENT, titles.get(cart_item) or cart_item, round(best[0], 4)))
        if queries and (found := _search(index.title_tokens(item_id), facts, least)) is not None:
            reasons.append(found)
        if category:
            if category not in by_category:
                share = affinity.get(category, 0.0)
                by_category[category] = (
                    _reason(ReasonKind.CATEGORY_AFFINITY, category, round(share / facts.affinity_total, 4))
                    if share > 0.0
                    else None
                )
            if (found := by_category[category]) is not None:
                reasons.append(found)
        if trending is not None:
            reasons.append(trending)
        out.append(reasons)
    return out


def item_reasons(
    user: UserState,
    item_id: str,
    evidence: Sequence[tuple[int, float]],
    items: ItemContext,
    config: ReasonConfig | None = None,
    index: ReasonIndex | None = None,
    similarity: Similarity | None = None,
) -> list[Reason]:
    """Every reason true for `user` and `item_id`, in a fixed kind order (the text picks among them).

    Args:
        user: The user's state (only their own events, cart and affinities are read).
        item_id: The recommended item.
        evidence: (index into `user.events`, signed weight), strongest first.
        items: Shared item-side context.
        config: Thresholds.
        index: Memoised lookups shared by the batch (built here if not given).
        similarity: Cosine of two items in the model's item space; given, `similar_to` needs it > 0 and uses it
            as the weight (else the weight is the evidence item's share of the positive attribution).
    """
    return user_reasons(user, [(item_id, evidence)], index or ReasonIndex(items, config), similarity)[0]
