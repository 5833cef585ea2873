"""Training: learns sequential structure the baselines miss, is reproducible, and `streamrec train` writes a
loadable model directory."""

from __future__ import annotations

import dataclasses
import gzip
import json
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from contracts import Event, EventType
from model.artifacts import MANIFEST_FILE, load_scorer
from model.baselines import default_blend
from model.evaluate import EvalConfig, evaluate
from model.scoring import PastEvent, UserState
from model.sequences import batch_from_states
from model.splits import loo_split, split_at, time_split
from model.synthetic import synthetic_catalog, synthetic_events
from model.train import Progress, TrainConfig, train, train_steps
from model.transformer import ModelConfig
from streamrec.commands.train import register

torch.set_num_threads(1)
TINY = ModelConfig(max_len=8, d_model=32, n_heads=2, n_layers=1, dropout=0.1)


def test_learns_next_item_structure_better_than_the_blend_baseline() -> None:
    events, catalog = synthetic_events(n_users=200, length=15), synthetic_catalog()
    reports: list[Progress] = []
    config = TrainConfig(model=TINY, epochs=12, patience=4, lr=5e-3, batch_size=32, max_valid_points=300)
    result = train(events, catalog, config, on_progress=reports.append)
    fit, held_out = split_at(events, result.cutoff)
    split = time_split(fit, held_out, catalog, max_points=300)
    blend = evaluate(split, {"blend": default_blend()}, EvalConfig(bootstrap=20)).scorers[0].metrics["ndcg@10"].value
    assert result.metrics["valid_points"] == len(split.points)
    assert result.metrics["ndcg@10"] > blend + 0.15  # the ring walk is sequential; co-occurrence/popularity blur it
    assert any(r.ndcg is not None for r in reports) and any(r.step > 0 for r in reports)
    assert result.history[0]["loss"] > result.history[-1]["loss"]


def _small(seed: int, loss: str = "softmax") -> dict[str, torch.Tensor]:
    config = TrainConfig(model=TINY, epochs=2, batch_size=32, seed=seed, loss=loss, n_negatives=8, max_valid_points=50)  # type: ignore[arg-type]
    return train(synthetic_events(n_users=30, length=10), synthetic_catalog(), config).model.state_dict()


@pytest.mark.parametrize("loss", ["softmax", "sampled"])
def test_same_seed_same_weights(loss: str) -> None:
    first, second = _small(3, loss), _small(3, loss)
    assert all(torch.equal(first[name], second[name]) for name in first)
    other = _small(4, loss)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_too_little_data_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not enough data"):
        train(synthetic_events(n_users=1, length=2), synthetic_catalog(), TrainConfig(model=TINY, epochs=1))


def _write_data(directory: Path) -> None:
    directory.mkdir()
    with gzip.open(directory / "events.jsonl.gz", "wt") as handle:
        handle.writelines(e.model_dump_json() + "\n" for e in synthetic_events(n_users=40, length=10))
    with gzip.open(directory / "catalog.jsonl.gz", "wt") as handle:
        handle.writelines(i.model_dump_json() + "\n" for i in synthetic_catalog().values())


