"""Incremental index build: only new or changed documents are embedded; the swap is atomic.

    python -m rag index --corpus corpus --index data/index

A build writes a new generation folder beside the live one, checksums it, then replaces the
CURRENT pointer with os.replace, so a crash at any moment leaves the previous index loadable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from index.chunking import chunk_document
from index.cleaning import extract_date, extract_title, find_boilerplate, line_key, segment
from index.config import IndexConfig
from index.corpus_index import (
    CHUNKS_FILE,
    CURRENT_FILE,
    FORMAT_VERSION,
    MANIFEST_FILE,
    Chunk,
    CorpusIndex,
    IndexLoadError,
    IndexNotFound,
    file_sha256,
    manifest_checksum,
)
from index.durable import folder_lock, fsync_path, fsync_tree
from index.embedding import Embedder, check_embedder, embedder_for
from index.loaders import RawDocument, Skipped, scan_corpus
from index.stores import BM25Store, FaissVectorStore

logger = logging.getLogger(__name__)


@dataclass
class UpdateReport:
    """What an index update did, for the CLI and the UI."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_total: int = 0
    embed_seconds: float = 0.0
    total_seconds: float = 0.0
    # Wall seconds per stage: scan (read + decode), prepare (page chrome, load the old index,
    # compare fingerprints), model (load on first use), chunk (clean, split, count), embed,
    # write (stores, checksums, fsync, swap).
    stage_seconds: dict[str, float] = field(default_factory=dict)
    rebuilt_reason: str = ""
    wrote_generation: bool = False

    def summary(self) -> str:
        """One human line: added/changed/removed/kept and the embedding work done."""
        rate = self.chunks_embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0
        text = (
            f"added {len(self.added)}, changed {len(self.changed)}, removed {len(self.removed)}, "
            f"kept {len(self.kept)}, skipped {len(self.skipped)} files; "
            f"embedded {self.chunks_embedded} of {self.chunks_total} chunks "
            f"in {self.embed_seconds:.2f}s ({rate:.1f} chunks/s); total {self.total_seconds:.2f}s"
        )
        if self.rebuilt_reason:
            text += f"; full rebuild: {self.rebuilt_reason}"
        return text


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose output the index depends on."""
    versions = {}
    for package in (
        "faiss-cpu",
        "bm25s",
        "sentence-transformers",
        "transformers",
        "torch",
        "onnxruntime",
        "numpy",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "missing"
    return versions


def _fingerprint(doc: RawDocument, chrome_in_doc: list[str], config: IndexConfig) -> str:
    """Changes when the document's bytes, its chrome lines or the chunking settings change."""
    payload = json.dumps([doc.sha256, sorted(chrome_in_doc), config.chunking_params()])
    return hashlib.sha256(payload.encode()).hexdigest()


def _chunk_raw(doc: RawDocument, chrome: set[str], config: IndexConfig, embedder: Embedder):
    title = extract_title(
        doc.text, boilerplate=chrome, fallback=Path(doc.source).stem, hint=doc.html_title
    )
    date = extract_date(doc.text)
    spans = chunk_document(
        doc.text,
        segment(doc.text, chrome),
        count_tokens=embedder.count_tokens,
        chunk_tokens=config.chunk_tokens,
        max_tokens=config.max_seq_length - 2,
        overlap_sentences=config.overlap_sentences,
        dedup_min_words=config.dedup_min_words,
        counts_add_up=embedder.counts_add_up,
    )
    return title, date, spans


def _load_previous(config: IndexConfig, rebuild: bool) -> tuple[CorpusIndex | None, str]:
    if rebuild:
        return None, "requested (--rebuild)"
    try:
        return CorpusIndex.load(config), ""
    except IndexNotFound:
        return None, ""
    except IndexLoadError as exc:
        # Any other load failure (a damaged CURRENT pointer included) means: rebuild.
        logger.warning("previous index unusable, rebuilding: %s", exc)
        return None, str(exc).split(";")[0]


def _embed(embedder: Embedder, texts: list[str], config: IndexConfig, progress: bool) -> np.ndarray:
    from tqdm import tqdm

    parts = []
    with tqdm(
        total=len(texts), unit="chunk", desc="embedding", disable=not progress or not texts
    ) as bar:
        for i in range(0, len(texts), config.embed_batch_size * 4):
            batch = texts[i : i + config.embed_batch_size * 4]
            parts.append(embedder.encode(batch, batch_size=config.embed_batch_size))
            bar.update(len(batch))
    if not parts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    return np.concatenate(parts)


