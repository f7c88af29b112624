"""Incremental index build: only new or changed documents are embedded; the swap is atomic.

    python -m rag index --corpus corpus --index data/index

`update_index` is a short pipeline of typed steps, each testable alone:
    load_previous    the live index (a format-2 one is upgraded first)     -> CorpusIndex
    plan_update      stat first, then read what changed (index.planning)   -> UpdatePlan
    chunk_documents  clean and split the new or changed documents          -> DocumentRecord
    vectors_for      reuse the vectors of known chunk ids, embed the rest  -> matrix rows
    write_update     term table, store writes, then write_generation       -> generation folder
A build writes its chunks through the engine's `StoreWriter` (a new segment, or Milvus
upserts), then a small generation folder (manifest, term and line tables, deleted rows),
checksums it and replaces the CURRENT pointer with os.replace, so a crash at any moment
leaves the previous index loadable. The generation that was live before the swap is kept (a
reader may be opening it), and only older ones are deleted.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from index.analyzer import ANALYZER, TermStats, analyzer
from index.chrome import LineCounts
from index.chunking import chunk_document
from index.cleaning import extract_date, extract_title, segment
from index.config import IndexConfig
from index.corpus_index import (
    CURRENT_FILE,
    FORMAT_VERSION,
    MANIFEST_FILE,
    PENDING_FILE,
    CorpusIndex,
    IndexLoadError,
    IndexNeedsUpgrade,
    IndexNotFound,
    IndexProtected,
    current_generation,
    read_manifest,
    seal_manifest_text,
    verify_files,
    verify_store_files,
)
from index.document_store import prune_documents, put_documents
from index.durable import file_sha256, folder_lock, fsync_path, fsync_tree
from index.embedding import Embedder, check_embedder, embedder_for
from index.extraction import hard_groups, locate
from index.loaders import RawDocument, Skipped
from index.planning import UpdatePlan, failures_json, plan_update
from index.progress import NO_CONTROL, BuildControl
from index.store import Chunk, StoreWriter, chunk_id

logger = logging.getLogger(__name__)
# New chunks whose analyzer terms a build keeps for both the term table and the postings.
SHARED_TERMS_LIMIT = 20_000


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
    # Wall seconds per stage: prepare (load and check the live index), scan (read, decode,
    # page chrome, fingerprints), model (load on first use), chunk (clean, split, count),
    # embed, write (stores, checksums, fsync, swap).
    stage_seconds: dict[str, float] = field(default_factory=dict)
    rebuilt_reason: str = ""
    # "upgraded index format 2 to 3 (N chunks, vectors reused)" when the build upgraded it.
    upgraded: str = ""
    # Chunks of new or changed documents whose vectors were reused (same id, same text).
    chunks_reused: int = 0
    wrote_generation: bool = False
    # Documents indexed in part: (source, what was left out).
    partial: list[Skipped] = field(default_factory=list)

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
        if self.upgraded:
            text += f"; {self.upgraded}"
        return text


@dataclass
class DocumentRecord:
    """One document of the new generation: its manifest entry and its chunks."""

    info: dict
    chunks: list[Chunk]
    fresh: bool  # True when its chunks need new vectors
    document: RawDocument | None = None  # set for fresh records: its text is stored


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


def load_previous(
    config: IndexConfig,
    *,
    rebuild: bool,
    report: UpdateReport | None = None,
    full_check: bool = False,
) -> tuple[CorpusIndex | None, str]:
    """The live index and '', or None and why a full rebuild is needed.

    An index of an older format is upgraded first (vectors and texts reused). One written by
    a newer version is never rebuilt over unless rebuild is asked for. Large segment files
    are checked by size only unless full_check (a reader found the index unusable).
    """
    if rebuild:
        return None, "requested (--rebuild)"
    try:
        interrupted = interrupted_generation(config)
        return CorpusIndex.load(config, for_update=not full_check, interrupted=interrupted), ""
    except IndexNotFound:
        return None, ""
    except IndexProtected:
        raise
    except IndexNeedsUpgrade:
        from index.upgrade import upgrade_index

        done = upgrade_index(config)
        if report is not None:
            report.upgraded = done
        return load_previous(config, rebuild=False, full_check=full_check)
    except IndexLoadError as exc:
        # Any other load failure (a damaged CURRENT pointer included) means: rebuild.
        logger.warning("previous index unusable, rebuilding: %s", exc)
        return None, str(exc).split(";")[0]


def chunk_text(
    text: str,
    chrome: set[str],
    *,
    config: IndexConfig,
    embedder: Embedder,
    segments: tuple = (),
) -> list:
    """The chunk spans the index cuts from one document's text (chrome lines kept out)."""
    sentences = segment(text, chrome)
    spans = []
    # Chunks never cross a hard boundary (two slides, sheets or messages): cut each apart.
    for low, high in hard_groups(len(text), segments):
        inside = [s for s in sentences if low <= s.start and s.end <= high]
        spans += chunk_document(
            text,
            inside,
            count_tokens=embedder.count_tokens,
            chunk_tokens=config.chunk_tokens,
            max_tokens=config.max_seq_length - 2,
            overlap_sentences=config.overlap_sentences,
            dedup_min_words=config.dedup_min_words,
            counts_add_up=embedder.counts_add_up,
        )
    return spans


