"""Offline evaluation end to end on seeded synthetic streams, the splits, and the `evaluate` CLI."""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from contracts import Event, EventType, Item
from model.baselines import CooccurrenceScorer, PopularityScorer, RecentItemsScorer
from model.evaluate import EvalConfig, evaluate
from model.scoring import ItemContext, ScoredItem, Scorer, UserState
from model.splits import cutoff_last_day, is_target, load_catalog, load_events, loo_split, split_at, time_split
from streamrec.commands.evaluate import register

T0 = datetime(2024, 1, 1, tzinfo=UTC)
Stream = tuple[list[Event], dict[str, Item]]


def synthetic_stream(n_users: int = 150, n_items: int = 80, per_user: int = 12, seed: int = 0) -> Stream:
    """Users walk a fixed successor chain over items (p=.7) or jump to a Zipf-popular item: a structure that
    co-occurrence can learn and popularity cannot."""
    rng = np.random.default_rng(seed)
    successor = rng.permutation(n_items)
    pop = 1.0 / np.arange(1, n_items + 1) ** 1.1
    pop /= pop.sum()
    catalog = {f"i{j}": Item(item_id=f"i{j}", category=f"c{j % 4}", title=f"Item {j}", ts=T0) for j in range(n_items)}
    events = []
    for u in range(n_users):
        t = T0 + timedelta(minutes=int(rng.integers(0, 60 * 24 * 6)))
        item = int(rng.choice(n_items, p=pop))
        for n in range(per_user):
            kind = EventType.PURCHASE if rng.random() < 0.1 else EventType.VIEW
            events.append(Event(event_id=f"u{u}e{n}", user_id=f"u{u}", item_id=f"i{item}", type=kind, ts=t))
            t += timedelta(minutes=int(rng.integers(1, 30)))
            item = int(successor[item]) if rng.random() < 0.7 else int(rng.choice(n_items, p=pop))
    return events, catalog


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    cli = typer.Typer()
    cli.callback()(lambda: None)  # keep `evaluate` a sub-command, as under `streamrec`
    register(cli)
    return cli


@pytest.fixture(scope="module")
def stream() -> Stream:
    return synthetic_stream()


def test_cooccurrence_beats_popularity_on_structured_stream(stream: Stream) -> None:
    events, catalog = stream
    history, test = split_at(events, cutoff_last_day(events))
    split = time_split(history, test, catalog)
    report = evaluate(split, {"pop": PopularityScorer(), "cooc": CooccurrenceScorer()}, EvalConfig(bootstrap=300))
    pop, cooc = report.scorers
    assert report.n_points == len(split.points) > 100
    for metric in ("ndcg@10", "hr@10"):
        # Non-overlapping 95 % intervals: a real, not a lucky, difference.
        assert cooc.metrics[metric].ci_low > pop.metrics[metric].ci_high
    for m in (pop, cooc):
        for value in m.metrics.values():
            assert 0.0 <= value.ci_low <= value.value <= value.ci_high <= 1.0
    assert set(cooc.by_event_type) == {"view", "purchase"}
    assert sum(n for n, _ in cooc.by_event_type.values()) == cooc.n


def test_time_split_targets_and_states(stream: Stream) -> None:
    events, catalog = stream
    cutoff = cutoff_last_day(events)
    history, test = split_at(events, cutoff)
    split = time_split(history, test, catalog, max_points=50, seed=1)
    assert len(split.points) == 50
    assert split.train == history
    test_ids = {e.event_id: e for e in test}
    for point in split.points:
        assert point.state.events  # users without an earlier event are skipped
        last = point.state.events[-1]
        # The state holds everything before the target, test-window events included, and nothing after.
        later = [e for e in test if e.user_id == point.state.user_id and e.ts > last.ts]
        assert later and later[0].item_id == point.target or any(e.item_id == point.target for e in later)
        assert all(e.ts <= later[0].ts for e in point.state.events)
    assert any(e.event_id in test_ids for p in split.points for e in p.state.events)
    again = time_split(history, test, catalog, max_points=50, seed=1)
    assert [p.target for p in again.points] == [p.target for p in split.points]


def test_loo_split_holds_out_last_and_second_to_last(stream: Stream) -> None:
    events, catalog = stream
    split = loo_split(events, catalog)
    valid = loo_split(events, catalog, target="valid")
    by_user: dict[str, list[Event]] = {}
    for e in sorted(events, key=lambda e: e.ts):
        by_user.setdefault(e.user_id, []).append(e)
    point = split.points[0]
    own = by_user[point.state.user_id]
    assert point.target == own[-1].item_id
    assert [p.event_id for p in point.state.events] == [e.event_id for e in own[:-1]][-50:]
    train_ids = {e.event_id for e in split.train}
    assert own[-1].event_id not in train_ids and own[-2].event_id in train_ids
    vpoint = next(p for p in valid.points if p.state.user_id == point.state.user_id)
    assert vpoint.target == own[-2].item_id
    assert own[-2].event_id not in {e.event_id for e in valid.train}


