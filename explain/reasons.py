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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from contracts import Reason, ReasonKind
from model.scoring import ItemContext, UserState

__all__ = [
    "ReasonConfig",
    "ReasonFact",
    "ReasonIndex",
    "Similarity",
    "UserFacts",
    "item_reasons",
    "reason_facts",
    "similar_candidate",
    "title_tokens",
]

Similarity = Callable[[str, str], float]  # (item a, item b) -> cosine in the model's item space

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


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


class ReasonFact(NamedTuple):
    """A reason before it becomes a `contracts.Reason` (the `Explainer` validates a whole batch in one call)."""

    kind: ReasonKind
    detail: str  # at most 512 characters
    weight: float


def _reason(kind: ReasonKind, detail: str, weight: float) -> ReasonFact:
    return ReasonFact(kind, detail[:512], float(weight))


def _label(item_id: str, items: ItemContext) -> str:
    return items.item_title.get(item_id) or item_id


def _rank_weights(ranked: Sequence[tuple[str, float]], top: int) -> dict[str, float]:
    """item -> 1 - rank / length over the first `top` entries (first occurrence wins)."""
    head = list(ranked[:top])
    n = max(1, len(head))
    return {item: 1.0 - rank / n for rank, (item, _) in reversed(list(enumerate(head)))}  # earlier rank wins


@dataclass(frozen=True, slots=True)
class UserFacts:
    """Aggregates of one user's state that every item's checks read."""

    seen: Counter[str]  # item -> interactions
    affinity_total: float  # sum of the positive category affinities
    queries: tuple[tuple[str, frozenset[str]], ...]  # newest searches and their tokens

    @classmethod
    def of(cls, user: UserState, searches: int) -> UserFacts:
        """Compute them from `user`."""
        seen = Counter(e.item_id for e in user.events if e.item_id is not None)
        total = sum(v for v in user.category_affinity.values() if v > 0.0)
        queries = [e.query for e in reversed(user.events) if e.query][:searches]
        return cls(seen, total, tuple((q, title_tokens(q)) for q in queries))


class ReasonIndex:
    """Memoised item-side lookups for one micro-batch (popular ranks, per-category ranks, cart neighbours)."""

    def __init__(
        self, items: ItemContext, config: ReasonConfig | None = None, reuse: ReasonIndex | None = None
    ) -> None:
        """Args: the batch's item context; thresholds; an earlier index over the same (frozen) context whose
        item-side memos to share (per-user aggregates are never shared, so concurrent batches stay apart)."""
        self.items = items
        self.config = config or ReasonConfig()
        self._users: dict[int, tuple[UserState, UserFacts]] = {}
        self.popular: dict[str, float]
        self._carts: dict[frozenset[str], dict[str, tuple[float, str]]]
        self._item_side: dict[str, tuple[str | None, ReasonFact | None]]
        self._categories: dict[str, dict[str, float]] = {}  # per batch: categories are few, lists short
        if reuse is not None and reuse.items is items and reuse.config is self.config:
            self.popular, self._carts = reuse.popular, reuse._carts
            self._item_side, self._categories = reuse._item_side, reuse._categories
        else:
            self.popular, self._carts = _rank_weights(items.popular, self.config.trending_top), {}
            self._item_side = {}

    def user_facts(self, user: UserState) -> UserFacts:
        """Per-user aggregates, computed once per user (the `is` check guards against reused ids)."""
        found = self._users.get(id(user))
        if found is None or found[0] is not user:
            found = (user, UserFacts.of(user, self.config.searches))
            self._users[id(user)] = found
        return found[1]

    def category_rank(self, category: str, item_id: str) -> float | None:
        """Rank weight (1 - rank / length) of `item_id` in the head of the category's popular list, else None."""
        ranks = self._categories.get(category)
        if ranks is None:
            ranks = self._categories[category] = _rank_weights(
                self.items.popular_by_category.get(category) or (), self.config.trending_top
            )
        return ranks.get(item_id)

    def item_side(self, item_id: str) -> tuple[str | None, ReasonFact | None]:
        """The item's category and its `trending` reason (None if not trending), once per item and context."""
        found = self._item_side.get(item_id)
        if found is None:
            trending = _trending(item_id, self)
            found = self._item_side[item_id] = (
                self.items.item_category.get(item_id),
                trending[0] if trending else None,
            )
        return found

    def cart_neighbours(self, cart: frozenset[str]) -> dict[str, tuple[float, str]]:
        """neighbour -> (best co-occurrence weight, the cart item it comes from)."""
        if cart not in self._carts:
            best: dict[str, tuple[float, str]] = {}
            for cart_item in sorted(cart):
                for neighbour, weight in self.items.cooccurring.get(cart_item) or ():
                    fresh = neighbour not in best or weight > best[neighbour][0]
                    if weight > 0.0 and neighbour != cart_item and fresh:
                        best[neighbour] = (weight, cart_item)
            self._carts[cart] = best
        return self._carts[cart]


