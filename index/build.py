"""Incremental index build: only new or changed documents are embedded; the swap is atomic.

    python -m rag index --corpus corpus --index data/index

`update_index` is a short pipeline of typed steps, each testable alone:
    plan_update   scan the folder, compare fingerprints with the live index -> UpdatePlan
    chunk_documents  clean and split the new or changed documents         -> DocumentRecord
    embed_new     embed the chunks that have no vector yet                 -> matrix rows
    write_index   stores, checksums, fsync, then swap CURRENT             -> generation folder
A build writes a new generation folder beside the live one, checksums it, then replaces the
CURRENT pointer with os.replace, so a crash at any moment leaves the previous index loadable.
The generation that was live before the swap is kept (a reader may be opening it), and only
older ones are deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
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
    IndexTooNew,
    current_generation,
    file_sha256,
    manifest_checksum,
    read_manifest,
    verify_files,
)
from index.document_store import prune_documents, put_document
from index.durable import folder_lock, fsync_path, fsync_tree
from index.embedding import Embedder, check_embedder, embedder_for
from index.extraction import hard_groups, locate
from index.loaders import ParseFailure, RawDocument, Skipped, scan_corpus
from index.progress import NO_CONTROL, BuildControl
from index.stores import ANALYZER, BM25Store, FaissVectorStore

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
    # Wall seconds per stage: prepare (load and check the live index), scan (read, decode,
    # page chrome, fingerprints), model (load on first use), chunk (clean, split, count),
    # embed, write (stores, checksums, fsync, swap).
    stage_seconds: dict[str, float] = field(default_factory=dict)
    rebuilt_reason: str = ""
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
        return text


@dataclass
class UpdatePlan:
    """What the corpus holds now and how it differs from the live index."""

    documents: list[RawDocument]
    skipped: list[Skipped]
    failures: dict[str, ParseFailure]
    chrome: set[str]
    fingerprints: dict[str, str]
    previous: CorpusIndex | None
    added: list[str]
    changed: list[str]
    removed: list[str]
    kept: list[str]
    rebuilt_reason: str = ""
    # Indexed documents whose file could not be read this time for a reason that says
    # nothing about it (unreadable now, parser cut off or crashed): their passages are kept.
    carried: list[str] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        """True when the live index already matches the corpus (nothing to write)."""
        if self.previous is None or self.added or self.changed or self.removed:
            return False
        manifest = self.previous.manifest
        return manifest.get("skipped") == [[s.source, s.reason] for s in self.skipped] and (
            manifest.get("parse_failures", {}) == _failures_json(self.failures)
        )


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


def _fingerprint(doc: RawDocument, chrome_in_doc: list[str], config: IndexConfig) -> str:
    """Changes when the document's bytes, chrome lines, reader or chunking settings change."""
    payload = json.dumps([doc.sha256, sorted(chrome_in_doc), config.chunking_params(), doc.reader])
    return hashlib.sha256(payload.encode()).hexdigest()


def _failures_json(failures: dict[str, ParseFailure]) -> dict[str, dict]:
    return {source: f.to_json() for source, f in sorted(failures.items())}


def load_previous(config: IndexConfig, *, rebuild: bool) -> tuple[CorpusIndex | None, str]:
    """The live index and '', or None and why a full rebuild is needed.

    An index written by a newer version is never rebuilt over unless rebuild is asked for.
    """
    if rebuild:
        return None, "requested (--rebuild)"
    try:
        return CorpusIndex.load(config), ""
    except IndexNotFound:
        return None, ""
    except IndexTooNew:
        raise
    except IndexLoadError as exc:
        # Any other load failure (a damaged CURRENT pointer included) means: rebuild.
        logger.warning("previous index unusable, rebuilding: %s", exc)
        return None, str(exc).split(";")[0]