class _LastItemScorer:
    """Recommends only the user's last item: hits exactly when the target repeats it."""

    version = "last-item"

    def score(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[ScoredItem]]:
        return [[ScoredItem(u.events[-1].item_id or "", 1.0)] if u.events else [] for u in users]


def test_repeat_targets_count_and_factories_are_called() -> None:
    t = T0
    evs = [
        Event(event_id=f"e{n}", user_id=u, item_id=i, type="view", ts=t + timedelta(minutes=n))
        for n, (u, i) in enumerate([("u1", "a"), ("u2", "b"), ("u1", "a"), ("u2", "c"), ("u1", "a"), ("u2", "b")])
    ]
    split = time_split(evs[:2], evs[2:], {}, targets="every")  # the old protocol: consecutive repeats count
    calls: list[int] = []

    def factory(train: Sequence[Event], catalog: Mapping[str, Item]) -> Scorer:
        calls.append(len(train))
        return _LastItemScorer()

    specs: dict[str, Scorer | Callable[[Sequence[Event], Mapping[str, Item]], Scorer]] = {"last": factory}
    report = evaluate(split, specs, EvalConfig(bootstrap=50))
    assert calls == [2]
    # targets: u1 a (repeat, hit), u2 c (miss), u1 a (hit), u2 b (miss)
    assert report.scorers[0].metrics["hr@10"].value == pytest.approx(0.5)
    assert report.scorers[0].metrics["mrr@20"].value == pytest.approx(0.5)


def _write(directory: Path, events: Sequence[Event], catalog: Mapping[str, Item]) -> Path:
    directory.mkdir(parents=True)
    with gzip.open(directory / "events.jsonl.gz", "wt") as f:
        f.writelines(e.model_dump_json() + "\n" for e in events)
    with gzip.open(directory / "catalog.jsonl.gz", "wt") as f:
        f.writelines(i.model_dump_json() + "\n" for i in catalog.values())
    return directory


def test_load_roundtrip_and_bad_line(tmp_path: Path, stream: Stream) -> None:
    events, catalog = stream
    data = _write(tmp_path / "d", events[:20], catalog)
    assert [e.event_id for e in load_events(data)] == [e.event_id for e in sorted(events[:20], key=lambda e: e.ts)]
    assert load_catalog(data) == catalog
    with gzip.open(data / "events.jsonl.gz", "at") as f:
        f.write('{"event_id": "x"}\n')
    with pytest.raises(Exception, match=r"events.jsonl.gz:21: not a valid event"):
        load_events(data)


def test_cli_json_with_two_dirs_and_data_split(app: typer.Typer, tmp_path: Path, stream: Stream) -> None:
    events, catalog = stream
    history, test = split_at(events, cutoff_last_day(events))
    h, t = _write(tmp_path / "h", history, catalog), _write(tmp_path / "t", test, catalog)
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--history", str(h), "--test", str(t), "--json", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["scorers"]) == {
        "popularity",
        "cooccurrence",
        "recent",
        "blend",
        "transitions",
        "repeat-transitions",
        "vsknn",
    }
    pop = doc["scorers"]["popularity"]
    assert set(pop) >= {"ndcg@10", "hr@10", "recall@20", "mrr@20", "by_event_type"}
    assert set(pop["ndcg@10"]) == {"value", "ci_low", "ci_high"}
    assert doc["scorers"]["cooccurrence"]["ndcg@10"]["value"] > pop["ndcg@10"]["value"]

    whole = _write(tmp_path / "all", events, catalog)
    args = ["evaluate", "--data", str(whole), "--baseline", "recent", "--json", "--bootstrap", "20"]
    split_doc = json.loads(runner.invoke(app, args).stdout)
    assert split_doc["n_points"] == doc["n_points"]  # default --data split = last day, as above
    loo = runner.invoke(app, [*args, "--protocol", "loo", "--max-points", "40"])
    assert loo.exit_code == 0 and json.loads(loo.stdout)["n_points"] == 40
    table = runner.invoke(app, ["evaluate", "--data", str(whole), "--baseline", "popularity", "--bootstrap", "20"])
    assert table.exit_code == 0 and "popularity" in table.stdout


