"""The sequential recommender: a small causal GPT-2 (Hugging Face `transformers`) over a user's recent events.

Each event is embedded as item + event type + time-gap bucket (+ position, added by GPT-2), and a search event
as its query's text embedding instead of an item. The hidden state at the last position is the user vector;
explore scores are its dot product with the item table, which is the input item embedding itself (tied),
optionally plus a projection of each item's pretrained text embedding (`text_tower`), so items without trained
ID rows still score. Nothing is masked: the user's own items are valid next items.

Repeat-awareness (`copy_head`) is a pointer over the user's own past item events, CopyNet/RepeatNet style: one
softmax over the catalog's explore logits *and* one repeat logit per past event,

    P(i) ∝ exp(user · item_i) + Σ_{past events j of item i} exp(a_j),
    a_j = q(h_p) · (k(h_j) + W x_j + d[p - j]) / √C + g(h_p),

where x_j is event j's input embedding (item, event type, gap), d a learned recency (events ago) embedding and
g the user's learned propensity to come back at all (the repeat/explore gate, in logit space). An item seen three
times collects three pointer terms, a carted one a larger a_j if that is what the data says. For ranking,
log P(i) = user · item_i + bonus_i with bonus_i = softplus(log Σ_j exp(a_j) − user · item_i) ≥ 0 for the user's
own items and 0 for every other item, so serving keeps the (user vector, per-event bonus) interface: each event
carries its share exp(a_j) / Σ exp(a) of its item's bonus.

Inputs are left-padded: the newest event is always at position T-1. No I/O, device or optimizer here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from transformers import GPT2Config, GPT2Model

from contracts import EventType

__all__ = [
    "EVENT_TYPES",
    "MoEAdapter",
    "ModelConfig",
    "ModelOutput",
    "SeqBatch",
    "SeqRecModel",
    "event_type_index",
    "gap_bucket",
]

# Row 0 of the event-type table is padding; the others follow EventType's declaration order.
EVENT_TYPES: tuple[EventType, ...] = tuple(EventType)
_TYPE_INDEX = {kind: i for i, kind in enumerate(EVENT_TYPES, start=1)}


def event_type_index(kind: EventType) -> int:
    """Event-type row (1-based; 0 is padding)."""
    return _TYPE_INDEX[kind]


def gap_bucket(seconds: Tensor, n_buckets: int) -> Tensor:
    """Log2 bucket of the seconds since the previous event: 2 + floor(log2(1 + s)), capped at `n_buckets - 1`.

    Bucket 0 is padding and 1 the user's first event (no previous one); the caller sets those two.
    """
    buckets = 2 + torch.floor(torch.log2(1.0 + seconds.clamp(min=0.0))).long()
    return buckets.clamp(max=n_buckets - 1)


@dataclass(frozen=True)
class ModelConfig:
    """Shape and regularisation of `SeqRecModel`."""

    n_items: int = 1024  # item rows: padding row 0 + known items + spare rows (see model.vocab.ItemVocab)
    max_len: int = 50  # events per user sequence (= Settings.recent_events)
    d_model: int = 64  # hidden size C; item, type, gap and position embeddings all have this size
    n_layers: int = 2  # GPT-2 blocks
    n_heads: int = 2  # attention heads (d_model must divide evenly)
    dropout: float = 0.2  # residual, attention and embedding dropout
    n_gap_buckets: int = 24  # time-gap buckets: 0 pad, 1 first event, 2.. log2 seconds (~24 days cap)
    text_tower: bool = False  # add projected pretrained text embeddings to item rows and use search queries
    text_dim: int = 384  # size of the text embeddings (all-MiniLM-L6-v2)
    copy_head: bool = True  # repeat pointer over the user's own past item events (see the module docstring)
    # text adapter: one Linear, or UniSRec-style whitening + mixture of experts over the frozen MiniLM features
    text_adapter: Literal["linear", "moe"] = "linear"
    n_experts: int = 4  # experts of the "moe" adapter
    # training only: share of item rows whose ID embedding is replaced by zero at each step, so the text part
    # alone must carry an item (it is all a new item has); serving always uses both parts
    id_dropout: float = 0.0

    def __post_init__(self) -> None:
        """Reject shapes GPT-2 cannot build."""
        if self.d_model % self.n_heads != 0:
            msg = f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}"
            raise ValueError(msg)
        if self.n_items < 2 or self.max_len < 1 or self.n_gap_buckets < 3:
            msg = "need n_items >= 2, max_len >= 1 and n_gap_buckets >= 3"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class SeqBatch:
    """A left-padded batch of event sequences (the newest event at position T-1)."""

    items: Tensor  # (B, T) long: item row, 0 for padding and for search events
    types: Tensor  # (B, T) long: event-type row, 0 for padding
    gaps: Tensor  # (B, T) long: time-gap bucket, 0 for padding
    mask: Tensor  # (B, T) long: 1 for real events
    query_text: Tensor | None = None  # (B, T, text_dim) float: query embedding of search events, else zeros

    def to(self, device: torch.device | str) -> SeqBatch:
        """The same batch on `device`."""
        text = None if self.query_text is None else self.query_text.to(device)
        return SeqBatch(self.items.to(device), self.types.to(device), self.gaps.to(device), self.mask.to(device), text)


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """What `SeqRecModel.forward` returns."""

    hidden: Tensor  # (B, T, C) hidden state after every event
    loss: Tensor | None = None  # scalar next-item loss, when targets were given


class SeqRecModel(nn.Module):
    """Causal transformer over event sequences with a tied item table."""

    def __init__(self, config: ModelConfig) -> None:
        """Build the embeddings and the GPT-2 backbone from `config` (randomly initialised)."""
        super().__init__()
        self.config = config
        c = config.d_model
        self.item_emb = nn.Embedding(config.n_items, c, padding_idx=0)
        self.type_emb = nn.Embedding(len(EVENT_TYPES) + 1, c, padding_idx=0)
        self.gap_emb = nn.Embedding(config.n_gap_buckets, c, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=1.0 / math.sqrt(c))
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.text_proj: nn.Module | None = None
        self.item_text: Tensor  # (V, text_dim) buffer, only with the text tower
        if config.text_tower:
            # Precomputed per catalog (model.text_tower); saved with the weights so serving needs no text model.
            self.register_buffer("item_text", torch.zeros(config.n_items, config.text_dim))
            self.text_proj = (
                nn.Linear(config.text_dim, c, bias=False)
                if config.text_adapter == "linear"
                else MoEAdapter(config.text_dim, c, config.n_experts)
            )
        self.repeat: _RepeatHead | None = _RepeatHead(config) if config.copy_head else None
        gpt = GPT2Config(
            vocab_size=1,  # unused: the backbone is fed `inputs_embeds`
            n_positions=config.max_len,
            n_embd=c,
            n_layer=config.n_layers,
            n_head=config.n_heads,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            use_cache=False,
            # GPT-2's tanh GELU, as torch's fused kernel (the same formula): transformers' default "gelu_new" is
            # five elementwise Python-level ops, ~30 % of the encoder's CPU at serving batch sizes.
            activation_function="gelu_pytorch_tanh",
            bos_token_id=None,
            eos_token_id=None,
        )
        self.backbone = GPT2Model(gpt)  # type: ignore[no-untyped-call]

    @torch.no_grad()
    def set_item_text(self, text: Tensor, start: int = 1) -> None:
        """Write precomputed item text embeddings (N, text_dim) into rows `start .. start + N - 1`."""
        if self.text_proj is None:
            msg = "set_item_text needs a model built with text_tower=True"
            raise ValueError(msg)
        self.item_text[start : start + text.shape[0]] = text.to(self.item_text)

    def item_table(self) -> Tensor:
        """Item rows in model space (tied input/output embedding). Shape (V, C).

        In training with `id_dropout`, a random share of rows loses its ID part for this step (one draw per row,
        so inputs and outputs see the same table).
        """
        table = self.item_emb.weight
        if self.text_proj is None:
            return table
        p = self.config.id_dropout
        if self.training and p > 0:
            keep = torch.rand(table.shape[0], 1, device=table.device) >= p  # (V, 1)
            table = table * keep
        out: Tensor = table + self.text_proj(self.item_text)
        return out

    def _item_rows(self, items: Tensor) -> Tensor:
        """`item_table()[items]` without building the whole table. Shape (*items.shape, C)."""
        rows: Tensor = self.item_emb(items)
        if self.text_proj is not None:
            rows = rows + self.text_proj(self.item_text[items])
        return rows

    def _embed(self, batch: SeqBatch, table: Tensor | None = None) -> Tensor:
        rows = self._item_rows(batch.items) if table is None else table[batch.items]  # (B, T, C)
        x: Tensor = rows + self.type_emb(batch.types) + self.gap_emb(batch.gaps)  # (B, T, C)
        if self.text_proj is not None and batch.query_text is not None:
            x = x + self.text_proj(batch.query_text)  # zeros except at search events
        return x

    def _backbone(self, x: Tensor, mask: Tensor) -> Tensor:
        # Left padding: count positions from the first real event so position 0 is always the oldest event.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        hidden: Tensor = self.backbone(inputs_embeds=x, attention_mask=mask, position_ids=positions).last_hidden_state
        return hidden  # (B, T, C)

    def _hidden(self, batch: SeqBatch) -> Tensor:
        return self._backbone(self._embed(batch), batch.mask)

    def forward(
        self,
        batch: SeqBatch,
        targets: Tensor | None = None,
        candidates: Tensor | None = None,
        negatives: Tensor | None = None,
    ) -> ModelOutput:
        """Hidden states, and the next-item loss (negative log of P above) when `targets` is given.

        Args:
            batch: Left-padded event sequences.
            targets: (B, T) long: row of the next item after each position, 0 = no target (padding, search,
                unknown item).
            candidates: (V,) bool: rows that may be predicted (full softmax); default all but padding.
            negatives: (N,) long: distinct uniformly sampled negative rows; given = sampled softmax (with the
                log(V/N) correction, so the explore mass stays comparable to the repeat mass).
        """
        table = self.item_table()  # (V, C)
        x = self._embed(batch, table)  # (B, T, C)
        hidden = self._backbone(x, batch.mask)  # (B, T, C)
        if targets is None:
            return ModelOutput(hidden)
        picked = targets > 0  # (B, T)
        h = hidden[picked]  # (P, C)
        gold = targets[picked]  # (P,)
        gold_explore = (h * table[gold]).sum(-1)  # (P,)
        allowed = candidates if candidates is not None else torch.arange(table.shape[0], device=h.device) > 0
        if negatives is None:
            # The mask as an additive bias fused into the matmul: one (P, V) pass fewer than masked_fill.
            bias = torch.zeros(allowed.shape, dtype=h.dtype, device=h.device).masked_fill(~allowed, float("-inf"))
            explore = torch.addmm(bias[None, :], h, table.T)  # (P, V)
        else:
            n_allowed = float(allowed.sum())
            sampled = h @ table[negatives].T + math.log(n_allowed / negatives.shape[0])  # (P, N)
            sampled = sampled.masked_fill(negatives[None, :] == gold[:, None], float("-inf"))  # accidental hits
            explore = torch.cat([gold_explore[:, None], sampled], dim=1)  # (P, 1 + N)
        if self.repeat is None:
            total, gold_score = torch.logsumexp(explore, 1), gold_explore
        else:
            t = batch.items.shape[1]
            pointer = self.repeat(hidden, x, batch.items, last_only=False)[picked]  # (P, T)
            rows = batch.items[:, None, :].expand(-1, t, -1)[picked]  # (P, T) item row of each past event
            gold_repeat = torch.logsumexp(pointer.masked_fill(rows != gold[:, None], _NEG), 1)  # (P,)
            total = torch.logaddexp(torch.logsumexp(explore, 1), torch.logsumexp(pointer, 1))  # no (P, V+T) copy
            gold_score = torch.logaddexp(gold_explore, gold_repeat)
        return ModelOutput(hidden, (total - gold_score).mean())

    def _encode(self, x: Tensor, items: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self._backbone(x, mask)  # (B, T, C)
        users = hidden[:, -1]  # (B, C)
        if self.repeat is None:
            return users, hidden.new_zeros(items.shape)
        pointer = self.repeat(hidden, x, items, last_only=True)[:, 0]  # (B, T)
        explore = (users[:, None, :] * self._item_rows(items)).sum(-1)  # (B, T) user · own item rows
        return users, _repeat_bonus(pointer, explore, items)

    def encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        """User vectors (B, C) and the repeat bonus of each input event's item (B, T), for scoring."""
        return self._encode(self._embed(batch), batch.items, batch.mask)

    def embed(self, batch: SeqBatch) -> Tensor:
        """Input embeddings (B, T, C) as the backbone sees them (GPT-2 adds positions); for `explain/`."""
        return self._embed(batch)

    def encode_embeddings(self, x: Tensor, items: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """`encode` from input embeddings `x` (B, T, C) (see `embed`), so attribution gradients reach them."""
        return self._encode(x, items, mask)

    def encode_users(self, batch: SeqBatch) -> Tensor:
        """User vectors: the hidden state after each user's newest event. Shape (B, C)."""
        return self._hidden(batch)[:, -1]

    def score(self, batch: SeqBatch) -> Tensor:
        """Scores of every item row for each user, repeat bonus included. Shape (B, V); for small catalogs
        and tests (serving uses `encode` + `model.torch_scorer.chunked_topk`)."""
        users, copy = self.encode(batch)  # (B, C), (B, T)
        scores: Tensor = (users @ self.item_table().T).scatter_add(1, batch.items, copy)  # (B, V)
        return scores


class MoEAdapter(nn.Module):
    """UniSRec's adapter: parametric whitening (x - b_k) W_k per expert, mixed by a softmax gate over x."""

    def __init__(self, text_dim: int, d_model: int, n_experts: int) -> None:
        """Args: text embedding size, model size C, number of experts."""
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_experts, text_dim))  # per-expert centring (whitening)
        self.proj = nn.Parameter(torch.randn(n_experts, text_dim, d_model) / math.sqrt(text_dim))
        self.gate = nn.Linear(text_dim, n_experts, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(*, text_dim) -> (*, C). An all-zero text (no text, padding) maps to zero, as with the Linear."""
        experts = torch.einsum("...d,edc->...ec", x, self.proj) - torch.einsum("ed,edc->ec", self.bias, self.proj)
        weights = torch.softmax(self.gate(x), dim=-1)  # (*, E)
        out: Tensor = (weights.unsqueeze(-1) * experts).sum(-2)  # (*, C)
        has_text = (x != 0).any(-1, keepdim=True)  # zero text stays zero (its bias would otherwise leak in)
        return out * has_text


_NEG = -1e4  # "impossible" logit that keeps logsumexp and its gradient finite (exp(-1e4) == 0 in float32)


class _RepeatHead(nn.Module):
    """Repeat logit a_j of each past item event j as seen from position p (module docstring)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config.d_model
        self.query = nn.Linear(c, c)
        self.key = nn.Linear(c, c)
        self.input_key = nn.Linear(c, c, bias=False)  # the event's own item/type/gap embedding
        self.distance = nn.Embedding(config.max_len, c)  # how many events ago
        self.gate = nn.Linear(c, 1)  # the user's propensity to come back at all
        # Start with the repeat mass (max_len pointers) about equal to the explore mass (n_items logits).
        nn.init.constant_(self.gate.bias, max(0.0, math.log(config.n_items / config.max_len)))

    def keys(self, hidden: Tensor, x: Tensor) -> Tensor:
        """(B, T, C) key of each past event: from its hidden state and its own input embedding."""
        k: Tensor = self.key(hidden) + self.input_key(x)
        return k

    def forward(self, hidden: Tensor, x: Tensor, items: Tensor, last_only: bool) -> Tensor:
        """(B, Q, T) repeat logits, Q = T (every position, causal) or 1 (the newest); invalid = `_NEG`."""
        if last_only:
            return self.last_logits(hidden[:, -1], self.keys(hidden, x), items)
        return self._logits(hidden, self.keys(hidden, x), items, last_only=False)

    def last_logits(self, last: Tensor, keys: Tensor, items: Tensor) -> Tensor:
        """(B, 1, T) repeat logits seen from the newest position, from its hidden state (B, C) and the keys of
        every position (`keys`); what an incremental encoder calls with cached keys."""
        return self._logits(last[:, None, :], keys, items, last_only=True)

    def _logits(self, queries: Tensor, k: Tensor, items: Tensor, last_only: bool) -> Tensor:
        b, t, c = k.shape
        q = self.query(queries)  # (B, Q, C)
        p = torch.arange(t - 1, t, device=items.device) if last_only else torch.arange(t, device=items.device)
        ago = p[:, None] - torch.arange(t, device=items.device)[None, :]  # (Q, T) events between j and p
        valid = (items > 0)[:, None, :] & (ago >= 0)[None]  # (B, Q, T): own item events at or before p
        ago = ago.clamp(min=0, max=self.distance.num_embeddings - 1)
        recency = (q @ self.distance.weight.T).gather(2, ago[None].expand(b, -1, -1))  # (B, Q, T)
        logits = (q @ k.transpose(1, 2) + recency) / math.sqrt(c) + self.gate(queries)  # (B, Q, T)
        out: Tensor = logits.masked_fill(~valid, _NEG)
        return out


def _repeat_bonus(pointer: Tensor, explore: Tensor, items: Tensor) -> Tensor:
    """Per-event share (B, T) of its item's bonus softplus(log Σ exp(a) − user · item) (module docstring)."""
    valid = pointer > _NEG / 2  # (B, T)
    same = (items[:, :, None] == items[:, None, :]) & valid[:, :, None] & valid[:, None, :]  # (B, T, T)
    log_mass = torch.logsumexp(pointer[:, None, :].masked_fill(~same, _NEG), -1)  # (B, T) per event's item
    share = torch.exp(pointer - log_mass) * valid  # (B, T) sums to 1 over one item's events
    bonus: Tensor = F.softplus(log_mass - explore) * share
    return bonus
