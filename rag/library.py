"""The document library behind a running pipeline: list, upload, remove, refresh.

    python -m ui    # the Documents panel lists, uploads and removes through this module

Every change goes through the incremental index update and then switches the pipeline to the
new generation, so a new document is searchable at once and questions keep working meanwhile.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from index import DocumentInfo, UpdateReport, update_index
from index.corpus_files import add_document, remove_document
from rag.pipeline import Pipeline

logger = logging.getLogger(__name__)
_CHANGE_LOCK = threading.Lock()


@dataclass(frozen=True)
class LibraryStats:
    """Size of the live index."""

    documents: int
    chunks: int
    bytes_on_disk: int


def list_documents(pipeline: Pipeline) -> list[DocumentInfo]:
    """Documents of the live index, in source order."""
    return pipeline.index.documents


def library_stats(pipeline: Pipeline) -> LibraryStats:
    """Document, chunk and on-disk byte counts of the live index."""
    folder = pipeline.index.folder
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return LibraryStats(len(pipeline.index.documents), len(pipeline.index.chunks), size)


def refresh(pipeline: Pipeline, *, progress: bool = False) -> UpdateReport:
    """Re-scan the corpus folder, index what changed, and switch the pipeline to it."""
    with _CHANGE_LOCK:
        report = update_index(pipeline.config.index, progress=progress, embedder=pipeline.embedder)
        if report.wrote_generation:
            pipeline.reload()
        return report


def upload(
    pipeline: Pipeline, files: list[tuple[str, bytes]], *, max_bytes: int
) -> tuple[list[str], list[str], UpdateReport | None]:
    """Save uploaded (name, bytes) pairs into the corpus and index them.

    Returns the saved file names, one error message per refused file, and the index report
    (None when nothing was saved). A refused file changes nothing.
    """
    saved: list[str] = []
    errors: list[str] = []
    corpus = Path(pipeline.config.index.corpus_dir)
    for name, data in files:
        try:
            saved.append(add_document(corpus, name, data, max_bytes=max_bytes).name)
        except (ValueError, OSError) as exc:
            errors.append(f"{Path(str(name)).name}: {exc}")
    report = refresh(pipeline, progress=True) if saved else None
    if report:
        for skipped in report.skipped:
            if skipped.source in saved:
                errors.append(f"{skipped.source}: saved but not indexed ({skipped.reason})")
    return saved, errors, report


def remove(pipeline: Pipeline, source: str) -> UpdateReport:
    """Delete a document from the corpus folder and drop its passages from the index."""
    if [d.source for d in pipeline.index.documents] == [source]:
        raise ValueError("cannot remove the last document: the index would be empty")
    remove_document(Path(pipeline.config.index.corpus_dir), source)
    return refresh(pipeline)
