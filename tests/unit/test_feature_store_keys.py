"""The key layout is pinned byte for byte; online feature weights equal the offline ones."""

from __future__ import annotations

import math

from feature_store.config import EVENT_WEIGHTS
from feature_store.keys import CO_BUCKETS, Keys, cooccurrence_bucket
from feature_store.store import _decayed, _relative
from model.history import EVENT_WEIGHTS as OFFLINE_WEIGHTS


def test_every_key_is_pinned() -> None:
    k = Keys()
    assert [
        k.user_claim("42", "e-1"),
        k.user_events("42"),
        k.user_affinity("42"),
        k.user_cart("42"),
        k.user_purchased("42"),
        k.user_session("42"),
        k.user_stats("42"),
        k.user_items("42"),
        k.cooccurrence_claim(3, "e-1"),
        k.item_cooccurrence("sku9"),
        k.item_meta("sku9"),
        k.unavailable(),
        k.popularity_claim("e-1"),
        k.popularity(),
        k.popularity_by_category("Home/Mugs"),
        k.popularity_counts(),
        k.popularity_epoch(),
    ] == [
        "sr:v2:{u:42}:claim:e-1",
        "sr:v2:{u:42}:events",
        "sr:v2:{u:42}:affinity",
        "sr:v2:{u:42}:cart",
        "sr:v2:{u:42}:purchased",
        "sr:v2:{u:42}:session",
        "sr:v2:{u:42}:stats",
        "sr:v2:{u:42}:items",
        "sr:v2:{co:3}:claim:e-1",
        "sr:v2:{co:4}:n:sku9",
        "sr:v2:{i:sku9}:meta",
        "sr:v2:{catalog}:unavailable",
        "sr:v2:{pop}:claim:e-1",
        "sr:v2:{pop}:all",
        "sr:v2:{pop}:cat:Home/Mugs",
        "sr:v2:{pop}:count",
        "sr:v2:{pop}:epoch",
    ]


def test_cooccurrence_buckets_are_crc32_of_the_item_id() -> None:
    # Pinned: another client (or a re-implementation) must put an item's neighbours in the same bucket.
    assert CO_BUCKETS == 16
    assert [cooccurrence_bucket(i) for i in ("sku9", "a", "i1", "Zoë")] == [4, 3, 11, 10]


def test_namespace_separates_deployments() -> None:
    assert Keys("shop2").user_events("u") == "shop2:v2:{u:u}:events"


def test_online_weights_equal_offline_weights() -> None:
    assert dict(EVENT_WEIGHTS) == {t: OFFLINE_WEIGHTS.get(t, 0.0) for t in EVENT_WEIGHTS}


def test_affinities_are_brought_to_the_newest_reference_time() -> None:
    tau = 100.0
    out = _decayed({b"a": b"2.0:1000", b"b": b"1.0:1100"}, tau)
    assert out["b"] == 1.0
    assert math.isclose(out["a"], 2.0 * math.exp(-1.0))


def test_popularity_is_relative_to_the_best() -> None:
    assert _relative([(b"x", 4.0), (b"y", 1.0)]) == [("x", 1.0), ("y", 0.25)]
