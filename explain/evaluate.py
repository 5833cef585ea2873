"""`streamrec explain-eval`: fidelity of every attribution method (and the random floor) in one run, plus exposure.

For a sample of users (their state at the end of the data), the model's top `k` items are explained by every
method; then, per (user, item) pair, the item's score is re-computed with the top-m attributed events deleted
(deletion curve) or alone (insertion curve), m = 1..L, and on the ERASER bins (comprehensiveness, sufficiency);
the item's rank within the user's slate is tracked on the deletion curve. Deleting an event = removing it from
the sequence (`explain.attribution.compact`), exactly as occlusion does, so every method is judged by the same
forward passes. See `explain.metrics` for the definitions. `text_agreement`: share of pairs where the method's
top event is the event the `Explainer`'s text leads with. `cost_ms`: attribution wall time per explained item.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from contracts import Event, Item
from explain.attribution import METHODS, Encoder, compact, make_attributor, real_events, score_rows, take
from explain.explainer import Explainer, default_method, select_method
from explain.metrics import ERASER_BINS, curve_auc, decile_shares, eraser_sizes, gini, normaliser, shares
from model.history import build_user_state
from model.interactions import InteractionIndex
from model.scoring import ItemContext, ScoredItem, UserState
from model.sequences import batch_from_states
from model.torch_scorer import TorchScorer
from model.transformer import SeqBatch, SeqRecModel

__all__ = ["FidelityConfig", "evaluate_explanations", "pair_ranks", "sample_users"]


@dataclass(frozen=True, slots=True)
class FidelityConfig:
    """Knobs of one explain-eval run."""

    max_users: int = 64  # users sampled (those with >= min_events events)
    min_events: int = 2  # shortest history sampled (with 2 events, deleting the top 1 is a coin flip for random)
    k: int = 3  # top items explained per user
    curve_length: int = 10  # L: deletion/insertion curve points m = 1..L
    batch_size: int = 16  # users per attribution call
    exposure_k: int = 10  # slate size for the exposure statistics
    seed: int = 0
    methods: Sequence[str] = field(default_factory=lambda: list(METHODS))
    backend: str = "torch"  # serving backend whose default method is reported


def sample_users(
    events: Sequence[Event], item_category: Mapping[str, str], n: int, seed: int, min_events: int = 2
) -> list[UserState]:
    """States of up to `n` users with >= `min_events` events, at the end of their history (seeded, sorted by id)."""
    by_user: dict[str, list[Event]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(event)
    eligible = sorted(u for u, evs in by_user.items() if len(evs) >= max(2, min_events))
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(eligible, size=min(n, len(eligible)), replace=False).tolist()) if eligible else []
    return [build_user_state(u, sorted(by_user[u], key=lambda e: e.ts), item_category) for u in chosen]


def pair_ranks(weights: Tensor, real: Tensor) -> Tensor:
    """Rank (P, T) of each position by weight, 0 = strongest; ties go to the newer event; non-events get T."""
    t = weights.shape[1]
    key = weights.masked_fill(~real, float("-inf")).flip(1)  # newest first, so a stable sort favours it
    order = t - 1 - torch.argsort(-key, dim=1, stable=True)  # (P, T) positions, strongest first
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(t).expand_as(order).contiguous())
    return ranks.masked_fill(~real, t)


def _variants(ranks: Tensor, real: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Keep masks (P, V, T) and validity (P, V): full, empty, deletion 1..L, insertion 1..L, ERASER comp/suff."""
    n = real.sum(1)  # (P,)
    ms = torch.arange(1, length + 1)
    sizes = torch.tensor([eraser_sizes(int(c)) or [0] * len(ERASER_BINS) for c in n.tolist()])  # (P, 5)
    top_m = ranks[:, None, :] < ms[None, :, None]  # (P, L, T)
    top_s = ranks[:, None, :] < sizes[:, :, None]  # (P, 5, T)
    r = real[:, None, :]
    keep = torch.cat([r, torch.zeros_like(r), r & ~top_m, r & top_m, r & ~top_s, r & top_s], dim=1)
    ones = torch.ones_like(n, dtype=torch.bool)[:, None]
    in_range = ms[None, :] <= n[:, None]
    valid = torch.cat([ones, ones, in_range, in_range, (sizes > 0), (sizes > 0)], dim=1)
    return keep, valid


