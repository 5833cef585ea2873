"""Attribution methods: known contributions on hand-built models, batched occlusion = one-by-one deletion."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from explain.attribution import (
    METHODS,
    IntegratedGradients,
    Occlusion,
    compact,
    encode_scores,
    make_attributor,
    real_events,
    score_rows,
)
from model.transformer import ModelConfig, SeqBatch, SeqRecModel

torch.set_num_threads(1)


class BagModel:
    """A linear "model" behind the encoder interface: user vector = sum of the item embeddings of real events."""

    def __init__(self, table: Tensor) -> None:
        self.table = table

    def item_table(self) -> Tensor:
        return self.table

    def embed(self, batch: SeqBatch) -> Tensor:
        return self.table[batch.items]

    def encode_embeddings(self, x: Tensor, items: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return (x * mask[..., None]).sum(1), torch.zeros(items.shape, dtype=x.dtype)

    def encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        return self.encode_embeddings(self.embed(batch), batch.items, batch.mask)


def _batch(items: list[list[int]]) -> SeqBatch:
    tensor = torch.tensor(items)
    real = (tensor > 0).long()
    return SeqBatch(tensor, real, real * 3, real)


def _marker_model() -> SeqRecModel:
    """One GPT-2 block wired so the newest position attends to the event with item 1 and copies it.

    Item 7 reads dimension 0 of the user vector, which only the marker item (1) has positive: the marker event
    is the one event that drives item 7's score.
    """
    c = 8
    config = ModelConfig(n_items=10, max_len=6, d_model=c, n_layers=1, n_heads=1, dropout=0.0, copy_head=False)
    model = SeqRecModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        emb = torch.randn(10, c, generator=torch.Generator().manual_seed(0)) * 0.3
        emb[:, 0] = -1.0
        emb[0] = 0.0
        emb[1] = 0.0
        emb[1, 0] = 3.0  # the marker
        emb[7] = 0.0
        emb[7, 0] = 1.0  # the explained item
        model.item_emb.weight.copy_(emb)
        model.backbone.wpe.weight[:, 1] = 1.0  # a position offset, as GPT-2 has (LN(x + p) is not scale-free)
        block: Any = model.backbone.h[0]  # a transformers GPT2Block (typed as Tensor | Module)
        for norm in (block.ln_1, block.ln_2, model.backbone.ln_f):
            norm.weight.fill_(1.0)
        eye = torch.eye(c)
        block.attn.c_attn.weight[:, c : 2 * c] = eye  # keys = LN(x)
        block.attn.c_attn.weight[:, 2 * c :] = eye  # values = LN(x)
        block.attn.c_attn.bias[0] = 40.0  # query along dimension 0: attend to the marker
        block.attn.c_proj.weight.copy_(eye)
    return model


def _tiny_model(seed: int = 0) -> SeqRecModel:
    torch.manual_seed(seed)
    return SeqRecModel(ModelConfig(n_items=30, max_len=6, d_model=16, n_layers=2, n_heads=2)).eval()


@pytest.mark.parametrize("method", ["occlusion", "gradient_x_input", "integrated_gradients", "item_similarity"])
def test_linear_model_ranks_the_only_contributing_event_first(method: str) -> None:
    table = torch.eye(10)
    table[7] = table[3]  # item 7 is the only past item that looks like item 3
    batch = _batch([[0, 1, 7, 2, 4, 5], [5, 6, 2, 7, 1, 8]])
    weights = make_attributor(method, BagModel(table), BagModel(table)).attribute(batch, torch.tensor([[3], [3]]))
    assert weights.shape == (2, 1, 6)
    assert weights[:, 0].argmax(1).tolist() == [2, 3]
    assert weights[0, 0, 2].item() == pytest.approx(1.0, abs=1e-5)  # exact for a linear model
    assert weights[0, 0, 0].item() == 0.0  # padding


MARKER_BATCH = [[2, 1, 3, 4, 5, 6], [0, 3, 4, 1, 5, 2]]  # the marker (item 1) at positions 1 and 3
MARKER_AT = [1, 3]


def _marker_share(weights: Tensor) -> list[float]:
    """Per user: the marker event's share of the positive attribution (1.0 = all of it)."""
    positive = weights.clamp(min=0.0)
    return [float(positive[u, p] / positive[u].sum().clamp(min=1e-12)) for u, p in enumerate(MARKER_AT)]


def test_marker_model_ground_truth() -> None:
    """The hand-built model really is driven by the marker: deleting it moves item 7's score, nothing else does."""
    model = _marker_model()
    for row, at in zip(MARKER_BATCH, MARKER_AT, strict=True):
        full = model.score(_batch([row])).detach()[0, 7]
        drops = []
        for position in range(len(row)):
            if row[position] == 0:
                continue
            rest = [i for p, i in enumerate(row) if p != position and i > 0]
            drops.append(
                (abs(float(full - model.score(_batch([[0] * (6 - len(rest)) + rest])).detach()[0, 7])), position)
            )
        drops.sort(reverse=True)
        assert drops[0][1] == at
        assert drops[0][0] > 5 * drops[1][0]  # every other event moves the score by < 1/5 of what the marker does


