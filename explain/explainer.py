"""`Explainer`: top-k rows of a micro-batch -> one `contracts.Explanation` (evidence, reasons, text) per item.

The streaming worker and the torch scorer call `Explainer.explain(users, items, scored)` after scoring. With a
transformer it attributes each item's score to the user's own past events (`explain.attribution`); for a
baseline scorer (no model) it turns the scorer's own evidence indices into `Evidence` records.

Method per backend (`DEFAULT_METHOD`, explicit in code): the rule `select_method` (cheapest method within 10 % of
the best deletion AUC among those the backend can run) applied to `streamrec explain-eval` (128 users x top 3, L =
10; README "Explanations" has the full tables). Taobao (transformer-5bd84a004aa9): deletion AUC item_similarity
0.906 (0.85 ms per item), occlusion 0.824 (82 ms), attention 0.254, integrated gradients 0.211, gradient x input
0.116, random 0.173. YooChoose (transformer-50bc372703a0, sessions with >= 5 clicks, L = 4): item_similarity 0.766
(0.64 ms), occlusion 0.768 (26 ms), attention 0.208, random 0.222. So every backend explains with `item_similarity`
by default: the item-space proxy is as faithful as exact leave-one-out deletion here at ~1/100 of its cost, and it
needs nothing but the item table, so it runs unchanged on the exported and TensorRT engines. Gradient methods cannot
run there (no autograd through a compiled engine; `Explainer` refuses them); the exact forward-only attribution on
those engines is `occlusion` (`Explainer(..., method="occlusion")`). Re-check with `explain-eval` (`rule_choice` in
its JSON) when the model changes: the proxy's fidelity is measured, not guaranteed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import torch

from contracts import EventType, Evidence, Explanation
from explain.attribution import Attributor, DifferentiableEncoder, Encoder, ItemSimilarity, make_attributor
from explain.reasons import ReasonConfig, ReasonIndex, Similarity, similar_candidate, user_reasons
from explain.records import builder
from explain.text import BatchText, render_lead, templates
from model.scoring import ItemContext, ScoredItem, UserState
from model.sequences import QueryCache, batch_from_states
from model.torch_scorer import TorchScorer
from model.transformer import ModelConfig
from model.vocab import ItemVocab

__all__ = ["DEFAULT_METHOD", "FORWARD_ONLY_METHODS", "Explainer", "default_method", "select_method"]

_evidence, _explanation = builder(Evidence), builder(Explanation)

# backend name (model.backends) -> attribution method. Gradient methods need the eager model's autograd.
DEFAULT_METHOD: dict[str, str] = {
    "torch": "item_similarity",  # measured: deletion AUC 0.906 vs occlusion 0.824 (Taobao), at ~1/100 of the cost
    "exported": "item_similarity",  # compiled program: forward only (exact alternative: occlusion)
    "tensorrt": "item_similarity",  # TensorRT engine: forward only, no gradients (exact alternative: occlusion)
}
_FORWARD_ONLY_BACKENDS = frozenset({"exported", "tensorrt"})
# Methods that need nothing but `encode` / `item_table` (what a compiled engine offers).
FORWARD_ONLY_METHODS = frozenset({"occlusion", "item_similarity", "random"})


def select_method(
    deletion_auc: Mapping[str, float], cost_ms: Mapping[str, float], backend: str, tolerance: float = 0.1
) -> str:
    """The rule behind `DEFAULT_METHOD`, applied to measured results (`streamrec explain-eval`).

    Among the methods `backend` can run (forward-only backends: no gradients, no module internals; never
    `random`), take the cheapest whose deletion AUC is within `tolerance` (relative) of the best one's.
    """
    usable = [
        m
        for m in deletion_auc
        if m != "random" and (backend not in _FORWARD_ONLY_BACKENDS or m in FORWARD_ONLY_METHODS)
    ]
    if not usable:
        msg = f"no measured method can run on backend {backend!r}"
        raise ValueError(msg)
    best = max(deletion_auc[m] for m in usable)
    close = [m for m in usable if deletion_auc[m] >= best - tolerance * abs(best)]
    return min(close, key=lambda m: cost_ms[m])


def default_method(backend: str) -> str:
    """The attribution method used for `backend` (`torch`, `exported`, `tensorrt`)."""
    return DEFAULT_METHOD.get(backend, "occlusion")  # an unknown backend gets the exact forward-only method


class Explainer:
    """Builds explanations for scored micro-batches; one per scorer (holds no per-user state)."""

    def __init__(
        self,
        *,
        encoder: Encoder | None = None,
        model: DifferentiableEncoder | None = None,
        vocab: ItemVocab | None = None,
        config: ModelConfig | None = None,
        queries: QueryCache | None = None,
        backend: str = "torch",
        method: str | None = None,
        max_evidence: int = 5,
        language: str = "en",
        reasons: ReasonConfig | None = None,
    ) -> None:
        """Args:
        encoder: Forward-only encoder of the serving backend (None = baseline scorer: scorer evidence).
        model: The eager model (needed only by gradient methods and attention).
        vocab, config, queries: As given to the `TorchScorer` (to rebuild the same padded batch).
        backend: Serving backend name; picks `DEFAULT_METHOD[backend]` unless `method` is given.
        method: Explicit attribution method (see `explain.attribution.METHODS`).
        max_evidence: Evidence entries per item.
        language: Text language (`explain.text.TEMPLATES`).
        reasons: Reason thresholds.

        Raises:
            ValueError: a gradient method on a forward-only backend, or a model without vocab/config.
        """
        self.method = method or default_method(backend)
        if backend in _FORWARD_ONLY_BACKENDS and self.method not in FORWARD_ONLY_METHODS:
            msg = (
                f"backend {backend!r} is forward-only: explain with {sorted(FORWARD_ONLY_METHODS)}, not {self.method!r}"
            )
            raise ValueError(msg)
        self._attributor: Attributor | None = None
        if encoder is not None:
            if vocab is None or config is None:
                msg = "an Explainer over a model needs its vocab and config"
                raise ValueError(msg)
            self._attributor = make_attributor(self.method, encoder, model)
        self._encoder = encoder
        self._normed: tuple[torch.Tensor, np.ndarray] | None = None  # (item table, its row-normalised copy)
        self._vocab, self._config, self._queries = vocab, config, queries
        self.max_evidence = max_evidence
        self.language = language
        self._reasons = reasons or ReasonConfig()
        self._index: ReasonIndex | None = None  # item-side memos of the last ItemContext seen

    @classmethod
    def for_scorer(
        cls,
        scorer: TorchScorer,
        model: DifferentiableEncoder | None = None,
        queries: QueryCache | None = None,
        **kwargs: Any,
    ) -> Explainer:
        """The explainer of a `TorchScorer`: its backend, vocabulary and config; method by backend unless given."""
        backend = scorer.backend
        return cls(
            encoder=backend,
            model=model,
            vocab=scorer.vocab,
            config=scorer.config,
            queries=queries,
            backend=backend.name,
            **kwargs,
        )

    @property
    def vocab(self) -> ItemVocab | None:
        """Item vocabulary of the explained model (None for baselines)."""
        return self._vocab

    @property
    def config(self) -> ModelConfig | None:
        """Config of the explained model (None for baselines)."""
        return self._config

    @property
    def attributor(self) -> Attributor | None:
        """The attribution method in use (None for baseline scorers)."""
        return self._attributor

    def explain(
        self,
        users: Sequence[UserState],
        items: ItemContext,
        scored: Sequence[Sequence[ScoredItem]],
        now: Sequence[datetime] | None = None,
    ) -> list[list[Explanation]]:
        """One `Explanation` per scored item, per user, in input order.

        The records are built from values that are valid by construction, not validated one by one
        (`explain.records` says why that holds): at batch 32 x top 10 that is ~3000 records, and validating them
        was the largest share of the explanation cost.

        Args:
            users: The micro-batch's user states (as scored).
            items: The item context they were scored with.
            scored: The scorer's top-k lists.
            now: Per user, the trigger event's time (default: their newest event's time).
        """
        evidence = self.evidence(users, scored)
        # ItemContext is frozen: the same object means the same data, so item-side memos carry over.
        index = self._index = ReasonIndex(items, self._reasons, reuse=self._index)
        # Each item's `similar_to` candidate, found once: the batch's cosines are computed for exactly these pairs,
        # and the reasons reuse them.
        candidates = [
            [similar_candidate(user, s.item_id, ev) for s, ev in zip(row, per_item, strict=True)]
            for user, row, per_item in zip(users, scored, evidence, strict=True)
        ]
        similarity = self._cosine(
            {
                (found[0], s.item_id)
                for row, found_u in zip(scored, candidates, strict=True)
                for s, found in zip(row, found_u, strict=True)
                if found is not None
            }
        )
        text = BatchText(templates(self.language))
        out = []
        for u, user in enumerate(users):
            when = now[u] if now is not None else (user.events[-1].ts if user.events else None)
            rows = [(s.item_id, ev) for s, ev in zip(scored[u], evidence[u], strict=True)]
            out.append(_user_explanations(user, rows, candidates[u], index, similarity, when, text))
        return out

    def evidence(
        self, users: Sequence[UserState], scored: Sequence[Sequence[ScoredItem]]
    ) -> list[list[list[tuple[int, float]]]]:
        """Per user and item: (index into `user.events`, signed weight), strongest first, positives only."""
        if self._attributor is None:
            return [
                [[(i, float(w)) for i, w in s.evidence if w > 0.0][: self.max_evidence] for s in row] for row in scored
            ]
        assert self._vocab is not None and self._config is not None  # noqa: S101 (checked in __init__)
        vocab = self._vocab
        k = max((len(row) for row in scored), default=0)
        padded = [[vocab.index(s.item_id) or 0 for s in row] + [0] * (max(k, 1) - len(row)) for row in scored]
        rows = torch.tensor(padded, dtype=torch.long).view(len(users), max(k, 1))
        if isinstance(self._attributor, ItemSimilarity):
            weights, kept = self._similarity_weights(users, rows)
        else:
            batch, encoded = batch_from_states(users, vocab, self._config, self._queries)
            weights = self._attributor.attribute(batch, rows)  # (B, K, T)
            t = weights.shape[-1]
            kept = torch.full((len(users), t), -1, dtype=torch.long)
            for u, rows_u in enumerate(encoded):
                n = min(len(rows_u.items), t)  # positions T-n .. T-1 hold events kept[-n:]
                if n:
                    kept[u, t - n :] = torch.from_numpy(rows_u.kept[len(rows_u.items) - n :])
        return self._top(weights, kept, [len(row) for row in scored])

    def _similarity_weights(self, users: Sequence[UserState], rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`ItemSimilarity` without building the model's padded batch: same positions and weights, one einsum.

        Returns weights (B, K, T) and the event index of each position (B, T; -1 = none).
        """
        assert self._vocab is not None and self._config is not None and self._encoder is not None  # noqa: S101
        table, t = self._encoder.item_table(), self._config.max_len
        # Searches take a position (row 0), unknown items do not (as `model.sequences.event_rows`): row -1 here
        # (vocabulary rows start at 1, so `or -1` only maps "unknown"). Events of all users are laid out flat, then
        # placed with numpy.
        lookup, search = self._vocab.index, EventType.SEARCH
        lengths = np.fromiter((len(u.events) for u in users), dtype=np.int64, count=len(users))
        n = int(lengths.sum())
        flat = np.fromiter(
            (0 if e.type is search else lookup(e.item_id) or -1 for u in users for e in u.events), np.int64, count=n
        )
        starts = np.cumsum(lengths) - lengths
        user_of = np.repeat(np.arange(len(users)), lengths)
        event_of = np.arange(n) - np.repeat(starts, lengths)  # index into the user's events
        valid = flat >= 0
        # Known events at or after each event in its user's history (1 = the newest): the last t land at T-1, T-2, ...
        after = np.concatenate([np.cumsum(valid[::-1])[::-1], [0]])
        from_end = after[:n] - after[np.repeat(starts + lengths, lengths)]
        keep = valid & (from_end <= t)
        hist = np.zeros((len(users), t), dtype=np.int64)
        kept = np.full((len(users), t), -1, dtype=np.int64)
        hist[user_of[keep], t - from_end[keep]] = flat[keep]
        kept[user_of[keep], t - from_end[keep]] = event_of[keep]
        index = torch.from_numpy(hist).to(table.device)
        with torch.inference_mode():
            w = torch.einsum("bkc,btc->bkt", table[rows.to(table.device)], table[index]).float().cpu()  # (B, K, T)
        return w * (index.cpu() > 0)[:, None, :], torch.from_numpy(kept)

    def _top(
        self, weights: torch.Tensor, kept: torch.Tensor, sizes: Sequence[int]
    ) -> list[list[list[tuple[int, float]]]]:
        """Per user and item row of `weights` (B, K, T): the `max_evidence` strongest positive (event index, weight).

        `kept` (B, T) maps positions to event indices (-1 = padding). One stable sort over the newest-first order
        for the whole batch, so ties go to the newer event.
        """
        m = min(self.max_evidence, weights.shape[-1])
        # numpy, not torch: the same stable sort, a dozen small ops at ~1 us each instead of ~10 us.
        newest_first = kept.numpy()[:, ::-1]  # (B, T)
        flipped = np.where(newest_first[:, None, :] < 0, 0.0, weights.detach().cpu().numpy()[..., ::-1])
        nan = np.isnan(flipped)
        if nan.any():  # NaN first, as torch's descending sort puts it (then filtered below)
            order = np.lexsort((-flipped, ~nan), axis=-1)[..., :m]
        else:  # descending and stable: ascending stable sort of the negation
            order = np.argsort(-flipped, axis=-1, kind="stable")[..., :m]  # (B, K, m)
        values = np.take_along_axis(flipped, order, -1).astype(np.float64).round(6)
        events = np.take_along_axis(np.broadcast_to(newest_first[:, None, :], flipped.shape), order, -1)
        vs, es = values.tolist(), events.tolist()
        if bool(np.isnan(values).any()):  # NaN sorts first and is not positive: filter entry by entry
            return [
                [
                    [(e, v) for v, e in zip(v_k, e_k, strict=True) if v > 0.0]
                    for v_k, e_k in zip(vs[u][:k], es[u][:k], strict=True)
                ]
                for u, k in enumerate(sizes)
            ]
        # Sorted descending (rounding keeps the order), so each row's positive weights are its first `n`.
        counts = (values > 0.0).sum(-1).tolist()  # (B, K)
        return [
            [
                list(zip(e_k[:n], v_k[:n], strict=True))
                for v_k, e_k, n in zip(vs[u][:k], es[u][:k], counts[u][:k], strict=True)
            ]
            for u, k in enumerate(sizes)
        ]

    def _cosine(self, pairs: set[tuple[str, str]]) -> Similarity | None:
        """Cosine of two items in the served model's item space (None for baselines).

        The `pairs` the batch will ask for are computed in one vectorised step; others one by one.
        """
        if self._encoder is None or self._vocab is None:
            return None
        table = self._encoder.item_table()
        if self._normed is None or self._normed[0] is not table:  # recomputed after a hot swap / refresh
            self._normed = (table, torch.nn.functional.normalize(table.detach().float(), dim=-1).cpu().numpy())
        normed, index = self._normed[1], self._vocab.index
        known = [(a, b, index(a), index(b)) for a, b in pairs]
        known = [(a, b, ra, rb) for a, b, ra, rb in known if ra is not None and rb is not None]
        first = np.asarray([k[2] for k in known], dtype=np.int64)
        second = np.asarray([k[3] for k in known], dtype=np.int64)
        values = np.einsum("nc,nc->n", normed[first], normed[second]).tolist()
        memo: dict[tuple[str, str], float] = {(a, b): v for (a, b, _, _), v in zip(known, values, strict=True)}

        def cosine(a: str, b: str) -> float:
            found = memo.get((a, b))
            if found is not None:
                return found
            ra, rb = index(a), index(b)
            return 0.0 if ra is None or rb is None else float(normed[ra] @ normed[rb])

        return cosine


