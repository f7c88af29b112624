"""The document library behind a running pipeline: list, upload, remove, restore, refresh.

    python -m ui    # the Documents panel lists, uploads, removes and restores through this module

Every change goes through the incremental index update and then switches the pipeline to the
new generation, so a new document is searchable at once and questions keep working meanwhile.
What is listed always comes from the generation live on disk: a change another process made
(`rag index`, a second server) is loaded first. Nothing is deleted: removed and replaced files
go to the corpus's trash, and an upload the index cannot take (or one cancelled) is rolled back.

Uploads and folder refreshes also run as background jobs (`start_upload`, `start_refresh`) that
report progress and can be cancelled; one change runs at a time (the others wait). A watcher
(`watch_corpus`) looks at the corpus folder every few seconds, stat only, and starts a refresh
when a supported file was added, changed or removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from index import DocumentInfo, IndexLoadError, UpdateReport, update_index
from index.corpus_files import (
    Restored,
    SavedUpload,
    TrashEntry,
    clean_staging,
    discard_entry,
    empty_trash,
    find_entry,
    list_trash,
    move_to_trash,
    put_back,
    restore_entry,
    save_upload,
)
from index.progress import NO_CONTROL, BuildControl, IndexCancelled
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
    stats = LibraryStats(len(index.documents), index.size, index.disk_bytes())
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
    return LibraryStats(len(index.documents), index.size, index.disk_bytes())


def list_trashed(pipeline: Pipeline) -> list[TrashEntry]:
    """The trash of the pipeline's corpus, newest first."""
    return list_trash(_corpus(pipeline), trash_dir=_trash_dir(pipeline))


def _update(
    pipeline: Pipeline, *, progress: bool, control: BuildControl = NO_CONTROL
) -> UpdateReport:
    """Index what changed and switch the pipeline to the generation now on disk."""
    # Taken before the scan (a later change is seen by the watcher), kept only on success (a
    # cancelled or failed update is tried again on the next look).
    snapshot = _snapshot_now(pipeline)
    report = update_index(
        pipeline.config.index, progress=progress, embedder=pipeline.embedder, control=control
    )
    if snapshot is not None:
        _state(pipeline).snapshot = snapshot
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


def _index_saved(
    pipeline: Pipeline, saved: list[SavedUpload], errors: list[str], *, control: BuildControl
) -> UploadResult:
    """Index saved uploads; roll back those the index skips, or all of them when it fails."""
    corpus = _corpus(pipeline)
    try:
        report = _update(pipeline, progress=True, control=control)
    except IndexCancelled:  # nothing was written: taking the files out restores the old state
        _roll_back(pipeline, saved)
        errors += [f"{s.requested}: not added (indexing was cancelled)" for s in saved]
        return UploadResult(errors=errors)
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
    control: BuildControl = NO_CONTROL,
) -> UploadResult:
    """Save uploaded (name, bytes) pairs into the corpus and index them.

    A taken name gets a free one unless replace (the replaced file goes to the trash). A refused
    file changes nothing; an upload the index cannot take, or one cancelled through control, is
    rolled back, with the reason.
    """
    with _CHANGE_LOCK:
        return _upload_locked(
            pipeline, files, max_bytes=max_bytes, replace=replace, control=control
        )


def _upload_locked(
    pipeline: Pipeline,
    files: Sequence[tuple[str, bytes]],
    *,
    max_bytes: int,
    replace: bool,
    control: BuildControl,
) -> UploadResult:
    """The upload itself; the caller holds the change lock."""
    clean_staging(_corpus(pipeline))
    saved, errors = _save_all(pipeline, files, max_bytes=max_bytes, replace=replace)
    if not saved:
        return UploadResult(errors=errors)
    return _index_saved(pipeline, saved, errors, control=control)


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