def plan_update(
    config: IndexConfig,
    *,
    previous: CorpusIndex | None,
    rebuilt_reason: str = "",
    progress: bool = False,
    control: BuildControl = NO_CONTROL,
) -> UpdatePlan:
    """Scan the corpus folder and sort its documents into added, changed, kept and removed."""
    corpus_dir = Path(config.corpus_dir)
    known = {}
    if previous is not None:
        known = {
            s: ParseFailure.from_json(f)
            for s, f in previous.manifest.get("parse_failures", {}).items()
        }
    scan = scan_corpus(
        corpus_dir,
        extensions=config.extensions,
        max_bytes=config.max_file_bytes,
        known_failures=known,
        limits=config.read_limits(),
        workers=config.parse_workers,
        parse_seconds=config.parse_seconds,
        progress=progress,
        control=control,
    )
    if not scan.documents:
        reasons = "; ".join(f"{s.source}: {s.reason}" for s in scan.skipped[:5])
        raise ValueError(
            f"no documents to index in {corpus_dir} (supported: {', '.join(config.extensions)})"
            + (f"; skipped {reasons}" if reasons else "")
        )
    chrome = find_boilerplate(
        (d.text for d in scan.documents),
        min_repeats=config.boilerplate_min_repeats,
        max_words=config.boilerplate_max_words,
    )
    fingerprints = {}
    for doc in scan.documents:
        present = {line_key(line) for line in doc.text.splitlines()} & chrome
        fingerprints[doc.source] = _fingerprint(doc, sorted(present), config)
    old_docs = previous.manifest["documents"] if previous else {}
    added, changed, kept = [], [], []
    for doc in scan.documents:
        old = old_docs.get(doc.source)
        if old is None:
            added.append(doc.source)
        elif old["fingerprint"] != fingerprints[doc.source]:
            changed.append(doc.source)
        else:
            kept.append(doc.source)
    carried = _carried(old_docs, scan.skipped)
    removed = sorted(set(old_docs) - {d.source for d in scan.documents} - set(carried))
    return UpdatePlan(
        documents=scan.documents, skipped=scan.skipped, failures=scan.failures, chrome=chrome,
        fingerprints=fingerprints, previous=previous, added=added, changed=changed,
        removed=removed, kept=kept, rebuilt_reason=rebuilt_reason, carried=carried,
    )  # fmt: skip


def _carried(old_docs: dict, skipped: list[Skipped]) -> list[str]:
    """Indexed sources (and their attachments) whose file failed to read only transiently."""
    failed = [s.source for s in skipped if s.transient]
    return sorted(
        source
        for source in old_docs
        if any(source == f or source.startswith(f + "/") for f in failed)
    )


def _chunk_raw(doc: RawDocument, chrome: set[str], config: IndexConfig, embedder: Embedder):
    title = extract_title(
        doc.text, boilerplate=chrome, fallback=Path(doc.source).stem, hint=doc.html_title
    )
    date = extract_date(doc.text)
    sentences = segment(doc.text, chrome)
    spans = []
    # Chunks never cross a hard boundary (two slides, sheets or messages): cut each apart.
    for low, high in hard_groups(len(doc.text), doc.segments):
        inside = [s for s in sentences if low <= s.start and s.end <= high]
        spans += chunk_document(
            doc.text,
            inside,
            count_tokens=embedder.count_tokens,
            chunk_tokens=config.chunk_tokens,
            max_tokens=config.max_seq_length - 2,
            overlap_sentences=config.overlap_sentences,
            dedup_min_words=config.dedup_min_words,
            counts_add_up=embedder.counts_add_up,
        )
    return title, date, spans


def _new_record(doc: RawDocument, chunked, fingerprint: str) -> DocumentRecord:
    title, date, spans = chunked
    chunks = []
    for s in spans:
        where = locate(doc.text, doc.segments, s.start, s.end)
        chunks.append(
            Chunk(
                id=-1, source=doc.source, title=title, date=date, start=s.start, end=s.end,
                text=doc.text[s.start : s.end], search_text=s.search_text,
                sentences=s.sentences, n_tokens=s.n_tokens, page=where.page,
                locator=where.locator, ocr=where.ocr,
            )
        )  # fmt: skip
    info = {
        "source": doc.source, "sha256": doc.sha256, "fingerprint": fingerprint, "title": title,
        "date": date, "kind": doc.kind, "chars": len(doc.text), "chunks": len(chunks),
        "reader": doc.reader, "notes": list(doc.notes),
    }  # fmt: skip
    return DocumentRecord(info=info, chunks=chunks, fresh=True, document=doc)


