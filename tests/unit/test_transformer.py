"""The transformer module and its scorer: shapes, causality, padding, repeat-awareness, filters, chunked top-k."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

from contracts import EventType
from model.scoring import ItemContext, PastEvent, UserState
from model.sequences import batch_from_states, event_rows
from model.torch_scorer import TorchScorer, chunked_topk
from model.transformer import ModelConfig, SeqBatch, SeqRecModel, gap_bucket
from model.vocab import ItemVocab

torch.set_num_threads(1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _model(**overrides: object) -> SeqRecModel:
    torch.manual_seed(0)
    config = ModelConfig(**{"n_items": 12, "max_len": 6, "d_model": 16, "n_heads": 2, "n_layers": 1, **overrides})
    return SeqRecModel(config).eval()


def _batch(b: int = 3, t: int = 6, pad: int = 2) -> SeqBatch:
    g = torch.Generator().manual_seed(1)
    items = torch.randint(1, 10, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[0, :pad] = 0
    return SeqBatch(items * mask, torch.full((b, t), 1) * mask, torch.full((b, t), 3) * mask, mask)


def _user(*items: str, purchased: frozenset[str] = frozenset()) -> UserState:
    events = tuple(PastEvent(f"e{i}", item, EventType.VIEW, T0 + timedelta(minutes=i)) for i, item in enumerate(items))
    return UserState("u", events, purchased_recently=purchased)


def test_shapes_and_losses() -> None:
    model = _model()
    batch = _batch()
    targets = torch.roll(batch.items, -1, 1) * batch.mask
    assert model(batch).hidden.shape == (3, 6, 16)
    full = model(batch, targets).loss
    sampled = model(batch, targets, negatives=torch.tensor([1, 2, 3, 4])).loss
    assert full is not None and torch.isfinite(full)
    assert sampled is not None and torch.isfinite(sampled)
    users, copy = model.encode(batch)
    assert users.shape == (3, 16) and copy.shape == (3, 6)
    assert torch.equal(users, model.encode_users(batch))
    assert model.score(batch).shape == (3, 12)


def test_copy_head_adds_a_repeat_bonus_only_to_own_past_items() -> None:
    model = _model()
    batch = _batch(pad=2)
    batch.items[1, 3] = 0  # a search event: no item, no bonus
    users, copy = model.encode(batch)
    assert (copy >= 0).all()
    assert (copy[0, :2] == 0).all() and copy[1, 3] == 0  # padding and the search get nothing
    assert (copy[0, 2:] > 0).all()
    plain = users @ model.item_table().T
    extra = model.score(batch) - plain  # (B, V)
    for b in range(3):
        own = set(batch.items[b][batch.items[b] > 0].tolist())
        assert all(extra[b, r] > 0 for r in own)
        assert torch.allclose(extra[b, [r for r in range(12) if r not in own]], torch.tensor(0.0), atol=1e-5)


@pytest.mark.parametrize("copy_head", [True, False])
def test_serving_scores_are_the_training_distribution(copy_head: bool) -> None:
    """score(i) - logsumexp(scores) == log P(i) of the loss: the repeat bonus is the exact pointer mixture."""
    model = _model(copy_head=copy_head)
    batch = _batch(pad=2)
    batch.items[2, 1:4] = 5  # item 5 three times: its pointer terms add up
    log_p = torch.log_softmax(model.score(batch)[:, 1:], dim=1)  # (B, V - 1): rows 1.. are the candidates
    for row in range(1, 12):
        targets = torch.zeros_like(batch.items)
        targets[:, -1] = row
        for b in range(3):
            only = torch.zeros_like(targets)
            only[b] = targets[b]
            loss = model(batch, only).loss
            assert loss is not None
            assert torch.allclose(-loss, log_p[b, row - 1], atol=1e-4), (row, b)


def test_repeat_head_learns_to_come_back() -> None:
    """Sequences that always return to their first item: after a few steps the pointer puts it on top."""
    torch.manual_seed(0)
    model = _model(dropout=0.0).train()
    g = torch.Generator().manual_seed(2)
    items = torch.randint(1, 12, (64, 6), generator=g)
    items[:, -1] = items[:, 0]  # the next item after position 4 is the user's first item
    ones = torch.ones_like(items)
    batch = SeqBatch(items[:, :-1], ones[:, :-1], ones[:, :-1] * 3, ones[:, :-1])
    targets = torch.zeros_like(batch.items)
    targets[:, -1] = items[:, -1]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        loss = model(batch, targets).loss
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    top = model.score(batch)[:, 1:].argmax(1) + 1
    assert (top == items[:, 0]).float().mean() > 0.9


def test_without_copy_head_scores_are_plain_dot_products() -> None:
    model = _model(copy_head=False)
    batch = _batch()
    users, copy = model.encode(batch)
    assert not copy.any()
    assert torch.allclose(model.score(batch), users @ model.item_table().T)


def test_causal_later_events_do_not_change_earlier_states() -> None:
    model = _model()
    batch = _batch(pad=0)
    changed = batch.items.clone()
    changed[:, 4] = changed[:, 4] % 9 + 1
    before = model(batch).hidden
    after = model(SeqBatch(changed, batch.types, batch.gaps, batch.mask)).hidden
    assert torch.equal(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4], after[:, 4])


def test_left_padding_does_not_change_the_user_vector() -> None:
    model = _model(max_len=10)
    short = _batch(b=1, t=6, pad=0)
    pad = torch.zeros(1, 4, dtype=torch.long)
    longer = SeqBatch(*(torch.cat([pad, x], 1) for x in (short.items, short.types, short.gaps, short.mask)))
    assert torch.allclose(model.encode_users(short), model.encode_users(longer), atol=1e-5)


def test_gap_buckets_are_log2_and_capped() -> None:
    seconds = torch.tensor([0.0, 1.0, 3.0, 1e9])
    assert gap_bucket(seconds, 24).tolist() == [2, 3, 4, 23]


def test_serving_gap_buckets_equal_the_models() -> None:
    # `model.sequences` buckets in numpy; the model's definition is the torch one: same buckets, boundaries included.
    from model.sequences import _gap_buckets

    edges = [float(2**k - 1) for k in range(30)]
    seconds = [*edges, *(e + d for e in edges for d in (-1e-6, 1e-6) if e + d >= 0), 0.5, 86400.0 * 40, 1e12]
    as_numpy = _gap_buckets(np.asarray([-1.0, *seconds]), 24).tolist()
    assert as_numpy == [1, *gap_bucket(torch.tensor(seconds, dtype=torch.float64), 24).tolist()]


def test_event_rows_keep_searches_drop_unknown_items_and_map_back() -> None:
    vocab = ItemVocab(["a", "b"])
    events = [
        PastEvent("e0", "a", EventType.VIEW, T0),
        PastEvent("e1", "zzz", EventType.VIEW, T0 + timedelta(seconds=1)),
        PastEvent("e2", None, EventType.SEARCH, T0 + timedelta(seconds=8), query="shoes"),
        PastEvent("e3", "b", EventType.PURCHASE, T0 + timedelta(seconds=8)),
    ]
    rows = event_rows(events, vocab, 24)
    assert rows.items.tolist() == [1, 0, 2]
    assert rows.kept.tolist() == [0, 2, 3]
    assert rows.gaps.tolist() == [1, 5, 2]  # first event; 7 s after the unknown item (2 + log2 8); 0 s
    assert rows.queries == (None, "shoes", None)


def test_user_without_usable_history_still_gets_a_vector() -> None:
    model = _model()
    batch, _ = batch_from_states([_user("unknown")], ItemVocab(["a"], capacity=12), model.config)
    assert batch.mask.sum() == 1
    assert torch.isfinite(model.encode_users(batch)).all()


class _FixedBackend:
    """User vector (1, 0) and a hand-made item table: scores are the table's first column."""

    def __init__(self, scores: list[float]) -> None:
        self._table = torch.tensor([[s, 0.0] for s in scores])

    @property
    def name(self) -> str:
        return "fixed"

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def encode(self, batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor]:
        users = torch.tensor([[1.0, 0.0]]).repeat(batch.items.shape[0], 1)
        return users, torch.zeros(batch.items.shape, dtype=torch.float32)

    def item_table(self) -> torch.Tensor:
        return self._table


