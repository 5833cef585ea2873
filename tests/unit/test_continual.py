"""Continual learning pieces: replay reservoir, stream buffer, vocabulary growth, guarded fine-tuning."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

from contracts import Event, EventType, Item
from model.continual import (
    CachedEncoder,
    ContinualConfig,
    Ranker,
    ReplayReservoir,
    encode_sequences,
    fine_tune,
    grow_vocabulary,
    ndcg_at_10,
    resolve_loss,
)
from model.drifting_stream import drifting_stream
from model.scoring import PastEvent
from model.stream_buffer import StreamBuffer
from model.train import SAMPLED_ABOVE
from model.transformer import ModelConfig, SeqRecModel
from model.vocab import ItemVocab

torch.set_num_threads(1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
CONFIG = ModelConfig(n_items=12, max_len=6, d_model=16, n_heads=2, n_layers=1, dropout=0.0)


def _model(config: ModelConfig = CONFIG, seed: int = 0) -> tuple[SeqRecModel, ItemVocab]:
    torch.manual_seed(seed)
    return SeqRecModel(config), ItemVocab([f"i{j}" for j in range(8)], capacity=config.n_items)


def _ring(user: str, start: int, n: int, items: int = 8) -> tuple[PastEvent, ...]:
    return tuple(
        PastEvent(f"{user}-{k}", f"i{(start + k) % items}", EventType.VIEW, T0 + timedelta(seconds=10 * k))
        for k in range(n)
    )


class FakeEncoder:
    """Texts -> fixed unit vectors keyed by their first word (similar titles, similar vectors)."""

    name = "fake"
    dim = 4
    calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        FakeEncoder.calls += len(texts)
        basis = {"red": 0, "blue": 1, "green": 2}
        out = np.zeros((len(texts), 4), dtype=np.float32)
        for r, text in enumerate(texts):
            out[r, basis.get(text.split()[0], 3)] = 1.0
        return out


def test_reservoir_is_bounded_and_uniform() -> None:
    reservoir = ReplayReservoir(100, seed=1)
    reservoir.add([(PastEvent(str(i), "a", EventType.VIEW, T0),) for i in range(10_000)])
    assert len(reservoir) == 100 and reservoir.seen == 10_000
    ids = [int(s[0].event_id) for s in reservoir.sample(100)]
    assert len(set(ids)) == 100
    assert 2500 < float(np.mean(ids)) < 7500  # a uniform sample, not the first or last 100


def test_stream_buffer_cut_is_prequential() -> None:
    events = [
        Event(event_id=f"e{k}", user_id=f"u{k % 2}", item_id=f"i{k}", type=EventType.VIEW, ts=T0 + timedelta(seconds=k))
        for k in range(10)
    ]
    buffer = StreamBuffer(4, {})
    for event in events:
        buffer.add(event)
    data = buffer.cut(0.4)
    assert data.events == 10 and buffer.pending == 0
    assert data.users == ["u0", "u1"]
    assert [e.event_id for e in data.train[0]] == ["e0", "e2", "e4"]  # only the first 60 % is trained on
    targets = [p.target for p in data.points]
    assert targets == ["i6", "i7", "i8", "i9"]
    assert [e.event_id for e in data.points[0].state.events] == ["e0", "e2", "e4"]  # state before the target
    assert data.points[2].state.events[-1].event_id == "e6"  # earlier held-back events join the history
    buffer.add(Event(event_id="e10", user_id="u1", item_id="i10", type=EventType.VIEW, ts=T0 + timedelta(seconds=10)))
    nxt = buffer.cut(0.0)
    assert set(nxt.users) == {"u0", "u1"}  # users seen only in the held-back window are trained on next time
    assert [e.event_id for e in nxt.train[1]] == ["e5", "e7", "e9", "e10"]  # the newest 4 events of u1


def test_encode_sequences_targets_are_next_items() -> None:
    model, vocab = _model()
    batch, targets = encode_sequences([_ring("u", 0, 4)], vocab, model.config)
    assert batch.mask[0].tolist() == [0, 0, 0, 1, 1, 1]
    assert batch.items[0, -3:].tolist() == [1, 2, 3] and targets[0, -3:].tolist() == [2, 3, 4]


def test_grow_vocabulary_uses_spare_rows_then_resizes_without_touching_the_input() -> None:
    model, vocab = _model()
    catalog = {
        "i0": Item(item_id="i0", title="red cup", category="cups", ts=T0),
        "i1": Item(item_id="i1", title="blue cup", category="cups", ts=T0),
        "new-red": Item(item_id="new-red", title="red bowl", category="bowls", ts=T0),
        "new-cup": Item(item_id="new-cup", category="cups", ts=T0),
    }
    before = model.item_emb.weight.clone()
    grown, grown_vocab, added = grow_vocabulary(model, vocab, ["i0", "new-red", "new-cup"], catalog, FakeEncoder())
    assert added == ["new-red", "new-cup"] and len(vocab) == 8 and torch.equal(model.item_emb.weight, before)
    assert grown.config.n_items == 12 and grown_vocab.index("new-red") == 9
    emb = grown.item_emb.weight
    assert torch.allclose(emb[9], emb[1])  # titled: its only similar text, "red cup" (row 1)
    assert torch.allclose(emb[10], emb[[1, 2]].mean(0))  # untitled: the mean of its category ("cups")
    many = [f"x{k}" for k in range(10)]
    bigger, bigger_vocab, added = grow_vocabulary(grown, grown_vocab, many, {}, None)
    assert added == many and bigger.config.n_items > 12 and bigger_vocab.capacity == bigger.config.n_items
    assert torch.equal(bigger.item_emb.weight[:11], grown.item_emb.weight[:11])  # row 11 was spare: x0 took it
    assert ndcg_at_10(Ranker(bigger, bigger_vocab), []) == 0.0


def test_grow_vocabulary_text_tower_rows_come_from_the_text() -> None:
    config = ModelConfig(n_items=12, max_len=6, d_model=16, n_heads=2, n_layers=1, text_tower=True, text_dim=4)
    model, vocab = _model(config)
    catalog = {"n": Item(item_id="n", title="green vase", ts=T0)}
    grown, grown_vocab, _ = grow_vocabulary(model, vocab, ["n"], catalog, FakeEncoder())
    row = grown_vocab.index("n")
    assert grown.item_text[row].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert float(grown.item_emb.weight[row].detach().abs().sum()) == 0.0
    assert torch.allclose(grown.item_table()[row], grown.text_proj(grown.item_text[row]))  # type: ignore[misc]


def test_cached_encoder_encodes_each_text_once() -> None:
    FakeEncoder.calls = 0
    cached = CachedEncoder(FakeEncoder())
    cached.encode(["red a", "blue b"])
    out = cached.encode(["red a", "blue b", "green c"])
    assert FakeEncoder.calls == 3 and out.shape == (3, 4)


def test_fine_tune_learns_and_guards_discard_bad_updates() -> None:
    model, vocab = _model()
    fresh = [_ring(f"u{k}", k, 7) for k in range(16)]
    config = ContinualConfig(steps=40, batch_size=16, lr=5e-3)
    result = fine_tune(model, vocab, fresh, ReplayReservoir(10), config)
    assert result.ok and result.model is not None and result.steps == 40
    assert result.loss_last < result.loss_first
    assert result.model is not model
    exploding = fine_tune(model, vocab, fresh, ReplayReservoir(10), ContinualConfig(steps=3, max_grad_norm=1e-6))
    assert not exploding.ok and exploding.model is None and "gradient norm" in exploding.reason
    broken, _ = _model()
    with torch.no_grad():
        broken.item_emb.weight[1:] = float("nan")
    nan = fine_tune(broken, vocab, fresh, ReplayReservoir(10), ContinualConfig(steps=3))
    assert not nan.ok and "loss nan" in nan.reason and math.isnan(nan.loss_first)


def _negatives_seen(
    monkeypatch: pytest.MonkeyPatch, model: SeqRecModel, vocab: ItemVocab, config: ContinualConfig
) -> list[torch.Tensor | None]:
    seen: list[torch.Tensor | None] = []
    forward = SeqRecModel.forward

    def spy(self: SeqRecModel, *args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("negatives"))  # type: ignore[arg-type]
        return forward(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SeqRecModel, "forward", spy)
    fresh = [_ring(f"u{k}", k, 7) for k in range(16)]
    assert fine_tune(model, vocab, fresh, ReplayReservoir(10), config).ok
    return seen


def test_fine_tune_samples_negatives_on_a_large_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    # A full softmax step holds (positions x rows) logits and their gradient: on the soak's 22 k rows it took
    # ~1.2 GB more peak memory and ~8x the CPU of the sampled step, so above the offline trainer's threshold the
    # learner samples, as `streamrec train` does.
    big = ModelConfig(n_items=SAMPLED_ABOVE + 1, max_len=6, d_model=8, n_heads=2, n_layers=1, dropout=0.0)
    torch.manual_seed(0)
    vocab = ItemVocab([f"i{j}" for j in range(8)], capacity=big.n_items)
    config = ContinualConfig(steps=3, batch_size=8, n_negatives=5)
    assert resolve_loss(config, vocab) == "sampled"
    seen = _negatives_seen(monkeypatch, SeqRecModel(big), vocab, config)
    assert len(seen) == 3
    for negatives in seen:
        assert negatives is not None and negatives.shape == (5,)
        assert len(set(negatives.tolist())) == 5 and 1 <= int(negatives.min()) and int(negatives.max()) <= len(vocab)


def test_fine_tune_keeps_the_full_softmax_on_a_small_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    model, vocab = _model()
    assert resolve_loss(ContinualConfig(), vocab) == "softmax"
    assert _negatives_seen(monkeypatch, model, vocab, ContinualConfig(steps=2, batch_size=8)) == [None, None]
    forced = _negatives_seen(monkeypatch, model, vocab, ContinualConfig(steps=1, batch_size=8, loss="sampled"))
    assert forced[0] is not None and sorted(forced[0].tolist()) == list(range(1, len(vocab) + 1))  # all 8 known


def test_drifting_stream_is_seeded_and_shifts() -> None:
    a, catalog, switch = drifting_stream(n_users=20, length=6, seed=5)
    b, _, _ = drifting_stream(n_users=20, length=6, seed=5)
    assert a == b
    assert not any(e.item_id.startswith("n") for e in a if e.ts < switch and e.item_id)
    assert all(catalog[e.item_id] for e in a if e.item_id)


@pytest.mark.parametrize("holdout", [0.0, 1.0])
def test_stream_buffer_extreme_holdouts(holdout: float) -> None:
    buffer = StreamBuffer(3, {})
    for k, item in enumerate("ijij"):
        buffer.add(
            Event(event_id=f"e{k}", user_id="u", item_id=item, type=EventType.VIEW, ts=T0 + timedelta(seconds=k))
        )
    data = buffer.cut(holdout)
    assert (len(data.train), len(data.points)) == ((1, 0) if holdout == 0.0 else (0, 3))


def test_gate_points_follow_next_new() -> None:
    buffer = StreamBuffer(3, {})
    for k, item in enumerate("iijji"):  # re-clicks of the current item (i -> i, j -> j) are no gate targets
        buffer.add(
            Event(event_id=f"e{k}", user_id="u", item_id=item, type=EventType.VIEW, ts=T0 + timedelta(seconds=k))
        )
    assert [p.target for p in buffer.cut(1.0).points] == ["j", "i"]


def test_gate_ranker_never_ranks_the_current_item() -> None:
    from model.scoring import UserState

    torch.manual_seed(0)
    model = SeqRecModel(ModelConfig(n_items=8, max_len=5, d_model=16, n_heads=2, n_layers=1))
    ranker = Ranker(model, ItemVocab(["a", "b", "c"], capacity=8))
    events = tuple(PastEvent(f"e{n}", item, EventType.VIEW, T0 + timedelta(seconds=n)) for n, item in enumerate("ba"))
    [top] = ranker.top([UserState("u", events)], k=3)
    assert sorted(top) == ["b", "c"]  # every other item, the earlier-seen b included
