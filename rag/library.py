"""The document library behind a running pipeline: list, upload, remove, restore, refresh.

    python -m ui    # the Documents panel lists, uploads, removes and restores through this module

Every change goes through the incremental index update and then switches the pipeline to the
new generation, so a new document is searchable at once and questions keep working meanwhile.
What is listed always comes from the generation live on disk: a change another process made
(`rag index`, a second server) is loaded first. Nothing is deleted: removed and replaced files
go to the corpus's trash, and an upload the index cannot take is rolled back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from index import DocumentInfo, IndexLoadError, UpdateReport, update_index
from index.corpus_files import (
    Restored,
    SavedUpload,
    TrashEntry,
    clean_staging,
    empty_trash,
    find_entry,
    list_trash,
    move_to_trash,
    put_back,
    restore_entry,
    save_upload,
)
from rag.pipeline import Pipeline

logger = logging.getLogger(__name__)
_CHANGE_LOCK = threading.Lock()


@dataclass(frozen=True)
class LibraryStats:
    """Size of the live index."""

    documents: int
    chunks: int
    bytes_on_disk: int


@dataclass(frozen=True)
class NotIndexed:
    """A file in the corpus folder that the index skipped, and why."""

    source: str
    reason: str


@dataclass(frozen=True)
class LibraryView:
    """One consistent picture of the library, all taken from the same index generation."""

    documents: list[DocumentInfo]
    stats: LibraryStats
    not_indexed: list[NotIndexed]
    trash: list[TrashEntry]
    warning: str = ""  # set when the index on disk could not be loaded


@dataclass(frozen=True)
class Uploaded:
    """One upload now in the index."""

    requested: str  # the name the user gave
    source: str  # the name it is stored and indexed under
    replaced: bool = False  # an older file of that name went to the trash
    clashed_with: str = ""  # the existing file that made it take a free name


@dataclass
class UploadResult:
    """What an upload did: the files added, one message per refused file, the index report."""

    added: list[Uploaded] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    report: UpdateReport | None = None


@dataclass(frozen=True)
class Removal:
    """A document moved to the trash, and the index update that dropped it."""

    entry: TrashEntry
    report: UpdateReport


@dataclass(frozen=True)
class Restoration:
    """A trash entry back in the corpus (under `restored.source`), and the index update."""

    restored: Restored
    report: UpdateReport


def _corpus(pipeline: Pipeline) -> Path:
    return Path(pipeline.config.index.corpus_dir)


def _trash_dir(pipeline: Pipeline) -> Path:
    return Path(pipeline.config.index.trash_dir)


def _why(exc: BaseException) -> str:
    """The cause of a failure in words, without server paths."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).split("; run:")[0] or type(exc).__name__


def follow_disk(pipeline: Pipeline) -> str:
    """Load the generation on disk if another process switched it; '' or why it could not."""
    try:
        pipeline.refresh_if_stale()
    except (IndexLoadError, OSError) as exc:
        logger.warning("index on disk not loaded: %s", exc)
        return f"the index on disk could not be loaded ({_why(exc)}); showing the loaded one"
    return ""


def _folder_bytes(folder: Path) -> int:
    total = 0
    try:
        for path in folder.rglob("*"):
            with contextlib.suppress(OSError):
                total += path.stat().st_size if path.is_file() else 0
    except OSError:  # another process removed this (older) generation meanwhile
        pass
    return total


def _not_indexed(pipeline: Pipeline, manifest: dict) -> list[NotIndexed]:
    """Skipped files of the manifest that are still regular files in the corpus folder."""
    out = []
    for item in manifest.get("skipped", []):
        if isinstance(item, dict):
            source, reason = item.get("source"), item.get("reason", "")
        elif isinstance(item, list | tuple) and len(item) >= 2:
            source, reason = item[0], item[1]
        else:
            continue
        path = _corpus(pipeline) / str(source)
        if isinstance(source, str) and path.is_file() and not path.is_symlink():
            out.append(NotIndexed(source, str(reason)))
    return out