def _chunk_raw(doc: RawDocument, chrome: set[str], config: IndexConfig, embedder: Embedder):
    title = extract_title(
        doc.text, boilerplate=chrome, fallback=Path(doc.source).stem, hint=doc.html_title
    )
    date = extract_date(doc.text)
    spans = chunk_text(doc.text, chrome, config=config, embedder=embedder, segments=doc.segments)
    return title, date, spans


def _new_record(doc: RawDocument, chunked, fingerprint: str) -> DocumentRecord:
    title, date, spans = chunked
    chunks = []
    for s in spans:
        where = locate(doc.text, doc.segments, s.start, s.end)
        text = doc.text[s.start : s.end]
        chunks.append(
            Chunk(
                id=chunk_id(doc.source, s.start, s.end, text, s.search_text), source=doc.source,
                title=title, date=date, start=s.start, end=s.end, text=text,
                search_text=s.search_text, sentences=s.sentences, n_tokens=s.n_tokens,
                page=where.page, locator=where.locator, ocr=where.ocr,
            )
        )  # fmt: skip
    info = {
        "source": doc.source, "sha256": doc.sha256, "fingerprint": fingerprint, "title": title,
        "date": date, "kind": doc.kind, "chars": len(doc.text), "chunks": len(chunks),
        "reader": doc.reader, "notes": list(doc.notes),
        "size": getattr(doc, "size", 0), "mtime_ns": getattr(doc, "mtime_ns", 0),
    }  # fmt: skip
    return DocumentRecord(info=info, chunks=chunks, fresh=True, document=doc)


def chunk_documents(
    plan: UpdatePlan, *, config: IndexConfig, embedder: Embedder
) -> list[DocumentRecord]:
    """Records of every document, in scan order: new or changed ones are cut into chunks.

    Kept documents keep their manifest entry; their chunks stay in the store untouched.
    """
    kept = set(plan.kept) | set(plan.carried)
    to_chunk = [doc for doc in plan.documents if doc.source not in kept]
    # Two threads: the tokenizer releases the GIL while counting, the rest interleaves.
    with ThreadPoolExecutor(max_workers=2) as pool:
        chunked = dict(
            zip(
                [doc.source for doc in to_chunk],
                pool.map(lambda doc: _chunk_raw(doc, plan.chrome, config, embedder), to_chunk),
                strict=True,
            )
        )
    old_docs = plan.previous.manifest["documents"] if plan.previous else {}
    records = []
    for doc in plan.documents:
        if doc.source in kept:
            info = dict(old_docs[doc.source])
            if doc.source in plan.restat:
                info["size"], info["mtime_ns"] = plan.restat[doc.source]
            records.append(DocumentRecord(info, [], fresh=False))
        else:
            records.append(_new_record(doc, chunked[doc.source], plan.fingerprints[doc.source]))
    for source in [*plan.not_read, *plan.carried]:
        records.append(DocumentRecord(dict(old_docs[source]), [], fresh=False))
    records.sort(key=lambda r: r.info["source"])
    check_unique_ids(records)
    return records


