"""Logging set-up for the command-line edges (rag, ui, eval, bench): one call, quiet libraries.

python -m rag index -v      # DEBUG for this project; third-party libraries stay at WARNING
"""

from __future__ import annotations

import logging

QUIET_LIBRARIES = ("faiss", "bm25s", "sentence_transformers", "httpx", "transformers", "matplotlib")


def configure_logging(level: int, *, fmt: str = "%(levelname)s %(name)s: %(message)s") -> None:
    """Root handler at level; the chattiest libraries at WARNING."""
    logging.basicConfig(level=level, format=fmt)
    # bm25s sets its own logger to DEBUG when imported; import it first so that lasts no longer.
    import bm25s  # noqa: F401

    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