@pytest.mark.parametrize(
    "method", ["occlusion", "gradient_x_input", "integrated_gradients", "attention", "item_similarity"]
)
def test_transformer_marker_event_ranked_first_and_strongly(method: str) -> None:
    model = _marker_model()
    weights = make_attributor(method, model, model).attribute(_batch(MARKER_BATCH), torch.tensor([[7], [7]]))[:, 0]
    assert weights.argmax(1).tolist() == MARKER_AT
    assert min(_marker_share(weights)) >= 0.8  # not a near tie: the marker holds most of the positive weight


def test_marker_check_fails_for_random_attribution() -> None:
    """Negative control: the same check rejects an attribution that ignores the model."""
    model = _marker_model()
    weights = make_attributor("random", model, model).attribute(_batch(MARKER_BATCH), torch.tensor([[7], [7]]))[:, 0]
    assert weights.argmax(1).tolist() != MARKER_AT or min(_marker_share(weights)) < 0.8


def test_random_baseline_is_seeded_and_only_on_real_events() -> None:
    batch = _batch([[0, 0, 1, 2, 3, 4]])
    first = make_attributor("random", BagModel(torch.eye(10))).attribute(batch, torch.tensor([[1, 2]]))
    again = make_attributor("random", BagModel(torch.eye(10))).attribute(batch, torch.tensor([[1, 2]]))
    assert torch.equal(first, again)
    assert (first[0, :, :2] == 0).all() and (first[0, :, 2:] > 0).all()


def test_compact_deletes_and_left_pads() -> None:
    batch = _batch([[0, 4, 5, 6, 7, 8]])
    out = compact(batch, torch.tensor([[True, True, False, True, False, True]]))
    assert out.items.tolist() == [[0, 0, 0, 4, 6, 8]]
    assert out.mask.tolist() == [[0, 0, 0, 1, 1, 1]]
    empty = compact(batch, torch.zeros(1, 6, dtype=torch.bool))
    assert empty.mask.tolist() == [[0, 0, 0, 0, 0, 1]] and empty.items.sum() == 0  # the start token
    assert not real_events(empty).any()


def test_batched_occlusion_equals_deleting_each_event_alone() -> None:
    model = _tiny_model()
    batch = _batch([[0, 0, 3, 9, 3, 12], [5, 6, 7, 8, 9, 10]])
    rows = torch.tensor([[3, 20], [7, 11]])
    weights = Occlusion(model).attribute(batch, rows)
    full = model.score(batch).detach().gather(1, rows)
    for b, position in [(0, 2), (0, 5), (1, 0), (1, 4)]:
        items = [i for p, i in enumerate(batch.items[b].tolist()) if p != position and i > 0]
        alone = _batch([[0] * (6 - len(items)) + items])
        expected = full[b] - model.score(alone).detach()[0, rows[b]]
        assert torch.allclose(weights[b, :, position], expected, atol=1e-5)
    assert (weights[0, :, :2] == 0).all()


def test_occlusion_newest_window_only_probes_recent_events() -> None:
    model = _tiny_model()
    batch = _batch([[1, 2, 3, 4, 5, 6]])
    weights = Occlusion(model, newest=2).attribute(batch, torch.tensor([[3]]))
    assert (weights[0, 0, :4] == 0).all() and (weights[0, 0, 4:] != 0).all()


def test_integrated_gradients_are_complete() -> None:
    model = _tiny_model(1)
    batch = _batch([[0, 2, 3, 4, 5, 6]])
    rows = torch.tensor([[2, 9]])
    ig = IntegratedGradients(model, steps=256).attribute(batch, rows)
    with torch.no_grad():
        x = model.embed(batch)
        users, copy = model.encode_embeddings(torch.zeros_like(x), batch.items, batch.mask)
        zero = score_rows(users, copy, batch.items, model.item_table(), rows)
    full = encode_scores(model, batch, rows)
    assert torch.allclose(ig.sum(-1), full - zero, atol=2e-2)


def test_every_method_has_the_same_shape_and_gradient_methods_need_the_model() -> None:
    model = _tiny_model()
    batch = _batch([[0, 2, 3, 4, 5, 6]])
    for name in METHODS:
        assert make_attributor(name, model, model).attribute(batch, torch.tensor([[2, 3, 4]])).shape == (1, 3, 6)
    for name in ("gradient_x_input", "integrated_gradients", "attention"):
        with pytest.raises(ValueError, match="needs the eager model"):
            make_attributor(name, model, None)
    with pytest.raises(ValueError, match="unknown"):
        make_attributor("shap", model, model)


def test_embedding_hook_reproduces_encode() -> None:
    """`encode_embeddings(embed(b))` must stay equal to `encode(b)`, or gradient attributions explain another model."""
    model = _tiny_model(2)
    batch = _batch([[0, 0, 3, 9, 3, 12], [5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        users, copy = model.encode(batch)
        hooked_users, hooked_copy = model.encode_embeddings(model.embed(batch), batch.items, batch.mask)
    assert torch.allclose(users, hooked_users, atol=1e-6) and torch.allclose(copy, hooked_copy, atol=1e-6)