def check_unique_ids(records: list[DocumentRecord]) -> None:
    """ValueError when two new chunks share an id (a 63-bit hash collision: never seen)."""
    seen: dict[int, Chunk] = {}
    for record in records:
        for chunk in record.chunks:
            other = seen.setdefault(chunk.id, chunk)
            if other is not chunk:
                raise ValueError(
                    f"chunk id {chunk.id} given to two chunks ({other.source} at {other.start}, "
                    f"{chunk.source} at {chunk.start}); please report this"
                )


def embed_texts(
    embedder: Embedder,
    texts: list[str],
    *,
    config: IndexConfig,
    progress: bool,
    control: BuildControl = NO_CONTROL,
) -> np.ndarray:
    """Vectors of texts, in batches, with a progress bar."""
    from tqdm import tqdm

    parts = []
    with tqdm(
        total=len(texts), unit="chunk", desc="embedding", disable=not progress or not texts
    ) as bar:
        for i in range(0, len(texts), config.embed_batch_size * 4):
            batch = texts[i : i + config.embed_batch_size * 4]
            parts.append(embedder.encode(batch, batch_size=config.embed_batch_size))
            bar.update(len(batch))
            control.step("embedding", i + len(batch), len(texts))
    if not parts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    return np.concatenate(parts)


def fresh_chunks(records: list[DocumentRecord]) -> list[Chunk]:
    """The chunks of new and changed documents, in record order."""
    return [c for r in records if r.fresh for c in r.chunks]


def reusable_vectors(chunks: list[Chunk], previous: CorpusIndex | None) -> dict[int, np.ndarray]:
    """Vectors the live index already holds for these chunk ids (same id = same text)."""
    if previous is None or not chunks:
        return {}
    # Only chunks of the documents being replaced can share an id with a stored chunk.
    live = set(previous.store.ids_of({c.source for c in chunks}).tolist())
    known = [c.id for c in chunks if c.id in live]
    if not known:
        return {}
    return dict(zip(known, previous.store.vectors(known), strict=True))


def vectors_for(
    chunks: list[Chunk],
    *,
    reused: dict[int, np.ndarray],
    embedder: Embedder,
    config: IndexConfig,
    progress: bool,
    control: BuildControl,
) -> np.ndarray:
    """One vector per chunk: reused where the id is known, embedded otherwise."""
    missing = [c for c in chunks if c.id not in reused]
    fresh = embed_texts(
        embedder, [c.search_text for c in missing], config=config, progress=progress,
        control=control,
    )  # fmt: skip
    if not chunks:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    by_id = dict(reused)
    by_id.update(zip((c.id for c in missing), fresh, strict=True))
    return np.stack([by_id[c.id] for c in chunks]).astype(np.float32)


def shared_terms(chunks: list[Chunk]) -> list[list[str]] | None:
    """The new chunks' analyzer terms, for the term table and the postings both; None when
    there are too many to hold (then each tokenizes them itself).

    Tokenizing twice was a tenth of what indexing costs besides embedding on the SQuAD corpus;
    a term list costs about 6 KB per chunk, so past SHARED_TERMS_LIMIT chunks it is not kept.
    """
    if len(chunks) > SHARED_TERMS_LIMIT:
        return None
    tokenize = analyzer().tokenize
    return [tokenize(c.search_text) for c in chunks]


def updated_stats(
    previous: CorpusIndex | None,
    counted_out: TermStats,
    added: list[Chunk],
    *,
    terms: list[list[str]] | None = None,
) -> TermStats:
    """The index's term statistics with the replaced chunks counted out and the added ones in."""
    stats = previous.stats.copy() if previous is not None else TermStats()
    stats.merge(counted_out, sign=-1)
    # a generator when tokenizing here: a large build does not hold every chunk's terms
    stats.add(terms if terms is not None else (analyzer().tokenize(c.search_text) for c in added))
    return stats


def replaced_stats(
    previous: CorpusIndex | None, replaced: list[str], pending: Pending
) -> TermStats:
    """Term statistics of the live index's chunks of the replaced documents.

    For documents an interrupted build was writing, the statistics it recorded before its
    first write: a Milvus collection may already hold some of that build's new chunks, which
    the live statistics never counted.
    """
    known = set(pending.sources) if pending.counted_out is not None else set()
    fresh = [s for s in replaced if s not in known]
    tokenize = analyzer().tokenize
    stats = TermStats.of(tokenize(c.search_text) for c in stored_chunks(previous, fresh))
    if pending.counted_out is not None:
        stats.merge(pending.counted_out)
    return stats


