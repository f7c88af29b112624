"""Writing folders safely: an exclusive folder lock and fsync of what was written.

python -c "from index.durable import folder_lock, fsync_tree; print(folder_lock, fsync_tree)"
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on folder (created if missing) for the duration of the block."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fsync_path(path: Path) -> None:
    """Flush one file or folder entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs():
    """Linux's syncfs(2) from the C library, or None where there is none."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


def fsync_files(paths: Sequence[Path]) -> None:
    """Flush the data of many files on one filesystem (all of them under one folder).

    One syncfs(2) of their filesystem where Linux offers it: an update storing 2,000
    extracted texts spent about a second in 2,000 separate fsyncs. Elsewhere, or when it
    fails, each file is flushed on its own.
    """
    if not paths:
        return
    syncfs = _syncfs() if len(paths) > 1 else None
    if syncfs is not None:
        fd = os.open(paths[0], os.O_RDONLY)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in paths:
        fsync_path(path)


def fsync_tree(folder: Path) -> None:
    """Flush every file below folder, then the folder itself, before it is renamed into place."""
    for path in folder.rglob("*"):
        if path.is_file():
            fsync_path(path)
    fsync_path(folder)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