def empty(pipeline: Pipeline, *, ids: Sequence[str] | None = None) -> int:
    """Delete trash entries for good (those ids, or all); returns how many were deleted.

    With ids, only what the user was shown goes: a file trashed after the question (by
    another session or a replacing upload) stays restorable.
    """
    with _CHANGE_LOCK:
        if ids is None:
            return empty_trash(_corpus(pipeline), trash_dir=_trash_dir(pipeline))
        deleted = 0
        for entry_id in ids:
            try:
                entry = find_entry(_corpus(pipeline), entry_id, trash_dir=_trash_dir(pipeline))
            except ValueError:
                continue  # restored or deleted meanwhile
            discard_entry(entry)
            deleted += 1
        return deleted


# --- background ingestion: one job per upload or refresh, progress, cancel ---------------------

WAITING, RUNNING, DONE, CANCELLED, FAILED = "waiting", "running", "done", "cancelled", "failed"
FINISHED = (DONE, CANCELLED, FAILED)
_JOB_IDS = itertools.count(1)


@dataclass(frozen=True)
class IngestProgress:
    """Where a background ingestion stands: for the status line and the API."""

    job_id: int
    kind: str  # "upload" or "refresh"
    state: str  # waiting (for another change), running, done, cancelled, failed
    stage: str = ""  # "reading" (files) or "embedding" (chunks) while running
    done: int = 0
    total: int = 0
    message: str = ""  # once finished: what it did, or why it stopped
    finished_at: float | None = None  # time.monotonic() when it finished

    @property
    def finished(self) -> bool:
        """True once the job ended, whichever way."""
        return self.state in FINISHED


class _Outcome(NamedTuple):
    result: object
    state: str
    message: str