def build_manifest(
    plan: UpdatePlan,
    records: list[DocumentRecord],
    *,
    config: IndexConfig,
    embedder: Embedder,
    chunk_count: int,
) -> dict:
    """The manifest of the new generation (store entry and checksums are added on write)."""
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "corpus_dir": str(Path(config.corpus_dir).resolve()),
        "embedding": {
            "model": config.embedding_model,
            "backend": embedder.backend,
            "dimension": int(embedder.dimension),
            "max_seq_length": config.max_seq_length,
            "normalized": True,
        },
        "chunking": config.chunking_params(),
        "dense": dense_settings(config, chunk_count),
        "bm25": {"variant": "lucene", "k1": 1.2, "b": 0.75, "tokenizer": ANALYZER},
        "versions": library_versions(),
        "chunk_count": chunk_count,
        "documents": {r.info["source"]: r.info for r in records},
        "skipped": [[s.source, s.reason] for s in plan.skipped],
        "parse_failures": failures_json(plan.failures),
    }


def update_index(
    config: IndexConfig,
    *,
    rebuild: bool = False,
    progress: bool = True,
    embedder: Embedder | None = None,
    control: BuildControl = NO_CONTROL,
    full_check: bool = False,
) -> UpdateReport:
    """Bring the index in line with the corpus folder, embedding only what changed.

    control reports progress and can cancel (IndexCancelled) until the write step starts.
    full_check verifies every checksum of the live index (after a reader could not load it).
    """
    started = time.perf_counter()
    if embedder is not None:
        check_embedder(embedder, config)
    if not Path(config.corpus_dir).is_dir():
        raise ValueError(f"corpus folder not found: {config.corpus_dir}")
    report = UpdateReport()
    with folder_lock(Path(config.index_dir)), frozen_heap() as freeze:
        timer = StageTimer(report.stage_seconds)
        previous, reason = load_previous(
            config, rebuild=rebuild, report=report, full_check=full_check
        )
        freeze()
        timer.lap("prepare")
        pending = read_pending(config, live_name(previous))
        plan = plan_update(
            config, previous=previous, rebuilt_reason=reason, progress=progress,
            control=control, pending=pending.sources,
        )  # fmt: skip
        _report_plan(report, plan)
        timer.lap("scan")
        if plan.unchanged:
            report.chunks_total = previous.stats.chunks  # checked against the store on load
            report.total_seconds = time.perf_counter() - started
            previous.store.close()
            return report
        load_store(previous, plan)
        timer.lap("prepare")
        if embedder is None and not (plan.added or plan.changed):
            embedder = ModelNotNeeded(previous.manifest)  # only removals: no model to load
        if embedder is None:
            embedder = embedder_for(config)  # the first use loads the model (and exports it)
            timer.lap("model")
        records = chunk_documents(plan, config=config, embedder=embedder)
        timer.lap("chunk")
        try:
            write_update(
                config, plan, records, report, embedder=embedder, timer=timer,
                progress=progress, control=control, pending=pending,
            )  # fmt: skip
        finally:
            if previous is not None:
                previous.store.close()  # a Milvus connection, or nothing
    report.total_seconds = time.perf_counter() - started
    logger.info("index updated: %s", report.summary())
    logger.debug("stages: %s", ", ".join(f"{k} {v:.2f}s" for k, v in report.stage_seconds.items()))
    return report


@contextlib.contextmanager
def frozen_heap() -> Iterator[Callable[[], None]]:
    """A freeze to call once the live index is loaded; whatever was frozen thaws on exit.

    gc.freeze puts every object so far out of the cycle collector's reach: the live index's
    manifest and tables (millions of objects at 1M chunks) outlive the update, and the full
    collections that walked them took 1.5-1.8 s of a one-document update at 1M chunks
    (measured with gc.callbacks; 0.5-0.8 s with this and the manifest parsed with the
    collector paused).
    """
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()


def load_store(previous: CorpusIndex | None, plan: UpdatePlan) -> None:
    """Load the live Milvus collection now when the update will write or read it.

    Milvus Lite loads a collection into memory on its first write or read anyway (seconds
    per 100k chunks); loading it here keeps that cost in the prepare stage (loading the live
    index) instead of hiding it in the embed stage (vector reuse reads just before embedding).
    An update that changes no document (new file times only) never loads it.
    """
    if previous is not None and (plan.added or plan.changed or plan.removed):
        previous.store.load()


