"""Worker loops for the parse pool tests: one that hangs on a file, one that dies on it.

python -m pytest -q tests/test_ingest_pipeline.py
"""

from __future__ import annotations

import os
import time


def misbehaving_worker(conn, limits) -> None:
    """Reads like the real worker, but hangs on 'hang*' files and dies on 'crash*' files."""
    from index import loaders, ocr_progress

    ocr_progress.set_listener(lambda: conn.send(("page", None)))
    while True:
        task = conn.recv()
        if task is None:
            return
        conn.send(("started", time.monotonic()))
        name = task.path.name
        if name.startswith("hang"):
            time.sleep(3600)
        if name.startswith("crash"):
            os._exit(3)
        if name.startswith("slowscan"):
            for _ in range(4):  # four "OCR pages" of 0.6 s each: longer than the file limit
                time.sleep(0.6)
                ocr_progress.page_done()
        result = loaders.read_document(
            task.path, source=task.source, max_bytes=task.max_bytes, limits=limits
        )
        conn.send(("done", result))


def slow_start_worker(conn, limits) -> None:
    """The real worker loop behind a 2 s start-up, as on a loaded machine importing its readers."""
    from index.parse_pool import _worker_main

    time.sleep(2.0)
    _worker_main(conn, limits)
