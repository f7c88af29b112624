"""What a format reader returns: the document's text and where each part of it sits in the source.

    python -m index.extraction     # prints the locators of a few sample segment lists

Every reader (plain text, HTML, PDF, Office, e-book, mail, images) produces an `Extraction`:
the text that character spans index, and `Segment`s that say which page, slide, sheet row,
chapter, section or message each stretch of that text came from. A chunk's locator is composed
from the segments it overlaps (`locate`); chunks never cross a `hard` segment boundary (two
slides, two sheets, two messages).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

# Segment kinds and how their locators read.
PAGE, SLIDE, ROW, CHAPTER, SECTION, MESSAGE = (
    "page",
    "slide",
    "row",
    "chapter",
    "section",
    "message",
)
KINDS = (PAGE, SLIDE, ROW, CHAPTER, SECTION, MESSAGE)


@dataclass(frozen=True)
class Segment:
    """A stretch [start, end) of the document text and its place in the source.

    kind: page (PDF page), slide, row (a spreadsheet row; label = sheet name), chapter
    (e-book; label = chapter title), section (label = nearest heading), message (label =
    subject). number: the 1-based page, slide, row or chapter number (0 when it has none).
    hard: True when no chunk may continue from the previous segment into this one.
    ocr: True when the text was recognised from an image.
    """

    start: int
    end: int
    kind: str
    number: int = 0
    label: str = ""
    hard: bool = False
    ocr: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown segment kind {self.kind!r} (one of {KINDS})")
        if not 0 <= self.start <= self.end:
            raise ValueError(f"bad segment span [{self.start}, {self.end})")

    def to_json(self) -> list:
        """Compact JSON form for the index."""
        return [self.start, self.end, self.kind, self.number, self.label, self.hard, self.ocr]

    @classmethod
    def from_json(cls, data: Sequence) -> Segment:
        """Read the compact form back."""
        start, end, kind, number, label, hard, ocr = data
        return cls(int(start), int(end), str(kind), int(number), str(label), bool(hard), bool(ocr))


@dataclass(frozen=True)
class ReadLimits:
    """Bounds every reader honours, so a hostile file cannot fill memory or run forever."""

    # Spreadsheet rows read per sheet; the rest is cut and the cut reported in the notes.
    max_sheet_rows: int = 20_000
    # Bytes a zip-based file (docx, pptx, xlsx, odt, epub) may expand to; more is refused
    # before decompressing (a zip bomb).
    max_unzipped_bytes: int = 200 * 1024 * 1024
    # Characters of text kept per document; the rest is cut and reported.
    max_chars: int = 20_000_000
    # Messages read from one mailbox, and its size limit (read message by message).
    max_messages: int = 100_000
    max_mailbox_bytes: int = 4 * 1024**3
    # OCR: Tesseract language, seconds per page, pages recognised at once, and the cache.
    ocr_language: str = "eng"
    ocr_page_seconds: float = 120.0
    ocr_workers: int = 2
    ocr_cache_dir: str = "data/ocr-cache"


@dataclass(frozen=True)
class Attachment:
    """A file found inside another (a mail attachment): its name and bytes, read as its own."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Extraction:
    """A reader's result: text, title, segments, and notes about parts that were left out."""

    text: str
    title: str = ""
    segments: tuple[Segment, ...] = ()
    # Human-readable notes ("page 3: scanned page skipped, install tesseract-ocr"), reported
    # beside the skipped files; the rest of the document is indexed.
    notes: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = field(default=())


@dataclass(frozen=True)
class Location:
    """Where a chunk sits in its source: page (PDF page or slide, else None), locator, ocr."""

    page: int | None
    locator: str
    ocr: bool


def _range(numbers: list[int], one: str, many: str) -> str:
    low, high = min(numbers), max(numbers)
    return f"{one} {low}" if low == high else f"{many} {low}–{high}"


def _lines(text: str, start: int, end: int) -> str:
    first = text.count("\n", 0, start) + 1
    last = first + text.count("\n", start, max(start, end - 1))
    return f"line {first}" if first == last else f"lines {first}–{last}"


def locate(text: str, segments: Sequence[Segment], start: int, end: int) -> Location:
    """The location of text[start:end] from the segments it overlaps (lines when none do)."""
    over = [s for s in segments if s.start < end and s.end > start] or [
        s for s in segments if s.start <= start < s.end or (s.start == start == s.end)
    ]
    ocr = any(s.ocr for s in over)
    pages = [s for s in over if s.kind == PAGE]
    if pages:
        return Location(pages[0].number, _range([s.number for s in pages], "p.", "pp."), ocr)
    slides = [s for s in over if s.kind == SLIDE]
    if slides:
        return Location(
            slides[0].number, _range([s.number for s in slides], "slide", "slides"), ocr
        )
    rows = [s for s in over if s.kind == ROW]
    if rows:
        where = _range([s.number for s in rows], "row", "rows")
        return Location(None, f"sheet {rows[0].label}, {where}" if rows[0].label else where, ocr)
    for kind, render in (
        (CHAPTER, lambda s: f"chapter {s.number}" + (f" ({s.label})" if s.label else "")),
        (SECTION, lambda s: f"§ {s.label}"),
        (MESSAGE, lambda s: s.label or "message"),
    ):
        found = [s for s in over if s.kind == kind and (s.label or kind != SECTION)]
        if found:
            return Location(None, render(found[0]), ocr)
    return Location(None, _lines(text, start, end), ocr)


def hard_groups(text_length: int, segments: Sequence[Segment]) -> list[tuple[int, int]]:
    """Spans of text that chunks may not cross: split at every hard segment's start."""
    cuts = sorted({s.start for s in segments if s.hard and 0 < s.start < text_length})
    bounds = [0, *cuts, text_length]
    return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


if __name__ == "__main__":
    sample = "Intro\nBudget row one\nBudget row two\n"
    rows = [Segment(6, 21, ROW, 12, "Budget", hard=True), Segment(21, 36, ROW, 13, "Budget")]
    sys.stdout.write(f"{locate(sample, rows, 6, 36)}\n{locate(sample, [], 0, 20)}\n")
