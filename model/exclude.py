"""Never recommend the item the user is on: a `Scorer` wrapper that drops the item of each user's latest event.

The latest event in a `UserState` is the one that triggered the recommendation (the worker scores a user right
after applying their newest event), so showing its item again is never useful. Every other item the user has
seen stays eligible (repeat-aware scorers keep their earlier items). Used by serving
(`STREAMREC_EXCLUDE_CURRENT_ITEM`, default on) and by the `next-new` offline protocol, whose targets never are
the current item.

Example:
    >>> from datetime import UTC, datetime
    >>> from contracts import EventType
    >>> from model.baselines import RecentItemsScorer
    >>> from model.scoring import ItemContext, PastEvent, UserState
    >>> t, view = datetime(2024, 1, 1, tzinfo=UTC), EventType.VIEW
    >>> user = UserState("u", (PastEvent("e0", "a", view, t), PastEvent("e1", "b", view, t)))
    >>> [s.item_id for s in ExcludeCurrentItem(RecentItemsScorer()).score([user], ItemContext(), k=2)[0]]
    ['a']
"""

from __future__ import annotations

from collections.abc import Sequence

from model.scoring import ItemContext, ScoredItem, Scorer, UserState

__all__ = ["ExcludeCurrentItem", "current_item"]


def current_item(user: UserState) -> str | None:
    """The item of the user's latest event (None without events or when it is a search)."""
    return user.events[-1].item_id if user.events else None


class ExcludeCurrentItem:
    """`inner`'s ranking without each user's current item; asks `inner` for one more item so `k` stay filled."""

    def __init__(self, inner: Scorer) -> None:
        """Args: the scorer whose lists are filtered."""
        self.inner = inner

    @property
    def version(self) -> str:
        """The inner scorer's version (the filter is serving policy, not a different model)."""
        return self.inner.version

    def score(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[ScoredItem]]:
        """Top-`k` of `inner` per user, the current item removed."""
        rows = self.inner.score(users, items, k + 1)
        return [
            [s for s in row if s.item_id != current][:k]
            for row, current in zip(rows, map(current_item, users), strict=True)
        ]