class IngestJob:
    """One ingestion (an upload or a folder refresh) on its own thread, with progress and cancel.

    The job waits for the change lock, so it never runs beside another change; cancelling stops
    the index update at its next step with the live index unchanged (an upload is rolled back).
    """

    def __init__(self, kind: str, work: Callable[[IngestJob, BuildControl], _Outcome]) -> None:
        self.id = next(_JOB_IDS)
        self.kind = kind
        self.result: object = None  # UploadResult or UpdateReport once finished
        self._work: Callable[[IngestJob, BuildControl], _Outcome] | None = work
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._progress = IngestProgress(self.id, kind, WAITING)
        self._thread = threading.Thread(target=self._run, name=f"ingest-{self.id}", daemon=True)

    def start(self) -> IngestJob:
        """Start the job's thread; returns the job."""
        self._thread.start()
        return self

    def progress(self) -> IngestProgress:
        """The job's state now."""
        with self._lock:
            return self._progress

    def cancel(self) -> None:
        """Ask the job to stop at its next step (too late once it writes the new index)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """True once cancel was asked for."""
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> IngestProgress:
        """Wait until the job finished (or timeout seconds passed); returns its state."""
        self._finished.wait(timeout)
        return self.progress()

    def begin(self) -> None:
        """Called by the work once it holds the change lock: the job is running."""
        self._update(state=RUNNING)

    def _update(self, **changes) -> None:
        with self._lock:
            self._progress = dataclasses.replace(self._progress, **changes)

    def _report(self, stage: str, done: int, total: int) -> None:
        self._update(stage=stage, done=done, total=total)

    def _run(self) -> None:
        control = BuildControl(on_progress=self._report, cancel=self._cancel)
        try:
            outcome = self._work(self, control)
        except IndexCancelled as exc:
            outcome = _Outcome(None, CANCELLED, str(exc))
        except Exception as exc:  # reported in the status line; the details go to the log
            logger.exception("background %s failed", self.kind)
            outcome = _Outcome(None, FAILED, f"indexing failed ({_why(exc)})")
        finally:
            self._work = None  # the closure holds the pipeline; a finished job must not
        self.result = outcome.result
        self._update(state=outcome.state, message=outcome.message, finished_at=time.monotonic())
        self._finished.set()


@dataclass
class _Ingestion:
    """A pipeline's background state: its jobs (oldest first) and the folder's last look."""

    jobs: list[IngestJob] = field(default_factory=list)
    snapshot: frozenset | None = None
    watcher: CorpusWatcher | None = None


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.RLock()  # re-entered: start_refresh checks and submits under it


def _state_unlocked(pipeline: Pipeline) -> _Ingestion:
    return _STATES.setdefault(pipeline, _Ingestion())


def _state(pipeline: Pipeline) -> _Ingestion:
    with _STATES_LOCK:
        return _state_unlocked(pipeline)


def _submit(pipeline: Pipeline, job: IngestJob) -> IngestJob:
    """Register and start a job; finished jobs but the newest are forgotten."""
    state = _state(pipeline)
    with _STATES_LOCK:
        done = [j for j in state.jobs if j.progress().finished]
        state.jobs = [j for j in state.jobs if not j.progress().finished] + done[-1:] + [job]
    return job.start()


def active_job(pipeline: Pipeline) -> IngestJob | None:
    """The oldest unfinished job of the pipeline (the one running, or next to run), or None."""
    with _STATES_LOCK:
        jobs = list(_state_unlocked(pipeline).jobs)
    return next((j for j in jobs if not j.progress().finished), None)


def ingest_status(pipeline: Pipeline) -> tuple[IngestProgress | None, int]:
    """The job to show (running, else the last finished) and how many more wait behind it."""
    with _STATES_LOCK:
        jobs = list(_state_unlocked(pipeline).jobs)
    states = [j.progress() for j in jobs]
    pending = [p for p in states if not p.finished]
    if pending:  # the running one first: waiting jobs take the lock in no set order
        running = [p for p in pending if p.state == RUNNING]
        return (running or pending)[0], len(pending) - 1
    last = max(states, key=lambda p: p.finished_at or 0.0, default=None)
    return last, 0


def cancel_ingestion(pipeline: Pipeline) -> int:
    """Cancel every unfinished job of the pipeline; returns how many were asked to stop."""
    with _STATES_LOCK:
        jobs = [j for j in _state_unlocked(pipeline).jobs if not j.progress().finished]
    for job in jobs:
        job.cancel()
    return len(jobs)


def start_refresh(pipeline: Pipeline) -> IngestJob:
    """Index the corpus folder in the background; an unfinished job is returned instead.

    The unfinished job scans the folder itself, and a change after its scan is noticed by
    the watcher, so a second refresh would only repeat the work.
    """

    def work(job: IngestJob, control: BuildControl) -> _Outcome:
        with _CHANGE_LOCK:
            control.check()
            job.begin()
            report = _update(pipeline, progress=False, control=control)
        return _Outcome(report, DONE, report.summary())

    with _STATES_LOCK:  # two callers at once must not start two refreshes
        running = active_job(pipeline)
        return running or _submit(pipeline, IngestJob("refresh", work))


def start_upload(
    pipeline: Pipeline, files: Sequence[tuple[str, bytes]], *, max_bytes: int, replace: bool
) -> IngestJob:
    """Save and index uploads in the background (after any change already running)."""
    files = list(files)

    def work(job: IngestJob, control: BuildControl) -> _Outcome:
        with _CHANGE_LOCK:
            if job.cancelled:  # while it waited: nothing was saved
                cancelled = UploadResult(errors=["the upload was cancelled; nothing was added"])
                return _Outcome(cancelled, CANCELLED, "upload cancelled; nothing was added")
            job.begin()
            result = _upload_locked(
                pipeline, files, max_bytes=max_bytes, replace=replace, control=control
            )
        added = ", ".join(a.source for a in result.added)
        if job.cancelled and not result.added:
            return _Outcome(result, CANCELLED, "upload cancelled; nothing was added")
        return _Outcome(result, DONE, f"added {added}" if added else "nothing was added")

    return _submit(pipeline, IngestJob("upload", work))


# --- the folder watcher: stat-only looks, a background refresh on a change ---------------------


def corpus_snapshot(corpus_dir: Path, *, extensions: Sequence[str]) -> frozenset:
    """(path, size, mtime_ns) of every supported file below corpus_dir; nothing is read."""
    wanted = {e.lower() for e in extensions}
    found = set()
    for folder, dirs, files in os.walk(corpus_dir, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # as the index scan: not documents
        for name in files:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in wanted:
                continue
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):  # removed meanwhile: the next look sees it
                stat = os.lstat(path)
                found.add((path, stat.st_size, stat.st_mtime_ns))
    return frozenset(found)


def _look(pipeline: Pipeline) -> frozenset:
    config = pipeline.config.index
    return corpus_snapshot(Path(config.corpus_dir), extensions=config.extensions)


def _snapshot_now(pipeline: Pipeline):
    """The folder as the index update about to run will see it (None when it cannot be listed)."""
    try:
        return _look(pipeline)
    except OSError as exc:
        logger.warning("corpus folder not listed: %s", exc)
        return None


def check_corpus(pipeline: Pipeline) -> IngestJob | None:
    """Start a background refresh when the corpus folder changed since the index last saw it.

    Until this process has updated the index once, any look counts as a change: files may
    have changed while no server was watching.
    """
    if active_job(pipeline) is not None or _CHANGE_LOCK.locked():
        return None  # a change is under way; the next look compares with what it saw
    try:
        now = _look(pipeline)
    except OSError as exc:
        logger.warning("corpus folder not listed: %s", exc)
        return None
    if now == _state(pipeline).snapshot:
        return None
    logger.info("the corpus folder changed; indexing it in the background")
    return start_refresh(pipeline)


class CorpusWatcher:
    """Looks at a pipeline's corpus folder every few seconds and indexes what changed."""

    def __init__(self, pipeline: Pipeline, *, every: float) -> None:
        if not every > 0:
            raise ValueError(f"the watch interval must be > 0 seconds, got {every}")
        self.every = float(every)
        # A weak reference: a watcher must not keep a pipeline nobody else uses alive.
        self._pipeline = weakref.ref(pipeline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="corpus-watcher", daemon=True)

    @property
    def running(self) -> bool:
        """True while the watcher's thread runs."""
        return self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> CorpusWatcher:
        """Start watching; returns the watcher."""
        self._thread.start()
        return self

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop watching (a refresh already started goes on)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            pipeline = self._pipeline()
            if pipeline is None:
                return
            try:
                check_corpus(pipeline)
            except Exception:  # keep watching: one bad look must not end it
                logger.exception("looking at the corpus folder failed")
            del pipeline


