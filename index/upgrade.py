"""Upgrade an index of an older format in place, reusing its vectors, texts and OCR cache.

    python -m rag index          # upgrades a format-2 index before updating it

Format 2 kept every chunk in `chunks.jsonl` (row i = vector i of `dense.faiss`) and rebuilt
everything on each update. The upgrade gives each chunk its stable id, writes the chunks as
one segment with the vectors read from `dense.faiss` (nothing is embedded again), computes the
term table with the current analyzer, and swaps CURRENT to the new generation. The stored
texts (`texts/`) and the OCR cache are kept as they are: documents keep their `text_key`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from index.analyzer import ANALYZER, TermStats, analyzer
from index.config import IndexConfig
from index.corpus_index import (
    FORMAT_VERSION,
    IndexCorrupt,
    IndexMismatch,
    current_generation,
    read_manifest,
    verify_files,
)
from index.store import Chunk, StoreState, chunk_id

logger = logging.getLogger(__name__)


class _PreparedWriter:
    """A StoreWriter over chunks and vectors already in hand (one segment, nothing deleted)."""

    def __init__(self, index_dir: Path, chunks: list[Chunk], vectors: np.ndarray, dense: dict):
        self.index_dir, self.chunks, self.vectors, self.dense = index_dir, chunks, vectors, dense

    def delete_documents(self, sources) -> None:
        """Nothing to delete: the upgrade starts from an empty store."""

    def upsert(self, chunks, vectors, *, terms=None) -> None:
        """The chunks are given at construction."""

    def finish(self, generation: Path) -> StoreState:
        """Write the one segment."""
        from index.segments import write_segment

        segments = []
        if self.chunks:
            segments.append(
                write_segment(self.index_dir, self.chunks, self.vectors, dense=self.dense)
            )
        return StoreState({"engine": "faiss", "segments": segments, "chunks": len(self.chunks)}, [])


def _check_reusable(manifest: dict, config: IndexConfig) -> None:
    """IndexMismatch unless the old vectors and chunks are what this config would build."""
    embedding = manifest.get("embedding", {})
    if embedding.get("model") != config.embedding_model or (
        embedding.get("backend", "torch") != config.embedding_backend
    ):
        raise IndexMismatch("the old index used another embedding model or backend")
    if manifest.get("chunking") != config.chunking_params():
        raise IndexMismatch("the old index used other chunking settings")
    if config.store != "faiss":
        raise IndexMismatch(f"a format-2 index cannot be upgraded into the {config.store} store")


def _old_chunks(folder: Path) -> tuple[list[Chunk], np.ndarray]:
    """The format-2 chunks with their stable ids, and their vectors (row i = chunk i)."""
    import faiss

    from index.segments import stored_vectors

    chunks = []
    with open(folder / "chunks.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            data = json.loads(line)
            data["sentences"] = tuple(tuple(s) for s in data["sentences"])
            data["id"] = chunk_id(
                data["source"], data["start"], data["end"], data["text"], data["search_text"]
            )
            chunks.append(Chunk(**data))
    dense = faiss.read_index(str(folder / "dense.faiss"))
    # A copy while the index is alive: the view points into its memory.
    vectors = np.array(stored_vectors(dense))
    del dense
    if len(vectors) != len(chunks):
        raise IndexCorrupt(f"{folder}: {len(chunks)} chunks but {len(vectors)} vectors")
    return chunks, vectors


def upgrade_index(config: IndexConfig) -> str:
    """Rewrite the live format-2 generation as format 3; returns what was done, in words.

    Raises IndexMismatch or IndexCorrupt when the old index cannot be reused (the caller
    then rebuilds it from the documents).
    """
    from index.build import _generation_to_keep, dense_settings, write_generation

    folder = current_generation(config.index_dir)
    if folder is None:
        raise IndexCorrupt(f"no index to upgrade in {config.index_dir}")
    manifest = read_manifest(folder)
    old_format = manifest.get("format_version")
    _check_reusable(manifest, config)
    verify_files(folder, manifest)
    chunks, vectors = _old_chunks(folder)
    # Two chunks with one id would be the same passage twice: keep the first.
    unique = {}
    for position, chunk in enumerate(chunks):
        unique.setdefault(chunk.id, position)
    rows = sorted(unique.values())
    chunks, vectors = [chunks[i] for i in rows], vectors[rows]
    stats = TermStats.of(analyzer().tokenize(c.search_text) for c in chunks)
    for key in ("files", "manifest_sha256", "store"):
        manifest.pop(key, None)
    manifest.update(
        format_version=FORMAT_VERSION,
        chunk_count=len(chunks),
        dense=dense_settings(config, len(chunks)),
        upgraded_from=old_format,
    )
    manifest["bm25"] = {**manifest.get("bm25", {}), "tokenizer": ANALYZER}
    writer = _PreparedWriter(
        Path(config.index_dir), chunks, vectors, dense_settings(config, len(chunks))
    )
    write_generation(
        Path(config.index_dir), manifest, stats=stats, writer=writer,
        keep=_generation_to_keep(config, None),
    )  # fmt: skip
    done = (
        f"upgraded index format {old_format} to {FORMAT_VERSION} "
        f"({len(chunks)} chunks, vectors reused)"
    )
    logger.info(done)
    return done
