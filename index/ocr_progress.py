"""A process-wide hook that OCR calls after each recognised page (the parse pool listens).

    python -m rag index      # a worker reports each OCR page so its time limit is extended

Readers run inside worker processes whose deadline is extended per page; this module is the
one place the OCR code tells "a page is done" without knowing who listens.
"""

from __future__ import annotations

from collections.abc import Callable

_listener: Callable[[], None] | None = None


def set_listener(listener: Callable[[], None] | None) -> None:
    """Call listener after every recognised page in this process (None: nobody listens)."""
    global _listener
    _listener = listener


def page_done() -> None:
    """Report one recognised page to the listener, if any."""
    if _listener is not None:
        _listener()
