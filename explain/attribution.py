"""Evidence attribution: the signed weight of each past event toward each recommended item.

Every method answers `attribute(batch, rows) -> (B, K, T)` for a left-padded `SeqBatch` (B users, T positions)
and the item rows recommended to each user `rows` (B, K): weight of the event at position t toward the score of
item k (Captum semantics: larger = pushed the score up; padding and the "start" token get 0). The score is the
model's own: `user · item_row + copy bonus` (the copy head's repeat bonus included).

Methods:
    occlusion: leave-one-out. Event t is *deleted* (later events shift left, as if it never happened) and the
        score drop is its weight. All deletions of all users of a micro-batch go through ONE encoder forward
        (chunked only above `chunk_rows` sequences) and are dotted with the K recommended rows only, not the
        catalog. Forward-only: runs on any `ScoringBackend` (eager, exported, TensorRT).
    gradient_x_input: gradient of each item's score w.r.t. the input embeddings, times the embeddings, summed
        over channels. Needs the eager `SeqRecModel` (`embed` + `encode_embeddings`).
    integrated_gradients: the same along a straight path from an all-zero embedding (content removed, positions
        kept), `steps` midpoint points, batched (B * K * steps sequences per chunk).
    item_similarity: no forward at all: dot product, in the model's item space, of each past event's item row
        with the recommended item's row (the user vector of a bag-of-items model; searches get 0). A cheap
        proxy whose faithfulness `explain-eval` measures like the others.
    attention: reference only, not an attribution: the last block's attention from the newest position, mean
        over heads (the same for every item).
    random: uniform weights on real events; the floor every method must beat.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from model.transformer import SeqBatch

__all__ = [
    "METHODS",
    "Attention",
    "Attributor",
    "DifferentiableEncoder",
    "Encoder",
    "GradientXInput",
    "IntegratedGradients",
    "ItemSimilarity",
    "Occlusion",
    "RandomAttribution",
    "compact",
    "encode_scores",
    "make_attributor",
    "real_events",
    "score_rows",
    "take",
]

METHODS: tuple[str, ...] = (
    "occlusion",
    "gradient_x_input",
    "integrated_gradients",
    "attention",
    "item_similarity",
    "random",
)


class Encoder(Protocol):
    """Forward-only user encoder: `model.backends.ScoringBackend` and `SeqRecModel` both qualify."""

    def encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        """User vectors (B, C) and the repeat bonus of each input event's item (B, T)."""
        ...

    def item_table(self) -> Tensor:
        """Item rows (V, C)."""
        ...


