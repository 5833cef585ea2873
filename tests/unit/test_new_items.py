"""A worker gives a new titled item a row without retraining: scorable at once, explained, nothing changed in place."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch

from contracts import EventType, Item, Settings
from model.artifacts import load_scorer
from model.interactions import InteractionIndex
from model.new_items import GrownTable, with_new_items
from model.rank_features import FEATURES
from model.scoring import PastEvent, UserState
from model.synthetic import synthetic_catalog, synthetic_events
from model.text_tower import MiniLMEncoder
from model.two_stage import TwoStageScorer
from streams.agents.new_items import NewItemRows
from streams.runtime import Runtime
from streams.serving import load_serving

torch.set_num_threads(1)
T0 = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return MiniLMEncoder()


def _buyer() -> UserState:
    events = (
        PastEvent("e0", "c1-i2", EventType.VIEW, T0),
        PastEvent("e1", "c1-i4", EventType.VIEW, T0 + timedelta(seconds=30)),
        PastEvent("e2", "c1-i4", EventType.PURCHASE, T0 + timedelta(seconds=60)),
    )
    return UserState("buyer", events)


def test_a_new_titled_item_becomes_a_candidate_without_retraining(
    text_two_stage_dir: Path, encoder: MiniLMEncoder
) -> None:
    scorer = load_scorer(text_two_stage_dir, backend="torch", device="cpu")
    assert isinstance(scorer, TwoStageScorer)
    catalog = synthetic_catalog()
    bought = catalog["c1-i4"]
    fresh = Item(item_id="fresh-1", title=f"{bought.title} deluxe", category=bought.category, ts=T0)
    catalog[fresh.item_id] = fresh
    items = InteractionIndex.build(synthetic_events(n_users=80, length=12), catalog).item_context()
    grown, added = with_new_items(scorer, [fresh], catalog, encoder)
    assert added == ["fresh-1"] and isinstance(grown, TwoStageScorer)
    assert "fresh-1" not in scorer.transformer.vocab and "fresh-1" in grown.transformer.vocab  # nothing in place
    assert grown.version == scorer.version  # no promotion: the same trained weights
    sets, _ = grown.builder.build([_buyer()], items)
    parts = grown.builder.parts
    candidates = {
        parts.vocab[int(r)]: dict(zip(FEATURES, f.tolist(), strict=True))
        for r, f in zip(sets[0].rows, sets[0].features, strict=True)
    }
    assert "fresh-1" in candidates and "fresh-1" not in {
        parts.vocab[int(r)] for r in scorer.builder.build([_buyer()], items)[0][0].rows
    }
    assert candidates["fresh-1"]["txn_listed"] == 1.0 and candidates["fresh-1"]["tx_sim"] > 0.8  # named by its text
    assert parts.item_counts[parts.index["fresh-1"]] == 0  # a row without events
    again, none = with_new_items(grown, [fresh], catalog, encoder)
    assert none == [] and again is grown  # the same item twice: one row


def test_an_item_without_text_or_spare_rows_gets_no_row(two_stage_dir: Path, encoder: MiniLMEncoder) -> None:
    scorer = load_scorer(two_stage_dir, backend="torch", device="cpu")
    catalog = synthetic_catalog()
    bare = Item(item_id="bare", ts=T0)
    assert with_new_items(scorer, [bare], {**catalog, "bare": bare}, encoder) == (scorer, [])
    assert isinstance(scorer, TwoStageScorer)
    many = [Item(item_id=f"n{i}", title=f"new thing {i}", ts=T0) for i in range(scorer.transformer.vocab.spare + 5)]
    grown, added = with_new_items(scorer, many, {**catalog, **{i.item_id: i for i in many}}, encoder)
    assert len(added) == scorer.transformer.vocab.spare  # the rest waits for the learner's resized model


def test_a_compiled_encoder_is_kept_and_serves_the_grown_table(
    text_two_stage_dir: Path, encoder: MiniLMEncoder
) -> None:
    exported = load_scorer(text_two_stage_dir, backend="exported", device="cpu")
    eager = load_scorer(text_two_stage_dir, backend="torch", device="cpu")
    assert isinstance(exported, TwoStageScorer) and isinstance(eager, TwoStageScorer)
    fresh = Item(item_id="fresh-2", title="red thing 3 deluxe", category="cat0", ts=T0)
    catalog = {**synthetic_catalog(), fresh.item_id: fresh}
    from_exported, _ = with_new_items(exported, [fresh], catalog, encoder)
    from_eager, _ = with_new_items(eager, [fresh], catalog, encoder)
    assert isinstance(from_exported, TwoStageScorer) and isinstance(from_eager, TwoStageScorer)
    backend = from_exported.transformer.backend
    assert isinstance(backend, GrownTable) and backend.name == exported.transformer.backend.name
    row = from_exported.transformer.vocab.index("fresh-2")
    assert row is not None and float(backend.item_table()[row].abs().sum()) > 0.0
    torch.testing.assert_close(backend.item_table(), from_eager.transformer.backend.item_table())


def test_the_worker_grows_its_serving_model_once_and_again_after_a_swap(
    text_two_stage_dir: Path, encoder: MiniLMEncoder, tmp_path: Path
) -> None:
    settings = Settings(model_dir=tmp_path / "store", backend="torch", device="cpu")
    original = load_serving(text_two_stage_dir, settings)
    runtime = Runtime(settings, serving=original)
    rows = NewItemRows(runtime, encoder)
    for item in synthetic_catalog().values():
        rows.offer(item.model_dump_json().encode())
    fresh = Item(item_id="fresh-3", title="blue thing 2 deluxe", category="cat1", ts=T0)

    async def scenario() -> list[int]:
        added = [await rows.grow()]  # every catalog item is known: nothing to add
        rows.offer(fresh.model_dump_json().encode())
        rows.offer(b"{not json")  # the catalog agent dead-letters it; here it is skipped
        added += [await rows.grow(), await rows.grow()]  # the second finds the row already there
        runtime.swap(original)  # a model update without the item ...
        added.append(await rows.grow())  # ... gets it again
        return added

    assert asyncio.run(scenario()) == [0, 1, 0, 1]
    scorer = runtime.serving.scorer
    assert isinstance(scorer, TwoStageScorer) and "fresh-3" in scorer.transformer.vocab
    assert runtime.serving.version == original.version and runtime.serving.explainer is not original.explainer
    assert runtime.metrics.registry.get_sample_value("streamrec_new_item_rows_total") == 2.0