def update_index(
    config: IndexConfig,
    *,
    rebuild: bool = False,
    progress: bool = True,
    embedder: Embedder | None = None,
) -> UpdateReport:
    """Bring the index in line with the corpus folder, embedding only what changed."""
    started = time.perf_counter()
    if embedder is not None:
        check_embedder(embedder, config)
    corpus_dir = Path(config.corpus_dir)
    if not corpus_dir.is_dir():
        raise ValueError(f"corpus folder not found: {corpus_dir}")
    report = UpdateReport()
    stages = report.stage_seconds
    with folder_lock(Path(config.index_dir)):
        mark = time.perf_counter()
        raw_docs, report.skipped = scan_corpus(
            corpus_dir, extensions=config.extensions, max_bytes=config.max_file_bytes
        )
        stages["scan"], mark = time.perf_counter() - mark, time.perf_counter()
        if not raw_docs:
            reasons = "; ".join(f"{s.source}: {s.reason}" for s in report.skipped[:5])
            raise ValueError(
                f"no documents to index in {corpus_dir} (supported: {', '.join(config.extensions)})"
                + (f"; skipped {reasons}" if reasons else "")
            )
        chrome = find_boilerplate(
            (d.text for d in raw_docs),
            min_repeats=config.boilerplate_min_repeats,
            max_words=config.boilerplate_max_words,
        )
        previous, report.rebuilt_reason = _load_previous(config, rebuild)
        old_docs = previous.manifest["documents"] if previous else {}
        fingerprints = {}
        for doc in raw_docs:
            present = {line_key(line) for line in doc.text.splitlines()} & chrome
            fingerprints[doc.source] = _fingerprint(doc, sorted(present), config)
        new_sources = {d.source for d in raw_docs}
        report.removed = sorted(set(old_docs) - new_sources)
        for doc in raw_docs:
            old = old_docs.get(doc.source)
            if old is None:
                report.added.append(doc.source)
            elif old["fingerprint"] != fingerprints[doc.source]:
                report.changed.append(doc.source)
            else:
                report.kept.append(doc.source)
        unchanged_skips = previous is not None and previous.manifest.get("skipped") == [
            [s.source, s.reason] for s in report.skipped
        ]
        if previous and not (report.added or report.changed or report.removed) and unchanged_skips:
            report.chunks_total = len(previous.chunks)
            report.total_seconds = time.perf_counter() - started
            return report
        stages["prepare"] = time.perf_counter() - mark
        if embedder is None:
            mark = time.perf_counter()
            embedder = embedder_for(config)  # the first use loads the model (and exports it)
            stages["model"] = time.perf_counter() - mark
        mark = time.perf_counter()
        old_by_source: dict[str, list[Chunk]] = {}
        if previous:
            for chunk in previous.chunks:
                old_by_source.setdefault(chunk.source, []).append(chunk)

        to_chunk = [doc for doc in raw_docs if doc.source not in report.kept]
        # Two threads: the tokenizer releases the GIL while counting, the rest interleaves.
        with ThreadPoolExecutor(max_workers=2) as pool:
            chunked = dict(
                zip(
                    [doc.source for doc in to_chunk],
                    pool.map(lambda doc: _chunk_raw(doc, chrome, config, embedder), to_chunk),
                    strict=True,
                )
            )
        records: list[tuple[dict, list[Chunk]]] = []
        new_rows: list[tuple[int, int]] = []  # (document position, chunk position) to embed
        for d_pos, doc in enumerate(raw_docs):
            if doc.source in report.kept:
                chunks = old_by_source.get(doc.source, [])
                info = dict(old_docs[doc.source])
            else:
                title, date, spans = chunked[doc.source]
                chunks = [
                    Chunk(
                        id=-1, source=doc.source, title=title, date=date, start=s.start, end=s.end,
                        text=doc.text[s.start : s.end], search_text=s.search_text,
                        sentences=s.sentences, n_tokens=s.n_tokens,
                    )
                    for s in spans
                ]  # fmt: skip
                info = {
                    "source": doc.source, "sha256": doc.sha256,
                    "fingerprint": fingerprints[doc.source], "title": title, "date": date,
                    "kind": doc.kind, "chars": len(doc.text), "chunks": len(chunks),
                }  # fmt: skip
                new_rows.extend((d_pos, c_pos) for c_pos in range(len(chunks)))
            records.append((info, chunks))

        stages["chunk"] = time.perf_counter() - mark
        embed_started = time.perf_counter()
        new_vectors = _embed(
            embedder, [records[d][1][c].search_text for d, c in new_rows], config, progress
        )
        report.embed_seconds = stages["embed"] = time.perf_counter() - embed_started
        mark = time.perf_counter()
        report.chunks_embedded = len(new_rows)
        fresh = {row: new_vectors[i] for i, row in enumerate(new_rows)}

        all_chunks: list[Chunk] = []
        vectors: list[np.ndarray] = []
        for d_pos, (_info, chunks) in enumerate(records):
            for c_pos, chunk in enumerate(chunks):
                if (d_pos, c_pos) in fresh:
                    vectors.append(fresh[(d_pos, c_pos)])
                else:
                    vectors.append(previous.vectors.vectors[chunk.id])
                all_chunks.append(_renumber(chunk, len(all_chunks)))
        matrix = np.stack(vectors) if vectors else np.zeros((0, embedder.dimension), np.float32)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "corpus_dir": str(corpus_dir.resolve()),
            "embedding": {
                "model": config.embedding_model,
                "backend": embedder.backend,
                "dimension": int(embedder.dimension),
                "max_seq_length": config.max_seq_length,
                "normalized": True,
            },  # fmt: skip
            "chunking": config.chunking_params(),
            "dense": dense_settings(config, len(all_chunks)),
            "bm25": {
                "variant": "lucene",
                "k1": 1.2,
                "b": 0.75,
                "tokenizer": "snowball-en+stopwords",
            },
            "versions": library_versions(),
            "chunk_count": len(all_chunks),
            "documents": {info["source"]: info for info, _ in records},
            "skipped": [[s.source, s.reason] for s in report.skipped],
        }
        _write_generation(Path(config.index_dir), manifest, all_chunks, matrix)
        report.wrote_generation = True
        stages["write"] = time.perf_counter() - mark
        report.chunks_total = len(all_chunks)
    report.total_seconds = time.perf_counter() - started
    logger.info("index updated: %s", report.summary())
    logger.debug("stages: %s", ", ".join(f"{k} {v:.2f}s" for k, v in report.stage_seconds.items()))
    return report