def _fixed_scorer(chunk_size: int = 65536, *, with_evidence: bool = True) -> TorchScorer:
    # rows: pad, a, b, c, d, spare; the padding and spare rows score highest and must never come out.
    vocab = ItemVocab(["a", "b", "c", "d"], capacity=6)
    config = ModelConfig(n_items=6, max_len=4, d_model=2, n_heads=1)
    backend = _FixedBackend([99.0, 4.0, 3.0, 2.0, 1.0, 98.0])
    return TorchScorer(backend, vocab, config, "t", chunk_size=chunk_size, with_evidence=with_evidence)


def test_scorer_keeps_seen_items_and_filters_purchased_and_unavailable() -> None:
    scorer = _fixed_scorer()
    out = scorer.score(
        [_user("a", "b"), _user("a", purchased=frozenset({"a"}))], ItemContext(unavailable=frozenset({"c"})), 3
    )
    assert [s.item_id for s in out[0]] == ["a", "b", "d"]  # "a" was viewed: still recommended (repeat-aware)
    assert [s.item_id for s in out[1]] == ["b", "d"]  # "a" just bought, "c" unavailable
    seen = {r.kind.value for r in out[0][0].reasons}
    assert "seen_before" in seen
    assert all(0 <= i < 2 for i, _ in out[0][0].evidence)


