"""Per-user and per-item features in Redis, updated idempotently per event (layout: `KEYS.md`)."""

from feature_store.cluster import StoreClient, redis_client
from feature_store.config import EVENT_WEIGHTS, FeatureConfig
from feature_store.keys import KEY_LAYOUT_VERSION, Keys
from feature_store.records import ApplyResult, Position
from feature_store.server import redis_refusal, require_noeviction
from feature_store.store import FeatureStore, store_client

__all__ = [
    "EVENT_WEIGHTS",
    "KEY_LAYOUT_VERSION",
    "ApplyResult",
    "FeatureConfig",
    "FeatureStore",
    "Keys",
    "Position",
    "StoreClient",
    "redis_client",
    "redis_refusal",
    "require_noeviction",
    "store_client",
]
