"""Incremental encoding (`model.incremental`) gives what a full re-encode gives, and reuses states."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

from contracts import EventType
from model.backends import EagerTorchBackend
from model.incremental import IncrementalEncoder
from model.scoring import ItemContext, PastEvent, UserState
from model.torch_scorer import TorchScorer
from model.transformer import ModelConfig, SeqBatch, SeqRecModel
from model.vocab import ItemVocab

torch.set_num_threads(1)
_T = 12


def _model(**overrides: object) -> SeqRecModel:
    torch.manual_seed(3)
    config = dataclasses.replace(ModelConfig(n_items=60, max_len=_T, d_model=32, n_heads=2, n_layers=2), **overrides)
    return SeqRecModel(config).eval()


def _batch(sequences: list[list[tuple[int, int, int]]], text: list[list[float]] | None = None) -> SeqBatch:
    """Left-padded batch of (item, type, gap) rows; `text`: a query value per event (0: no query)."""
    b = len(sequences)
    items, types, gaps, mask = (torch.zeros(b, _T, dtype=torch.long) for _ in range(4))
    query = torch.zeros(b, _T, 8) if text is not None else None
    for row, seq in enumerate(sequences):
        for j, (item, kind, gap) in enumerate(seq):
            at = _T - len(seq) + j
            items[row, at], types[row, at], gaps[row, at], mask[row, at] = item, kind, gap, 1
            if query is not None and text is not None and text[row][j]:
                query[row, at] = text[row][j]
    return SeqBatch(items, types, gaps, mask, query)


def _grow(g: torch.Generator, seq: list[tuple[int, int, int]], n: int) -> list[tuple[int, int, int]]:
    new = [(int(torch.randint(0, 60, (1,), generator=g)), int(torch.randint(1, 5, (1,), generator=g)),
            int(torch.randint(2, 20, (1,), generator=g))) for _ in range(n)]  # fmt: skip
    return (seq + new)[-_T:]


def _same(model: SeqRecModel, encoder: IncrementalEncoder, batch: SeqBatch) -> None:
    with torch.inference_mode():
        users, copy = model.encode(batch)
    got_users, got_copy = encoder.encode(batch)
    torch.testing.assert_close(got_users, users, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_copy, copy, rtol=1e-4, atol=1e-5)
    table = model.item_table().detach()
    top = lambda u, c: (u @ table.T).scatter_add(1, batch.items, c).topk(10).indices  # noqa: E731
    assert torch.equal(top(got_users, got_copy), top(users, copy))


@pytest.mark.parametrize("copy_head", [True, False])
def test_a_stream_of_batches_matches_full_encoding_and_reuses_states(copy_head: bool) -> None:
    model = _model(copy_head=copy_head)
    encoder = IncrementalEncoder(model, max_bytes=64 << 20)
    g = torch.Generator().manual_seed(0)
    users: list[list[tuple[int, int, int]]] = [[] for _ in range(9)]
    misses = hits = 0
    for step in range(20):  # users gain 0-3 events per batch; 0 = a retried batch, the state itself is cached
        grown = [_grow(g, seq, (row + step) % 4 if seq else 1) for row, seq in enumerate(users)]
        # a row can only reuse a state while its window has not slid (then every position shifts)
        slid = [not old or new[: len(old)] != old for old, new in zip(users, grown, strict=True)]
        misses, hits = misses + sum(slid), hits + len(slid) - sum(slid)
        users = grown
        _same(model, encoder, _batch(users))
    assert (encoder.stats.misses, encoder.stats.hits) == (misses, hits) and hits > 50 and misses > 20


def test_search_queries_are_part_of_the_state() -> None:
    model = _model(text_tower=True, text_dim=8)
    encoder = IncrementalEncoder(model, max_bytes=64 << 20)
    seq = [(5, 1, 2), (0, 4, 3), (7, 2, 4)]
    _same(model, encoder, _batch([seq], [[0.0, 0.5, 0.0]]))
    _same(model, encoder, _batch([[*seq, (9, 1, 2)]], [[0.0, 0.5, 0.0, 0.0]]))  # hit: same query
    assert encoder.stats.hits == 1
    _same(model, encoder, _batch([[*seq, (9, 1, 2)]], [[0.0, 0.9, 0.0, 0.0]]))  # another query: a miss
    assert encoder.stats.misses == 2


def test_the_budget_bounds_what_is_kept_and_least_recently_used_states_go_first() -> None:
    model = _model()
    probe = IncrementalEncoder(model, max_bytes=1)
    encoder = IncrementalEncoder(model, max_bytes=4 * probe.slot_bytes)  # four users' states
    g = torch.Generator().manual_seed(1)
    pairs = [[_grow(g, [], 5), _grow(g, [], 6)] for _ in range(3)]
    for rows in pairs:
        _same(model, encoder, _batch(rows))
    assert encoder.cached_bytes == 4 * encoder.slot_bytes and encoder.stats.evictions == 2
    _same(model, encoder, _batch(pairs[0]))  # evicted: encoded again
    assert encoder.stats.hits == 0
    _same(model, encoder, _batch([_grow(g, pairs[2][0], 1), pairs[2][1]]))  # kept: one new event, the same state
    assert (encoder.stats.hits, encoder.stats.new_positions) == (2, 1)
    assert IncrementalEncoder(model, max_bytes=3 * probe.slot_bytes).encode(_batch(pairs[0]))  # < 2 batches: no reuse


def test_two_users_with_the_same_events_share_a_state() -> None:
    model = _model()
    encoder = IncrementalEncoder(model, max_bytes=64 << 20)
    seq = [(3, 1, 2), (4, 2, 5)]
    _same(model, encoder, _batch([seq, seq, [(9, 1, 2)]]))
    assert encoder.cached_bytes == 2 * encoder.slot_bytes
    _same(model, encoder, _batch([[*seq, (5, 1, 3)], seq]))  # one grows (its content is new), one is as it was
    assert encoder.stats.hits == 2


def test_the_worker_scorer_ranks_a_growing_history_as_without_reuse() -> None:
    """Through `TorchScorer` and real event rows (time-gap buckets, the window sliding past `max_len`)."""
    model = _model(max_len=6)
    vocab = ItemVocab([f"i{n}" for n in range(40)], capacity=60)
    plain = TorchScorer(EagerTorchBackend(model), vocab, model.config, "t")
    reused = TorchScorer(EagerTorchBackend(model, cache_mb=8), vocab, model.config, "t")
    start, kinds = datetime(2026, 1, 1, tzinfo=UTC), [EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART]
    history: dict[str, list[PastEvent]] = {f"u{n}": [] for n in range(5)}
    for step in range(14):  # past the 6-event window: gap buckets and positions of the kept events change
        for n, (user, events) in enumerate(history.items()):
            if (step + n) % 3:
                at = start + timedelta(minutes=step * 7 + n)
                events.append(PastEvent(f"{user}-{step}", f"i{(step * 5 + n) % 40}", kinds[step % 3], at))
        users = [UserState(u, tuple(e[-6:])) for u, e in history.items() if e]
        want, got = plain.score(users, ItemContext(), 10), reused.score(users, ItemContext(), 10)
        assert [[s.item_id for s in row] for row in got] == [[s.item_id for s in row] for row in want]
        for a, b in zip(got, want, strict=True):
            assert np.allclose([s.score for s in a], [s.score for s in b], rtol=1e-4, atol=1e-5)
    stats = reused.backend.incremental.stats  # type: ignore[attr-defined]
    assert stats.hits > 10 and stats.misses > 10
