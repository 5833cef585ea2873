"""Two-stage model: candidates from the transformer and the counting parts, re-ranked by a learned MLP.

Stage 1 (`CandidateBuilder`): one transformer forward per micro-batch gives its top list and its log-softmax
over the whole vocabulary; the counting parts (`model.count_parts`: transitions, V-SKNN, item counts) and the
feature store's co-occurrence and popularity (`ItemContext`) add theirs; `model.rank_features` forms the union
and one feature row per candidate. Stage 2 (`TwoStageScorer`): `model.ranker.RankerEnsemble` scores the rows and the
top `k` are served. The current item is never a candidate (it is excluded in stage 1, as
`model.exclude.ExcludeCurrentItem` does for other scorers); unavailable and just-bought items neither.

Explanations: an item the transformer listed keeps the transformer's evidence and reasons (what `explain/`
attributes); otherwise the strongest counting reason (seen before, bought/opened after the current item, similar
sessions; for an item without events, the text neighbours' "its description is like <current item>").
`transformer` is exposed so the explainer can attribute through the transformer's encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from contracts import Reason, ReasonKind
from model.cooccurrence import CooccurrenceScorer
from model.count_parts import CountParts
from model.rank_features import CandidateSet, Sources, build_candidates, category_codes
from model.ranker import RankerEnsemble
from model.recency import item_label
from model.scoring import ItemContext, ScoredItem, UserState
from model.splits import TestPoint
from model.text_candidates import TextNeighbours
from model.torch_scorer import TorchScorer

__all__ = ["CandidateBuilder", "TwoStageScorer", "item_texts", "training_examples"]

_SCORE_BATCH = 256  # users per transformer forward and co-occurrence call
_SEEN_BEFORE = Reason(kind=ReasonKind.SEEN_BEFORE, detail="you looked at it earlier", weight=1.0)
_SIMILAR_SESSIONS = Reason(kind=ReasonKind.SIMILAR_TO, detail="shoppers with sessions like yours chose it", weight=1.0)


def item_texts(transformer: TorchScorer) -> np.ndarray | None:
    """(V, text_dim) precomputed item texts of a text-tower transformer by its row, or None (no text tower)."""
    model = getattr(transformer.backend, "model", None)
    text = getattr(model, "item_text", None) if getattr(model, "text_proj", None) is not None else None
    return None if text is None else text.detach().float().cpu().numpy()


class CandidateBuilder:
    """Stage 1: candidate sets with features for a micro-batch (module docstring)."""

    def __init__(self, transformer: TorchScorer, parts: CountParts, depth: int = 50) -> None:
        """Args: the transformer scorer, counting parts fitted on the same events, items per source list.

        With a text-tower transformer, its precomputed item texts feed the text-neighbour source.
        """
        self.transformer = transformer
        self.parts = parts
        self.depth = depth
        rows = [transformer.vocab.index(item) for item in parts.vocab]
        self._rows = np.asarray([r or 0 for r in rows], dtype=np.int64)  # count row -> transformer row (0: none)
        self._cooccurrence = CooccurrenceScorer()
        text = item_texts(transformer)
        self._text = None if text is None else TextNeighbours(text[self._rows])  # row 0 (none) is all zeros

    def build(
        self, users: Sequence[UserState], items: ItemContext
    ) -> tuple[list[CandidateSet], list[dict[str, ScoredItem]]]:
        """Per user: the candidate set, and the transformer's explained top list by item id."""
        if not users:
            return [], []
        if self.transformer.with_evidence:  # keep the transformer's evidence and reasons for the items it lists
            listed, logp = self.transformer.score_with_logits(users, items, self.depth)
            by_id = [{s.item_id: s for s in row} for row in listed]
        else:  # the explainer attributes through the transformer: its log-probabilities are all that is read
            logp, by_id = self.transformer.log_probabilities(users, items), [{} for _ in users]
        co_lists = self._cooccurrence.top(users, items, self.depth)  # ids and scores; no explanations built
        index = self.parts.index
        size = len(self.parts.vocab)
        unavailable = np.zeros(size, dtype=bool)
        unavailable[[r for r in map(index.get, items.unavailable) if r is not None]] = True
        recent = np.zeros(size)
        for item_id, value in items.popular:
            row = index.get(item_id)
            if row is not None:
                recent[row] = max(value, 0.0)
        codes = category_codes(items.item_category, index, size)  # once per batch, not per candidate
        t_all = logp.numpy()[:, self._rows]  # (B, V_counts)
        t_all[:, self._rows == 0] = -np.inf
        depth = min(self.depth, size)
        t_top = torch.from_numpy(t_all).topk(depth, dim=1).indices.numpy() if depth else None  # one call, not B
        sims, listed_text = self._text.similarities(users, index) if self._text is not None else (None, None)
        sets = []
        for u, user in enumerate(users):
            blocked = unavailable.copy()
            blocked[[r for r in map(index.get, user.purchased_recently) if r is not None]] = True
            co = [(index[i], v) for i, v in co_lists[u] if i in index]
            co_rows, co_scores = [r for r, _ in co], [v for _, v in co]
            top = t_top[u] if t_top is not None else None
            sources = Sources(
                t_all[u], co_rows, co_scores, recent, blocked, items.item_category, t_top=top, codes=codes,
                text_sim=None if sims is None else sims[u],
                text_listed=None if listed_text is None else listed_text[u],
            )  # fmt: skip
            sets.append(build_candidates(user, self.parts, sources, self.depth))
        return sets, by_id


