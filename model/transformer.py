"""The sequential recommender: a small causal GPT-2 (Hugging Face `transformers`) over a user's recent events.

Each event is embedded as item + event type + time-gap bucket (+ position, added by GPT-2), and a search event
as its query's text embedding instead of an item. The hidden state at the last position is the user vector;
scores are its dot product with the item table, which is the input item embedding itself (tied), optionally
plus a projection of each item's pretrained text embedding (`text_tower`), so items without trained ID rows
still score. Nothing is masked: the user's own items are valid next items, and a copy head (attention of
the user state over their own past item events, with a learned strength) adds an explicit repeat bonus to the
scores of those items (repeat-aware, as people come back to what they viewed or carted).

Inputs are left-padded: the newest event is always at position T-1. No I/O, device or optimizer here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from transformers import GPT2Config, GPT2Model

from contracts import EventType

__all__ = [
    "EVENT_TYPES",
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
    copy_head: bool = True  # pointer over the user's own past items: adds a learned repeat bonus to their scores

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
        self.text_proj: nn.Linear | None = None
        self.item_text: Tensor  # (V, text_dim) buffer, only with the text tower
        if config.text_tower:
            # Precomputed per catalog (model.text_tower); saved with the weights so serving needs no text model.
            self.register_buffer("item_text", torch.zeros(config.n_items, config.text_dim))
            self.text_proj = nn.Linear(config.text_dim, c, bias=False)
        self.copy_query: nn.Linear | None = None
        self.copy_strength: nn.Linear | None = None
        if config.copy_head:
            self.copy_query = nn.Linear(c, c, bias=False)
            self.copy_strength = nn.Linear(c, 1)
            nn.init.constant_(self.copy_strength.bias, 4.0)  # start with a clear repeat bonus (~4 per event)
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
        """Item rows in model space (tied input/output embedding). Shape (V, C)."""
        table = self.item_emb.weight
        if self.text_proj is not None:
            table = table + self.text_proj(self.item_text)
        return table

    def _embed(self, batch: SeqBatch, table: Tensor) -> Tensor:
        x: Tensor = table[batch.items] + self.type_emb(batch.types) + self.gap_emb(batch.gaps)  # (B, T, C)
        if self.text_proj is not None and batch.query_text is not None:
            x = x + self.text_proj(batch.query_text)  # zeros except at search events
        return x

    def _hidden(self, batch: SeqBatch, table: Tensor) -> Tensor:
        mask = batch.mask
        # Left padding: count positions from the first real event so position 0 is always the oldest event.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        out = self.backbone(inputs_embeds=self._embed(batch, table), attention_mask=mask, position_ids=positions)
        hidden: Tensor = out.last_hidden_state  # (B, T, C)
        return hidden

    def forward(
        self,
        batch: SeqBatch,
        targets: Tensor | None = None,
        candidates: Tensor | None = None,
        negatives: Tensor | None = None,
    ) -> ModelOutput:
        """Hidden states, and the next-item loss when `targets` is given.

        Args:
            batch: Left-padded event sequences.
            targets: (B, T) long: row of the next item after each position, 0 = no target (padding, search,
                unknown item).
            candidates: (V,) bool: rows that may be predicted (full softmax); default all but padding.
            negatives: (N,) long: shared sampled negative rows; given = sampled softmax instead of full.
        """
        table = self.item_table()  # (V, C)
        hidden = self._hidden(batch, table)  # (B, T, C)
        if targets is None:
            return ModelOutput(hidden)
        picked = targets > 0  # (B, T)
        h = hidden[picked]  # (P, C)
        gold = targets[picked]  # (P,)
        t = batch.items.shape[1]
        copy = self._copy(hidden, batch.items, last_only=False)[picked]  # (P, T) repeat bonus per past event
        copy_rows = batch.items[:, None, :].expand(-1, t, -1)[picked]  # (P, T) item row of each past event
        if negatives is None:
            logits = (h @ table.T).scatter_add(1, copy_rows, copy)  # (P, V)
            allowed = candidates if candidates is not None else torch.arange(table.shape[0], device=h.device) > 0
            logits = logits.masked_fill(~allowed, float("-inf"))
            loss = F.cross_entropy(logits, gold)
        else:
            n = negatives.shape[0]  # distinct rows (sampled without replacement)
            positive = (h * table[gold]).sum(-1) + (copy * (copy_rows == gold[:, None])).sum(-1)  # (P,)
            column = torch.full((table.shape[0],), n, dtype=torch.long, device=h.device)
            column[negatives] = torch.arange(n, device=h.device)
            bonus = torch.zeros(h.shape[0], n + 1, device=h.device).scatter_add(1, column[copy_rows], copy)
            sampled = h @ table[negatives].T + bonus[:, :n]  # (P, N)
            sampled = sampled.masked_fill(negatives[None, :] == gold[:, None], float("-inf"))  # accidental hits
            logits = torch.cat([positive[:, None], sampled], dim=1)  # (P, 1 + N)
            loss = F.cross_entropy(logits, torch.zeros_like(gold))
        return ModelOutput(hidden, loss)

    def _copy(self, hidden: Tensor, items: Tensor, last_only: bool) -> Tensor:
        """Repeat bonus of each past event's item in the scores after event p: (B, Q, T), Q = T or 1 (last).

        A sigmoid gate per past item event of position p (causal; padding and searches excluded), times a learned
        non-negative strength: each event can add up to the full strength, so an item seen three times gets up
        to three times the bonus, and the model decides per user and event how much own items come back.
        """
        b, t, c = hidden.shape
        if self.copy_query is None or self.copy_strength is None:
            return hidden.new_zeros((b, 1 if last_only else t, t))
        queries = hidden[:, -1:] if last_only else hidden  # (B, Q, C)
        attention = self.copy_query(queries) @ hidden.transpose(1, 2) / math.sqrt(c)  # (B, Q, T)
        valid = (items > 0)[:, None, :]  # (B, 1, T)
        if not last_only:
            valid = valid & torch.ones(t, t, dtype=torch.bool, device=hidden.device).tril()  # (B, T, T)
        gates = torch.sigmoid(attention) * valid  # (B, Q, T)
        weights: Tensor = gates * F.softplus(self.copy_strength(queries))  # (B, Q, T)
        return weights

    def encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        """User vectors (B, C) and the repeat bonus of each input event's item (B, T), for scoring."""
        hidden = self._hidden(batch, self.item_table())  # (B, T, C)
        return hidden[:, -1], self._copy(hidden, batch.items, last_only=True)[:, 0]

    def embed(self, batch: SeqBatch) -> Tensor:
        """Input embeddings (B, T, C) as the backbone sees them (GPT-2 adds positions); for `explain/`."""
        return self._embed(batch, self.item_table())

    def encode_embeddings(self, x: Tensor, items: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """`encode` from input embeddings `x` (B, T, C) (see `embed`), so attribution gradients reach them."""
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T), as in `_hidden`
        hidden: Tensor = self.backbone(inputs_embeds=x, attention_mask=mask, position_ids=positions).last_hidden_state
        return hidden[:, -1], self._copy(hidden, items, last_only=True)[:, 0]

    def encode_users(self, batch: SeqBatch) -> Tensor:
        """User vectors: the hidden state after each user's newest event. Shape (B, C)."""
        return self._hidden(batch, self.item_table())[:, -1]

    def score(self, batch: SeqBatch) -> Tensor:
        """Scores of every item row for each user, repeat bonus included. Shape (B, V); for small catalogs
        and tests (serving uses `encode` + `model.torch_scorer.chunked_topk`)."""
        users, copy = self.encode(batch)  # (B, C), (B, T)
        scores: Tensor = (users @ self.item_table().T).scatter_add(1, batch.items, copy)  # (B, V)
        return scores