class ModelNotNeeded:
    """The embedder's settings from the live index, for an update that embeds nothing."""

    def __init__(self, manifest: dict) -> None:
        self.backend = manifest["embedding"]["backend"]
        self.dimension = int(manifest["embedding"]["dimension"])

    def encode(self, texts, **kwargs) -> np.ndarray:
        """Never called: nothing is embedded when no document is new or changed."""
        raise RuntimeError("the embedding model was not loaded for this update")


class StageTimer:
    """Wall seconds per named stage, each lap measured from the previous one."""

    def __init__(self, stages: dict[str, float]) -> None:
        self.stages = stages
        self.mark = time.perf_counter()

    def lap(self, name: str) -> float:
        """Add the seconds since the last lap to stage name; returns that stage's total."""
        now = time.perf_counter()
        self.stages[name] = self.stages.get(name, 0.0) + now - self.mark
        self.mark = now
        return self.stages[name]


def write_update(
    config: IndexConfig,
    plan: UpdatePlan,
    records: list[DocumentRecord],
    report: UpdateReport,
    *,
    embedder: Embedder,
    timer: StageTimer,
    progress: bool,
    control: BuildControl,
    pending: Pending,
) -> None:
    """Embed what is new, write the store and the generation, and swap CURRENT."""
    previous = plan.previous
    chunks = fresh_chunks(records)
    reused = reusable_vectors(chunks, previous)
    vectors = vectors_for(
        chunks, reused=reused, embedder=embedder, config=config, progress=progress,
        control=control,
    )  # fmt: skip
    report.chunks_embedded, report.chunks_reused = len(chunks) - len(reused), len(reused)
    report.embed_seconds = timer.lap("embed")
    control.check()  # the last moment to cancel: nothing written yet
    replaced = sorted({*plan.added, *plan.changed, *plan.removed, *pending.sources})
    kept = set(plan.kept) | set(plan.carried)
    replaced = [s for s in replaced if s not in kept]
    counted_out = replaced_stats(previous, replaced, pending)
    terms = shared_terms(chunks)
    stats = updated_stats(previous, counted_out, chunks, terms=terms)
    store_texts(Path(config.index_dir), records)
    manifest = build_manifest(
        plan, records, config=config, embedder=embedder, chunk_count=stats.chunks
    )
    mark_pending(config, replaced, counted_out=counted_out, live=live_name(previous))
    writer = open_writer(config, previous, dimension=embedder.dimension)
    writer.delete_documents(replaced)
    writer.upsert(chunks, vectors, terms=terms)
    write_generation(
        Path(config.index_dir), manifest, stats=stats, writer=writer, lines=plan.lines,
        keep=_generation_to_keep(config, previous),
        kept_manifest=previous.manifest if previous is not None else None,
    )  # fmt: skip
    clear_pending(config)
    report.wrote_generation = True
    report.chunks_total = stats.chunks
    timer.lap("write")


def stored_chunks(previous: CorpusIndex | None, sources: list[str]) -> list[Chunk]:
    """The live index's chunks of these documents (their terms are counted out)."""
    if previous is None or not sources:
        return []
    return previous.store.fetch(previous.store.ids_of(sources).tolist())


@dataclass(frozen=True)
class Pending:
    """What an interrupted build was writing: its documents and their live statistics."""

    sources: list[str] = field(default_factory=list)
    # Term statistics of those documents' live chunks; None in a file of an older version.
    counted_out: TermStats | None = None