def chunk_documents(
    plan: UpdatePlan, *, config: IndexConfig, embedder: Embedder
) -> list[DocumentRecord]:
    """Records of every document, in scan order: kept ones reuse their chunks, others are cut."""
    kept = set(plan.kept) | set(plan.carried)
    old_by_source: dict[str, list[Chunk]] = {}
    if plan.previous is not None:
        for chunk in plan.previous.chunks:
            if chunk.source in kept:
                old_by_source.setdefault(chunk.source, []).append(chunk)
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
            records.append(DocumentRecord(info, old_by_source.get(doc.source, []), fresh=False))
        else:
            records.append(_new_record(doc, chunked[doc.source], plan.fingerprints[doc.source]))
    for source in plan.carried:
        records.append(DocumentRecord(dict(old_docs[source]), old_by_source.get(source, []), False))
    return records


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


def assemble(
    records: list[DocumentRecord],
    fresh_vectors: np.ndarray,
    *,
    previous: CorpusIndex | None,
    dimension: int,
) -> tuple[list[Chunk], np.ndarray]:
    """All chunks numbered in order, and their vectors: new ones, or the previous index's."""
    chunks: list[Chunk] = []
    vectors: list[np.ndarray] = []
    next_fresh = 0
    for record in records:
        for chunk in record.chunks:
            if record.fresh:
                vectors.append(fresh_vectors[next_fresh])
                next_fresh += 1
            else:
                vectors.append(previous.vectors.vectors[chunk.id])
            position = len(chunks)
            chunks.append(chunk if chunk.id == position else replace(chunk, id=position))
    matrix = np.stack(vectors) if vectors else np.zeros((0, dimension), np.float32)
    return chunks, matrix


def build_manifest(
    plan: UpdatePlan,
    records: list[DocumentRecord],
    *,
    config: IndexConfig,
    embedder: Embedder,
    chunk_count: int,
) -> dict:
    """The manifest of the new generation (file checksums are added when it is written)."""
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
        "parse_failures": _failures_json(plan.failures),
    }


def update_index(
    config: IndexConfig,
    *,
    rebuild: bool = False,
    progress: bool = True,
    embedder: Embedder | None = None,
    control: BuildControl = NO_CONTROL,
) -> UpdateReport:
    """Bring the index in line with the corpus folder, embedding only what changed.

    control reports progress and can cancel (IndexCancelled) until the write step starts.
    """
    started = time.perf_counter()
    if embedder is not None:
        check_embedder(embedder, config)
    if not Path(config.corpus_dir).is_dir():
        raise ValueError(f"corpus folder not found: {config.corpus_dir}")
    report = UpdateReport()
    stages = report.stage_seconds
    with folder_lock(Path(config.index_dir)):
        mark = time.perf_counter()
        previous, reason = load_previous(config, rebuild=rebuild)
        stages["prepare"], mark = time.perf_counter() - mark, time.perf_counter()
        plan = plan_update(
            config, previous=previous, rebuilt_reason=reason, progress=progress, control=control
        )
        _report_plan(report, plan)
        stages["scan"], mark = time.perf_counter() - mark, time.perf_counter()
        if plan.unchanged:
            report.chunks_total = len(previous.chunks)
            report.total_seconds = time.perf_counter() - started
            return report
        if embedder is None:
            embedder = embedder_for(config)  # the first use loads the model (and exports it)
            stages["model"], mark = time.perf_counter() - mark, time.perf_counter()
        records = chunk_documents(plan, config=config, embedder=embedder)
        stages["chunk"], mark = time.perf_counter() - mark, time.perf_counter()
        texts = [c.search_text for r in records if r.fresh for c in r.chunks]
        fresh = embed_texts(embedder, texts, config=config, progress=progress, control=control)
        report.embed_seconds = stages["embed"] = time.perf_counter() - mark
        mark = time.perf_counter()
        report.chunks_embedded = len(texts)
        control.check()  # the last moment to cancel: nothing written yet
        chunks, matrix = assemble(records, fresh, previous=previous, dimension=embedder.dimension)
        store_texts(Path(config.index_dir), records)
        manifest = build_manifest(
            plan, records, config=config, embedder=embedder, chunk_count=len(chunks)
        )
        write_generation(
            Path(config.index_dir), manifest, chunks, matrix,
            keep=_generation_to_keep(config, previous),
        )  # fmt: skip
        report.wrote_generation = True
        stages["write"] = time.perf_counter() - mark
        report.chunks_total = len(chunks)
    report.total_seconds = time.perf_counter() - started
    logger.info("index updated: %s", report.summary())
    logger.debug("stages: %s", ", ".join(f"{k} {v:.2f}s" for k, v in report.stage_seconds.items()))
    return report