def library_view(pipeline: Pipeline) -> LibraryView:
    """Documents, counts, files not indexed and the trash, as they are on disk now."""
    warnings = [follow_disk(pipeline)]
    index = pipeline.index  # one generation for every number below
    stats = LibraryStats(len(index.documents), len(index.chunks), _folder_bytes(index.folder))
    try:
        trash = list_trash(_corpus(pipeline), trash_dir=_trash_dir(pipeline))
    except OSError as exc:  # an unreadable trash must not hide the documents
        logger.warning("trash not readable: %s", exc)
        trash = []
        warnings.append(f"the trash could not be read ({_why(exc)})")
    return LibraryView(
        documents=index.documents,
        stats=stats,
        not_indexed=_not_indexed(pipeline, index.manifest),
        trash=trash,
        warning="; ".join(w for w in warnings if w),
    )


def list_documents(pipeline: Pipeline) -> list[DocumentInfo]:
    """Documents of the live index (reloaded first if the one on disk changed), in order."""
    follow_disk(pipeline)
    return pipeline.index.documents


def library_stats(pipeline: Pipeline) -> LibraryStats:
    """Document, chunk and on-disk byte counts of the live index."""
    follow_disk(pipeline)
    index = pipeline.index
    return LibraryStats(len(index.documents), len(index.chunks), _folder_bytes(index.folder))


def list_trashed(pipeline: Pipeline) -> list[TrashEntry]:
    """The trash of the pipeline's corpus, newest first."""
    return list_trash(_corpus(pipeline), trash_dir=_trash_dir(pipeline))


def _update(pipeline: Pipeline, *, progress: bool) -> UpdateReport:
    """Index what changed and switch the pipeline to the generation now on disk."""
    report = update_index(pipeline.config.index, progress=progress, embedder=pipeline.embedder)
    if report.wrote_generation:
        pipeline.reload()
    else:
        pipeline.refresh_if_stale()
    return report


def refresh(pipeline: Pipeline, *, progress: bool = False) -> UpdateReport:
    """Re-scan the corpus folder, index what changed, and switch the pipeline to it."""
    with _CHANGE_LOCK:
        return _update(pipeline, progress=progress)


def _roll_back(pipeline: Pipeline, saved: Sequence[SavedUpload]) -> None:
    """Take uploads out of the corpus again; a file one replaced comes back from the trash.

    Newest first: when two uploads of one batch had the same name, the second replaced the
    first, so the first comes back before the original does.
    """
    for item in reversed(saved):
        try:
            if item.replaced is not None:
                put_back(_corpus(pipeline), item.replaced)
            else:
                item.path.unlink(missing_ok=True)
        except OSError:
            logger.exception("could not roll back the upload of %s", item.path)


def _resync(pipeline: Pipeline) -> str:
    """Bring the index back in line with the corpus after a rollback; '' or what is left to do."""
    try:
        _update(pipeline, progress=False)
    except Exception as exc:  # the rollback itself is done; say what is left to do
        logger.exception("index update after a rollback failed")
        follow_disk(pipeline)
        return f"the index could not be updated ({_why(exc)}); run: python -m rag index"
    return ""


def _save_all(
    pipeline: Pipeline, files: Sequence[tuple[str, bytes]], *, max_bytes: int, replace: bool
) -> tuple[list[SavedUpload], list[str]]:
    saved, errors = [], []
    for name, data in files:
        try:
            saved.append(
                save_upload(
                    _corpus(pipeline),
                    name,
                    data,
                    max_bytes=max_bytes,
                    replace=replace,
                    trash_dir=_trash_dir(pipeline),
                )  # fmt: skip
            )
        except (ValueError, OSError) as exc:
            errors.append(f"{Path(str(name)).name}: not added ({_why(exc)})")
    return saved, errors


def _uploaded(item: SavedUpload, corpus: Path) -> Uploaded:
    source = item.path.resolve().relative_to(corpus.resolve()).as_posix()
    return Uploaded(item.requested, source, item.replaced is not None, item.clashed_with)


