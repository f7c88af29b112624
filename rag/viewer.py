"""Opening a cited document at the cited passage: its page drawn with highlights, or its text.

    python -m rag.viewer SOURCE START END      # describes the view of a span of the live index

The chat opens this view when a source card is clicked. The text comes from the index's
document store (`text[start:end]` is exactly what the citation quotes), so the highlighted
offsets are always right for the text that was indexed. A PDF or an image is also drawn as the
page the cited sentence is on, with that sentence's region marked (`index.page_view`). The
original file is offered for download only when it resolves to a regular file inside the corpus
folder; an attachment (`message.eml/report.pdf`) offers its message file.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from index.config import IMAGE_EXTENSIONS
from index.corpus_index import file_sha256
from index.document_store import StoredDocument, get_document
from index.extraction import PAGE, Segment, locate
from rag.pipeline import Pipeline

logger = logging.getLogger(__name__)

# Characters of document text shown around the cited passage: enough to read it in context,
# little enough that a 20-million-character book never reaches the browser whole.
CONTEXT_BEFORE = 1500
CONTEXT_AFTER = 4000
PAGE_SCALE = 1.5
CHANGED_NOTE = "the file changed since it was indexed; the highlight shows the indexed text"
MISSING_NOTE = "the file is no longer in the corpus folder; showing the indexed text"


@dataclass(frozen=True)
class TextPiece:
    """A stretch of the shown text: kind '' (context), 'passage' (cited) or 'highlight'."""

    text: str
    kind: str = ""


@dataclass(frozen=True)
class DocumentView:
    """What the document view shows for one citation (plain text: the UI escapes it)."""

    source: str
    title: str
    locator: str
    page: int | None  # the page drawn (PDF page, 1 for an image), else None
    page_png: bytes | None  # that page with the highlighted spans drawn over it
    pieces: tuple[TextPiece, ...]  # the text around the passage, in order
    window: tuple[int, int]  # document offsets of the shown text
    cut_before: bool  # text precedes the window
    cut_after: bool  # text follows the window
    download_path: Path | None  # the corpus file to offer, or None
    note: str = ""  # why something is missing or may be off, for the person reading
    boxes: int = 0  # highlighted spans handed to the page drawing


@functools.lru_cache(maxsize=4)
def _stored(index_dir: str, key: str) -> StoredDocument:
    """A stored document; kept for the next click (the key is its content's hash)."""
    return get_document(Path(index_dir), key)


def _entry(documents: dict, source: object) -> dict:
    """The manifest record of an indexed document, or ValueError."""
    if not isinstance(source, str) or not source:
        raise ValueError("no document named")
    entry = documents.get(source)
    if not isinstance(entry, dict):
        raise ValueError(f"{source} is not in the index (removed since the answer?)")
    return entry


def _check_spans(
    length: int, start: int, end: int, highlights: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The highlights sorted, once every span is checked to lie inside the text."""
    if not 0 <= start < end <= length:
        raise ValueError(f"the span {start}–{end} is outside the document text (0–{length})")
    spans = sorted((int(s), int(e)) for s, e in highlights)
    for s, e in spans:
        if not 0 <= s <= e <= length:
            raise ValueError(f"the highlight {s}–{e} is outside the document text (0–{length})")
    return spans


def _window(text: str, start: int, end: int) -> tuple[int, int]:
    """Offsets of the text to show around [start, end), widened to whole words."""
    low, high = max(0, start - CONTEXT_BEFORE), min(len(text), end + CONTEXT_AFTER)
    if low > 0:  # start at a line (or at least a word) after the cut
        cut = text.find("\n", low, start)
        cut = cut if cut != -1 else text.find(" ", low, start)
        low = cut + 1 if cut != -1 else low
    if high < len(text):
        cut = text.rfind("\n", end, high)
        cut = cut if cut != -1 else text.rfind(" ", end, high)
        high = cut if cut != -1 else high
    return low, high


def text_pieces(
    text: str, *, start: int, end: int, highlights: Sequence[tuple[int, int]]
) -> tuple[tuple[TextPiece, ...], tuple[int, int]]:
    """The window of text around the passage, split into context, passage and highlights."""
    low, high = _window(text, start, end)
    spans = [(max(s, low), min(e, high)) for s, e in highlights if e > low and s < high]
    cuts = sorted(
        {low, high, max(start, low), min(end, high), *(x for span in spans for x in span)}
    )
    pieces: list[TextPiece] = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        if any(s <= a and b <= e for s, e in spans):
            kind = "highlight"
        else:
            kind = "passage" if start <= a and b <= end else ""
        if pieces and pieces[-1].kind == kind:
            pieces[-1] = TextPiece(pieces[-1].text + text[a:b], kind)
        else:
            pieces.append(TextPiece(text[a:b], kind))
    return tuple(pieces), (low, high)


def corpus_file(corpus_dir: Path, source: str) -> Path | None:
    """The regular file inside corpus_dir that holds source (an attachment: its message file)."""
    relative = Path(source)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        return None
    corpus = Path(corpus_dir).resolve()
    for count in range(len(relative.parts), 0, -1):
        candidate = corpus.joinpath(*relative.parts[:count])
        if candidate.is_symlink() or not candidate.is_file():
            continue
        resolved = candidate.resolve()
        # A link above the file (a symlinked folder) could still lead outside the corpus.
        return resolved if resolved.is_relative_to(corpus) else None
    return None


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file; cached per (size, mtime) so clicking again does not re-read it."""
    return file_sha256(Path(path))


def file_changed(path: Path, expected: str) -> bool:
    """True when the file's SHA-256 is not the one the index recorded."""
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns) != expected


def _page_at(segments: Sequence[Segment], position: int) -> Segment | None:
    """The page segment holding a document offset."""
    pages = [s for s in segments if s.kind == PAGE]
    inside = [s for s in pages if s.start <= position < s.end]
    return (inside or [s for s in pages if s.start <= position <= s.end] or [None])[0]


def _page_spans(
    page: Segment, *, start: int, end: int, spans: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The highlights on one page (the passage's part of it when no highlight is there)."""
    on_page = [(max(s, page.start), min(e, page.end)) for s, e in spans]
    on_page = [(s, e) for s, e in on_page if e > s]
    if not on_page and min(end, page.end) > max(start, page.start):
        on_page = [(max(start, page.start), min(end, page.end))]
    return on_page


def _ocr_version(pipeline: Pipeline) -> str | None:
    """The OCR engine's version, which keys its cache (None when OCR is not installed)."""
    from index.readers import ocr_engine

    engine = ocr_engine(pipeline.config.index.ocr_language)
    return engine.version if engine is not None else None


def _draw(
    pipeline: Pipeline, path: Path, page: Segment, spans: list[tuple[int, int]]
) -> tuple[bytes | None, str]:
    """The page as PNG with spans drawn, or None and why it could not be drawn."""
    try:
        from index.page_view import render_page

        png = render_page(
            path, page=page.number or 1, highlights=spans, page_start=page.start,
            scale=PAGE_SCALE, ocr_cache_dir=Path(pipeline.config.index.ocr_cache_dir),
            ocr_version=_ocr_version(pipeline),
        )  # fmt: skip
    except ImportError as exc:
        logger.info("page images unavailable: %s", exc)
        return None, "page images are not available here; showing the text"
    except ValueError as exc:
        return None, f"the page could not be drawn ({exc}); showing the text"
    except Exception:  # a drawing bug must not hide the text view
        logger.exception("drawing page %s of %s failed", page.number, path)
        return None, "the page could not be drawn; showing the text"
    return png, ""


def _page_view(
    pipeline: Pipeline,
    path: Path,
    segments: Sequence[Segment],
    *,
    start: int,
    end: int,
    spans: list[tuple[int, int]],
    length: int,
) -> tuple[int | None, bytes | None, int, str]:
    """(page, png, boxes, note) for a PDF or an image; (None, None, 0, '') for other files."""
    suffix = path.suffix.lower()
    if suffix != ".pdf" and suffix not in IMAGE_EXTENSIONS:
        return None, None, 0, ""
    first = spans[0][0] if spans else start
    page = _page_at(segments, first)
    if page is None and suffix in IMAGE_EXTENSIONS:
        page = Segment(0, length, PAGE, 1)  # an image is one page, whatever its segments say
    if page is None:
        return None, None, 0, "the page of this passage is not known; showing the text"
    on_page = _page_spans(page, start=start, end=end, spans=spans)
    png, note = _draw(pipeline, path, page, on_page)
    return page.number or 1, png, len(on_page) if png else 0, note


def _original(
    pipeline: Pipeline,
    documents: dict,
    source: str,
    stored: StoredDocument,
    *,
    start: int,
    end: int,
    spans: list[tuple[int, int]],
) -> tuple[Path | None, int | None, bytes | None, int, str]:
    """(download path, page, png, boxes, note): what the corpus file still allows to show."""
    corpus = Path(pipeline.config.index.corpus_dir)
    path = corpus_file(corpus, source)
    if path is None:
        return None, None, None, 0, MISSING_NOTE
    holder = path.relative_to(corpus.resolve()).as_posix()  # itself, or the mail it came in
    expected = documents.get(holder, {}).get("sha256", "")
    try:
        if expected and file_changed(path, expected):
            # The page on disk may not be the page that was indexed: show the indexed text.
            return path, None, None, 0, CHANGED_NOTE
    except OSError:  # removed or unreadable since it was found
        return None, None, None, 0, MISSING_NOTE
    if holder != source:
        return path, None, None, 0, f"inside {holder}; download the message for the file"
    page, png, boxes, note = _page_view(
        pipeline, path, stored.segments, start=start, end=end, spans=spans,
        length=len(stored.text),
    )  # fmt: skip
    return path, page, png, boxes, note


def _text_of(pipeline: Pipeline, source: str, entry: dict) -> StoredDocument:
    """The stored text of an indexed document; ValueError (without server paths) when lost."""
    try:
        return _stored(str(pipeline.config.index.index_dir), str(entry.get("text_key", "")))
    except ValueError as exc:
        logger.warning("stored text of %s not readable: %s", source, exc)
        raise ValueError(
            f"the indexed text of {source} is missing or damaged; run: python -m rag index "
            "--rebuild"
        ) from exc


def open_view(
    pipeline: Pipeline, *, source: str, start: int, end: int, highlights: Sequence[tuple[int, int]]
) -> DocumentView:
    """The view of source at [start, end) with highlights; ValueError for a bad source or span."""
    documents = pipeline.index.manifest.get("documents", {})  # one generation throughout
    entry = _entry(documents, source)
    stored = _text_of(pipeline, source, entry)
    spans = _check_spans(len(stored.text), int(start), int(end), highlights)
    pieces, window = text_pieces(stored.text, start=start, end=end, highlights=spans)
    where = locate(stored.text, stored.segments, start, end)
    path, page, png, boxes, note = _original(
        pipeline, documents, source, stored, start=start, end=end, spans=spans
    )
    return DocumentView(
        source=source, title=str(entry.get("title") or source), locator=where.locator,
        page=page or where.page, page_png=png, pieces=pieces, window=window,
        cut_before=window[0] > 0, cut_after=window[1] < len(stored.text), download_path=path,
        note=note, boxes=boxes,
    )  # fmt: skip


if __name__ == "__main__":
    from rag import Config
    from rag.pipeline import open_pipeline

    view = open_view(
        open_pipeline(Config(), progress=False), source=sys.argv[1], start=int(sys.argv[2]),
        end=int(sys.argv[3]), highlights=[],
    )  # fmt: skip
    marked = "".join(f"[{p.text}]" if p.kind else p.text for p in view.pieces)
    sys.stdout.write(f"{view.title} · {view.locator} · page {view.page} · {view.note}\n{marked}\n")
