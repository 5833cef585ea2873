"""The key layout is pinned byte for byte; online feature weights equal the offline ones."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from redis.crc import key_slot

from feature_store.config import EVENT_WEIGHTS
from feature_store.keys import CO_BUCKETS, USER_KEY_SUFFIXES, Keys, cooccurrence_bucket, tag_safe
from feature_store.store import _decayed, _relative
from model.history import EVENT_WEIGHTS as OFFLINE_WEIGHTS


def test_every_key_is_pinned() -> None:
    k = Keys()
    assert [
        k.user_events("42"),
        k.user_affinity("42"),
        k.user_cart("42"),
        k.user_purchased("42"),
        k.user_session("42"),
        k.user_stats("42"),
        k.user_items("42"),
        k.user_ids("42"),
        k.user_offsets("42"),
        k.cooccurrence_offsets(3),
        k.item_cooccurrence("sku9"),
        k.item_meta("sku9"),
        k.unavailable(),
        k.popularity_offsets(),
        k.popularity(),
        k.popularity_by_category("Home/Mugs"),
        k.popularity_counts(),
        k.popularity_epoch(),
    ] == [
        "sr:v4:{u:42}:events",
        "sr:v4:{u:42}:affinity",
        "sr:v4:{u:42}:cart",
        "sr:v4:{u:42}:purchased",
        "sr:v4:{u:42}:session",
        "sr:v4:{u:42}:stats",
        "sr:v4:{u:42}:items",
        "sr:v4:{u:42}:ids",
        "sr:v4:{u:42}:offsets",
        "sr:v4:{co:3}:offsets",
        "sr:v4:{co:4}:n:sku9",
        "sr:v4:{i:sku9}:meta",
        "sr:v4:{catalog}:unavailable",
        "sr:v4:{pop}:offsets",
        "sr:v4:{pop}:all",
        "sr:v4:{pop}:cat:Home/Mugs",
        "sr:v4:{pop}:count",
        "sr:v4:{pop}:epoch",
    ]


def test_cooccurrence_buckets_are_crc32_of_the_item_id() -> None:
    # Pinned: another client (or a re-implementation) must put an item's neighbours in the same bucket.
    assert CO_BUCKETS == 16
    assert [cooccurrence_bucket(i) for i in ("sku9", "a", "i1", "Zoë")] == [4, 3, 11, 10]


def test_namespace_separates_deployments() -> None:
    assert Keys("shop2").user_events("u") == "shop2:v4:{u:u}:events"


def test_online_weights_equal_offline_weights() -> None:
    assert dict(EVENT_WEIGHTS) == {t: OFFLINE_WEIGHTS.get(t, 0.0) for t in EVENT_WEIGHTS}


def test_affinities_are_brought_to_the_newest_reference_time() -> None:
    tau = 100.0
    out = _decayed({b"a": b"2.0:1000", b"b": b"1.0:1100"}, tau)
    assert out["b"] == 1.0
    assert math.isclose(out["a"], 2.0 * math.exp(-1.0))


def test_popularity_is_relative_to_the_best() -> None:
    # Stored scores are logarithms (`lua/apply_popularity.lua`): log 4 vs log 1 is 4 times as popular.
    assert _relative([(b"x", math.log(4.0)), (b"y", 0.0)]) == [("x", 1.0), ("y", 0.25)]


# Hostile ids: braces, colons, percent signs, newlines, any unicode, up to the contract's 128 characters.
_hostile = st.text(st.sampled_from("{}:%\n\x1fab") | st.characters(codec="utf-8"), max_size=128)


def _user_keys(k: Keys, user: str) -> dict[tuple[str, str], str]:
    keys = {(user, kind): getattr(k, f"user_{kind}")(user) for kind in USER_KEY_SUFFIXES}
    assert k.user_all(user) == list(keys.values())  # the user script's order
    return keys


@given(st.lists(st.tuples(_hostile, _hostile), min_size=2, max_size=6))
@example([("x}:events", "e0"), ("x", "e}:events")])  # collided before ids were escaped
@example([("a%7Db", "e"), ("a}b", "e")])
def test_keys_are_injective_and_one_users_keys_share_one_slot(pairs: list[tuple[str, str]]) -> None:
    k = Keys()
    built: dict[str, tuple[str, str]] = {}
    for user, item in pairs:
        keys = _user_keys(k, user) | {(item, "co"): k.item_cooccurrence(item), (item, "meta"): k.item_meta(item)}
        assert len({key_slot(key.encode()) for key in _user_keys(k, user).values()}) == 1, user
        for spec, key in keys.items():
            assert built.setdefault(key, spec) == spec, f"{spec} and {built[key]} share the key {key!r}"
    for user, _ in pairs:  # item keys: the catalog entry's tag is the whole escaped id
        assert key_slot(k.item_meta(user).encode()) == key_slot(f"i:{tag_safe(user)}".encode())


def test_a_namespace_with_a_brace_is_refused() -> None:
    with pytest.raises(ValueError, match="namespace"):
        Keys("sr{x}")
