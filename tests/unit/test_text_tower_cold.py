"""Issue 14: cold rows are text-only, ID dropout in training only, text-neighbour candidates, the default switch,
and the exported encoder of a text-tower model."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch

from contracts import Event, EventType, Item
from model.backends import EagerTorchBackend, ExportedTorchBackend
from model.count_parts import CountParts
from model.rank_features import FEATURES, Sources, build_candidates
from model.scoring import PastEvent, UserState
from model.sequences import QueryCache, batch_from_states
from model.synthetic import synthetic_catalog, synthetic_events
from model.text_candidates import TextNeighbours
from model.text_tower import has_text
from model.train import TrainConfig, train
from model.train_two_stage import TwoStageConfig, text_items, train_two_stage
from model.transformer import ModelConfig, MoEAdapter, SeqRecModel
from model.vocab import ItemVocab

torch.set_num_threads(1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


class BagOfWords:
    """Deterministic text vectors: one bucket per word."""

    name = "bag-of-words"
    dim = 8

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, sum(map(ord, word)) % self.dim] += 1.0
        return out


def _config(**model: object) -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(max_len=6, d_model=16, n_heads=2, n_layers=1, text_dim=8, **model),  # type: ignore[arg-type]
        epochs=2,
        batch_size=64,
        max_valid_points=100,
        max_train_seconds=None,
    )


def test_rows_without_training_events_keep_a_zero_id_part_and_score_by_text() -> None:
    catalog = synthetic_catalog(extra_cold=3)
    result = train(synthetic_events(n_users=40, length=10), catalog, _config(text_tower=True), BagOfWords())
    trained = {e.item_id for e in synthetic_events(n_users=40, length=10)}
    cold = [result.vocab.index(i) for i in catalog if i not in trained]
    assert cold and all(r is not None for r in cold)
    weights = result.model.item_emb.weight.detach()
    assert not weights[cold].any()  # stayed exactly zero through training
    known = result.vocab.index(sorted(trained - {None})[0])
    assert weights[known].abs().sum() > 0
    assert result.model.item_table().detach()[cold].abs().sum(1).gt(0).all()  # the text alone places them


def test_without_the_text_tower_cold_rows_keep_their_random_init() -> None:
    catalog = synthetic_catalog(extra_cold=2)
    result = train(synthetic_events(n_users=40, length=10), catalog, _config(text_tower=False))
    row = result.vocab.index("c0-i10")
    assert row is not None and result.model.item_emb.weight[row].abs().sum() > 0


@pytest.mark.parametrize("adapter", ["linear", "moe"])
def test_id_dropout_applies_in_training_only(adapter: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        n_items=12, max_len=4, d_model=8, n_heads=2, n_layers=1, text_tower=True, text_dim=8,
        text_adapter=adapter, id_dropout=1.0,  # type: ignore[arg-type]
    )  # fmt: skip
    model = SeqRecModel(config)
    model.set_item_text(torch.randn(11, 8))
    assert model.text_proj is not None
    text_only = model.text_proj(model.item_text)
    model.train()
    assert torch.allclose(model.item_table(), text_only)  # every ID part dropped
    model.eval()
    assert torch.allclose(model.item_table(), model.item_emb.weight + text_only)  # serving: both parts


def test_moe_adapter_maps_no_text_to_zero() -> None:
    adapter = MoEAdapter(8, 4, 3)
    with torch.no_grad():
        adapter.bias.normal_()
    out = adapter(torch.cat([torch.zeros(1, 8), torch.ones(1, 8)]))
    assert out.shape == (2, 4) and not out[0].any() and out[1].abs().sum() > 0


def _event(n: int, user: str, item: str) -> Event:
    return Event(event_id=f"{user}-{n}", user_id=user, item_id=item, type=EventType.VIEW, ts=T0 + timedelta(n))


def test_text_neighbours_are_the_nearest_texts_and_never_the_users_own_items() -> None:
    # rows: a, b, c, d, e; the user saw c then a (current). a ~ d, c ~ e, b far from both.
    text = np.asarray([[1, 0, 0], [0, 0, 1], [0, 1, 0], [0.9, 0.1, 0], [0.1, 0.9, 0]], dtype=np.float32)
    index = {item: row for row, item in enumerate("abcde")}
    user = UserState("u", (PastEvent("e0", "c", EventType.VIEW, T0), PastEvent("e1", "a", EventType.VIEW, T0)))
    sims, listed = TextNeighbours(text).similarities([user], index)
    # profile = a + c/2 (newest first, halving): d, near a, before e, near c; b shares nothing
    assert sims[0, index["d"]] > sims[0, index["e"]] > sims[0, index["b"]] == 0
    assert listed[0, index["a"]] == 0 and listed[0, index["c"]] == 0  # own items (the current one first) unlisted
    assert np.argmax(listed[0]) == index["d"]


def test_an_item_without_events_enters_the_candidates_through_its_text() -> None:
    parts = CountParts.fit([_event(n, u, i) for u, s in {"u1": "ab", "u2": "ba"}.items() for n, i in enumerate(s)], "n")
    assert parts.vocab == ["a", "b", "n"] and parts.item_counts[2] == 0
    text = np.asarray([[1, 0], [0, 1], [0.95, 0.05]], dtype=np.float32)  # new item n reads like a
    user = UserState("u", (PastEvent("e0", "b", EventType.VIEW, T0), PastEvent("e1", "a", EventType.VIEW, T0)))
    sims, listed = TextNeighbours(text).similarities([user], parts.index)
    sources = Sources(None, [], [], np.zeros(3), np.zeros(3, dtype=bool), text_sim=sims[0], text_listed=listed[0])
    found = build_candidates(user, parts, sources, depth=5)
    rows = found.rows.tolist()
    assert parts.index["n"] in rows and parts.index["a"] not in rows  # the current item never
    line = found.features[rows.index(parts.index["n"])]
    assert line[FEATURES.index("tx_listed")] == 1 and line[FEATURES.index("tx_sim")] > 0.9


def _item(item_id: str, title: str | None = None, brand: str | None = None) -> Item:
    return Item(item_id=item_id, title=title, brand=brand, ts=T0)


def test_the_text_tower_is_on_by_default_exactly_when_the_catalog_has_text() -> None:
    assert not has_text({"a": _item("a"), "b": _item("b", title="  ")})
    assert has_text({"a": _item("a"), "b": _item("b", brand="acme")})
    ids = {"a": Item(item_id="a", category="4756105", ts=T0), "b": Item(item_id="b", category="S", brand="7", ts=T0)}
    assert not has_text(ids)  # category and brand ids are no words
    assert not has_text({})
    catalog = {"a": _item("a", "mug"), "b": _item("b")}
    assert text_items(catalog, True) == ["a"] and text_items(catalog, False) == []


def test_the_train_command_defaults_to_automatic_text_tower() -> None:
    from streamrec.commands.train import OPTIONS

    assert OPTIONS["text_tower"].default is None  # None: decided by `has_text`


def test_two_stage_training_with_the_text_tower_lists_cold_items() -> None:
    catalog = synthetic_catalog(extra_cold=3)
    config = TwoStageConfig(train=_config(text_tower=True, id_dropout=0.3), ranker_points=200)
    result = train_two_stage(synthetic_events(n_users=40, length=10), catalog, config, text_encoder=BagOfWords())
    assert "c0-i10" in result.parts.index  # a catalog item without events has a count row
    assert result.scorer().builder._text is not None


@pytest.mark.parametrize("adapter", ["linear", "moe"])
def test_a_text_tower_model_exports_with_a_dynamic_batch(adapter: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        n_items=40, max_len=8, d_model=16, n_heads=2, n_layers=1, text_tower=True, text_dim=8,
        text_adapter=adapter,  # type: ignore[arg-type]
    )  # fmt: skip
    model = SeqRecModel(config).eval()
    model.set_item_text(torch.randn(39, 8))
    vocab = ItemVocab([f"i{n}" for n in range(36)], capacity=40)
    eager, exported = EagerTorchBackend(model, "cpu"), ExportedTorchBackend(model, "cpu")
    assert torch.equal(exported.item_table(), eager.item_table())  # the precomputed table, text included
    queries = QueryCache(BagOfWords())
    for size in (1, 5, 17):
        users = [
            UserState(
                f"u{u}",
                (
                    PastEvent(f"e{u}", f"i{u % 36}", EventType.VIEW, T0),
                    PastEvent(f"s{u}", None, EventType.SEARCH, T0 + timedelta(seconds=5), query=f"red {u}"),
                ),
            )
            for u in range(size)
        ]
        batch, _ = batch_from_states(users, vocab, model.config, queries)
        for got, want in zip(exported.encode(batch), eager.encode(batch), strict=True):
            assert got.shape[0] == size and torch.allclose(got, want, atol=1e-5)


def test_the_rankers_context_keeps_items_without_events_available_with_the_text_tower() -> None:
    from model.train_two_stage import fit_context

    events = [_event(0, "u", "a"), _event(1, "u", "b")]
    catalog = {i: _item(i, f"thing {i}") for i in "abn"}
    assert fit_context(events, catalog, "next-new").unavailable == {"n"}
    assert not fit_context(events, catalog, "next-new", new_items=True).unavailable
