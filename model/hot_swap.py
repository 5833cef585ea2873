"""Hot model swap: a `Scorer` whose model can be replaced while it serves.

`swap(model_dir)` loads and validates the new model in the caller's thread (checksum, shapes, vocabulary, and a
one-user smoke score), then replaces the current scorer reference under a lock. `score` reads the reference
once per call, so a micro-batch is always scored entirely by one model; in-flight batches finish on the old
one. A model that fails any check is refused with `ModelError` and the old model keeps serving.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from contracts import EventType, ModelError
from model.scoring import ItemContext, PastEvent, ScoredItem, Scorer, UserState

__all__ = ["SwappableScorer"]

Loader = Callable[[Path], Scorer]

_SMOKE_USER = UserState(
    user_id="__smoke__",
    events=(PastEvent("__smoke__", None, EventType.SEARCH, datetime(2020, 1, 1, tzinfo=UTC), query=None),),
)


class SwappableScorer:
    """Serves the current scorer; `swap` replaces it atomically between batches."""

    def __init__(self, initial: Scorer, loader: Loader) -> None:
        """Args: the scorer to serve first, `loader(model_dir) -> Scorer` (e.g. `model.artifacts.load_scorer`)."""
        self._current = initial
        self._loader = loader
        self._lock = threading.Lock()  # serialises swaps; readers only read one reference

    @property
    def current(self) -> Scorer:
        """The scorer serving right now."""
        return self._current

    @property
    def version(self) -> str:
        """Version of the current model."""
        return self._current.version

    def score(self, users: Sequence[UserState], items: ItemContext, k: int) -> list[list[ScoredItem]]:
        """Score with whichever model is current when the call starts."""
        scorer = self._current  # one read: the whole batch uses this model
        return scorer.score(users, items, k)

    def swap(self, model_dir: Path) -> str:
        """Load, validate and switch to the model in `model_dir`; returns its version.

        Raises:
            ModelError: the model could not be loaded or failed the smoke test (`ChecksumMismatch` for bad
                bytes); the previous model keeps serving.
        """
        try:
            candidate = self._loader(Path(model_dir))
            smoke = candidate.score([_SMOKE_USER], ItemContext(), 1)
        except ModelError:
            raise
        except Exception as exc:  # any other failure of a candidate is still "this model cannot serve"
            msg = f"model in {model_dir} failed to load or score: {exc}"
            raise ModelError(msg) from exc
        if len(smoke) != 1:
            msg = f"model in {model_dir} returned {len(smoke)} lists for 1 user"
            raise ModelError(msg)
        with self._lock:
            self._current = candidate
        return candidate.version
