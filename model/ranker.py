"""The learned second stage: a small MLP scoring candidate feature rows, trained listwise, saved as safetensors.

Training (`fit_ranker`): `members` MLPs whose scores are averaged (`RankerEnsemble`), each early-stopped on the
NDCG@10 of another held-out share of the points, so together they learn from every point. Each example is one
validation point's candidate set (`model.rank_features`) with the index of its target; the loss is the softmax
cross-entropy of the target within its own list (listwise), Adam. Points whose target is not a candidate carry
no signal and are left out of the loss (they still count as misses in the held-out NDCG). Features are
standardised with the training rows' mean and standard deviation, stored with the weights.

Files (`save_ranker` / `load_ranker`): `ranker.safetensors` (each member's weights, `mean`, `std`; metadata: the
config, feature names and member count). The caller keeps the file's sha256 in its manifest and `load_ranker`
refuses a file whose checksum differs (`ChecksumMismatch`). Nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from contracts import ChecksumMismatch, ModelError

__all__ = [
    "RANKER_FILE",
    "RankerConfig",
    "RankerEnsemble",
    "RankerMLP",
    "fit_ranker",
    "list_ndcg",
    "load_ranker",
    "save_ranker",
]

RANKER_FILE = "ranker.safetensors"


@dataclass(frozen=True)
class RankerConfig:
    """Second-stage knobs (chosen once, the same for every dataset)."""

    hidden: int = 64  # units of each hidden layer
    layers: int = 2  # hidden layers
    dropout: float = 0.1  # between hidden layers
    lr: float = 3e-3  # Adam
    weight_decay: float = 1e-5  # L2 on the weights (Adam)
    epochs: int = 40  # upper bound; early stopping usually ends sooner
    patience: int = 5  # epochs without a better held-out NDCG@10
    batch_points: int = 128  # candidate lists per step
    holdout: float = 0.2  # share of the points held out for early stopping
    members: int = 3  # MLPs averaged, each holding out another share (less variance, every point learnt from)
    seed: int = 0


class RankerMLP(nn.Module):
    """Standardised features (n, F) -> scores (n,) through `layers` ReLU layers."""

    def __init__(self, n_features: int, config: RankerConfig) -> None:
        """Args: features per row, architecture (hidden, layers, dropout)."""
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        blocks: list[nn.Module] = []
        width = n_features
        for _ in range(config.layers):
            blocks += [nn.Linear(width, config.hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = config.hidden
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, features: Tensor) -> Tensor:
        """(n, F) raw features -> (n,) scores."""
        mean, std = self.mean, self.std
        assert isinstance(mean, Tensor) and isinstance(std, Tensor)  # noqa: S101 (buffers)
        out: Tensor = self.net((features - mean) / std).squeeze(-1)
        return out

    @torch.no_grad()
    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores of a (n, F) float array, in eval mode."""
        self.eval()
        scores: np.ndarray = self(torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy()
        return scores


class RankerEnsemble(nn.Module):
    """The mean score of several `RankerMLP`s (what `fit_ranker` returns and the two-stage scorer uses)."""

    def __init__(self, members: Sequence[RankerMLP]) -> None:
        """Args: the fitted members (at least one, same features)."""
        super().__init__()
        if not members:
            msg = "a ranker ensemble needs at least one member"
            raise ValueError(msg)
        self.members = nn.ModuleList(members)

    @property
    def config(self) -> RankerConfig:
        """The members' architecture."""
        first = self.members[0]
        assert isinstance(first, RankerMLP)  # noqa: S101 (built from RankerMLPs only)
        return first.config

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Mean member score of a (n, F) float array."""
        scores = [m.predict(features) for m in self.members if isinstance(m, RankerMLP)]
        mean: np.ndarray = np.mean(scores, axis=0)
        return mean


def list_ndcg(scores: np.ndarray, gold: int, k: int = 10) -> float:
    """NDCG@k of one candidate list whose target is at index `gold` (-1: not a candidate, 0)."""
    if gold < 0:
        return 0.0
    rank = int((scores >= scores[gold]).sum()) - 1  # ties count against the target (a constant scores 0)
    return 1.0 / float(np.log2(rank + 2)) if rank < k else 0.0


def _listwise_loss(model: RankerMLP, lists: Sequence[tuple[Tensor, int]]) -> Tensor:
    """Mean over lists of -log softmax(target) within its own list (a segment log-sum-exp over the flat rows)."""
    features = torch.cat([f for f, _ in lists])  # (sum n, F)
    sizes = torch.tensor([len(f) for f, _ in lists])
    segment = torch.repeat_interleave(torch.arange(len(lists)), sizes)  # (sum n,)
    offsets = torch.cumsum(sizes, 0) - sizes
    z = model(features)
    top = torch.zeros(len(lists)).scatter_reduce(0, segment, z.detach(), "amax", include_self=False)
    total = torch.zeros(len(lists)).index_add(0, segment, torch.exp(z - top[segment]))
    gold = offsets + torch.tensor([g for _, g in lists])
    loss: Tensor = (torch.log(total) + top - z[gold]).mean()
    return loss


def fit_ranker(
    examples: Sequence[tuple[np.ndarray, int]],
    config: RankerConfig | None = None,
    report: Callable[[int, float, float], None] | None = None,
) -> tuple[RankerEnsemble, dict[str, float]]:
    """Train `config.members` MLPs on (features (n, F), target index or -1) per point, member m holding out the
    m-th `holdout` share of one shuffled order; returns the ensemble and the members' mean held-out metrics.

    Raises:
        ValueError: no example whose target is among its candidates.
    """
    config = config or RankerConfig()
    order = np.random.default_rng(config.seed).permutation(len(examples))
    size = max(1, int(len(examples) * config.holdout))
    members, scores, epochs = [], [], []
    for m in range(config.members):
        held = np.roll(order, -m * size)[:size]  # a different share per member (wraps around)
        rest = np.setdiff1d(order, held, assume_unique=True)
        member_config = dataclasses.replace(config, seed=config.seed + m)
        model, metrics = _fit_member(examples, rest, held, member_config, report)
        members.append(model)
        scores.append(metrics["ranker_holdout_ndcg@10"])
        epochs.append(metrics["ranker_best_epoch"])
    return RankerEnsemble(members), {
        "ranker_holdout_ndcg@10": float(np.mean(scores)),
        "ranker_best_epoch": float(np.mean(epochs)),
    }


def _fit_member(
    examples: Sequence[tuple[np.ndarray, int]],
    fit_rows: np.ndarray,
    held_rows: np.ndarray,
    config: RankerConfig,
    report: Callable[[int, float, float], None] | None,
) -> tuple[RankerMLP, dict[str, float]]:
    """One MLP trained on the points `fit_rows`, early-stopped on `held_rows`."""
    rng = np.random.default_rng(config.seed)
    train = [examples[i] for i in fit_rows.tolist() if examples[i][1] >= 0 and len(examples[i][0]) > 1]
    held = [examples[i] for i in held_rows.tolist()]
    if not train:
        msg = "no training point has its target among the candidates: nothing to fit the ranker on"
        raise ValueError(msg)
    torch.manual_seed(config.seed)
    model = RankerMLP(train[0][0].shape[1], config)
    rows = np.concatenate([f for f, _ in train]).astype(np.float64)
    model.mean.copy_(torch.from_numpy(rows.mean(0)).float())  # type: ignore[operator]
    model.std.copy_(torch.from_numpy(np.maximum(rows.std(0), 1e-6)).float())  # type: ignore[operator]
    tensors = [(torch.from_numpy(f.astype(np.float32)), g) for f, g in train]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best: tuple[float, int, dict[str, Tensor]] = (-float("inf"), 0, {})
    for epoch in range(1, config.epochs + 1):
        loss = _epoch(model, tensors, optimizer, config, rng)
        score = float(np.mean([list_ndcg(model.predict(f), g) for f, g in held])) if held else -loss
        if report is not None:
            report(epoch, loss, score)
        if score > best[0]:
            best = (score, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        elif epoch - best[1] >= config.patience:
            break
    model.load_state_dict(best[2])
    model.eval()
    return model, {"ranker_holdout_ndcg@10": best[0], "ranker_best_epoch": float(best[1])}


def _epoch(
    model: RankerMLP,
    lists: Sequence[tuple[Tensor, int]],
    optimizer: torch.optim.Optimizer,
    config: RankerConfig,
    rng: np.random.Generator,
) -> float:
    model.train()
    order = rng.permutation(len(lists)).tolist()
    total, steps = 0.0, 0
    for start in range(0, len(order), config.batch_points):
        loss = _listwise_loss(model, [lists[i] for i in order[start : start + config.batch_points]])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        total, steps = total + float(loss.detach()), steps + 1
    return total / max(steps, 1)


def save_ranker(path: Path, model: RankerEnsemble, features: Sequence[str]) -> None:
    """Write every member's weights and standardisation, and the config (metadata), as one safetensors file."""
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    meta = {
        "config": json.dumps(dataclasses.asdict(model.config)),
        "features": json.dumps(list(features)),
        "members": str(len(model.members)),
    }
    save_file(state, str(path), metadata=meta)


def load_ranker(path: Path, sha256: str, features: Sequence[str]) -> RankerEnsemble:
    """Load and verify a ranker file against the manifest's checksum and the expected feature names.

    Raises:
        ChecksumMismatch: the file's sha256 differs from `sha256`.
        ModelError: unreadable, other features, or weights that do not fit the config.
    """
    from model.artifacts import file_sha256  # local: artifacts imports the two-stage loader

    actual = file_sha256(path)
    if actual != sha256:
        msg = f"{path}: sha256 {actual} != manifest {sha256}"
        raise ChecksumMismatch(msg)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    try:
        config = RankerConfig(**json.loads(meta["config"]))
        stored = json.loads(meta["features"])
        members = int(meta["members"])
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"{path}: ranker metadata is missing or invalid: {exc}"
        raise ModelError(msg) from exc
    if list(stored) != list(features):
        msg = f"{path}: ranker features {stored} differ from this code's {list(features)}"
        raise ModelError(msg)
    model = RankerEnsemble([RankerMLP(len(features), config) for _ in range(max(members, 1))])
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        msg = f"{path}: ranker weights do not fit its config: {exc}"
        raise ModelError(msg) from exc
    return model.eval()