def _user_explanations(
    user: UserState,
    rows: list[tuple[str, list[tuple[int, float]]]],
    candidates: Sequence[tuple[str, float] | None],
    index: ReasonIndex,
    similarity: Similarity | None,
    now: datetime | None,
    text: BatchText,
) -> list[Explanation]:
    """One user's `Explanation`s, one per (item, evidence) row (`candidates`: each row's `similar_candidate`).

    Records are built from valid-by-construction values (`explain.records`). Per user, each evidence event's fields
    and each lead sentence are built once: a user's items mostly share their evidence events (only the weights
    differ).
    """
    titles, events, phrases = index.items.item_title, user.events, text.templates
    fields: dict[int, tuple[str, str | None, EventType, datetime]] = {}  # event index -> its evidence fields
    leads: dict[tuple[int, bool], str] = {}  # (top event index, on the recommended item) -> rendered lead
    compose = text.compose
    out = []
    for (item_id, evidence), reasons in zip(rows, user_reasons(user, rows, index, similarity, candidates), strict=True):
        records = []
        for i, w in evidence:
            base = fields.get(i)
            if base is None:
                e = events[i]
                base = fields[i] = (e.event_id, e.item_id, e.type, e.ts)
            records.append(
                _evidence({"event_id": base[0], "item_id": base[1], "type": base[2], "ts": base[3], "weight": w})
            )
        lead, on_item = None, False
        if evidence and now is not None:
            top = evidence[0][0]
            event = events[top]
            on_item = event.item_id == item_id
            lead = leads.get((top, on_item))
            if lead is None:
                label = event.query or "" if event.item_id is None else titles.get(event.item_id)
                lead = leads[top, on_item] = render_lead(
                    event.type, label or event.item_id or "", event.ts, on_item, now, phrases
                )
        out.append(_explanation({"evidence": records, "reasons": reasons, "text": compose(lead, reasons, on_item)}))
    return out