def test_cli_errors_are_clear(app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "streamrec data import" in missing.output
    both = runner.invoke(app, ["evaluate", "--data", str(tmp_path), "--history", str(tmp_path)])
    assert both.exit_code == 2 and "either --history" in both.output
    monkeypatch.setitem(sys.modules, "model.artifacts", None)  # as if the transformer side were absent
    no_model = runner.invoke(app, ["evaluate", "--data", str(tmp_path), "--model", str(tmp_path)])
    assert no_model.exit_code == 2 and "load_scorer is not available" in no_model.output


def test_user_state_builder_cart_purchases_and_affinity() -> None:
    from model.history import HistoryConfig, build_user_state

    def ev(n: int, item: str, kind: str, hours: float) -> Event:
        return Event(event_id=f"e{n}", user_id="u", item_id=item, type=kind, ts=T0 + timedelta(hours=hours))

    events = [
        ev(0, "a", "add_to_cart", 0),
        ev(1, "b", "add_to_cart", 0),
        ev(2, "old", "purchase", 1),
        ev(3, "b", "remove_from_cart", 24),
        ev(4, "c", "purchase", 48),
        ev(5, "a", "view", 48.5),
    ]
    config = HistoryConfig(recent_events=4, affinity_half_life_seconds=86400.0, purchase_filter_seconds=3600.0)
    state = build_user_state("u", events, {"a": "x", "c": "y"}, config)
    assert [e.event_id for e in state.events] == ["e2", "e3", "e4", "e5"]  # last `recent_events`, oldest first
    assert state.cart == frozenset({"a"})
    assert state.purchased_recently == frozenset({"c"})  # bought 30 min ago; "old" was 47.5 h ago
    # x: cart (3) at 0 h and view (1) at 48.5 h; y: purchase (5) at 48 h; half-life one day.
    assert state.category_affinity["x"] == pytest.approx(3 * 0.5 ** (48.5 / 24) + 1)
    assert state.category_affinity["y"] == pytest.approx(5 * 0.5 ** (0.5 / 24))


def test_cold_targets_are_reported_as_their_own_segment(stream: Stream) -> None:
    events, catalog = stream
    history, test = split_at(events, cutoff_last_day(events))
    fresh = history[-1].ts + timedelta(seconds=1)
    extra = [
        Event(event_id=f"n{u}", user_id=f"u{u}", item_id="new-item", type=EventType.VIEW, ts=fresh) for u in range(5)
    ]
    split = time_split(history, sorted(test + extra, key=lambda e: e.ts), catalog)
    scorer = evaluate(split, {"pop": PopularityScorer()}, EvalConfig(bootstrap=50)).scorers[0]
    n_cold = sum(p.target == "new-item" for p in split.points)
    assert n_cold > 0 and scorer.by_segment["cold_target"][0] == n_cold
    assert scorer.by_segment["cold_target"][1]["hr@10"].value == 0.0  # popularity never ranks an unseen item
    assert scorer.to_dict()["by_segment"]["cold_target"]["n"] == n_cold
    plain = evaluate(time_split(history, test, catalog), {"pop": PopularityScorer()}, EvalConfig(bootstrap=50))
    assert "by_segment" not in plain.scorers[0].to_dict()


@pytest.mark.parametrize(
    ("rule", "item", "previous", "has_previous", "expected"),
    [
        ("next-new", "b", "a", True, True),  # a new item
        ("next-new", "a", "a", True, False),  # a re-click of the item the user is on
        ("next-new", "a", None, True, True),  # after a search (no item)
        ("next-new", "a", None, False, False),  # no earlier event: nothing to score
        ("next-new", None, "a", True, False),  # a search is never a target
        ("every", "a", "a", True, True),
        ("every", None, "a", True, False),
        ("every", "a", None, False, False),
    ],
)
def test_target_rule(rule: str, item: str | None, previous: str | None, has_previous: bool, expected: bool) -> None:
    assert is_target(rule, item, previous, has_previous) is expected  # type: ignore[arg-type]


def test_next_new_split_skips_consecutive_repeats_and_ranks_without_the_current_item() -> None:
    seq = [("u1", "a"), ("u2", "b"), ("u1", "a"), ("u2", "c"), ("u1", "b"), ("u2", "b"), ("u1", "a"), ("u2", "z")]
    evs = [
        Event(event_id=f"e{n}", user_id=u, item_id=i, type="view", ts=T0 + timedelta(minutes=n))
        for n, (u, i) in enumerate(seq)
    ]
    catalog = {i: Item(item_id=i, ts=T0) for i in ("a", "b", "c", "z", "never")}
    split = time_split(evs[:2], evs[2:], catalog)
    assert split.protocol == "next-new"
    # u1 a->a is a consecutive repeat (dropped); u2 b->c, u1 a->b, u2 c->b (a non-adjacent repeat), u1 b->a, u2 b->z
    assert [(p.state.user_id, p.target) for p in split.points] == [
        ("u2", "c"),
        ("u1", "b"),
        ("u2", "b"),
        ("u1", "a"),
        ("u2", "z"),
    ]
    every = time_split(evs[:2], evs[2:], catalog, targets="every")
    assert every.protocol == "time" and len(every.points) == 6
    report = evaluate(split, {"last": _LastItemScorer(), "recent": RecentItemsScorer()}, EvalConfig(bootstrap=20))
    last, recent = report.scorers
    assert last.metrics["hr@10"].value == 0.0  # its only item is the current one: removed, as in serving
    # recent without the current item (c, z, never are outside the training items: unavailable):
    # u2 [] vs c; u1 [] vs b; u2 [b] vs b (hit, rank 1); u1 [a] vs a (hit, rank 1); u2 [b] vs z
    assert recent.metrics["hr@10"].value == pytest.approx(2 / 5)
    assert recent.metrics["mrr@20"].value == pytest.approx(2 / 5)
    assert report.n_items == 2  # the universe: items of the training history