def _variant_scores(
    encoder: Encoder, batch: SeqBatch, rows: Tensor, pair_user: Tensor, pair_col: Tensor, keep: Tensor
) -> tuple[Tensor, Tensor]:
    """Own score (P, V) and rank within the user's slate (P, V) of each pair's item under each keep mask."""
    p, v, t = keep.shape
    owners = pair_user.repeat_interleave(v)
    variants = compact(take(batch, owners), keep.reshape(p * v, t))
    table = encoder.item_table()
    with torch.inference_mode():
        users, copy = encoder.encode(variants)
        slate = score_rows(users, copy, variants.items.to(table.device), table, rows[owners]).float().cpu()
    own = slate.gather(1, pair_col.repeat_interleave(v)[:, None])  # (P*V, 1)
    rank = 1 + (slate > own).sum(1)
    return own.view(p, v), rank.view(p, v).float()


@dataclass
class _Pooled:
    scores: list[Tensor] = field(default_factory=list)
    ranks: list[Tensor] = field(default_factory=list)
    valid: list[Tensor] = field(default_factory=list)
    top: list[Tensor] = field(default_factory=list)
    seconds: float = 0.0
    pairs: int = 0


def _method_batch(
    attributor: Any, encoder: Encoder, batch: SeqBatch, rows: Tensor, k_real: Tensor, length: int, into: _Pooled
) -> None:
    start = time.perf_counter()
    weights = attributor.attribute(batch, rows)  # (B, K, T)
    into.seconds += time.perf_counter() - start
    pair_user, pair_col = k_real.nonzero(as_tuple=True)
    into.pairs += int(pair_user.shape[0])
    w, real = weights[pair_user, pair_col], real_events(batch)[pair_user]
    ranks = pair_ranks(w, real)
    keep, valid = _variants(ranks, real, length)
    own, slate_rank = _variant_scores(encoder, batch, rows, pair_user, pair_col, keep)
    into.scores.append(own)
    into.ranks.append(slate_rank)
    into.valid.append(valid)
    top = torch.where(real.any(1), ranks.argmin(1), -1)  # strongest position per pair
    into.top.append(top)


def _summarise(pooled: _Pooled, length: int, scale: float, lead: Tensor) -> dict[str, Any]:
    s, valid = torch.cat(pooled.scores).numpy(), torch.cat(pooled.valid).numpy()
    ranks = torch.cat(pooled.ranks).numpy()
    full, empty = s[:, 0], s[:, 1]
    dele, ins = s[:, 2 : 2 + length], s[:, 2 + length : 2 + 2 * length]
    comp, suff = s[:, 2 + 2 * length : -len(ERASER_BINS)], s[:, -len(ERASER_BINS) :]
    v_curve = valid[:, 2 : 2 + length]
    v_bins = valid[:, -len(ERASER_BINS) :]
    top = torch.cat(pooled.top)
    has_lead = lead >= 0
    return {
        "deletion_auc": curve_auc(full[:, None] - dele, v_curve, scale),
        "insertion_auc": curve_auc(ins - empty[:, None], v_curve, scale),
        "comprehensiveness": curve_auc(full[:, None] - comp, v_bins, scale),
        "sufficiency": curve_auc(full[:, None] - suff, v_bins, scale),
        "cost_ms": 1000.0 * pooled.seconds / max(1, pooled.pairs),
        "text_agreement": float((top[has_lead] == lead[has_lead]).float().mean()) if has_lead.any() else None,
        "deletion_curve": _mean_curve((full[:, None] - dele) / scale, v_curve),
        "insertion_curve": _mean_curve((ins - empty[:, None]) / scale, v_curve),
        "deletion_rank_curve": _mean_curve(ranks[:, 2 : 2 + length], v_curve),
    }


def _mean_curve(values: np.ndarray, valid: np.ndarray) -> list[float]:
    return [float(values[valid[:, m], m].mean()) if valid[:, m].any() else float("nan") for m in range(values.shape[1])]


def _lead_positions(
    explainer: Explainer, users: Sequence[UserState], items: ItemContext, scored: list[list[ScoredItem]], t: int
) -> list[int]:
    """Position (in the padded batch) of the event each explanation's text leads with, -1 if none; per pair."""
    evidence = explainer.evidence(users, scored)
    assert explainer.vocab is not None and explainer.config is not None  # noqa: S101
    _, encoded = batch_from_states(users, explainer.vocab, explainer.config)
    out: list[int] = []
    for u, per_item in enumerate(evidence):
        rows = encoded[u]
        n = min(len(rows.items), t)
        position = {int(i): t - n + j for j, i in enumerate(rows.kept[len(rows.items) - n :].tolist())}
        out.extend(position.get(ev[0][0], -1) if ev else -1 for ev in per_item)
    return out