def _pending_record(config: IndexConfig) -> dict | None:
    try:
        data = json.loads((Path(config.index_dir) / PENDING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def interrupted_generation(config: IndexConfig) -> str | None:
    """The live generation an interrupted build was writing on top of, if one was."""
    data = _pending_record(config)
    live = data.get("live") if data else None
    return live if isinstance(live, str) else None


def read_pending(config: IndexConfig, live: str | None) -> Pending:
    """The interrupted build's record, if it wrote on top of the live generation `live`.

    A record left by a build that went live (killed between its swap and the clean-up)
    describes nothing that is pending: it is ignored.
    """
    data = _pending_record(config)
    try:
        sources = [str(s) for s in data["sources"]]
    except (KeyError, TypeError):
        return Pending()
    if "live" in data and data["live"] != live:
        return Pending()
    try:
        counted = TermStats.from_json(data["counted_out"]) if "counted_out" in data else None
    except (ValueError, KeyError, TypeError):
        counted = None
    return Pending(sources, counted)


def live_name(previous: CorpusIndex | None) -> str | None:
    """The live generation's folder name (None when there is none)."""
    return previous.folder.name if previous is not None else None


def mark_pending(
    config: IndexConfig, sources: list[str], *, counted_out: TermStats, live: str | None
) -> None:
    """Record the documents this build replaces before any store write (crash recovery)."""
    path = Path(config.index_dir) / PENDING_FILE
    tmp = path.with_name(f".{PENDING_FILE}.{os.getpid()}.tmp")
    body = {"sources": sources, "live": live, "counted_out": counted_out.to_json()}
    tmp.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    fsync_path(tmp)
    os.replace(tmp, path)


def clear_pending(config: IndexConfig) -> None:
    """The build's writes are live: nothing is pending any more."""
    (Path(config.index_dir) / PENDING_FILE).unlink(missing_ok=True)


def open_writer(
    config: IndexConfig, previous: CorpusIndex | None, *, dimension: int
) -> StoreWriter:
    """The configured engine's writer, continuing from the live index (None: from nothing)."""
    if config.store == "milvus":
        from index.milvus_store import MilvusWriter, collection_name

        name = collection_name(Path(config.index_dir))
        if previous is None:  # a rebuild: the collection starts empty
            MilvusWriter.drop(uri=config.milvus_uri, token=config.milvus_token, collection=name)
        return MilvusWriter.create(
            uri=config.milvus_uri, token=config.milvus_token, collection=name,
            dimension=dimension, expected_chunks=previous.stats.chunks if previous else 0,
        )  # fmt: skip
    from index.segments import EmbeddedWriter

    entry = previous.manifest.get("store", {}) if previous is not None else {}
    return EmbeddedWriter(
        Path(config.index_dir), previous.store if previous is not None else None, entry=entry,
        dense_for=lambda rows: dense_settings(config, rows),
    )  # fmt: skip


def _report_plan(report: UpdateReport, plan: UpdatePlan) -> None:
    report.added, report.changed = plan.added, plan.changed
    report.removed = plan.removed
    report.skipped, report.rebuilt_reason = plan.skipped, plan.rebuilt_reason
    report.partial = [Skipped(d.source, n) for d in plan.documents for n in d.notes]
    old_docs = plan.previous.manifest["documents"] if plan.previous else {}
    report.partial += [Skipped(s, n) for s in plan.not_read for n in old_docs[s].get("notes", [])]
    report.kept = [*plan.kept, *plan.carried]


def dense_settings(config: IndexConfig, chunks: int) -> dict:
    """Exact search for small indexes (or segments), HNSW past the configured size."""
    if chunks <= config.exact_search_max_chunks:
        return {"type": "flat", "metric": "inner_product"}
    return {
        "type": "hnsw",
        "metric": "inner_product",
        "M": config.hnsw_m,
        "ef_search": config.hnsw_ef_search,
    }


def _generation_to_keep(config: IndexConfig, previous: CorpusIndex | None) -> str | None:
    """The live generation's name when its files are sound (it may only mismatch settings).

    A damaged generation is useless to readers and is deleted after the swap.
    """
    if previous is not None:
        return previous.folder.name
    try:
        live = current_generation(config.index_dir)
        if live is None:
            return None
        manifest = read_manifest(live)
        verify_files(live, manifest)  # checksums only: nothing is loaded
        verify_store_files(config, manifest)
    except IndexLoadError:
        return None
    return live.name


def write_generation(
    index_dir: Path,
    manifest: dict,
    *,
    stats: TermStats,
    writer: StoreWriter,
    lines: LineCounts | None = None,
    keep: str | None = None,
    kept_manifest: dict | None = None,
) -> Path:
    """Finish the store's writes, write a generation, make it live, delete all but keep.

    kept_manifest (keep's manifest, already in memory) spares re-reading it from disk to
    prune texts and segments: two 64 MB manifests at 100,000 documents.
    """
    name = f"gen-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}"
    staging = index_dir / f".{name}.tmp"
    staging.mkdir(parents=True)
    try:
        state = writer.finish(staging)
        manifest["store"] = state.manifest
        written = [stats.save(staging), *state.files]
        if lines is not None:
            written.append(lines.save(staging))
        write_manifest(staging, manifest, written)
        fsync_tree(staging)
        os.rename(staging, index_dir / name)
        swap_current(index_dir, name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    remove_stale(index_dir, keep={name} | ({keep} if keep else set()))
    known = [manifest, kept_manifest] if keep and kept_manifest is not None else None
    prune_texts(index_dir, manifests=known if keep else [manifest])
    return index_dir / name


def swap_current(index_dir: Path, name: str) -> None:
    """Point CURRENT at the generation name (atomic replace, fsynced)."""
    pointer_tmp = index_dir / f".{CURRENT_FILE}.{os.getpid()}.tmp"
    try:
        pointer_tmp.write_text(name + "\n")
        fsync_path(pointer_tmp)
        os.replace(pointer_tmp, index_dir / CURRENT_FILE)
    finally:
        pointer_tmp.unlink(missing_ok=True)
    fsync_path(index_dir)


def write_manifest(staging: Path, manifest: dict, written: list[str]) -> None:
    """Checksum the generation's files into the manifest, then write it, sealed by the
    checksum of its own text (its last line)."""
    manifest.pop("manifest_sha256", None)
    manifest["files"] = {
        n: {"bytes": (staging / n).stat().st_size, "sha256": file_sha256(staging / n)}
        for n in written
    }
    text, manifest["manifest_sha256"] = seal_manifest_text(manifest_text(manifest))
    (staging / MANIFEST_FILE).write_text(text, encoding="utf-8")


def manifest_text(manifest: dict) -> str:
    """The manifest as JSON a person can read: one line per key, and per document.

    json.dumps(indent=...) runs the pure-Python encoder: twice as slow on the 64 MB manifest
    of 100,000 documents as this, which uses the C encoder line by line.
    """

    def dump(value) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = []
    for key, value in manifest.items():
        if key == "documents" and value:
            rows = ",\n".join(f"  {dump(source)}: {dump(info)}" for source, info in value.items())
            lines.append(f" {dump(key)}: {{\n{rows}\n }}")
        else:
            lines.append(f" {dump(key)}: {dump(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def store_texts(index_dir: Path, records: list[DocumentRecord]) -> None:
    """Store the extracted text and segments of every new or changed document."""
    read = [r for r in records if r.document is not None]
    keys = put_documents(index_dir, [(r.document.text, r.document.segments) for r in read])
    for record, key in zip(read, keys, strict=True):
        record.info["text_key"] = key


def _generation_manifests(index_dir: Path) -> list[dict] | None:
    """Manifests of every generation on disk, or None when one cannot be read."""
    manifests = []
    for folder in index_dir.glob("gen-*"):
        try:
            manifests.append(json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            logger.warning("%s unreadable: stored texts and segments are not pruned", folder)
            return None
    return manifests


def prune_texts(index_dir: Path, *, manifests: list[dict] | None = None) -> None:
    """Delete stored texts and segments that no remaining generation refers to.

    manifests: those of every generation left on disk, when the caller has them.
    """
    from index.segments import prune_segments

    if manifests is None:
        manifests = _generation_manifests(index_dir)
    if manifests is None:
        return  # a text or segment that generation needs could be deleted
    keep = {d.get("text_key", "") for m in manifests for d in m.get("documents", {}).values()}
    prune_documents(index_dir, keep=keep)
    segments = {i["name"] for m in manifests for i in m.get("store", {}).get("segments", [])}
    prune_segments(index_dir, keep=segments)


def remove_stale(index_dir: Path, *, keep: set[str]) -> None:
    """Delete generations not in keep and leftovers of crashed builds.

    The generation that was live until the swap is in keep: another process may have read
    CURRENT just before it changed and be opening that folder now.
    """
    for path in index_dir.iterdir():
        if path.name in keep or path.name in (CURRENT_FILE, ".lock"):
            continue
        if path.name.startswith(("gen-", ".gen-", f".{CURRENT_FILE}.", f".{PENDING_FILE}.")):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