def _index_saved(pipeline: Pipeline, saved: list[SavedUpload], errors: list[str]) -> UploadResult:
    """Index saved uploads; roll back those the index skips, or all of them when it fails."""
    corpus = _corpus(pipeline)
    try:
        report = _update(pipeline, progress=True)
    except Exception as exc:  # any failure of the index update: undo the whole upload
        logger.exception("indexing the upload failed")
        _roll_back(pipeline, saved)
        problem = _resync(pipeline)
        errors += [f"{s.requested}: not added, indexing failed ({_why(exc)})" for s in saved]
        return UploadResult(errors=errors + ([problem] if problem else []))
    skipped = {s.source: s.reason for s in report.skipped}
    refused = {
        s: skipped[_uploaded(s, corpus).source]
        for s in saved
        if _uploaded(s, corpus).source in skipped
    }
    if refused:
        _roll_back(pipeline, list(refused))
        errors += [
            f"{s.requested}: not added, it could not be indexed ({why})"
            for s, why in refused.items()
        ]
        problem = _resync(pipeline)  # the report above tells what was added
        errors += [problem] if problem else []
    added = [_uploaded(s, corpus) for s in saved if s not in refused]
    return UploadResult(added=added, errors=errors, report=report)


def upload(
    pipeline: Pipeline,
    files: Sequence[tuple[str, bytes]],
    *,
    max_bytes: int,
    replace: bool = False,
) -> UploadResult:
    """Save uploaded (name, bytes) pairs into the corpus and index them.

    A taken name gets a free one unless replace (the replaced file goes to the trash). A refused
    file changes nothing; an upload the index cannot take is rolled back, with the reason.
    """
    with _CHANGE_LOCK:
        clean_staging(_corpus(pipeline))
        saved, errors = _save_all(pipeline, files, max_bytes=max_bytes, replace=replace)
        if not saved:
            return UploadResult(errors=errors)
        return _index_saved(pipeline, saved, errors)


def check_removable(pipeline: Pipeline, source: object) -> str:
    """source, when it is a corpus file the library lists and may remove; else ValueError."""
    if not isinstance(source, str) or not source.strip():
        raise ValueError("name the document to remove")
    view = library_view(pipeline)
    listed = {d.source for d in view.documents} | {n.source for n in view.not_indexed}
    path = _corpus(pipeline) / source
    if source not in listed or not path.is_file():
        raise ValueError(f"{source} is no longer in the corpus")
    if [d.source for d in view.documents] == [source]:
        raise ValueError("cannot remove the last document: the index would be empty")
    return source


def remove(pipeline: Pipeline, source: str) -> Removal:
    """Move a document to the trash and drop its passages from the index."""
    with _CHANGE_LOCK:
        source = check_removable(pipeline, source)
        entry = move_to_trash(_corpus(pipeline), source, trash_dir=_trash_dir(pipeline))
        try:
            report = _update(pipeline, progress=False)
        except Exception as exc:  # keep corpus and index in step: the file goes back
            logger.exception("indexing after removing %s failed", source)
            # A free name: another server may have stored a file under this one meanwhile.
            restore_entry(_corpus(pipeline), entry)
            follow_disk(pipeline)
            raise ValueError(f"{source} was not removed: indexing failed ({_why(exc)})") from exc
        return Removal(entry, report)


def restore(pipeline: Pipeline, entry_id: str) -> Restoration:
    """Put a trashed file back into the corpus (a free name if its own is taken) and index it."""
    with _CHANGE_LOCK:
        entry = find_entry(_corpus(pipeline), entry_id, trash_dir=_trash_dir(pipeline))
        restored = restore_entry(_corpus(pipeline), entry)
        try:
            report = _update(pipeline, progress=False)
        except Exception as exc:  # the file goes back to the trash, the index is unchanged
            logger.exception("indexing after restoring %s failed", restored.source)
            move_to_trash(_corpus(pipeline), restored.source, trash_dir=_trash_dir(pipeline))
            follow_disk(pipeline)
            raise ValueError(
                f"{entry.source} was not restored: indexing failed ({_why(exc)})"
            ) from exc
        return Restoration(restored, report)


def empty(pipeline: Pipeline) -> int:
    """Delete the corpus's trash for good; returns how many files were deleted."""
    with _CHANGE_LOCK:
        return empty_trash(_corpus(pipeline), trash_dir=_trash_dir(pipeline))
