"""Parse files in worker processes, each under a time limit, so one bad file cannot stop a run.

    python -m rag index --corpus DIR      # every build reads its files through here

Plain formats (text, Markdown, HTML, CSV, RTF) are read in this process: they are cheap and
their readers cannot hang. Every other file goes to one of `workers` processes; a file whose
parse runs past `seconds` (or that kills its process) is reported as skipped and its worker
replaced, and the run goes on. While a reader recognises scanned pages it reports each page,
and each report extends its deadline by the per-page OCR limit, so a long honest scan is not cut.
A file's clock starts when its worker says it has begun reading it, so the seconds a freshly
spawned worker spends importing its readers never count against the first file it is given.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

from index.config import INLINE_EXTENSIONS
from index.extraction import ReadLimits
from index.progress import NO_CONTROL, BuildControl

logger = logging.getLogger(__name__)

# How long a new worker may take to start and import its readers before its first file's own
# limit begins; a worker stuck that long is treated like a file that ran out of time.
WORKER_START_SECONDS = 60.0


@dataclass(frozen=True)
class ParseTask:
    """One file to read: its path, its corpus-relative source and the size limit."""

    path: Path
    source: str
    max_bytes: int


def _worker_main(conn: Connection, limits: ReadLimits) -> None:
    """Worker loop: read the files sent over conn until told to stop (None)."""
    from index import loaders, ocr_progress

    ocr_progress.set_listener(lambda: conn.send(("page", None)))
    while True:
        task = conn.recv()
        if task is None:
            return
        conn.send(("started", time.monotonic()))  # system-wide clock: the pool compares it
        result = loaders.read_document(
            task.path, source=task.source, max_bytes=task.max_bytes, limits=limits
        )
        conn.send(("done", result))


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    task: ParseTask | None = None
    deadline: float = 0.0
    started: float = field(default_factory=time.monotonic)


class ParsePool:
    """Up to `workers` parser processes, started on first use and stopped on close."""

    def __init__(
        self,
        *,
        limits: ReadLimits,
        workers: int,
        seconds: float,
        target: Callable[[Connection, ReadLimits], None] = _worker_main,
    ) -> None:
        if workers < 1 or seconds <= 0:
            raise ValueError(f"need workers >= 1 and seconds > 0, got {workers}, {seconds}")
        self.limits = limits
        self.target = target  # the worker loop (tests give one that hangs or crashes)
        self.size = workers
        self.seconds = seconds
        # spawn, not fork: the chat server that calls this has threads (fork would copy locks).
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []

    def _start(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=self.target, args=(child, self.limits), daemon=True, name="cqa-parser"
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _stop(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()

    def close(self) -> None:
        """Stop every idle worker."""
        for worker in self._idle:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            worker.process.join(timeout=2)
            self._stop(worker)
        self._idle = []

    def run(
        self,
        tasks: Iterable[ParseTask],
        *,
        on_result: Callable[[ParseTask, object], None],
        check: Callable[[], None] = lambda: None,
    ) -> None:
        """Parse every task, calling on_result(task, RawDocument list | Skipped) as each ends.

        check() is called at least twice a second and may raise to stop (cancellation).
        """
        busy: list[_Worker] = []
        try:
            self._run(list(tasks), busy, on_result, check)
        except BaseException:
            for worker in busy:  # cancelled or failed: unfinished parses are abandoned
                self._stop(worker)
            raise

    def _run(self, pending: list[ParseTask], busy: list[_Worker], on_result, check) -> None:
        from index.loaders import Skipped

        while pending or busy:
            check()
            while pending and len(busy) < self.size:
                task = pending.pop(0)
                worker = self._ready_worker()
                try:
                    worker.conn.send(task)
                except OSError:  # it died between the check and the send: a fresh one
                    self._stop(worker)
                    worker = self._start()
                    worker.conn.send(task)
                worker.task = task
                # until the worker reports "started", allow for its start-up as well
                worker.deadline = time.monotonic() + self._seconds_for(task) + WORKER_START_SECONDS
                busy.append(worker)
            timeout = min(0.5, max(0.0, min(w.deadline for w in busy) - time.monotonic()))
            ready = set(wait([w.conn for w in busy], timeout=timeout))
            for worker in list(busy):
                outcome = self._poll(worker, ready)
                if outcome is None:
                    continue
                busy.remove(worker)
                task, worker.task = worker.task, None
                if isinstance(outcome, str):  # the worker died or ran out of time
                    self._stop(worker)
                    logger.warning("%s: %s", task.source, outcome)
                    on_result(task, Skipped(task.source, outcome, transient=True))
                else:
                    self._idle.append(worker)
                    on_result(task, outcome[1])

    def _ready_worker(self) -> _Worker:
        """An idle worker that is still alive (the OOM killer may have taken one), or a new one."""
        while self._idle:
            worker = self._idle.pop()
            if worker.process.is_alive():
                return worker
            self._stop(worker)
        return self._start()

    def _seconds_for(self, task: ParseTask) -> float:
        """The file's time limit; an image is one OCR page, so it gets that limit too."""
        from index.config import IMAGE_EXTENSIONS

        if task.path.suffix.lower() in IMAGE_EXTENSIONS:
            return self.seconds + self.limits.ocr_page_seconds
        return self.seconds

    def _poll(self, worker: _Worker, ready: set) -> tuple | str | None:
        """('done', result), a reason the file was cut off, or None while it is still working."""
        if worker.conn in ready:
            try:
                while worker.conn.poll():
                    kind, payload = worker.conn.recv()
                    if kind == "done":
                        return kind, payload
                    if kind == "started":  # its clock starts when the worker began
                        began = min(float(payload), time.monotonic())
                        worker.deadline = began + self._seconds_for(worker.task)
                        break  # check this deadline before reading a result sent after it
                    page_deadline = time.monotonic() + self.limits.ocr_page_seconds
                    worker.deadline = max(worker.deadline, page_deadline)
            except (EOFError, OSError):
                code = worker.process.exitcode
                return f"the parser crashed on this file (exit code {code}); it was skipped"
        if time.monotonic() >= worker.deadline:
            return (
                f"parsing took longer than {self.seconds:.0f} s (per-file limit); it was "
                "stopped and the file skipped"
            )
        return None


