"""Tunables of the feature store (plain data; the worker builds it from `contracts.Settings`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from contracts import IDEMPOTENCY_HORIZON_SECONDS, EventType

__all__ = ["EVENT_WEIGHTS", "FeatureConfig"]

# Interest signalled by one event; a removal is mild negative evidence. Pinned equal to the offline
# baselines' weights (`model.history.EVENT_WEIGHTS`) by a unit test, so online and offline features agree.
EVENT_WEIGHTS: Mapping[EventType, float] = {
    EventType.VIEW: 1.0,
    EventType.CLICK: 1.0,
    EventType.ADD_TO_CART: 3.0,
    EventType.PURCHASE: 5.0,
    EventType.REMOVE_FROM_CART: -1.0,
    EventType.SEARCH: 0.0,
}


@dataclass(frozen=True)
class FeatureConfig:
    """How features are kept."""

    namespace: str = "sr"  # key namespace (one per deployment sharing a Redis)
    max_events: int = 50  # events kept per user (= Settings.recent_events)
    # A user's keys expire this long after their newest event (refreshed by each): state grows with active users.
    # At least the idempotency horizon, so a replay of any event the events topic still holds finds its user's
    # watermark (`contracts.topics`).
    user_ttl_seconds: int = 30 * 86400
    cart_cap: int = 100  # items kept in a cart (the newest added)
    affinity_half_life_seconds: float = 3 * 86400.0  # category affinity halves every 3 days of event time
    popularity_half_life_seconds: float = 86400.0  # popularity halves every day of event time
    partners: int = 5  # co-occurrence: the user's last distinct items an event pairs with
    max_neighbours: int = 200  # co-occurrence neighbours kept per item
    item_cache_seconds: float = 2.0  # item-side reads (popularity, neighbours, catalog) are reused this long
    round_trip_timeout_seconds: float = 5.0  # one deadline per pipeline (then ServiceUnavailable: retried)
    just_purchased_seconds: float = 3600.0  # purchases this recent (vs the user's newest event) are filtered
    event_weights: Mapping[EventType, float] = field(default_factory=lambda: dict(EVENT_WEIGHTS))

    def __post_init__(self) -> None:
        """A shorter user TTL would forget watermarks while the events topic can still replay their events."""
        if self.user_ttl_seconds and self.user_ttl_seconds < IDEMPOTENCY_HORIZON_SECONDS:
            msg = f"user_ttl_seconds must be 0 (never) or >= {IDEMPOTENCY_HORIZON_SECONDS} (the idempotency horizon)"
            raise ValueError(msg)
