"""Redis feature store: idempotent per-event updates and batched reads (`redis.asyncio`).

Write path of a micro-batch (`apply_events`), each step one pipelined round trip:
  1. read the categories of the batch's items (catalog);
  2. one `apply_user_event` script per event, in order: claims the event id under the user's hash tag and
     updates the user's history, affinities, cart, session; returns the event's co-occurrence partners;
  3. one popularity script for the batch and one co-occurrence script per touched item, each claiming every
     event id in its own slot and applying the batch's events in order.
A crash between 2 and 3 is safe: on replay step 2 reports a duplicate but returns the partners stored with its
claim, and step 3 re-runs with the same arguments; each of its scripts applies at most once.
Read path (`read_batch`): users + global popularity + the unavailable set, then category popularity + neighbours
of each user's newest distinct items, then the catalog data of the users' own items; `catalog` reads that of
the recommended items after scoring. Item-side reads (popularity lists, neighbours, metadata) are shared by many
batches, so they are cached in-process for `FeatureConfig.item_cache_seconds` (default 2 s; 0 = off): item
features may lag by that long, user features never do. This process's own catalog writes drop their entries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from contracts import Event, EventType, Item, ServiceUnavailable
from feature_store.cache import TtlCache
from feature_store.config import FeatureConfig
from feature_store.keys import Keys
from feature_store.records import ApplyResult, ItemFeatures, StoredEvent, UserFeatures

__all__ = ["FeatureStore"]

_SEP = "\x1f"
_LN2 = math.log(2.0)


def _script(name: str) -> str:
    return files("feature_store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def _stored_json(event: Event) -> str:
    doc = {
        "event_id": event.event_id,
        "item_id": event.item_id,
        "type": event.type.value,
        "ts": event.ts.timestamp(),
        "query": event.query,
    }
    return json.dumps(doc, separators=(",", ":"))


def _parse_stored(raw: bytes | str) -> StoredEvent:
    doc = json.loads(raw)
    ts = datetime.fromtimestamp(doc["ts"], tz=UTC)
    return StoredEvent(doc["event_id"], doc["item_id"], EventType(doc["type"]), ts, doc.get("query"))


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class FeatureStore:
    """Per-user and per-item features in Redis; every update is idempotent by event id."""

    def __init__(self, client: Redis, config: FeatureConfig | None = None) -> None:
        """Wrap an existing `redis.asyncio.Redis` client (the caller owns and closes it)."""
        self._redis = client
        self.config = config or FeatureConfig()
        self.keys = Keys(self.config.namespace)
        self._user_script = client.register_script(_script("apply_user_event"))
        self._pop_script = client.register_script(_script("apply_popularity"))
        self._co_script = client.register_script(_script("apply_cooccurrence"))
        self._item_script = client.register_script(_script("upsert_item"))
        self._cache = TtlCache(self.config.item_cache_seconds)
        self._parsed: dict[bytes | str, StoredEvent] = {}  # stored event JSON -> parsed (immutable, so reusable)

    async def _execute(self, pipe: Any) -> list[Any]:
        try:
            result: list[Any] = await pipe.execute()
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
            msg = f"Redis unavailable: {exc}"
            raise ServiceUnavailable(msg) from exc
        return result

    async def apply_events(self, events: Sequence[Event]) -> ApplyResult:
        """Apply a micro-batch in event order; replays change nothing."""
        if not events:
            return ApplyResult((), ())
        categories = await self._categories({e.item_id for e in events if e.item_id})
        cfg, keys = self.config, self.keys
        tau = cfg.affinity_half_life_seconds / _LN2
        pipe = self._redis.pipeline(transaction=False)
        for e in events:
            u = e.user_id
            user_keys = [
                keys.user_claim(u, e.event_id), keys.user_events(u), keys.user_affinity(u), keys.user_cart(u),
                keys.user_purchased(u), keys.user_session(u), keys.user_stats(u),
            ]  # fmt: skip
            args = [
                _stored_json(e), e.item_id or "", e.type.value, repr(e.ts.timestamp()),
                categories.get(e.item_id or "", ""), e.session_id or "", cfg.max_events, cfg.claim_ttl_seconds,
                repr(tau), repr(cfg.event_weights.get(e.type, 0.0)), cfg.partners,
            ]  # fmt: skip
            await self._user_script(keys=user_keys, args=args, client=pipe)
        outcomes = await self._execute(pipe)
        applied = tuple(e.event_id for e, (new, _) in zip(events, outcomes, strict=True) if int(new) == 1)
        duplicates = tuple(e.event_id for e, (new, _) in zip(events, outcomes, strict=True) if int(new) == 0)
        partners = [p.decode().split(_SEP) if p else [] for _, p in outcomes]
        await self._apply_item_side(events, partners, categories)
        return ApplyResult(applied, duplicates)

    async def _apply_item_side(
        self, events: Sequence[Event], partners: Sequence[list[str]], categories: dict[str, str]
    ) -> None:
        """Popularity: one script call per batch ({pop}); co-occurrence: one per touched item, events in order."""
        cfg, keys = self.config, self.keys
        pop_keys = [keys.popularity(), keys.popularity_counts(), keys.popularity_epoch()]
        pop_args: list[str | int | float] = [repr(cfg.popularity_half_life_seconds / _LN2), cfg.claim_ttl_seconds]
        co: dict[str, tuple[list[str], list[str | int | float]]] = {}  # item -> (claim keys, args per event)
        for e, mates in zip(events, partners, strict=True):
            weight = cfg.event_weights.get(e.type, 0.0)
            if e.item_id is None or weight <= 0:
                continue
            item, cat = e.item_id, categories.get(e.item_id, "")
            pop_keys += [keys.popularity_claim(e.event_id), keys.popularity_by_category(cat) if cat else pop_keys[0]]
            pop_args += [item, repr(e.ts.timestamp()), repr(weight), cat]
            # Nearer partners count more (1/d), as in the offline index (`model.interactions`).
            pairs = [(mate, repr(1.0 / d)) for d, mate in enumerate(mates, start=1)]
            if pairs:
                _add(co, item, keys.item_claim(item, e.event_id), [x for pair in pairs for x in pair])
            for mate, w in pairs:
                _add(co, mate, keys.item_claim(mate, e.event_id), [item, w])
        if len(pop_keys) == 3:
            return
        pipe = self._redis.pipeline(transaction=False)
        await self._pop_script(keys=pop_keys, args=pop_args, client=pipe)
        for item, (claims, args) in co.items():
            head: list[str | int | float] = [cfg.claim_ttl_seconds, cfg.max_neighbours]
            await self._co_script(keys=[keys.item_cooccurrence(item), *claims], args=head + args, client=pipe)
        await self._execute(pipe)

    async def _categories(self, item_ids: Iterable[str]) -> dict[str, str]:
        meta = await self._meta(sorted(item_ids))
        return {item: m["category"] for item, m in meta.items() if m.get("category")}

    async def upsert_items(self, items: Sequence[Item]) -> int:
        """Write catalog items (an older version never overwrites a newer one); returns how many were written."""
        if not items:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for item in items:
            fields = {
                "title": item.title or "",
                "category": item.category or "",
                "price": "" if item.price is None else repr(item.price),
                "brand": item.brand or "",
                "available": "1" if item.available else "0",
            }
            flat = [x for kv in fields.items() for x in kv]
            await self._item_script(
                keys=[self.keys.item_meta(item.item_id)], args=[repr(item.ts.timestamp()), *flat], client=pipe
            )
        written = [item for item, r in zip(items, await self._execute(pipe), strict=True) if int(r)]
        if written:  # a crash before this is repaired by the replay: an equally new version is written again
            pipe = self._redis.pipeline(transaction=False)
            for item in written:
                if item.available:
                    pipe.srem(self.keys.unavailable(), item.item_id)
                else:
                    pipe.sadd(self.keys.unavailable(), item.item_id)
            await self._execute(pipe)
        self._cache.drop([*(f"meta:{item.item_id}" for item in items), "unavailable"])
        return len(written)

    async def read_batch(
        self,
        user_ids: Sequence[str],
        *,
        popular_n: int = 50,
        neighbours_n: int = 20,
        top_categories: int = 3,
        sources_n: int = 20,
    ) -> tuple[list[UserFeatures], ItemFeatures]:
        """Features of the distinct `user_ids` (in order) and the item features their scoring needs.

        Neighbours are read for each user's `sources_n` newest distinct items (the co-occurrence scorer's
        sources), `neighbours_n` per item; popularity lists `popular_n` long, for each user's `top_categories`.
        """
        keys = self.keys
        cached, missing = self._cache.split(["pop", "unavailable"])
        pipe = self._redis.pipeline(transaction=False)
        for u in user_ids:
            pipe.lrange(keys.user_events(u), 0, -1)
            pipe.hgetall(keys.user_affinity(u))
            pipe.smembers(keys.user_cart(u))
            pipe.zrange(keys.user_purchased(u), 0, -1, withscores=True)
            pipe.hget(keys.user_session(u), "session_id")
        for key in missing:
            if key == "pop":
                pipe.zrevrange(keys.popularity(), 0, popular_n - 1, withscores=True)
            else:
                pipe.smembers(keys.unavailable())
        raw = await self._execute(pipe)
        users = [self._user_features(u, raw[5 * i : 5 * i + 5]) for i, u in enumerate(user_ids)]
        if missing:
            fresh = raw[5 * len(user_ids) :]
            got = {
                key: (_relative(r) if key == "pop" else frozenset(_text(i) or "" for i in r))
                for key, r in zip(missing, fresh, strict=True)
            }
            self._cache.put(got)
            cached |= got
        popular: list[tuple[str, float]] = cached["pop"]

        categories = sorted({c for f in users for c in _top(f.category_affinity, top_categories)})
        history = sorted({i for f in users for i in _newest_items(f, sources_n)})
        wanted = [f"cat:{c}" for c in categories] + [f"co:{i}" for i in history]
        found, missing = self._cache.split(wanted)
        if missing:
            pipe = self._redis.pipeline(transaction=False)
            for key in missing:
                kind, _, name = key.partition(":")
                target = keys.popularity_by_category(name) if kind == "cat" else keys.item_cooccurrence(name)
                pipe.zrevrange(target, 0, (popular_n if kind == "cat" else neighbours_n) - 1, withscores=True)
            fetched = {
                key: (_relative(r) if key.startswith("cat:") else _pairs(r))
                for key, r in zip(missing, await self._execute(pipe), strict=True)
            }
            self._cache.put(fetched)
            found |= fetched
        by_category = {c: found[f"cat:{c}"] for c in categories}
        neighbours = {i: found[f"co:{i}"] for i in history if found[f"co:{i}"]}

        # Catalog data of the users' own items only (their categories drive affinities and evidence); that of
        # the recommended items is read after scoring (`catalog`), filtering uses the unavailable set.
        meta = await self._meta(sorted({e.item_id for f in users for e in f.events if e.item_id}))
        return users, ItemFeatures(
            popular=popular,
            popular_by_category=by_category,
            cooccurring=neighbours,
            item_category={i: m["category"] for i, m in meta.items() if m.get("category")},
            item_title={i: m["title"] for i, m in meta.items() if m.get("title")},
            unavailable=cached["unavailable"],
        )

    async def catalog(self, item_ids: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
        """(title, category) by item for the items among `item_ids` that have them (cached like other item reads)."""
        meta = await self._meta(sorted(set(item_ids)))
        titles = {i: m["title"] for i, m in meta.items() if m.get("title")}
        return titles, {i: m["category"] for i, m in meta.items() if m.get("category")}

    def _user_features(self, user_id: str, raw: list[Any]) -> UserFeatures:
        stored, affinity_raw, cart, purchased, session = raw
        events = tuple(self._parse(r) for r in reversed(stored))
        newest = events[-1].ts.timestamp() if events else 0.0
        cutoff = newest - self.config.just_purchased_seconds
        return UserFeatures(
            user_id=user_id,
            events=events,
            category_affinity=_decayed(affinity_raw, self.config.affinity_half_life_seconds / _LN2),
            cart=frozenset(_text(c) or "" for c in cart),
            purchased_recently=frozenset(_text(i) or "" for i, ts in purchased if ts >= cutoff),
            session_id=_text(session),
        )

    def _parse(self, raw: bytes | str) -> StoredEvent:
        event = self._parsed.get(raw)
        if event is None:
            if len(self._parsed) >= 100_000:  # ~50 MB at most
                self._parsed.clear()
            event = self._parsed[raw] = _parse_stored(raw)
        return event

    async def _meta(self, item_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """title/category/available of the items that have catalog metadata (cached like other item reads)."""
        found, missing = self._cache.split(f"meta:{item}" for item in item_ids)
        if missing:
            pipe = self._redis.pipeline(transaction=False)
            for key in missing:
                pipe.hmget(self.keys.item_meta(key[5:]), "title", "category", "available")
            fetched = {}
            for key, (title, category, available) in zip(missing, await self._execute(pipe), strict=True):
                fetched[key] = (
                    None
                    if available is None
                    else {
                        "title": _text(title) or "",
                        "category": _text(category) or "",
                        "available": _text(available) or "1",
                    }
                )
            self._cache.put(fetched)
            found |= fetched
        return {item: m for item in item_ids if (m := found[f"meta:{item}"]) is not None}

    async def user_stats(self, user_id: str) -> dict[str, int]:
        """Exact counters of what was applied for a user (`applied`, `type:<type>`); for audits and tests."""
        raw = await self._redis.hgetall(self.keys.user_stats(user_id))
        return {_text(k) or "": int(v) for k, v in raw.items()}

    async def popularity_counts(self) -> dict[str, int]:
        """Exact per-item count of events that added popularity; for audits and tests."""
        raw = await self._redis.hgetall(self.keys.popularity_counts())
        return {_text(k) or "": int(v) for k, v in raw.items()}


def _pairs(rows: list[tuple[bytes | str, float]]) -> list[tuple[str, float]]:
    return [(_text(member) or "", float(score)) for member, score in rows]


def _relative(rows: list[tuple[bytes | str, float]]) -> list[tuple[str, float]]:
    pairs = _pairs(rows)
    best = pairs[0][1] if pairs and pairs[0][1] > 0 else 1.0
    return [(item, score / best) for item, score in pairs]


def _decayed(raw: dict[Any, Any], tau: float) -> dict[str, float]:
    """Affinities ("value:ref_ts") brought to the newest ref_ts among them."""
    parsed = {}
    for key, value in raw.items():
        amount, ref = (_text(value) or "0:0").split(":")
        parsed[_text(key) or ""] = (float(amount), float(ref))
    if not parsed:
        return {}
    now = max(ref for _, ref in parsed.values())
    return {c: v * math.exp(-(now - ref) / tau) for c, (v, ref) in parsed.items()}


def _add(co: dict[str, tuple[list[str], list[str | int | float]]], item: str, claim: str, pairs: list[str]) -> None:
    """Queue one event's increments (flat neighbour, weight pairs) on `item`."""
    claims, args = co.setdefault(item, ([], []))
    claims.append(claim)
    args += [len(pairs) // 2, *pairs]


def _newest_items(features: UserFeatures, n: int) -> list[str]:
    """The user's `n` newest distinct items."""
    out: dict[str, None] = {}
    for e in reversed(features.events):
        if e.item_id and e.item_id not in out:
            out[e.item_id] = None
            if len(out) == n:
                break
    return list(out)


def _top(affinity: dict[str, float] | Any, n: int) -> list[str]:
    return [c for c, v in sorted(affinity.items(), key=lambda kv: (-kv[1], kv[0]))[:n] if v > 0]