def needs_worker(path: Path) -> bool:
    """True for formats read in a worker process (everything but the plain ones)."""
    return path.suffix.lower() not in INLINE_EXTENSIONS


def parse_files(
    tasks: list[ParseTask],
    *,
    limits: ReadLimits,
    workers: int,
    seconds: float,
    progress: bool,
    control: BuildControl = NO_CONTROL,
) -> dict[str, object]:
    """source -> RawDocuments or Skipped for every task: plain formats here, others in workers."""
    from tqdm import tqdm

    from index.loaders import read_document

    results: dict[str, object] = {}
    heavy = [t for t in tasks if needs_worker(t.path)]

    def count(bar) -> None:
        bar.update(1)
        control.step("reading", len(results), len(tasks))

    with tqdm(total=len(tasks), unit="file", desc="reading", disable=not progress) as bar:
        for task in tasks:
            if not needs_worker(task.path):
                results[task.source] = read_document(
                    task.path, source=task.source, max_bytes=task.max_bytes, limits=limits
                )
                count(bar)
        if heavy:

            def done(task: ParseTask, result: object) -> None:
                results[task.source] = result
                count(bar)

            with _POOL_LOCK:
                shared_pool(limits=limits, workers=workers, seconds=seconds).run(
                    heavy, on_result=done, check=control.check
                )
    return results


_POOLS: dict[tuple, ParsePool] = {}
_POOL_LOCK = threading.Lock()


def shared_pool(*, limits: ReadLimits, workers: int, seconds: float) -> ParsePool:
    """One pool per setting, kept for the process's life: workers start once, not per build."""
    key = (limits, workers, seconds)
    if key not in _POOLS:
        _POOLS[key] = ParsePool(limits=limits, workers=workers, seconds=seconds)
    return _POOLS[key]


@atexit.register
def _close_pools() -> None:
    for pool in _POOLS.values():
        pool.close()
