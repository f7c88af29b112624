"""Progress reports and cancellation for long index work (the chat's status line and Cancel).

    python -m ui        # uploads and folder changes index in the background with a status line

`update_index(..., control=BuildControl(on_progress=..., cancel=event))` calls on_progress(stage,
done, total) as files are read and chunks embedded, and stops with `IndexCancelled` at the next
step once the event is set; nothing has been written then, so the live index is unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


class IndexCancelled(RuntimeError):
    """The build was cancelled before it wrote anything; the live index is unchanged."""


@dataclass(frozen=True)
class BuildControl:
    """Where a build reports progress, and the event that cancels it."""

    on_progress: Callable[[str, int, int], None] | None = None
    cancel: threading.Event | None = None

    def step(self, stage: str, done: int, total: int) -> None:
        """Report progress of a stage, then stop if cancellation was asked for."""
        if self.on_progress is not None:
            self.on_progress(stage, done, total)
        self.check()

    def check(self) -> None:
        """Raise IndexCancelled when the cancel event is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise IndexCancelled("indexing was cancelled; the index is unchanged")


NO_CONTROL = BuildControl()