def _report_plan(report: UpdateReport, plan: UpdatePlan) -> None:
    report.added, report.changed = plan.added, plan.changed
    report.removed, report.kept = plan.removed, plan.kept
    report.skipped, report.rebuilt_reason = plan.skipped, plan.rebuilt_reason
    report.partial = [Skipped(d.source, n) for d in plan.documents for n in d.notes]
    report.kept = [*plan.kept, *plan.carried]


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
        verify_files(live, read_manifest(live))  # checksums only: nothing is loaded
    except IndexLoadError:
        return None
    return live.name


def write_generation(
    index_dir: Path,
    manifest: dict,
    chunks: list[Chunk],
    matrix: np.ndarray,
    *,
    keep: str | None = None,
) -> Path:
    """Write a new generation, make it live, and delete all others but keep."""
    name = f"gen-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}"
    staging = index_dir / f".{name}.tmp"
    staging.mkdir(parents=True)
    try:
        _write_files(staging, manifest, chunks, matrix)
        fsync_tree(staging)
        os.rename(staging, index_dir / name)
        pointer_tmp = index_dir / f".{CURRENT_FILE}.{os.getpid()}.tmp"
        try:
            pointer_tmp.write_text(name + "\n")
            fsync_path(pointer_tmp)
            os.replace(pointer_tmp, index_dir / CURRENT_FILE)
        finally:
            pointer_tmp.unlink(missing_ok=True)
        fsync_path(index_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    remove_stale(index_dir, keep={name} | ({keep} if keep else set()))
    prune_texts(index_dir)
    return index_dir / name


def store_texts(index_dir: Path, records: list[DocumentRecord]) -> None:
    """Store the extracted text and segments of every new or changed document."""
    for record in records:
        if record.document is not None:
            doc = record.document
            record.info["text_key"] = put_document(index_dir, doc.text, doc.segments)


def prune_texts(index_dir: Path) -> None:
    """Delete stored texts that no remaining generation refers to."""
    keep: set[str] = set()
    for folder in index_dir.glob("gen-*"):
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("%s unreadable: stored texts are not pruned this time", folder)
            return  # a text that generation needs could be deleted
        keep |= {d.get("text_key", "") for d in manifest.get("documents", {}).values()}
    prune_documents(index_dir, keep=keep)


def _write_files(staging: Path, manifest: dict, chunks: list[Chunk], matrix: np.ndarray) -> None:
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


def remove_stale(index_dir: Path, *, keep: set[str]) -> None:
    """Delete generations not in keep and leftovers of crashed builds.

    The generation that was live until the swap is in keep: another process may have read
    CURRENT just before it changed and be opening that folder now.
    """
    for path in index_dir.iterdir():
        if path.name in keep or path.name in (CURRENT_FILE, ".lock"):
            continue
        if path.name.startswith(("gen-", ".gen-", f".{CURRENT_FILE}.")):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
