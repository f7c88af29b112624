"""Logging set-up for the command-line edges (rag, ui, eval, bench): one call, quiet libraries.

python -m rag index -v      # DEBUG for this project; third-party libraries stay at WARNING
"""

from __future__ import annotations

import errno
import logging

QUIET_LIBRARIES = ("faiss", "bm25s", "sentence_transformers", "httpx", "transformers", "matplotlib")


def configure_logging(level: int, *, fmt: str = "%(levelname)s %(name)s: %(message)s") -> None:
    """Root handler at level; the chattiest libraries at WARNING."""
    logging.basicConfig(level=level, format=fmt)
    # bm25s sets its own logger to DEBUG when imported; import it first so that lasts no longer.
    import bm25s  # noqa: F401

    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


_OS_HINTS = {
    errno.ENOSPC: "the disk is full; free some space and run the command again",
    errno.EDQUOT: "the disk quota is used up; free some space and run the command again",
    errno.EACCES: "no permission; check the folder's owner and mode, or use another --index",
    errno.EPERM: "not permitted; check the folder's owner and mode, or use another --index",
    errno.EROFS: "the file system is read-only; use a writable --index folder",
}


def error_line(exc: BaseException) -> str:
    """One line for the user: the path and cause of an OS error, else the message itself."""
    if not isinstance(exc, OSError):
        return str(exc).replace("\n", " ")
    where = exc.filename if exc.filename is not None else "(no path)"
    cause = exc.strerror or str(exc)
    hint = _OS_HINTS.get(exc.errno or 0)
    return f"{where}: {cause}" + (f" ({hint})" if hint else "")
