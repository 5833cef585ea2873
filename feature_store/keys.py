"""The Redis key layout (spec: `feature_store/KEYS.md`), built here and nowhere else.

Hash tags keep every key one Lua script touches in one Redis Cluster slot: user keys share `{u:<user>}`, an
item's catalog entry `{i:<item>}`, co-occurrence lists one of `CO_BUCKETS` tags `{co:<bucket>}` (so a micro-batch
updates them with one script per bucket, not one per item), the popularity keys `{pop}`, and `{catalog}` holds
the unavailable set.

Ids are escaped inside a hash tag (`%` → `%25`, `{` → `%7B`, `}` → `%7D`), so a tag always ends where the id ends:
the layout is injective (no two different (user, key) pairs give one string; `tests/unit/test_feature_store_keys.py`)
and all keys of one user share one slot whatever the id holds. Ids without those three characters are unchanged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = ["CO_BUCKETS", "KEY_LAYOUT_VERSION", "USER_KEY_SUFFIXES", "Keys", "cooccurrence_bucket", "tag_safe"]

KEY_LAYOUT_VERSION = "v4"
CO_BUCKETS = 16  # part of the layout: changing it moves every co-occurrence list (bump the version)


# The keys of one user (one slot), in the user script's order.
USER_KEY_SUFFIXES = ("events", "items", "ids", "offsets", "affinity", "cart", "purchased", "session", "stats")
_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def tag_safe(value: str) -> str:
    """`value` escaped for use inside a hash tag (no `{` or `}` left; `%` escaped so decoding is unique)."""
    if "%" in value or "{" in value or "}" in value:
        return value.translate(_ESCAPES)
    return value


def cooccurrence_bucket(item_id: str) -> int:
    """The co-occurrence bucket of an item: CRC-32 of its UTF-8 bytes modulo `CO_BUCKETS`."""
    return zlib.crc32(item_id.encode()) % CO_BUCKETS


@dataclass(frozen=True)
class Keys:
    """Key builder for one deployment; `namespace` separates deployments sharing a Redis."""

    namespace: str = "sr"

    def __post_init__(self) -> None:
        """A namespace with a brace would move the hash tag off the id."""
        if "{" in self.namespace or "}" in self.namespace:
            msg = f"key namespace may not contain '{{' or '}}': {self.namespace!r}"
            raise ValueError(msg)

    @property
    def _root(self) -> str:
        return f"{self.namespace}:{KEY_LAYOUT_VERSION}"

    def _user(self, user_id: str, suffix: str) -> str:
        return f"{self._root}:{{u:{tag_safe(user_id)}}}:{suffix}"

    def _item(self, item_id: str, suffix: str) -> str:
        return f"{self._root}:{{i:{tag_safe(item_id)}}}:{suffix}"

    def user_all(self, user_id: str) -> list[str]:
        """Every key of a user, in the order `lua/apply_user_events.lua` takes them."""
        return [self._user(user_id, suffix) for suffix in USER_KEY_SUFFIXES]

    def user_events(self, user_id: str) -> str:
        """List: the user's last N events as JSON, newest first."""
        return self._user(user_id, "events")

    def user_items(self, user_id: str) -> str:
        """List: the item id of each of those events ('' for a search), newest first (partners without JSON)."""
        return self._user(user_id, "items")

    def user_ids(self, user_id: str) -> str:
        """List: per event of `events`, its id and co-occurrence partners joined by `\\x1f`, newest first."""
        return self._user(user_id, "ids")

    def user_offsets(self, user_id: str) -> str:
        """Hash: source (`topic:partition`) -> offset of the newest of the user's events applied from it."""
        return self._user(user_id, "offsets")

    def user_affinity(self, user_id: str) -> str:
        """Hash: category -> "value:ref_ts", a decayed affinity anchored at ref_ts."""
        return self._user(user_id, "affinity")

    def user_cart(self, user_id: str) -> str:
        """Sorted set: item now in the cart -> time it was added (epoch seconds), newest `cart_cap` kept."""
        return self._user(user_id, "cart")

    def user_purchased(self, user_id: str) -> str:
        """Sorted set: purchased item -> purchase time (epoch seconds), last 50."""
        return self._user(user_id, "purchased")

    def user_session(self, user_id: str) -> str:
        """Hash: session_id, last_ts."""
        return self._user(user_id, "session")

    def user_stats(self, user_id: str) -> str:
        """Hash: applied (events applied) and type:<type> counts; exact, for audits and tests."""
        return self._user(user_id, "stats")

    def cooccurrence_offsets(self, bucket: int) -> str:
        """Hash: source -> offset of the newest event whose increments on this bucket's items were applied."""
        return f"{self._root}:{{co:{bucket}}}:offsets"

    def item_cooccurrence(self, item_id: str) -> str:
        """Sorted set: neighbour item -> co-occurrence weight (in the item's co-occurrence bucket)."""
        return f"{self._root}:{{co:{cooccurrence_bucket(item_id)}}}:n:{item_id}"

    def item_meta(self, item_id: str) -> str:
        """Hash: title, category, price, brand, available, ts (catalog)."""
        return self._item(item_id, "meta")

    def unavailable(self) -> str:
        """Set: items whose newest catalog version is unavailable (filtering without reading every item's meta)."""
        return f"{self._root}:{{catalog}}:unavailable"

    def popularity_offsets(self) -> str:
        """Hash: source -> offset of the newest event whose popularity was added."""
        return f"{self._root}:{{pop}}:offsets"

    def popularity(self) -> str:
        """Sorted set: item -> decayed popularity, scaled by exp((ts - epoch) / tau)."""
        return f"{self._root}:{{pop}}:all"

    def popularity_by_category(self, category: str) -> str:
        """Sorted set: item -> decayed popularity within one category (same scaling)."""
        return f"{self._root}:{{pop}}:cat:{category}"

    def popularity_counts(self) -> str:
        """Hash: item -> exact count of events that added popularity."""
        return f"{self._root}:{{pop}}:count"

    def popularity_epoch(self) -> str:
        """String: the time (epoch seconds) the popularity scale is anchored at; set once."""
        return f"{self._root}:{{pop}}:epoch"