class TwoStageScorer:
    """Stage 2: the learned ranker over `CandidateBuilder`'s sets; a `Scorer`."""

    def __init__(self, builder: CandidateBuilder, ranker: RankerEnsemble, version: str | None = None) -> None:
        """Args: stage 1, the fitted ranker, version label (default: derived from the transformer's)."""
        self.builder = builder
        self.ranker = ranker
        self._version = version or f"two-stage({builder.transformer.version})"

    @property
    def version(self) -> str:
        """Model version stamped on recommendations."""
        return self._version

    @property
    def transformer(self) -> TorchScorer:
        """The transformer part (what `explain.Explainer.for_scorer` attributes through)."""
        return self.builder.transformer

    def with_transformer(
        self, transformer: TorchScorer, version: str | None = None, parts: CountParts | None = None
    ) -> TwoStageScorer:
        """The same ranker and depth around another transformer (e.g. a fine-tuned copy), and the same counting
        parts unless `parts` (e.g. grown by items without events) is given."""
        builder = CandidateBuilder(transformer, parts or self.builder.parts, self.builder.depth)
        return TwoStageScorer(builder, self.ranker, version)

    def score(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[ScoredItem]]:
        """Top-`k` candidates per user by ranker score, best first, in input order."""
        out: list[list[ScoredItem]] = []
        after: dict[str, Reason] = {}  # this call's "opened after <current item>" reasons, one per item
        for start in range(0, len(users), _SCORE_BATCH):
            batch = users[start : start + _SCORE_BATCH]
            sets, listed = self.builder.build(batch, items)
            # One ranker forward for the whole batch (per-user calls cost more in torch overhead than the math).
            sizes = [len(c.rows) for c in sets]
            flat = self.ranker.predict(np.concatenate([c.features for c in sets])) if sum(sizes) else np.zeros(0)
            per_user = np.split(flat, np.cumsum(sizes)[:-1])
            for user, candidates, by_id, scores in zip(batch, sets, listed, per_user, strict=True):
                order = np.lexsort((np.arange(len(scores)), -scores))[:k]
                last = {e.item_id: p for p, e in enumerate(user.events)}  # item -> its newest event index
                out.append(
                    [
                        self._explain(user, items, candidates, int(i), float(scores[i]), by_id, last, after)
                        for i in order
                    ]
                )
        return out

    def _explain(
        self,
        user: UserState,
        items: ItemContext,
        candidates: CandidateSet,
        at: int,
        score: float,
        by_id: dict[str, ScoredItem],
        last: dict[str | None, int],
        after: dict[str, Reason],
    ) -> ScoredItem:
        item_id = self.builder.parts.vocab[int(candidates.rows[at])]
        known = by_id.get(item_id)
        if known is not None:
            return ScoredItem(item_id, score, known.evidence, known.reasons)
        position = last.get(item_id)
        if position is not None:
            return ScoredItem(item_id, score, ((position, 1.0),), (_SEEN_BEFORE,))
        current = user.events[-1].item_id if user.events else None
        if current is not None and self.builder.parts.item_counts[int(candidates.rows[at])] == 0:
            # no events yet: only the text neighbours could have named it
            detail = f"its description is like {item_label(current, items)}"
            return ScoredItem(item_id, score, ((len(user.events) - 1, 1.0),), (_text_reason(detail),))
        if current is not None:
            if current not in after:  # records are frozen: one per current item, not one per candidate
                detail = f"shoppers often open it after {item_label(current, items)}"
                after[current] = Reason(kind=ReasonKind.SIMILAR_TO, detail=detail[:512], weight=1.0)
            return ScoredItem(item_id, score, ((len(user.events) - 1, 1.0),), (after[current],))
        return ScoredItem(item_id, score, (), (_SIMILAR_SESSIONS,))


def _text_reason(detail: str) -> Reason:
    return Reason(kind=ReasonKind.SIMILAR_TO, detail=detail[:512], weight=1.0)


def training_examples(
    builder: CandidateBuilder, points: Sequence[TestPoint], items: ItemContext
) -> list[tuple[np.ndarray, int]]:
    """(features, index of the target among the candidates or -1) per point, for `model.ranker.fit_ranker`."""
    examples: list[tuple[np.ndarray, int]] = []
    for start in range(0, len(points), _SCORE_BATCH):
        chunk = points[start : start + _SCORE_BATCH]
        sets, _ = builder.build([p.state for p in chunk], items)
        for point, candidates in zip(chunk, sets, strict=True):
            target = builder.parts.index.get(point.target)
            hits = np.flatnonzero(candidates.rows == target) if target is not None else np.zeros(0)
            examples.append((candidates.features, int(hits[0]) if hits.size else -1))
    return examples
