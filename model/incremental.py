"""Incremental user encoding: an event costs one new position instead of re-encoding the whole sequence.

A user's encoded state (per GPT-2 layer the attention keys and values of every position, the repeat head's key
of every position, and the newest hidden state) is kept in a bounded in-process LRU cache of fixed-size slots,
addressed by the *content* of the encoded sequence: a digest of its (item, type, gap bucket) rows and
search-query embeddings. When a batch row's sequence is a cached sequence plus k <= `max_new` newer events,
only those k positions go through the blocks, attending to the cached keys and values; otherwise the row is
encoded in full (and cached). Because the key is the content, a hit is exact by construction: GPT-2 is causal
and positions count from each user's oldest kept event (`SeqRecModel._backbone`), so the cached positions'
states are what a full pass computes. When the 50-event window slides, the oldest event drops out, every
position shifts and the oldest kept event becomes "first" (its gap bucket changes): the content differs, the
row misses and is encoded in full, so the result never depends on the cache. A worker that restarts or takes
over partitions starts cold and warms up; a model swap builds a new backend with an empty cache.

Slots are left-padded like the batch (a state of n events fills the last n of max_len positions), so reading
and writing a batch's states are one indexed copy per tensor. Memory: (2 x layers + 1) x max_len x d_model
floats per user (64 KB at the defaults); slots are allocated as needed up to the budget.

The blocks are run here from the GPT-2 modules' own weights (`ln_1`, `attn.c_attn`, `attn.c_proj`, `ln_2`,
`mlp`, `wpe`, `ln_f`): transformers' cache objects change between versions, the arithmetic of GPT-2 does not.
`tests/unit/test_incremental.py` holds the results to `SeqRecModel.encode`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F  # noqa: N812

from model.transformer import SeqBatch, SeqRecModel, _repeat_bonus

__all__ = ["CacheStats", "IncrementalEncoder", "encoder_stats"]

_MASKED = torch.finfo(torch.float32).min  # additive bias of a key a query may not see (as transformers uses)


@dataclass(slots=True)
class CacheStats:
    """Rows served from the cache (with how many new positions), rows encoded in full, states evicted."""

    hits: int = 0
    new_positions: int = 0
    misses: int = 0
    evictions: int = 0


class IncrementalEncoder:
    """`SeqRecModel.encode` with per-sequence state reuse (module docstring); thread-safe."""

    def __init__(self, model: SeqRecModel, max_bytes: int, max_new: int = 8) -> None:
        """Args: the model (eval mode), cache budget in bytes, most new events per row served incrementally."""
        if model.training:
            msg = "IncrementalEncoder needs a model in eval mode"
            raise ValueError(msg)
        self.model = model
        self.max_new = max_new
        self.stats = CacheStats()
        config = model.config
        self._t, self._c, self._layers = config.max_len, config.d_model, len(model.backbone.h)
        self.max_slots = max_bytes // self.slot_bytes
        self._slots: OrderedDict[bytes, int] = OrderedDict()  # digest -> slot, least recently used first
        self._free: list[int] = []
        self._length = np.zeros(0, dtype=np.int64)  # events held per slot
        # per slot: keys and values of every layer, repeat keys (each (T, C)), newest hidden state (C,)
        self._tensors: list[Tensor] = []
        self._last = torch.zeros(0, self._c)
        self._lock = threading.Lock()

    @property
    def slot_bytes(self) -> int:
        """Bytes of one user's state."""
        return ((2 * self._layers + 1) * self._t * self._c + self._c) * 4

    @property
    def cached_bytes(self) -> int:
        """Bytes of the states held."""
        return len(self._slots) * self.slot_bytes

    def encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        """User vectors (B, C) and repeat bonus (B, T), as `SeqRecModel.encode(batch)` returns them."""
        with self._lock, torch.inference_mode():
            if batch.items.shape[1] != self._t or 2 * batch.items.shape[0] > self.max_slots:
                return self.model.encode(batch)  # another width, or a budget below two batches: no reuse
            return self._encode(batch)

    def _encode(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        lengths = batch.mask.sum(1).cpu().numpy()
        tokens = torch.stack([batch.items, batch.types, batch.gaps], 2).cpu().numpy()  # (B, T, 3)
        text = None if batch.query_text is None else batch.query_text.cpu().numpy()
        digests = [_Digests(tokens[r], None if text is None else text[r], n) for r, n in enumerate(lengths.tolist())]
        fresh: list[int] = []
        extend: list[tuple[int, int, int]] = []  # (row, slot, new events)
        for row, n in enumerate(lengths.tolist()):
            found = self._lookup(digests[row], n)
            if found is None:
                fresh.append(row)
            else:
                extend.append((row, *found))
        pinned = {slot for _, slot, _ in extend}  # slots this batch reads: never evicted or reused in it
        x = self.model._embed(batch)  # noqa: SLF001 (input rows of every position; no attention)
        slots = np.zeros(len(lengths), dtype=np.int64)
        for row, slot, _ in extend:
            slots[row] = slot
        grown = [(row, slot, k) for row, slot, k in extend if k > 0]
        readers = Counter(slot for _, slot, _ in extend)  # rows of this batch reading each slot
        orphans = self._extend(x, grown, digests, pinned, readers) if grown else []
        for row, slot, _ in grown:
            slots[row] = self._slots.get(digests[row].without(0), slot)
        if fresh:
            slots[fresh] = self._fresh(x[fresh], batch.mask[fresh], [digests[r].without(0) for r in fresh], pinned)
            self._length[slots[fresh]] = lengths[fresh]
        self.stats.misses += len(fresh)
        self.stats.hits += len(extend)
        self.stats.new_positions += sum(k for _, _, k in extend)
        out = self._outputs(batch, torch.from_numpy(slots))
        self._free.extend(orphans)
        return out

    def _lookup(self, digests: _Digests, n: int) -> tuple[int, int] | None:
        """(slot, new events) of this row's longest cached prefix (0 new: the row itself), or None."""
        for k in range(min(self.max_new, n - 1) + 1):
            digest = digests.without(k)
            slot = self._slots.get(digest)
            if slot is not None and self._length[slot] == n - k:
                self._slots.move_to_end(digest)
                return slot, k
        return None

    def _fresh(self, x: Tensor, mask: Tensor, digests: list[bytes], pinned: set[int]) -> np.ndarray:
        """Encode rows from scratch and store their states; their slots."""
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden, keys, values = self._blocks(x, positions, mask.bool(), None)
        given: dict[bytes, int] = {}  # two users with the same events share one state
        slots = np.asarray([given[d] if d in given else given.setdefault(d, self._slot(d, pinned)) for d in digests])
        index = torch.from_numpy(slots.astype(np.int64))
        for store, part in zip(self._tensors, [*keys, *values, self._repeat_keys(hidden, x)], strict=True):
            store[index] = part
        self._last[index] = hidden[:, -1]
        return slots.astype(np.int64)

    def _extend(
        self,
        x: Tensor,
        grown: list[tuple[int, int, int]],
        digests: list[_Digests],
        pinned: set[int],
        readers: Counter[int],
    ) -> list[int]:
        """Run only each row's k new positions through the blocks over its cached keys and values; the slot
        then holds the longer state (the prefix's state is part of it), unless another row of the batch reads
        that slot too: then the longer state goes to a slot of its own. Returns slots left without a digest
        (their new content was cached elsewhere already), to free once the batch is done."""
        rows = torch.tensor([row for row, _, _ in grown])
        index = torch.tensor([slot for _, slot, _ in grown])
        k = torch.tensor([k for _, _, k in grown])
        width, t = int(k.max()), self._t
        old = torch.from_numpy(self._length[index.numpy()])
        new_x = x[rows, t - width :]  # (E, W, C): the newest W positions; the first W - k are cached already
        j = torch.arange(width)
        new_mask = j[None, :] >= (width - k)[:, None]
        positions = (old[:, None] + j[None, :] - (width - k)[:, None]).clamp(min=0)
        past_mask = torch.arange(t)[None, :] >= (t - old)[:, None]
        past = [store[index] for store in self._tensors]
        past_k, past_v = past[: self._layers], past[self._layers : 2 * self._layers]
        hidden, keys, values = self._blocks(new_x, positions, new_mask, (past_k, past_v, past_mask))
        new_parts = [*(key[:, t:] for key in keys), *(value[:, t:] for value in values)]
        new_parts.append(self._repeat_keys(hidden, new_x))  # (E, W, C) each
        orphans, targets = [], []
        for row, slot, n_new in grown:
            digest = digests[row].without(0)
            if readers[slot] > 1:  # shared with another row of this batch: keep the prefix's state as it is
                # (a slot already holding this content is written again with the same values)
                targets.append(self._slots[digest] if digest in self._slots else self._slot(digest, pinned))
                continue
            targets.append(slot)
            del self._slots[digests[row].without(n_new)]
            if digest in self._slots:  # the same content is cached already (another user's identical events)
                orphans.append(slot)
            else:
                self._slots[digest] = slot
        target = torch.tensor(targets)
        # the left-padded state of old + k events: the past shifted left by k, then the k new positions
        for n_new in torch.unique(k).tolist():
            sel = torch.nonzero(k == n_new).squeeze(1)
            for store, before, new in zip(self._tensors, past, new_parts, strict=True):
                store[target[sel]] = torch.cat([before[sel, n_new:], new[sel, width - n_new :]], 1)
        self._last[target] = hidden[:, -1]
        self._length[target.numpy()] = old.numpy() + k.numpy()
        return orphans

    def _slot(self, digest: bytes, pinned: set[int]) -> int:
        """A slot for a new state: a free one, a new one, or the least recently used one this batch does not
        read."""
        if not self._free:
            self._grow()
        if self._free:
            slot = self._free.pop()
        else:
            while True:
                victim, slot = self._slots.popitem(last=False)
                if slot not in pinned:
                    break
                self._slots[victim] = slot  # read by this batch: keep it (now most recent)
            self.stats.evictions += 1
        previous = self._slots.pop(digest, None)
        if previous is not None and previous not in pinned:
            self._free.append(previous)
        self._slots[digest] = slot
        pinned.add(slot)
        return slot

    def _grow(self) -> None:
        have = len(self._length)
        size = min(self.max_slots, max(256, 2 * have))
        if size <= have:
            return
        extra = size - have
        t, c = self._t, self._c
        if not self._tensors:
            self._tensors = [torch.zeros(0, t, c) for _ in range(2 * self._layers + 1)]
        self._tensors = [torch.cat([store, store.new_zeros(extra, t, c)]) for store in self._tensors]
        self._last = torch.cat([self._last, self._last.new_zeros(extra, c)])
        self._length = np.concatenate([self._length, np.zeros(extra, dtype=np.int64)])
        self._free.extend(range(size - 1, have - 1, -1))

    def _blocks(
        self, x: Tensor, positions: Tensor, mask: Tensor, past: tuple[list[Tensor], list[Tensor], Tensor] | None
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """GPT-2 over the positions `x` (B, k, C) attending to `past` (per layer keys and values (B, P, C) and
        which of the P are real) and, causally, to themselves.

        Returns the final hidden states of `x`'s positions (after `ln_f`) and, per layer, the keys and values of
        past + new positions (B, P + k, C).
        """
        gpt, heads = self.model.backbone, self.model.config.n_heads
        b, k, c = x.shape
        causal = torch.ones(k, k, dtype=torch.bool).tril()[None] & mask[:, None, :]  # (B, k, k)
        allowed = causal if past is None else torch.cat([past[2][:, None, :].expand(b, k, -1), causal], 2)
        bias = torch.zeros(allowed.shape, dtype=x.dtype).masked_fill(~allowed, _MASKED)[:, None]
        h = x + gpt.wpe(positions)
        keys, values = [], []
        blocks: list[Any] = list(gpt.h)  # GPT2Block: ln_1, attn (c_attn, c_proj), ln_2, mlp
        for layer, block in enumerate(blocks):
            q, key, value = block.attn.c_attn(block.ln_1(h)).split(c, dim=2)
            if past is not None:
                key, value = torch.cat([past[0][layer], key], 1), torch.cat([past[1][layer], value], 1)
            keys.append(key)
            values.append(value)
            attended = F.scaled_dot_product_attention(
                _heads(q, heads), _heads(key, heads), _heads(value, heads), attn_mask=bias
            )
            h = h + block.attn.c_proj(attended.transpose(1, 2).reshape(b, k, c))
            h = h + block.mlp(block.ln_2(h))
        return gpt.ln_f(h), keys, values

    def _repeat_keys(self, hidden: Tensor, x: Tensor) -> Tensor:
        repeat = self.model.repeat
        return repeat.keys(hidden, x) if repeat is not None else hidden.new_zeros(hidden.shape)

    def _outputs(self, batch: SeqBatch, slots: Tensor) -> tuple[Tensor, Tensor]:
        """User vectors and repeat bonus of the batch from its rows' states (`SeqRecModel._encode`'s tail)."""
        users = self._last[slots]  # (B, C)
        repeat = self.model.repeat
        if repeat is None:
            return users, users.new_zeros(batch.items.shape)
        pointer = repeat.last_logits(users, self._tensors[-1][slots], batch.items)[:, 0]  # (B, T)
        explore = (users[:, None, :] * self.model._item_rows(batch.items)).sum(-1)  # noqa: SLF001
        return users, _repeat_bonus(pointer, explore, batch.items)


def encoder_stats(scorer: object) -> CacheStats | None:
    """The counters of the incremental encoder behind `scorer` (a torch scorer, or one whose `transformer` is),
    or None when it has none."""
    transformer = getattr(scorer, "transformer", scorer)
    encoder = getattr(getattr(transformer, "backend", None), "incremental", None)
    return encoder.stats if isinstance(encoder, IncrementalEncoder) else None


class _Digests:
    """Digests of one row's real events without its newest k (computed on demand)."""

    def __init__(self, tokens: np.ndarray, text: np.ndarray | None, n: int) -> None:
        t = tokens.shape[0]
        self._rows = np.ascontiguousarray(tokens[t - n :], dtype=np.int64)  # (n, 3)
        self._text = None if text is None else np.ascontiguousarray(text[t - n :], dtype=np.float32)
        self._done: dict[int, bytes] = {}

    def without(self, k: int) -> bytes:
        if k not in self._done:
            end = len(self._rows) - k
            digest = hashlib.blake2b(self._rows[:end].tobytes(), digest_size=16)
            if self._text is not None:
                digest.update(self._text[:end].tobytes())
            self._done[k] = digest.digest()
        return self._done[k]


def _heads(x: Tensor, heads: int) -> Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)