def test_serving_scores_rank_alike_without_the_scorers_own_evidence() -> None:
    users = [_user("a", "b"), _user("c")]
    full, bare = (
        _fixed_scorer().score(users, ItemContext(), 3),
        _fixed_scorer(with_evidence=False).score(users, ItemContext(), 3),
    )
    assert [[(s.item_id, s.score) for s in row] for row in full] == [
        [(s.item_id, s.score) for s in row] for row in bare
    ]
    assert all(not s.evidence and not s.reasons for row in bare for s in row)


def test_chunked_scoring_matches_one_chunk() -> None:
    users = [_user("a"), _user("b", "c")]
    assert _fixed_scorer(chunk_size=2).score(users, ItemContext(), 4) == _fixed_scorer().score(users, ItemContext(), 4)


def test_chunked_topk_equals_full_topk() -> None:
    g = torch.Generator().manual_seed(0)
    users, table = torch.randn(5, 8, generator=g), torch.randn(1000, 8, generator=g)
    blocked = torch.zeros(1000, dtype=torch.bool)
    blocked[[0, 7, 500]] = True
    per_user = [[3], [], [999, 10], [], []]
    bonus_rows = torch.tensor([[3, 3, 8], [0, 0, 0], [999, 4, 4], [1, 2, 998], [0, 0, 5]])
    bonus = torch.full((5, 3), 2.5)
    values, rows = chunked_topk(users, table, 10, blocked, per_user, 64, bonus_rows, bonus)
    logits = (users @ table.T).scatter_add(1, bonus_rows, bonus).masked_fill(blocked, float("-inf"))
    for u, extra in enumerate(per_user):
        logits[u, extra] = float("-inf")
    expected_values, expected_rows = logits.topk(10, dim=1)
    assert torch.equal(rows, expected_rows)
    assert torch.allclose(values, expected_values)


def test_config_rejects_bad_heads() -> None:
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=10, n_heads=3)