class DifferentiableEncoder(Encoder, Protocol):
    """An encoder whose input embeddings can be reached by gradients (the eager `SeqRecModel`)."""

    def embed(self, batch: SeqBatch) -> Tensor:
        """Input embeddings (B, T, C)."""
        ...

    def encode_embeddings(self, x: Tensor, items: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """`encode` from input embeddings."""
        ...


class Attributor(Protocol):
    """One attribution method."""

    name: str
    needs_gradients: bool  # True: cannot run on a compiled (exported / TensorRT) encoder

    def attribute(self, batch: SeqBatch, rows: Tensor) -> Tensor:
        """Weights (B, K, T) of each position toward each row in `rows` (B, K)."""
        ...


def real_events(batch: SeqBatch) -> Tensor:
    """(B, T) bool: positions holding a real event (not padding, not the empty user's start token)."""
    return (batch.mask > 0) & (batch.types > 0)


def take(batch: SeqBatch, index: Tensor) -> SeqBatch:
    """Rows `index` (N,) of `batch` (repeats allowed)."""
    text = None if batch.query_text is None else batch.query_text[index]
    return SeqBatch(batch.items[index], batch.types[index], batch.gaps[index], batch.mask[index], text)


def compact(batch: SeqBatch, keep: Tensor) -> SeqBatch:
    """Delete the events where `keep` (N, T) is False: the kept ones move right, in order, and pad on the left.

    A row left with no event becomes the scorer's empty-user input (one start token). The time-gap bucket of an
    event after a deleted one is kept as it was (the gap is a property of the event's own timing).
    """
    keep = keep & real_events(batch)
    order = torch.argsort(keep.long(), dim=1, stable=True)  # (N, T): dropped first, kept last, order kept
    kept = keep.gather(1, order)
    items = (batch.items * keep).gather(1, order)
    types = (batch.types * keep).gather(1, order)
    gaps = (batch.gaps * keep).gather(1, order)
    mask = kept.long()
    mask[:, -1] = 1  # the start token of an emptied row (its item/type/gap are 0 = zero embedding)
    text = None
    if batch.query_text is not None:
        text = (batch.query_text * keep[..., None]).gather(1, order[..., None].expand_as(batch.query_text))
    return SeqBatch(items, types, gaps, mask, text)


def score_rows(users: Tensor, copy: Tensor, items: Tensor, table: Tensor, rows: Tensor) -> Tensor:
    """Scores (N, K) of `rows` (N, K): `users (N, C) · table[rows]` plus the copy bonus (N, T) of matching items."""
    dot = torch.einsum("nc,nkc->nk", users.to(table.dtype), table[rows])
    same = items[:, None, :] == rows[:, :, None]  # (N, K, T)
    return dot + (copy[:, None, :].to(dot.dtype) * same).sum(-1)


def encode_scores(encoder: Encoder, batch: SeqBatch, rows: Tensor, chunk_rows: int = 4096) -> Tensor:
    """Scores (N, K) of `rows` for every sequence of `batch`, in forwards of at most `chunk_rows` sequences."""
    table = encoder.item_table()
    out = []
    with torch.inference_mode():
        for start in range(0, batch.items.shape[0], chunk_rows):
            part = take(batch, torch.arange(start, min(start + chunk_rows, batch.items.shape[0])))
            users, copy = encoder.encode(part)
            out.append(score_rows(users, copy, part.items.to(table.device), table, rows[start : start + chunk_rows]))
    return torch.cat(out).float().cpu()


class Occlusion:
    """Leave-one-out deletion, every deleted sequence of the micro-batch in one forward."""

    name = "occlusion"
    needs_gradients = False

    def __init__(self, encoder: Encoder, chunk_rows: int = 4096, newest: int | None = None) -> None:
        """Args: any forward-only encoder; sequences per forward (above it the forward is split); delete only
        each user's `newest` events (None = all; older events then get weight 0, a cost/coverage trade-off)."""
        self.encoder = encoder
        self.chunk_rows = chunk_rows
        self.newest = newest

    def attribute(self, batch: SeqBatch, rows: Tensor) -> Tensor:
        """Score drop (B, K, T) when each single event is deleted."""
        real = real_events(batch)
        b, t = real.shape
        probed = real
        if self.newest is not None:
            probed = real & (real.flip(1).cumsum(1).flip(1) <= self.newest)  # (B, T): newest events only
        users, positions = probed.nonzero(as_tuple=True)  # (P,) each: one deleted sequence per real event
        keep = real[users].clone()
        keep[torch.arange(users.shape[0]), positions] = False
        owners = torch.cat([torch.arange(b), users])  # B originals first, then the P deletions
        variants = compact(take(batch, owners), torch.cat([real, keep]))
        scores = encode_scores(self.encoder, variants, rows[owners], self.chunk_rows)  # (B + P, K)
        weights = torch.zeros(b, rows.shape[1], t)
        weights[users, :, positions] = scores[:b][users] - scores[b:]
        return weights


def _replicated_scores(model: DifferentiableEncoder, x: Tensor, batch: SeqBatch, rows: Tensor) -> Tensor:
    """Score of row `rows[n]` (N,) for sequence n, given input embeddings `x` (N, T, C)."""
    users, copy = model.encode_embeddings(x, batch.items, batch.mask)
    return score_rows(users, copy, batch.items, model.item_table().detach(), rows[:, None])[:, 0]


class GradientXInput:
    """Gradient of each item's score w.r.t. the input embeddings, times the embeddings (one backward)."""

    name = "gradient_x_input"
    needs_gradients = True

    def __init__(self, model: DifferentiableEncoder, chunk_rows: int = 2048) -> None:
        """Args: the eager model (eval mode); (user, item) sequences per forward/backward."""
        self.model = model
        self.chunk_rows = chunk_rows

    def _grad_x_input(self, x: Tensor, baseline: Tensor, batch: SeqBatch, rows: Tensor, steps: int) -> Tensor:
        """(N, T): sum over channels of (x - baseline) * mean gradient on the path (steps=1: at x itself)."""
        n = x.shape[0]
        alphas = torch.ones(1) if steps == 1 else (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
        owners = torch.arange(n).repeat_interleave(steps)  # (N * S,)
        path = baseline[owners] + alphas.repeat(n)[:, None, None] * (x - baseline)[owners]
        grads = torch.zeros_like(path)
        with torch.enable_grad():
            for start in range(0, path.shape[0], self.chunk_rows):
                index = torch.arange(start, min(start + self.chunk_rows, path.shape[0]))
                point = path[index].detach().requires_grad_(True)
                score = _replicated_scores(self.model, point, take(batch, owners[index]), rows[owners[index]])
                (grads[index],) = torch.autograd.grad(score.sum(), point)
        mean_grad = grads.view(n, steps, *x.shape[1:]).mean(1)
        return ((x - baseline) * mean_grad).sum(-1)

    def _attribute(self, batch: SeqBatch, rows: Tensor, steps: int) -> Tensor:
        b, k = rows.shape
        with torch.no_grad():
            x = self.model.embed(batch).detach()  # (B, T, C)
        owners = torch.arange(b).repeat_interleave(k)  # one sequence per (user, item)
        flat = self._grad_x_input(x[owners], torch.zeros_like(x[owners]), take(batch, owners), rows.reshape(-1), steps)
        return (flat.view(b, k, -1) * real_events(batch)[:, None, :]).float().cpu()

    def attribute(self, batch: SeqBatch, rows: Tensor) -> Tensor:
        """Gradient x input (B, K, T)."""
        return self._attribute(batch, rows, steps=1)


class IntegratedGradients(GradientXInput):
    """Integrated gradients from the all-zero embedding, `steps` midpoint points, batched."""

    name = "integrated_gradients"

    def __init__(self, model: DifferentiableEncoder, steps: int = 8, chunk_rows: int = 2048) -> None:
        """Args: the eager model, path points, sequences per forward/backward."""
        super().__init__(model, chunk_rows)
        self.steps = steps

    def attribute(self, batch: SeqBatch, rows: Tensor) -> Tensor:
        """Integrated gradients (B, K, T); per row they sum to score(x) - score(zero embeddings)."""
        return self._attribute(batch, rows, steps=self.steps)


class Attention:
    """The last block's attention from the newest position, mean over heads (a reference, not attribution)."""

    name = "attention"
    needs_gradients = False  # but needs the eager model's modules to read the attention inputs

    def __init__(self, model: torch.nn.Module) -> None:
        """Args: the eager `SeqRecModel`."""
        self.model: Any = model  # reads GPT-2 internals (`backbone.h[-1].attn`), untyped in transformers

    def attribute(self, batch: SeqBatch, rows: Tensor) -> Tensor:
        """Attention weights (B, K, T), identical for every k."""
        block: Any = self.model.backbone.h[-1].attn  # transformers' GPT2Attention
        seen: list[Tensor] = []

        def grab(_module: torch.nn.Module, args: tuple[Tensor, ...], kwargs: dict[str, Tensor]) -> None:
            seen.append(args[0] if args else kwargs["hidden_states"])

        handle = block.register_forward_pre_hook(grab, with_kwargs=True)
        try:
            with torch.inference_mode():
                self.model.encode(batch)
        finally:
            handle.remove()
        with torch.inference_mode():
            query, key, _ = block.c_attn(seen[0]).split(block.split_size, dim=2)  # (B, T, C) each
            b, t, c = key.shape
            heads = block.num_heads
            q = query[:, -1].view(b, heads, 1, c // heads)
            k_ = key.view(b, t, heads, c // heads).transpose(1, 2)  # (B, H, T, D)
            logits = (q @ k_.transpose(-1, -2))[:, :, 0] / (c // heads) ** 0.5  # (B, H, T)
            logits = logits.masked_fill(batch.mask[:, None, :] == 0, float("-inf"))
            weights = torch.softmax(logits, dim=-1).mean(1) * real_events(batch)  # (B, T)
        return weights[:, None, :].expand(-1, rows.shape[1], -1).float().cpu().clone()


class ItemSimilarity:
    """Dot product of each past event's item row with the recommended row (no encoder pass)."""

    name = "item_similarity"
    needs_gradients = False

    def __init__(self, encoder: Encoder) -> None:
        """Args: any encoder (only its item table is read)."""
        self.encoder = encoder

    def attribute(self, batch: SeqBatch, rows: Tensor) -> Tensor:
        """Similarities (B, K, T); 0 on padding and searches."""
        table = self.encoder.item_table()
        with torch.inference_mode():
            past = table[batch.items.to(table.device)]  # (B, T, C); row 0 (padding, search) is all zeros
            weights = torch.einsum("btc,bkc->bkt", past, table[rows.to(table.device)]).float().cpu()
        return weights * real_events(batch)[:, None, :]


class RandomAttribution:
    """Uniform random weights on real events (seeded): the floor of every fidelity metric."""

    name = "random"
    needs_gradients = False

    def __init__(self, seed: int = 0) -> None:
        """Args: generator seed."""
        self._generator = torch.Generator().manual_seed(seed)

    def attribute(self, batch: SeqBatch, rows: Tensor) -> Tensor:
        """Random weights (B, K, T) in [0, 1) on real events."""
        b, t = batch.items.shape
        noise = torch.rand((b, rows.shape[1], t), generator=self._generator)
        return noise * real_events(batch)[:, None, :]


def make_attributor(
    name: str, encoder: Encoder, model: DifferentiableEncoder | None = None, seed: int = 0
) -> Attributor:
    """The attributor `name` (one of `METHODS`).

    Args:
        name: Method name.
        encoder: Forward-only encoder (any backend) used by occlusion.
        model: The eager model, required by the gradient methods and attention.
        seed: Seed of the random baseline.

    Raises:
        ValueError: unknown name, or a gradient/attention method without an eager model (e.g. TensorRT).
    """
    if name == "occlusion":
        return Occlusion(encoder)
    if name == "random":
        return RandomAttribution(seed)
    if name == "item_similarity":
        return ItemSimilarity(encoder)
    if name not in METHODS:
        msg = f"unknown attribution method {name!r} (one of {', '.join(METHODS)})"
        raise ValueError(msg)
    if model is None:
        msg = f"attribution method {name!r} needs the eager model (gradients/modules); use occlusion"
        raise ValueError(msg)
    if name == "attention":
        return Attention(model)  # type: ignore[arg-type]
    if name == "gradient_x_input":
        return GradientXInput(model)
    return IntegratedGradients(model)