def watch_corpus(pipeline: Pipeline, *, every: float) -> CorpusWatcher:
    """Start watching the pipeline's corpus folder (one watcher per pipeline); returns it."""
    state = _state(pipeline)
    with _STATES_LOCK:
        if state.watcher is not None and state.watcher.running:
            return state.watcher
        state.watcher = CorpusWatcher(pipeline, every=every)
        return state.watcher.start()


def stop_watching(pipeline: Pipeline) -> None:
    """Stop the pipeline's watcher, if it has one."""
    with _STATES_LOCK:
        watcher, _state_unlocked(pipeline).watcher = _state_unlocked(pipeline).watcher, None
    if watcher is not None:
        watcher.stop()


def ocr_pages(pipeline: Pipeline, source: str) -> list[int]:
    """Pages (1-based) of an indexed document whose text was recognised by OCR."""
    from index.document_store import get_document

    entry = pipeline.index.manifest.get("documents", {}).get(source)
    if not isinstance(entry, dict) or not entry.get("text_key"):
        return []
    try:
        stored = get_document(pipeline.config.index.index_dir, str(entry["text_key"]))
    except (OSError, ValueError):
        return []
    return sorted({s.number for s in stored.segments if s.ocr and s.number > 0})


def forget_ocr(pipeline: Pipeline, path: Path, pages: Sequence[int]) -> int:
    """Delete a file's pages from the OCR cache (before the file itself goes); how many."""
    if not pages:
        return 0
    from index.page_view import forget_ocr_pages
    from index.readers import ocr_engine

    engine = ocr_engine(pipeline.config.index.ocr_language)
    if engine is None:
        return 0
    try:
        return forget_ocr_pages(
            path, pages, cache_dir=pipeline.config.index.ocr_cache_dir, version=engine.version
        )
    except (OSError, ValueError) as exc:
        logger.warning("could not clear the OCR cache of %s: %s", path.name, exc)
        return 0