def similar_candidate(user: UserState, item_id: str, evidence: Sequence[tuple[int, float]]) -> tuple[str, float] | None:
    """The item of the strongest positive evidence event on another item than `item_id` (and its weight)."""
    for i, w in evidence:
        other = user.events[i].item_id
        if w > 0.0 and other is not None and other != item_id:
            return other, w
    return None


def _similar(
    user: UserState,
    item_id: str,
    evidence: Sequence[tuple[int, float]],
    items: ItemContext,
    similarity: Similarity | None,
) -> list[ReasonFact]:
    found = similar_candidate(user, item_id, evidence)
    if found is None:
        return []
    other, weight = found
    if similarity is None:  # no item space (baselines): the evidence item's share of the positive attribution
        strength = weight / sum(w for _, w in evidence if w > 0.0)
    else:  # the learned item space says whether the two items are actually alike
        strength = similarity(other, item_id)
        if strength <= 0.0:
            return []
    return [_reason(ReasonKind.SIMILAR_TO, _label(other, items)[:512], round(strength, 4))]


def _category(user: UserState, category: str | None, facts: UserFacts) -> list[ReasonFact]:
    affinity = user.category_affinity.get(category, 0.0) if category else 0.0
    if affinity <= 0.0 or category is None:
        return []
    share = affinity / facts.affinity_total
    return [_reason(ReasonKind.CATEGORY_AFFINITY, category[:512], round(share, 4))]


def _cart(user: UserState, item_id: str, index: ReasonIndex) -> list[ReasonFact]:
    items = index.items
    best = index.cart_neighbours(user.cart).get(item_id) if user.cart else None  # never from the item itself
    if best is None:
        return []
    return [_reason(ReasonKind.CART_COMPLEMENT, _label(best[1], items)[:512], round(best[0], 4))]


def _search(item_id: str, items: ItemContext, config: ReasonConfig, facts: UserFacts) -> list[ReasonFact]:
    if not facts.queries:
        return []
    title = title_tokens(items.item_title.get(item_id))
    best: tuple[float, str] | None = None
    for query, words in facts.queries:
        overlap = len(words & title) / len(words | title) if words and title else 0.0
        if overlap >= config.min_search_overlap and (best is None or overlap > best[0]):
            best = (overlap, query)
    if best is None:
        return []
    return [_reason(ReasonKind.SEARCH_MATCH, best[1][:512], round(best[0], 4))]


def _trending(item_id: str, index: ReasonIndex) -> list[ReasonFact]:
    category = index.items.item_category.get(item_id)
    if category is not None:
        weight = index.category_rank(category, item_id)
        if weight is not None:
            return [_reason(ReasonKind.TRENDING, category[:512], round(weight, 4))]
    weight = index.popular.get(item_id)
    if weight is None:
        return []
    return [_reason(ReasonKind.TRENDING, "", round(weight, 4))]


def _seen(item_id: str, facts: UserFacts) -> list[ReasonFact]:
    seen = facts.seen.get(item_id, 0)
    if not seen:
        return []
    return [_reason(ReasonKind.SEEN_BEFORE, f"{seen}x", float(seen))]


def reason_facts(
    user: UserState,
    item_id: str,
    evidence: Sequence[tuple[int, float]],
    index: ReasonIndex,
    similarity: Similarity | None = None,
) -> list[ReasonFact]:
    """`item_reasons` as plain `ReasonFact`s (no record validation), for the batch path of the `Explainer`."""
    items, facts = index.items, index.user_facts(user)
    category, trending = index.item_side(item_id)
    out = _seen(item_id, facts) if facts.seen else []
    out += _similar(user, item_id, evidence, items, similarity) if evidence else []
    out += _cart(user, item_id, index) if user.cart else []
    out += _search(item_id, items, index.config, facts) if facts.queries else []
    out += _category(user, category, facts) if category else []
    return [*out, trending] if trending is not None else out


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
    index = index or ReasonIndex(items, config)
    return [
        Reason(kind=f.kind, detail=f.detail, weight=f.weight)
        for f in reason_facts(user, item_id, evidence, index, similarity)
    ]
