"""`Scorer` over the transformer: UserStates -> padded batch -> user vectors -> chunked full-catalog top-k.

One encoder forward per micro-batch; the catalog is scanned in chunks with a running top-k, so no
(batch x catalog) buffer is ever allocated for large catalogs. Only padding/unclaimed rows, unavailable items
and the user's just-purchased items are excluded; seen items stay eligible (repeat-aware).

Serving asks for the ranking only: `explain.Explainer.for_scorer` attributes the top-k itself, so building
evidence here per item was most of the scoring CPU (~5 of ~9 ms per user at top 10) for nothing. With
`with_evidence` (tools, tests) the scorer adds its own cheap, gradient-free account: for an item the user already
touched, the copy head's additive repeat bonus from each of their past events with that item (an exact share of
the score); otherwise the cosine similarity, in the model's item space, between each past item and the
recommended item (`embedding similarity`, not an attribution).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from contracts import Reason, ReasonKind
from model.backends.base import ScoringBackend
from model.scoring import ItemContext, ScoredItem, UserState
from model.sequences import EventRows, QueryCache, batch_from_states
from model.transformer import ModelConfig
from model.vocab import ItemVocab

__all__ = ["TorchScorer", "chunked_topk"]


def chunked_topk(
    users: Tensor,
    table: Tensor,
    k: int,
    blocked: Tensor,
    user_blocked: Sequence[Sequence[int]] = (),
    chunk_size: int = 65536,
    bonus_rows: Tensor | None = None,
    bonus: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-`k` rows of `users @ table.T`, scanning `table` in chunks with a running top-k.

    Args:
        users: (B, C) user vectors.
        table: (V, C) item rows.
        k: Rows kept per user.
        blocked: (V,) bool, rows no user may get.
        user_blocked: Per user, extra rows to exclude (e.g. just purchased).
        chunk_size: Rows scored at once; memory is O(B * (chunk_size + k)).
        bonus_rows: (B, T) long, rows that get an extra score (the user's own past items; 0 = none).
        bonus: (B, T) the extra score added to `bonus_rows` (summed over repeats of a row).

    Returns:
        (values (B, k'), rows (B, k')) best first, k' = min(k, V); excluded rows have value -inf.
    """
    b, v = users.shape[0], table.shape[0]
    pairs = [(u, r) for u, rows in enumerate(user_blocked) for r in rows]
    pair_users = torch.tensor([p[0] for p in pairs], dtype=torch.long, device=users.device)
    pair_rows = torch.tensor([p[1] for p in pairs], dtype=torch.long, device=users.device)
    best_values = torch.empty((b, 0), dtype=users.dtype, device=users.device)
    best_rows = torch.empty((b, 0), dtype=torch.long, device=users.device)
    if bonus_rows is not None and bonus is not None:
        bonus_users = torch.arange(b, device=users.device)[:, None].expand_as(bonus_rows).reshape(-1)
        flat_rows, flat_bonus = bonus_rows.reshape(-1), bonus.reshape(-1).to(users.dtype)
    else:
        bonus_users = flat_rows = torch.empty(0, dtype=torch.long, device=users.device)
        flat_bonus = torch.empty(0, dtype=users.dtype, device=users.device)
    for start in range(0, v, chunk_size):
        stop = min(v, start + chunk_size)
        logits = users @ table[start:stop].T  # (B, chunk)
        here = (flat_rows >= start) & (flat_rows < stop)
        logits.index_put_((bonus_users[here], flat_rows[here] - start), flat_bonus[here], accumulate=True)
        logits = logits.masked_fill(blocked[start:stop], float("-inf"))
        inside = (pair_rows >= start) & (pair_rows < stop)
        logits[pair_users[inside], pair_rows[inside] - start] = float("-inf")
        values, rows = logits.topk(min(k, stop - start), dim=1)  # (B, k)
        best_values = torch.cat([best_values, values], dim=1)
        best_rows = torch.cat([best_rows, rows + start], dim=1)
        if best_values.shape[1] > k:
            best_values, order = best_values.topk(k, dim=1)
            best_rows = best_rows.gather(1, order)
    return best_values, best_rows