def test_cli_trains_and_writes_a_loadable_model(tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    _write_data(tmp_path / "data")
    out = tmp_path / "model"
    args = ["train", "--data", str(tmp_path / "data"), "--out", str(out), "--epochs", "2", "--max-len", "8"]
    result = CliRunner().invoke(app, [*args, "--d-model", "16", "--layers", "1", "--seed", "1", "--exclude-last-day"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["version"] in result.output
    assert manifest["training"]["seed"] == 1 and "ndcg@10" in manifest["metrics"]
    assert manifest["data"]["events.jsonl.gz"] and manifest["data"]["until"] is not None
    assert load_scorer(out, backend="torch", device="cpu").version == manifest["version"]
    assert manifest["two_stage"] is not None and manifest["training"]["refit"]  # the default model: two-stage
    assert "ranker held-out ndcg@10" in result.output


def test_cli_missing_data_exits_non_zero(tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert "not found" in result.output


def test_train_steps_fine_tunes_in_place() -> None:
    events, catalog = synthetic_events(n_users=60, length=12), synthetic_catalog()
    config = TrainConfig(model=TINY, epochs=1, batch_size=32, max_valid_points=50, lr=5e-3)
    result = train(events, catalog, config)
    before = {name: t.clone() for name, t in result.model.state_dict().items()}
    losses = train_steps(result.model, result.vocab, events, 25, config)
    assert len(losses) == 25 and all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])
    assert not result.model.training
    assert not torch.equal(before["item_emb.weight"], result.model.state_dict()["item_emb.weight"])
    with pytest.raises(ValueError, match="no training sequence"):
        train_steps(result.model, result.vocab, events[:1], 1, config)


def test_loo_validation_holds_out_every_users_last_item() -> None:
    events, catalog = synthetic_events(n_users=30, length=10), synthetic_catalog()
    config = TrainConfig(model=TINY, epochs=1, batch_size=32, valid_protocol="loo", max_valid_points=1000)
    result = train(events, catalog, config)
    assert result.metrics["valid_points"] == 30  # one validation target per user
    assert result.training["train_events"] == len(loo_split(events, catalog).train)  # last items never trained on


def test_refit_also_learns_from_the_validation_window() -> None:
    events, catalog = synthetic_events(n_users=60, length=10), synthetic_catalog(extra_cold=1)
    (fresh,) = set(catalog) - {e.item_id for e in events}
    last = max(e.ts for e in events)
    # Only the newest events (the validation window) contain `fresh`: half of the users came to it last.
    events += [
        Event(
            event_id=f"fresh-{u}", user_id=f"u{u}", item_id=fresh, type=EventType.VIEW, ts=last + timedelta(minutes=u)
        )
        for u in range(0, 60, 2)
    ]
    config = TrainConfig(model=TINY, epochs=3, patience=3, batch_size=16, lr=5e-3, max_valid_points=100)

    def fresh_rank(refit: bool) -> float:  # mean rank of `fresh` for the users who never saw it
        result = train(events, catalog, dataclasses.replace(config, refit=refit))
        assert result.training["refit"] is refit
        users = [
            UserState(u, tuple(PastEvent(e.event_id, e.item_id, e.type, e.ts) for e in events if e.user_id == u))
            for u in (f"u{n}" for n in range(1, 60, 2))
        ]
        batch, _ = batch_from_states(users, result.vocab, TINY)
        with torch.no_grad():
            scores = result.model.score(batch)  # (users, rows)
        fresh_scores = scores[:, result.vocab.index(fresh)]
        return float((scores > fresh_scores[:, None]).sum(1).float().mean())

    assert fresh_rank(refit=True) < fresh_rank(refit=False) / 2  # measured 17 vs 50 of 78 rows


def test_refit_epochs_is_the_refit_of_a_validated_run() -> None:
    events, catalog = synthetic_events(n_users=30, length=10), synthetic_catalog()
    config = TrainConfig(model=TINY, epochs=3, patience=3, batch_size=16, max_valid_points=50, refit=True)
    validated = train(events, catalog, config)
    direct = train(events, catalog, dataclasses.replace(config, refit_epochs=validated.training["best_epoch"]))
    assert direct.training["refit_events"] == len(events) and direct.history == []
    first, second = validated.model.state_dict(), direct.model.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_next_new_training_targets_skip_re_clicks() -> None:
    from model.train import _windows, build_vocab

    t0 = synthetic_events(n_users=1, length=1)[0].ts
    items = ["a", "a", "b", "b", "a"]
    events = [
        Event(event_id=f"e{n}", user_id="u", item_id=i, type="view", ts=t0 + timedelta(minutes=n))
        for n, i in enumerate(items)
    ]
    vocab = build_vocab(events, {}, 0.1)
    row = {i: vocab.index(i) for i in "ab"}
    every = _windows(events, vocab, TINY, None)
    new = _windows(events, vocab, TINY, None, "next-new")
    # inputs a a b b (left-padded to 8); next items a b b a; next-new drops the two re-clicks (a->a, b->b)
    assert every.targets[0, -4:].tolist() == [row["a"], row["b"], row["b"], row["a"]]
    assert new.targets[0, -4:].tolist() == [0, row["b"], 0, row["a"]]
    assert torch.equal(every.items, new.items)
