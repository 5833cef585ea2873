"""The serving model of a worker: a (scorer, explainer) pair, loaded from the model store, replaced as one.

A transformer version is explained by `Explainer.for_scorer(scorer)` (its backend, vocabulary and config), a
two-stage version (the default of `streamrec train`) through its transformer; the baseline blend by
`Explainer()`. The two always change together: the worker reads `Runtime.serving` once per
micro-batch, so a batch is scored and explained by one model and stamped with that model's version.

`load_serving` does everything that can fail or take time (checksum, shapes, backend build, a one-user smoke
score) before anything is switched; it is meant to run off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from contracts import EventType, ModelError, Settings
from explain.explainer import Explainer
from model.artifacts import MANIFEST_FILE, Manifest, load_scorer
from model.baselines import default_blend
from model.scoring import ItemContext, PastEvent, Scorer, UserState
from model.store import ModelStore
from model.torch_scorer import TorchScorer
from model.two_stage import TwoStageScorer

__all__ = ["SCORER_MAX_BATCH", "ServingModel", "baseline_serving", "initial_serving", "load_serving", "serving_pair"]

log = logging.getLogger(__name__)

# Users per transformer forward: a micro-batch of up to `Settings.max_batch` users is scored in chunks of this
# many, so the encoder's and the catalog top-k's temporaries (users x 65,536 catalog rows per chunk) stay as
# they were when micro-batches were at most 256 events.
SCORER_MAX_BATCH = 256

_SMOKE = UserState(
    user_id="__smoke__",
    events=(PastEvent("__smoke__", None, EventType.SEARCH, datetime(2020, 1, 1, tzinfo=UTC), query=None),),
)


@dataclass(frozen=True, slots=True)
class ServingModel:
    """What scores and explains a micro-batch."""

    scorer: Scorer
    explainer: Explainer
    metrics: Mapping[str, float] = field(default_factory=dict)  # the manifest's (gate) metrics, for the dashboard

    @property
    def version(self) -> str:
        """Version stamped on recommendations."""
        return self.scorer.version


def baseline_serving() -> ServingModel:
    """The baseline blend (no model in the store)."""
    return ServingModel(default_blend(), Explainer())


def load_serving(model_dir: Path, settings: Settings, expected_sha256: str | None = None) -> ServingModel:
    """Load, verify and smoke-test a model directory into a serving pair (blocking; run it in an executor).

    Raises:
        ModelError: unloadable, corrupted (`ChecksumMismatch`), not the announced weights, or fails to score.
    """
    try:
        forward = min(settings.max_batch, SCORER_MAX_BATCH)
        scorer = load_scorer(
            model_dir,
            backend=settings.backend,
            device=settings.device,
            max_batch=forward,
            encoder_cache_mb=settings.encoder_cache_mb,
        )
        manifest = Manifest.model_validate_json((Path(model_dir) / MANIFEST_FILE).read_bytes())
        if expected_sha256 is not None:  # the files were verified against their manifest; now the announcement
            actual = manifest.sha256
            if actual != expected_sha256:
                msg = f"{model_dir}: weights sha256 {actual} != announced {expected_sha256}"
                raise ModelError(msg)
        if len(scorer.score([_SMOKE], ItemContext(), 1)) != 1:
            msg = f"{model_dir}: smoke score returned no list"
            raise ModelError(msg)
        pair = serving_pair(scorer, manifest.metrics)
    except ModelError:
        raise
    except Exception as exc:  # any other failure still means "this model cannot serve"
        msg = f"model in {model_dir} failed to load or score: {exc}"
        raise ModelError(msg) from exc
    return pair


def serving_pair(scorer: TorchScorer | TwoStageScorer, metrics: Mapping[str, float]) -> ServingModel:
    """A model scorer and its explainer; a two-stage model is explained through its transformer (attribution
    over the same encoder)."""
    explainer = Explainer.for_scorer(scorer.transformer if isinstance(scorer, TwoStageScorer) else scorer)
    return ServingModel(scorer, explainer, dict(metrics))


def initial_serving(settings: Settings) -> ServingModel:
    """The store's `CURRENT` version, or the baseline blend when the store is empty or `CURRENT` is unservable."""
    store = ModelStore(settings.model_dir)
    directory = store.current_dir()
    if directory is None:
        log.info("model store %s is empty: serving the baseline blend", store.root)
        return baseline_serving()
    try:
        serving = load_serving(directory, settings)
    except ModelError:
        log.exception("current model %s cannot serve; falling back to the baseline blend", directory)
        return baseline_serving()
    log.info("serving model %s from %s", serving.version, store.root)
    return serving