class TorchScorer:
    """Ranks the whole vocabulary for a micro-batch of users with a `ScoringBackend`."""

    def __init__(
        self,
        backend: ScoringBackend,
        vocab: ItemVocab,
        config: ModelConfig,
        version: str,
        queries: QueryCache | None = None,
        max_batch: int = 256,
        chunk_size: int = 65536,
        max_evidence: int = 5,
        with_evidence: bool = False,
    ) -> None:
        """Args: backend, item vocabulary, model config, version label, search-query embedder (text tower),
        users per forward, catalog rows per top-k chunk, evidence entries per item, whether to build evidence."""
        self.backend = backend
        self.vocab = vocab
        self.config = config
        self._version = version
        self._queries = queries
        self._max_batch = max_batch
        self._chunk_size = chunk_size
        self._max_evidence = max_evidence
        self._with_evidence = with_evidence

    @property
    def version(self) -> str:
        """Model version stamped on recommendations."""
        return self._version

    def with_model(self, backend: ScoringBackend, vocab: ItemVocab) -> TorchScorer:
        """The same scorer (version, settings, query cache) over another backend and vocabulary, e.g. one with
        rows for new items (`model.new_items`)."""
        return TorchScorer(
            backend, vocab, self.config, self._version, self._queries, self._max_batch, self._chunk_size,
            self._max_evidence, self._with_evidence,
        )  # fmt: skip

    def score(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[ScoredItem]]:
        """Top-`k` items per user, best first, in input order."""
        out: list[list[ScoredItem]] = []
        for start in range(0, len(users), self._max_batch):
            out.extend(self._score_batch(users[start : start + self._max_batch], items, k)[0])
        return out

    def _blocked(self, items: ItemContext, rows: int, device: torch.device) -> Tensor:
        blocked = torch.ones(rows, dtype=torch.bool)
        blocked[1 : len(self.vocab) + 1] = False  # padding and unclaimed spare rows stay blocked
        unavailable = [r for r in (self.vocab.index(i) for i in items.unavailable) if r is not None]
        blocked[unavailable] = True
        return blocked.to(device)

    def score_with_logits(
        self, users: Sequence[UserState], items: ItemContext, k: int
    ) -> tuple[list[list[ScoredItem]], Tensor]:
        """`score`'s lists and the (B, V) log-softmax over every vocabulary row (blocked rows -inf), one forward.

        The two-stage re-ranker (`model.two_stage`) reads the transformer's log-probability of candidates that
        its top-`k` does not hold.
        """
        lists: list[list[ScoredItem]] = []
        logits: list[Tensor] = []
        for start in range(0, len(users), self._max_batch):
            part, full = self._score_batch(users[start : start + self._max_batch], items, k, with_logits=True)
            lists.extend(part)
            assert full is not None  # noqa: S101 (asked for)
            logits.append(full)
        rows = self.backend.item_table().shape[0]
        return lists, torch.cat(logits) if logits else torch.empty((0, rows))

    @property
    def with_evidence(self) -> bool:
        """Whether scored items carry evidence and reasons (off when the explainer attributes)."""
        return self._with_evidence

    def log_probabilities(self, users: Sequence[UserState], items: ItemContext) -> Tensor:
        """`score_with_logits`'s (B, V) log-softmax alone: no top-`k` search, no lists (the two-stage hot path)."""
        logits: list[Tensor] = []
        for start in range(0, len(users), self._max_batch):
            _, full = self._score_batch(users[start : start + self._max_batch], items, 0, with_logits=True)
            assert full is not None  # noqa: S101 (asked for)
            logits.append(full)
        rows = self.backend.item_table().shape[0]
        return torch.cat(logits) if logits else torch.empty((0, rows))

    def _score_batch(
        self, users: Sequence[UserState], items: ItemContext, k: int, with_logits: bool = False
    ) -> tuple[list[list[ScoredItem]], Tensor | None]:
        """Top-`k` lists (none when `k` is 0) and, `with_logits`, the (B, V) log-softmax."""
        if not users:
            return [], None
        batch, encoded = batch_from_states(users, self.vocab, self.config, self._queries)
        table = self.backend.item_table()  # (V, C)
        vectors, copy = self.backend.encode(batch)  # (B, C), (B, T)
        vectors = vectors.to(table.dtype)
        blocked = self._blocked(items, table.shape[0], table.device)
        item_rows = batch.items.to(table.device)
        full = None
        if with_logits:  # the same scores for every row: (B, V), blocked rows -inf, then log-softmax
            full = (vectors @ table.T).float()
            full.index_put_((torch.arange(len(users))[:, None].expand_as(item_rows), item_rows), copy.float(), True)
            full = torch.log_softmax(full.masked_fill(blocked, float("-inf")), dim=1).cpu()
        if k == 0:
            return [], full
        purchased = [[r for r in map(self.vocab.index, u.purchased_recently) if r is not None] for u in users]
        values, rows = chunked_topk(vectors, table, k, blocked, purchased, self._chunk_size, item_rows, copy)
        values, rows, copy = values.float().cpu(), rows.cpu(), copy.float().cpu()
        if not self._with_evidence:
            item = self.vocab.item
            plain = [
                [ScoredItem(item(r), v) for v, r in zip(vu, ru, strict=True) if v != float("-inf")]
                for vu, ru in zip(values.tolist(), rows.tolist(), strict=True)
            ]
            return plain, full
        normed = torch.nn.functional.normalize(table.float(), dim=-1)
        lists = [
            self._explain(user, encoded[u], values[u], rows[u], copy[u], normed, items) for u, user in enumerate(users)
        ]
        return lists, full

    def _explain(
        self,
        user: UserState,
        encoded: EventRows,
        values: Tensor,
        rows: Tensor,
        copy: Tensor,
        normed: Tensor,
        items: ItemContext,
    ) -> list[ScoredItem]:
        keep = torch.isfinite(values)
        values, rows = values[keep], rows[keep]
        # The batch holds the newest max_len encoded events, left-padded: align their repeat bonus with them.
        n = min(len(encoded.items), copy.shape[0])
        bonus = np.zeros(len(encoded.items), dtype=np.float64)
        if n:
            bonus[-n:] = copy[-n:].numpy()
        history = encoded.items > 0
        positions = encoded.kept[history].tolist()  # indices into user.events
        hist_rows = encoded.items[history].tolist()
        hist_bonus = bonus[history].tolist()
        index = torch.as_tensor(hist_rows, dtype=torch.long, device=normed.device)
        sims = (normed[rows.to(normed.device)] @ normed[index].T).cpu()  # (k, n) embedding similarity
        out = []
        for j, (value, row) in enumerate(zip(values.tolist(), rows.tolist(), strict=True)):
            # Repeats: the copy head's additive bonus from each past event of this item; else embedding similarity.
            own = [(i, b) for i, r, b in zip(positions, hist_rows, hist_bonus, strict=True) if r == row and b > 0.0]
            pairs = own or list(zip(positions, sims[j].tolist(), strict=True))
            pairs.sort(key=lambda p: -p[1])
            evidence = tuple((i, round(w, 6)) for i, w in pairs[: self._max_evidence] if w > 0.0)
            item_id = self.vocab.item(row)
            out.append(ScoredItem(item_id, value, evidence, self._reasons(user, item_id, evidence, items)))
        return out

    def _reasons(
        self, user: UserState, item_id: str, evidence: tuple[tuple[int, float], ...], items: ItemContext
    ) -> tuple[Reason, ...]:
        reasons = []
        seen = sum(1 for e in user.events if e.item_id == item_id)
        if seen:
            reasons.append(Reason(kind=ReasonKind.SEEN_BEFORE, detail=f"you interacted with it {seen}x", weight=seen))
        if evidence:
            index, weight = evidence[0]
            other = user.events[index].item_id or ""
            if other != item_id:
                label = items.item_title.get(other) or other
                detail = f"similar to {label} (embedding similarity {weight:.2f})"
                reasons.append(Reason(kind=ReasonKind.SIMILAR_TO, detail=detail[:512], weight=weight))
        return tuple(reasons)
