"""Text tower: offline MiniLM embeddings, the per-catalog cache, cold-start items and search queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from contracts import EventType, Item
from model.backends import EagerTorchBackend
from model.scoring import ItemContext, PastEvent, UserState
from model.sequences import QueryCache, batch_from_states
from model.text_tower import MiniLMEncoder, catalog_text_matrix, item_text, minilm_path
from model.torch_scorer import TorchScorer
from model.train import TrainConfig, build_vocab, train
from model.transformer import ModelConfig, SeqRecModel

torch.set_num_threads(1)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


class FakeEncoder:
    """Deterministic bag-of-words vectors; counts calls and texts."""

    def __init__(self, dim: int = 8) -> None:
        self.calls: list[list[str]] = []
        self._dim = dim

    @property
    def name(self) -> str:
        return "fake"

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, sum(map(ord, word)) % self._dim] += 1.0
        return out


def _item(item_id: str, title: str | None, category: str | None = None) -> Item:
    return Item(item_id=item_id, title=title, category=category, ts=T0)


def test_item_text_joins_title_category_brand() -> None:
    assert item_text(_item("a", "Red mug", "kitchen")) == "Red mug | kitchen"
    assert item_text(_item("b", None)) is None


def test_catalog_matrix_caches_each_text_and_encodes_only_changed_entries(tmp_path: Path) -> None:
    catalog = {"a": _item("a", "red mug"), "b": _item("b", None), "c": _item("c", "red mug")}
    encoder = FakeEncoder()
    matrix, has_text = catalog_text_matrix(["a", "b", "c", "zz"], catalog, encoder, tmp_path)
    assert has_text.tolist() == [True, False, True, False]
    assert encoder.calls == [["red mug"]]  # duplicates encoded once
    assert np.array_equal(matrix[0], matrix[2]) and not matrix[1].any() and not matrix[3].any()
    again, _ = catalog_text_matrix(["a", "b", "c", "zz"], catalog, encoder, tmp_path)
    assert len(encoder.calls) == 1 and np.array_equal(again, matrix)  # served from the cache
    catalog["b"] = _item("b", "blue cup")
    catalog_text_matrix(["a", "b", "c", "zz"], catalog, encoder, tmp_path)
    assert encoder.calls[1:] == [["blue cup"]]  # only the changed entry is encoded


def test_minilm_loads_lazily_from_the_installed_package_offline() -> None:
    assert (minilm_path() / "model.safetensors").is_file()
    encoder = MiniLMEncoder()
    assert encoder._loaded is None  # constructing it loads nothing
    vectors = encoder.encode(["red coffee mug", "red tea cup", "trail running shoes"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # pretrained knowledge: mug ~ cup


def test_cold_item_with_a_title_is_scorable_through_its_text() -> None:
    catalog = {f"i{n}": _item(f"i{n}", f"thing {n}") for n in range(4)} | {"cold": _item("cold", "brand new thing")}
    events = [PastEvent(f"e{n}", f"i{n % 4}", EventType.VIEW, T0 + timedelta(minutes=n)) for n in range(6)]
    vocab = build_vocab([], catalog, 0.0)
    assert "cold" in vocab
    torch.manual_seed(0)
    model = SeqRecModel(
        ModelConfig(n_items=vocab.capacity, max_len=6, d_model=8, n_heads=2, n_layers=1, text_tower=True, text_dim=8)
    )
    matrix, _ = catalog_text_matrix(vocab.ids, catalog, FakeEncoder(), None)
    with torch.no_grad():
        model.set_item_text(torch.from_numpy(matrix))
        model.item_emb.weight[vocab.index("cold")] = 0.0  # no trained ID row
    row = vocab.index("cold")
    assert row is not None
    table = model.item_table().detach()
    assert table[row].abs().sum() > 0  # the text alone gives it a place in item space
    scorer = TorchScorer(EagerTorchBackend(model), vocab, model.config, "v")
    ranked = scorer.score([UserState("u", tuple(events))], ItemContext(), len(vocab))[0]
    assert "cold" in {s.item_id for s in ranked}


def test_search_events_feed_the_query_embedding() -> None:
    vocab = build_vocab([], {"a": _item("a", "x")}, 0.0)
    config = ModelConfig(
        n_items=vocab.capacity + 2, max_len=4, d_model=8, n_heads=2, n_layers=1, text_tower=True, text_dim=8
    )
    torch.manual_seed(0)
    model = SeqRecModel(config).eval()
    queries = QueryCache(FakeEncoder())

    def user(query: str) -> UserState:
        return UserState(
            "u", (PastEvent("e0", "a", EventType.VIEW, T0), PastEvent("e1", None, EventType.SEARCH, T0, query=query))
        )

    batch, _ = batch_from_states([user("red shoes")], vocab, config, queries)
    assert batch.query_text is not None and batch.query_text[0, -1].abs().sum() > 0
    assert batch.query_text[0, :-1].abs().sum() == 0
    other, _ = batch_from_states([user("blue hats")], vocab, config, queries)
    assert not torch.allclose(model.encode(batch)[0], model.encode(other)[0])


@pytest.mark.parametrize("loss", ["softmax", "sampled"])
def test_training_with_the_text_tower_runs(loss: str) -> None:
    from model.synthetic import synthetic_catalog, synthetic_events

    config = TrainConfig(
        model=ModelConfig(max_len=6, d_model=16, n_heads=2, n_layers=1, text_tower=True, text_dim=8),
        epochs=2,
        batch_size=64,
        loss=loss,
        n_negatives=16,
        max_valid_points=100,  # type: ignore[arg-type]
    )
    result = train(
        synthetic_events(n_users=40, length=10), synthetic_catalog(extra_cold=2), config, text_encoder=FakeEncoder()
    )
    assert result.model.config.text_tower
    assert result.model.item_text[result.vocab.index("c0-i10")].abs().sum() > 0  # cold catalog item has its text
    assert 0.0 <= result.metrics["ndcg@10"] <= 1.0
