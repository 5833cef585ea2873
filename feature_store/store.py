"""Redis feature store: exactly-once batched updates and batched reads (`redis.asyncio`).

Write path of a micro-batch (`apply_events`), each step one pipelined round trip:
  1. read the categories of the batch's items (catalog);
  2. one `apply_user_events` script per user, their events in order: skips what the user's watermark (newest
     offset applied per topic partition) or id window shows applied, updates history, affinities, cart,
     session; returns each event's status and co-occurrence partners;
  3. one popularity script for the batch and one co-occurrence script per touched bucket (`keys.CO_BUCKETS`),
     each skipping what its own watermark shows applied and applying the rest in order.
A crash between 2 and 3 is safe: on replay step 2 reports the events redelivered with the partners they were
applied with, and step 3 re-runs with the same arguments; each of its scripts applies an event at most once.
No key is written per event (`KEYS.md`, layout v4).
Scripts are called by SHA (`EVALSHA`) and loaded only when Redis answers NOSCRIPT (then the pipeline is sent
again: every script is idempotent); redis-py's `Script` objects would add a `SCRIPT EXISTS` round trip to every
pipeline. Redis-py's per-command cost (packing, parsing, a timeout per reply) dominated the worker's Redis time,
so reads use one `read_user` script per user instead of five commands.
Read path (`read_batch`): users + global popularity + the unavailable set, then category popularity + neighbours
of each user's newest distinct items, then the catalog data of the users' own items; `catalog` reads that of
the recommended items after scoring. Item-side reads (popularity lists, neighbours, metadata) are shared by many
batches, so they are cached in-process for `FeatureConfig.item_cache_seconds` (default 2 s; 0 = off): item
features may lag by that long, user features never do. This process's own catalog writes drop their entries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from contracts import EventType, Item, ItemContext, PastEvent, ServiceUnavailable, UserState
from contracts.codec import EventFields
from feature_store.cache import TtlCache
from feature_store.cluster import StoreClient, cluster_client, load_scripts, transient
from feature_store.config import FeatureConfig
from feature_store.keys import Keys, cooccurrence_bucket
from feature_store.packing import hiredis_packing, hiredis_packing_cluster
from feature_store.records import ApplyResult, Position

__all__ = ["FeatureStore", "store_client"]

log = logging.getLogger(__name__)

_SEP = "\x1f"
_APPLIED, _REDELIVERED = 1, 2  # statuses of `lua/apply_user_events.lua` (0: a duplicate)
_LN2 = math.log(2.0)
# Users whose parsed history is kept (~50 events of ~500 B each): memory follows users, not events.
_WINDOWS_MAX = 5_000
_SCRIPTS = ("apply_user_events", "apply_popularity", "apply_cooccurrence", "upsert_item", "read_user")


def _script(name: str) -> str:
    return files("feature_store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def _stored_json(event: EventFields) -> str:
    doc = {
        "event_id": event.event_id,
        "item_id": event.item_id,
        "type": event.type.value,
        "ts": event.ts.timestamp(),
        "query": event.query,
    }
    return json.dumps(doc, separators=(",", ":"))


def _parse_stored(raw: bytes | str) -> PastEvent:
    doc = json.loads(raw)
    ts = datetime.fromtimestamp(doc["ts"], tz=UTC)
    return PastEvent(doc["event_id"], doc["item_id"], EventType(doc["type"]), ts, doc.get("query"))


def _parse_entry(raw: bytes | str) -> PastEvent | None:
    """A stored event, or None for an entry that cannot be read (written by something else): skipped, so that
    one bad entry cannot fail every read of its user."""
    try:
        return _parse_stored(raw)
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        log.warning("unreadable stored event skipped: %.200r", raw)
        return None


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def store_client(url: str, *, cluster: bool = False) -> StoreClient:
    """The Redis client the worker's `FeatureStore` runs fastest on: hiredis packs the commands, and no reply
    has a timer of its own (`socket_timeout=None`; the store puts one deadline on each round trip instead).

    With `cluster` (`STREAMREC_REDIS_CLUSTER=true`), a `RedisCluster` discovering the cluster from `url`
    (`feature_store/cluster.py`).
    """
    if cluster:
        return hiredis_packing_cluster(cluster_client(url))
    return hiredis_packing(Redis.from_url(url, socket_timeout=None))


class FeatureStore:
    """Per-user and per-item features in Redis; every update is idempotent by event id."""

    def __init__(self, client: StoreClient, config: FeatureConfig | None = None) -> None:
        """Wrap an existing `redis.asyncio.Redis` or `RedisCluster` client (the caller owns and closes it)."""
        self._redis = client
        self.config = config or FeatureConfig()
        self.keys = Keys(self.config.namespace)
        self._source = {name: _script(name) for name in _SCRIPTS}
        self._sha = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in self._source.items()}  # noqa: S324
        self._cache = TtlCache(self.config.item_cache_seconds)
        # user -> (stored JSON -> parsed event) for the entries of their last read, least recently read first:
        # a read parses only the user's new entries, and entries that left their window go with it.
        self._windows: dict[str, dict[bytes | str, PastEvent | None]] = {}

    async def _execute(self, pipe: Any) -> list[Any]:
        result: list[Any] = await self._round_trip(pipe.execute())
        return result

    async def _round_trip(self, call: Awaitable[Any]) -> Any:
        # One deadline for the whole round trip. A client made with `socket_timeout=None` (`store_client`) then
        # arms no timer per reply: redis-py 8 otherwise starts an `asyncio.timeout` for each of the ~5 replies
        # per event. A cancelled read closes its connection (redis-py), so no reply is left behind on it.
        # A cluster's redirections and failovers redis-py gave up on are transient too (`cluster.transient`).
        try:
            async with asyncio.timeout(self.config.round_trip_timeout_seconds):
                return await call
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, TimeoutError, *transient) as exc:
            msg = f"Redis unavailable: {exc}"
            raise ServiceUnavailable(msg) from exc

    async def _pipelined(self, build: Callable[[Any], None]) -> list[Any]:
        """Run the commands `build` queues (scripts by SHA) as one pipeline; on NOSCRIPT load them and resend.

        A second NOSCRIPT is transient (`ServiceUnavailable`): on a cluster it means a master this client did
        not know of yet (a replica promoted meanwhile), which the next attempt loads the scripts on.
        """
        for attempt in range(2):
            pipe = self._redis.pipeline(transaction=False)
            build(pipe)
            try:
                return await self._execute(pipe)
            except redis_errors.NoScriptError as exc:
                if attempt:
                    msg = f"Redis lost the feature store's scripts again: {exc}"
                    raise ServiceUnavailable(msg) from exc
                await self._round_trip(load_scripts(self._redis, self._source.values()))
        raise AssertionError  # pragma: no cover (the loop returns or raises)

    def _call(self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[str | int | float]) -> None:
        pipe.evalsha(self._sha[name], len(keys), *keys, *args)

    async def apply_events(
        self, events: Sequence[EventFields], positions: Sequence[Position | None] | None = None
    ) -> ApplyResult:
        """Apply a micro-batch in event order; replays change nothing.

        `positions` (one per event) say where each event was read: with them a redelivery from any offset at or
        below a user's watermark changes nothing, and a crash between the user and the item side is repaired by
        the replay. Without a position an event is recognised by its id among its user's last `max_events`.
        """
        if not events:
            return ApplyResult((), ())
        where = list(positions) if positions is not None else [None] * len(events)
        categories = await self._categories({e.item_id for e in events if e.item_id})
        applied: list[str] = []
        duplicates: list[str] = []
        for chunk in _chunks(len(events), [e.user_id for e in events], self.config.max_events):
            part, at = [events[i] for i in chunk], [where[i] for i in chunk]
            statuses, partners = await self._apply_user_side(part, at, categories)
            for e, status in zip(part, statuses, strict=True):
                (applied if status == _APPLIED else duplicates).append(e.event_id)
            item_side = [i for i, status in enumerate(statuses) if status == _APPLIED or status == _REDELIVERED]
            await self._apply_item_side(
                [part[i] for i in item_side], [at[i] for i in item_side], [partners[i] for i in item_side], categories
            )
        return ApplyResult(tuple(applied), tuple(duplicates))

    async def _apply_user_side(
        self, events: Sequence[EventFields], positions: Sequence[Position | None], categories: dict[str, str]
    ) -> tuple[list[int], list[list[str]]]:
        """One `apply_user_events` call per user (their events in order); per event its status and partners."""
        cfg, keys = self.config, self.keys
        tau = repr(cfg.affinity_half_life_seconds / _LN2)
        head: list[str | int] = [cfg.max_events, tau, cfg.partners, cfg.user_ttl_seconds, cfg.cart_cap]
        weights = {t: repr(w) for t, w in cfg.event_weights.items()}
        by_user: dict[str, list[int]] = {}
        for i, e in enumerate(events):
            by_user.setdefault(e.user_id, []).append(i)

        def build(pipe: Any) -> None:
            for u, idx in by_user.items():
                args: list[str | int] = list(head)
                for i in idx:
                    e, p = events[i], positions[i]
                    args += [
                        e.event_id, _stored_json(e), e.item_id or "", e.type.value, repr(e.ts.timestamp()),
                        categories.get(e.item_id or "", ""), e.session_id or "", weights.get(e.type, "0.0"),
                        p.source if p else "", p.offset if p else "",
                    ]  # fmt: skip
                self._call(pipe, "apply_user_events", keys.user_all(u), args)

        replies = await self._pipelined(build)
        statuses = [0] * len(events)
        partners: list[list[str]] = [[] for _ in events]
        for idx, reply in zip(by_user.values(), replies, strict=True):
            for n, i in enumerate(idx):
                statuses[i] = int(reply[2 * n])
                joined = reply[2 * n + 1]
                partners[i] = joined.decode().split(_SEP) if joined else []
        return statuses, partners

    async def _apply_item_side(
        self,
        events: Sequence[EventFields],
        positions: Sequence[Position | None],
        partners: Sequence[list[str]],
        categories: dict[str, str],
    ) -> None:
        """Popularity: one script call per batch ({pop}); co-occurrence: one per touched bucket, events in order.
        Each skips what its own watermarks show applied before (a replay after a crash between the sides)."""
        cfg, keys = self.config, self.keys
        pop_keys = [keys.popularity(), keys.popularity_counts(), keys.popularity_epoch(), keys.popularity_offsets()]
        pop_args: list[str | int | float] = [repr(cfg.popularity_half_life_seconds / _LN2)]
        buckets: dict[int, _Bucket] = {}
        for n, (e, p, mates) in enumerate(zip(events, positions, partners, strict=True)):
            weight = cfg.event_weights.get(e.type, 0.0)
            if e.item_id is None or weight <= 0:
                continue
            item, cat = e.item_id, categories.get(e.item_id, "")
            source, offset = (p.source, p.offset) if p else ("", "")
            pop_keys.append(keys.popularity_by_category(cat) if cat else pop_keys[0])
            pop_args += [item, repr(e.ts.timestamp()), repr(weight), cat, source, offset]
            # Nearer partners count more (1/d), as in the offline index (`model.interactions`).
            step = _Step(source, offset)
            for d, mate in enumerate(mates, start=1):
                w = repr(1.0 / d)
                _bucket(buckets, item).add(keys, n, step, item, mate, w)
                _bucket(buckets, mate).add(keys, n, step, mate, item, w)
        if len(pop_keys) == 4:
            return

        def build(pipe: Any) -> None:
            self._call(pipe, "apply_popularity", pop_keys, pop_args)
            for bucket in buckets.values():
                lists = [*bucket.lists, keys.cooccurrence_offsets(bucket.number)]
                self._call(pipe, "apply_cooccurrence", lists, [cfg.max_neighbours, *bucket.args()])

        await self._pipelined(build)

    async def _categories(self, item_ids: Iterable[str]) -> dict[str, str]:
        meta = await self._meta(sorted(item_ids))
        return {item: m["category"] for item, m in meta.items() if m.get("category")}

    async def upsert_items(self, items: Sequence[Item]) -> int:
        """Write catalog items (an older version never overwrites a newer one); returns how many were written."""
        if not items:
            return 0

        def build(pipe: Any) -> None:
            for item in items:
                fields = {
                    "title": item.title or "",
                    "category": item.category or "",
                    "price": "" if item.price is None else repr(item.price),
                    "brand": item.brand or "",
                    "available": "1" if item.available else "0",
                }
                flat = [x for kv in fields.items() for x in kv]
                self._call(pipe, "upsert_item", [self.keys.item_meta(item.item_id)], [repr(item.ts.timestamp()), *flat])

        written = [item for item, r in zip(items, await self._pipelined(build), strict=True) if int(r)]
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
    ) -> tuple[list[UserState], ItemContext]:
        """Features of the distinct `user_ids` (in order) and the item features their scoring needs.

        Neighbours are read for each user's `sources_n` newest distinct items (the co-occurrence scorer's
        sources), `neighbours_n` per item; popularity lists `popular_n` long, for each user's `top_categories`.
        """
        users, cached = await self._users_and_globals(user_ids, popular_n)
        categories = sorted({c for f in users for c in _top(f.category_affinity, top_categories)})
        history = sorted({i for f in users for i in _newest_items(f, sources_n)})
        found = await self._ranked_lists(categories, history, popular_n, neighbours_n)
        by_category = {c: found[f"cat:{c}"] for c in categories}
        neighbours = {i: found[f"co:{i}"] for i in history if found[f"co:{i}"]}

        # Catalog data of the users' own items only (their categories drive affinities and evidence); that of
        # the recommended items is read after scoring (`catalog`), filtering uses the unavailable set.
        meta = await self._meta(sorted({e.item_id for f in users for e in f.events if e.item_id}))
        return users, ItemContext(
            popular=cached["pop"],
            popular_by_category=by_category,
            cooccurring=neighbours,
            item_category={i: m["category"] for i, m in meta.items() if m.get("category")},
            item_title={i: m["title"] for i, m in meta.items() if m.get("title")},
            unavailable=cached["unavailable"],
        )

    async def _users_and_globals(
        self, user_ids: Sequence[str], popular_n: int
    ) -> tuple[list[UserState], dict[str, Any]]:
        """The users' features and the global lists (`pop`: popularity, `unavailable`), in one round trip."""
        keys = self.keys
        cached, missing = self._cache.split(["pop", "unavailable"])

        def build(pipe: Any) -> None:
            for u in user_ids:
                user_keys = [
                    keys.user_events(u), keys.user_affinity(u), keys.user_cart(u), keys.user_purchased(u),
                    keys.user_session(u),
                ]  # fmt: skip
                self._call(pipe, "read_user", user_keys, ())
            for key in missing:
                if key == "pop":
                    pipe.zrevrange(keys.popularity(), 0, popular_n - 1, withscores=True)
                else:
                    pipe.smembers(keys.unavailable())

        raw = await self._pipelined(build)
        users = [self._user_features(u, raw[i]) for i, u in enumerate(user_ids)]
        if missing:
            fresh = raw[len(user_ids) :]
            got = {
                key: (_relative(r) if key == "pop" else frozenset(_text(i) or "" for i in r))
                for key, r in zip(missing, fresh, strict=True)
            }
            self._cache.put(got)
            cached |= got
        return users, cached

    async def _ranked_lists(
        self, categories: Sequence[str], history: Sequence[str], popular_n: int, neighbours_n: int
    ) -> dict[str, Any]:
        """Popularity by category (`cat:<c>`, `popular_n` long) and co-occurrence neighbours (`co:<item>`,
        `neighbours_n` long), from the cache or in one round trip."""
        keys = self.keys
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
        return found

    async def catalog(self, item_ids: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
        """(title, category) by item for the items among `item_ids` that have them (cached like other item reads)."""
        meta = await self._meta(sorted(set(item_ids)))
        titles = {i: m["title"] for i, m in meta.items() if m.get("title")}
        return titles, {i: m["category"] for i, m in meta.items() if m.get("category")}

    def _user_features(self, user_id: str, raw: list[Any]) -> UserState:
        """From a `read_user` reply: flat field/value lists, purchase times as strings."""
        stored, affinity_flat, cart, purchased_flat, session = raw
        events = self._events(user_id, stored)
        newest = events[-1].ts.timestamp() if events else 0.0
        cutoff = newest - self.config.just_purchased_seconds
        affinity = dict(zip(affinity_flat[::2], affinity_flat[1::2], strict=True))
        bought = zip(purchased_flat[::2], purchased_flat[1::2], strict=True)
        return UserState(
            user_id=user_id,
            events=events,
            category_affinity=_decayed(affinity, self.config.affinity_half_life_seconds / _LN2),
            cart=frozenset(_text(c) or "" for c in cart),
            purchased_recently=frozenset(_text(i) or "" for i, ts in bought if float(ts) >= cutoff),
            session_id=_text(session),
        )

    def _events(self, user_id: str, stored: Sequence[bytes | str]) -> tuple[PastEvent, ...]:
        """The user's stored events, oldest first, parsing only entries their previous read did not have."""
        known = self._windows.pop(user_id, None) or {}
        oldest_first = stored[::-1]
        parsed = [known[raw] if raw in known else _parse_entry(raw) for raw in oldest_first]
        self._windows[user_id] = dict(zip(oldest_first, parsed, strict=True))  # now the most recently read
        if len(self._windows) > _WINDOWS_MAX:
            del self._windows[next(iter(self._windows))]
        return tuple(e for e in parsed if e is not None)

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
    """Popularity as a share of the best item's, from stored log-scores (best first)."""
    pairs = _pairs(rows)
    best = pairs[0][1] if pairs else 0.0
    return [(item, math.exp(score - best)) for item, score in pairs]


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


@dataclass(frozen=True, slots=True)
class _Step:
    """One event's place in the item-side scripts' order: its source and offset (`""` for none)."""

    source: str
    offset: int | str


class _Bucket:
    """One co-occurrence bucket's share of a batch: its lists and, per event in order, the increments."""

    __slots__ = ("index", "lists", "number", "steps")

    def __init__(self, number: int) -> None:
        self.number = number
        self.lists: list[str] = []  # KEYS[1..m]
        self.index: dict[str, int] = {}  # item -> 1-based position in `lists`
        # event index in the batch -> (step, flat triples (list index, neighbour, weight))
        self.steps: dict[int, tuple[_Step, list[str]]] = {}

    def add(self, keys: Keys, event: int, step: _Step, item: str, neighbour: str, weight: str) -> None:
        at = self.index.get(item)
        if at is None:
            self.lists.append(keys.item_cooccurrence(item))
            at = self.index[item] = len(self.lists)
        found = self.steps.get(event)  # `event`: the event's index in the batch
        if found is None:
            found = self.steps[event] = (step, [])
        found[1].extend((str(at), neighbour, weight))

    def args(self) -> list[str | int]:
        out: list[str | int] = [len(self.lists)]
        for step, triples in self.steps.values():  # insertion order = event order
            out += [step.source, step.offset, len(triples) // 3, *triples]
        return out


def _bucket(buckets: dict[int, _Bucket], item: str) -> _Bucket:
    number = cooccurrence_bucket(item)
    found = buckets.get(number)
    if found is None:
        found = buckets[number] = _Bucket(number)
    return found


def _chunks(n: int, users: Sequence[str], cap: int) -> Iterator[list[int]]:
    """Consecutive runs of `range(n)` in which no user has more than `cap` events: a replay then finds every
    event of a half-applied run in its user's window of `cap` ids (`lua/apply_user_events.lua`)."""
    run: list[int] = []
    counts: dict[str, int] = {}
    for i in range(n):
        if counts.get(users[i], 0) == cap:
            yield run
            run, counts = [], {}
        run.append(i)
        counts[users[i]] = counts.get(users[i], 0) + 1
    if run:
        yield run


def _newest_items(features: UserState, n: int) -> list[str]:
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