def dense_settings(config: IndexConfig, chunks: int) -> dict:
    """Exact search for small indexes, HNSW past the configured size."""
    if chunks <= config.exact_search_max_chunks:
        return {"type": "flat", "metric": "inner_product"}
    return {
        "type": "hnsw",
        "metric": "inner_product",
        "M": config.hnsw_m,
        "ef_search": config.hnsw_ef_search,
    }


def _renumber(chunk: Chunk, new_id: int) -> Chunk:
    from dataclasses import replace

    return chunk if chunk.id == new_id else replace(chunk, id=new_id)


def _write_generation(
    index_dir: Path, manifest: dict, chunks: list[Chunk], matrix: np.ndarray
) -> None:
    name = f"gen-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}"
    staging = index_dir / f".{name}.tmp"
    staging.mkdir(parents=True)
    try:
        with open(staging / CHUNKS_FILE, "w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(chunk.to_json() + "\n")
        written = [CHUNKS_FILE]
        dense = manifest["dense"]
        written += FaissVectorStore(
            matrix,
            kind=dense["type"],
            # dense_settings() records M and ef_search for HNSW; flat search uses neither.
            **({"hnsw_m": dense["M"], "ef_search": dense["ef_search"]} if "M" in dense else {}),
        ).save(staging)
        written += BM25Store([c.search_text for c in chunks]).save(staging)
        manifest["files"] = {
            n: {"bytes": (staging / n).stat().st_size, "sha256": file_sha256(staging / n)}
            for n in written
        }
        manifest["manifest_sha256"] = manifest_checksum(manifest)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        fsync_tree(staging)
        os.rename(staging, index_dir / name)
        pointer_tmp = index_dir / f".{CURRENT_FILE}.{os.getpid()}.tmp"
        pointer_tmp.write_text(name + "\n")
        fsync_path(pointer_tmp)
        os.replace(pointer_tmp, index_dir / CURRENT_FILE)
        fsync_path(index_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _remove_stale(index_dir, keep=name)


def _remove_stale(index_dir: Path, *, keep: str) -> None:
    """Delete old generations and leftovers of crashed builds (readers hold loaded copies)."""
    for path in index_dir.iterdir():
        if path.name in (keep, CURRENT_FILE, ".lock"):
            continue
        if path.name.startswith(("gen-", ".gen-", f".{CURRENT_FILE}.")):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