def evaluate_explanations(
    scorer: TorchScorer,
    model: SeqRecModel,
    events: Sequence[Event],
    catalog: Mapping[str, Item],
    config: FidelityConfig | None = None,
) -> dict[str, Any]:
    """Run every method on the sampled users; JSON-ready result (see the module docstring and the CLI)."""
    config = config or FidelityConfig()
    torch.manual_seed(config.seed)
    items = InteractionIndex.build(events, catalog).item_context()
    users = sample_users(events, items.item_category, config.max_users, config.seed, config.min_events)
    encoder: Encoder = scorer.backend
    attributors = {name: make_attributor(name, encoder, model, config.seed) for name in config.methods}
    default = default_method(config.backend)
    explainer = Explainer(encoder=encoder, model=model, vocab=scorer.vocab, config=scorer.config, method=default)
    pooled = {name: _Pooled() for name in config.methods}
    leads: list[int] = []
    recommended: Counter[str] = Counter()
    for start in range(0, len(users), config.batch_size):
        part = users[start : start + config.batch_size]
        slates = scorer.score(part, items, max(config.k, config.exposure_k))
        recommended.update(s.item_id for slate in slates for s in slate[: config.exposure_k])
        scored = [slate[: config.k] for slate in slates]
        batch, _ = batch_from_states(part, scorer.vocab, scorer.config)
        rows = torch.zeros((len(part), config.k), dtype=torch.long)
        for u, slate in enumerate(scored):
            for j, s in enumerate(slate):
                rows[u, j] = scorer.vocab.index(s.item_id) or 0
        leads.extend(_lead_positions(explainer, part, items, scored, batch.items.shape[1]))
        for name, attributor in attributors.items():
            _method_batch(attributor, encoder, batch, rows, rows > 0, config.curve_length, pooled[name])
    first = pooled[config.methods[0]]
    all_scores = torch.cat(first.scores).numpy()
    scale = normaliser(all_scores[:, 0], all_scores[:, 1])
    lead = torch.tensor(leads, dtype=torch.long)
    methods = {name: _summarise(p, config.curve_length, scale, lead) for name, p in pooled.items()}
    return {
        "default_method": default,
        "backend": config.backend,
        "model_version": scorer.version,
        "n_users": len(users),
        "min_events": config.min_events,
        "mean_events": float(np.mean([len(u.events) for u in users])) if users else 0.0,
        "n_pairs": first.pairs,
        "k": config.k,
        "curve_length": config.curve_length,
        "score_scale": scale,
        "methods": methods,
        "rule_choice": _rule_choice(methods),
        "exposure": exposure(events, catalog, items, recommended),
    }


def _rule_choice(methods: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """What `select_method` picks per backend from this run's numbers (to check `DEFAULT_METHOD` against)."""
    auc = {n: m["deletion_auc"] for n, m in methods.items() if m["deletion_auc"] == m["deletion_auc"]}
    cost = {n: m["cost_ms"] for n, m in methods.items()}
    out = {}
    for backend in ("torch", "tensorrt"):
        try:
            out[backend] = select_method(auc, cost, backend)
        except ValueError:
            continue  # nothing measured that this backend can run
    return out


def exposure(
    events: Sequence[Event], catalog: Mapping[str, Item], items: ItemContext, recommended: Counter[str]
) -> dict[str, Any]:
    """Exposure of items in the recommendations vs in the data: popularity deciles, categories, Gini, coverage."""
    in_data = Counter(e.item_id for e in events if e.item_id is not None)
    universe = set(catalog) | set(in_data)
    counts_rec = [float(recommended.get(i, 0)) for i in sorted(universe)]
    counts_data = [float(in_data.get(i, 0)) for i in sorted(universe)]
    return {
        "catalog_size": len(universe),
        "slots": sum(recommended.values()),  # recommendation slots counted (users x exposure_k)
        "catalog_coverage": len(recommended) / max(1, len(universe)),
        "gini_recommendations": gini(counts_rec),
        "gini_data": gini(counts_data),
        "popularity_deciles_recommendations": decile_shares(in_data, recommended),
        "popularity_deciles_data": decile_shares(in_data, in_data),
        "categories_recommendations": shares(recommended, items.item_category),
        "categories_data": shares(in_data, items.item_category),
    }
