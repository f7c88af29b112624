"""Read a PDF with pypdfium2: the text layer page by page, scanned pages through OCR.

    python -m index.formats.pdf report.pdf      # prints the title, each page segment and notes

Document text: the pages' texts joined by "\\n\\n", one soft `page` segment per page (a chunk may
run across a page break and read "pp. 4–5"). A page's text has exactly one character per
pdfium character ("\\r" written as " ", so "\\r\\n" reads " \\n"; the hyphen that pdfium marks
at a line end, \\x02 or U+FFFE, written U+00AD: a soft hyphen, which cleaning drops from the
searchable text, so "manage-/ment" is found as "management"; controls as " "), so the
character at document offset o in page segment s (s.start <= o < s.end) is character
o - s.start of pdfium's text page of page s.number: `textpage.get_charbox(o - s.start)` is its
box. On an OCR page (s.ocr) o - s.start indexes the recognised text, whose words carry their
own offsets and boxes (`index.ocr`, cached by the rendered page's hash).

A page with no usable text layer but something drawn on it (a scan) is OCRed when Tesseract is
there; otherwise it is left out with a note and the rest of the document is read. pypdfium2
over pypdf: ~1,000 against ~110 pages/s on two Debian manuals, words hyphenated across lines
kept whole, ligatures split into letters, and the character boxes the viewer highlights.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from index.extraction import PAGE, Extraction, ReadLimits, Segment
from index.ocr import RENDER_DPI, OcrEngine, PageImage, Rendered, install_hint, recognise_pages

logger = logging.getLogger(__name__)

# Bumped when this reader's output changes for the same file and libraries.
VERSION = "pdf-2"
PAGE_SEPARATOR = "\n\n"
# A page with fewer usable characters than this has no real text layer (a page number or a
# scanner's stamp at most): OCR it when something is drawn on it.
MIN_TEXT_CHARS = 10
# Pixels of one page drawn for OCR: 300 dpi up to A2, less for posters (memory, Tesseract).
MAX_OCR_PIXELS = 40_000_000
TEXT, SCANNED, GARBLED, BLANK = "text", "scanned", "garbled", "blank"
# pdfium is not thread-safe: every call into it (here, from the OCR threads and from the
# viewer's request threads) holds this lock.
PDFIUM_LOCK = threading.RLock()

# Same length in, same length out: the offsets are pdfium's character indices.
_TRANSLATE = {code: " " for code in (*range(0x20), 0x7F, 0xFFFF) if code not in (9, 10)}
_TRANSLATE.update({0x02: "\u00ad", 0xFFFE: "\u00ad"})
_TRANSLATE.update({code: "\ufffd" for code in range(0xD800, 0xE000)})
_BAD_CATEGORIES = {"Co", "Cn", "Cs", "Cc"}


@functools.cache
def load_pdfium():
    """The pypdfium2 module (its raw bindings loaded); ImportError with a hint when missing."""
    try:
        import pypdfium2
        import pypdfium2.raw
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        raise ImportError("PDF support needs pypdfium2: pip install pypdfium2") from exc
    return pypdfium2


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def pdf_reader_version(ocr: OcrEngine | None) -> str:
    """This reader, its library and the OCR engine, e.g. 'pdf-2 pypdfium2-5.15.2 ocr=none'."""
    engine = ocr.version.replace(" ", "/") if ocr is not None else "none"
    return f"{VERSION} pypdfium2-{_package_version('pypdfium2')} ocr={engine}"


def _load_error(exc: Exception) -> str:
    code = getattr(exc, "err_code", None)
    raw = load_pdfium().raw
    if code == raw.FPDF_ERR_PASSWORD:
        return "encrypted PDF (a password is needed to open it)"
    if code == raw.FPDF_ERR_SECURITY:
        return "encrypted PDF (its security handler is not supported)"
    if code == raw.FPDF_ERR_FORMAT:
        return "damaged PDF (pdfium cannot parse it)"
    return f"could not open the PDF ({exc})"


def open_pdf(path: Path):
    """The PDF opened with pdfium (an empty password tried when encrypted); call under
    PDFIUM_LOCK. ValueError when it is not a PDF or cannot be opened."""
    pdfium = load_pdfium()
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if b"%PDF" not in head:
        raise ValueError("not a PDF (no %PDF header)")
    try:
        # No password: pdfium then tries the empty one, which opens files that only restrict
        # printing or copying.
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise ValueError(_load_error(exc)) from exc


def page_text(textpage) -> str:
    """The page's text, one character per pdfium character (see the module docstring)."""
    count = textpage.count_chars()
    text = textpage.get_text_range() if count > 0 else ""
    if len(text) != count:
        # pdfium's text view can drop or insert characters (rare): rebuild it char by char.
        unicode_of = load_pdfium().raw.FPDFText_GetUnicode
        codes = (unicode_of(textpage, index) for index in range(count))
        text = "".join(chr(code) if code <= 0x10FFFF else "\ufffd" for code in codes)
    return text.translate(_TRANSLATE)


def _has_image(page) -> bool:
    raw = load_pdfium().raw
    objects = page.get_objects(filter=(raw.FPDF_PAGEOBJ_IMAGE,), max_depth=4)
    return next(iter(objects), None) is not None


def page_kind(text: str, page) -> str:
    """TEXT (a usable text layer), SCANNED (an image and next to no text: OCR it), GARBLED
    (text without a character map: OCR it) or BLANK (nothing to read)."""
    good = bad = 0
    for char in text:
        if char.isspace() or char == "\u00ad":
            continue
        if char == "\ufffd" or unicodedata.category(char) in _BAD_CATEGORIES:
            bad += 1
        else:
            good += 1
    if good >= MIN_TEXT_CHARS and good >= bad:
        return TEXT
    if bad >= MIN_TEXT_CHARS:
        return GARBLED
    if _has_image(page):
        return SCANNED
    return TEXT if good else BLANK


def ocr_scale(width: float, height: float) -> float:
    """The scale (pixels per PDF point) a page is drawn at for OCR: ~300 dpi, capped in size."""
    scale = RENDER_DPI / 72
    area = max(width, 1.0) * max(height, 1.0)
    if area * scale * scale > MAX_OCR_PIXELS:
        scale = math.sqrt(MAX_OCR_PIXELS / area)
    # Rounded so the cache key (which includes the scale) is stable across platforms.
    return round(scale, 4)


def render_for_ocr(document, *, index: int) -> Rendered:
    """Page `index` (0-based) drawn in grayscale for OCR; the same bitmap for the same page."""
    with PDFIUM_LOCK:
        page = document[index]
        try:
            scale = ocr_scale(page.get_width(), page.get_height())
            bitmap = page.render(scale=scale, grayscale=True)
            try:
                image = bitmap.to_pil().convert("L")
            finally:
                bitmap.close()
        finally:
            page.close()
    return Rendered(image, scale, dpi=round(72 * scale))


@dataclass
class _Survey:
    """What the text layer gave: page texts, pages to OCR (number -> kind), and notes."""

    title: str = ""
    texts: dict[int, str] = field(default_factory=dict)
    to_ocr: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pages: int = 0


def _title(document) -> str:
    try:
        title = document.get_metadata_value("Title")
    except Exception as exc:  # damaged /Info: a title is not worth failing the file for
        logger.info("PDF title unreadable: %s", exc)
        return ""
    return " ".join(str(title or "").translate(_TRANSLATE).split())


def _survey_page(document, index: int, survey: _Survey) -> None:
    number = index + 1
    with PDFIUM_LOCK:
        try:
            page = document[index]
        except load_pdfium().PdfiumError as exc:
            survey.notes.append(f"page {number}: could not be read ({exc}); skipped")
            return
        try:
            textpage = page.get_textpage()
            try:
                text = page_text(textpage)
            finally:
                textpage.close()
            kind = page_kind(text, page)
        finally:
            page.close()
    if kind == TEXT:
        survey.texts[number] = text
    elif kind in (SCANNED, GARBLED):
        survey.to_ocr[number] = kind


def _survey(document, *, limits: ReadLimits) -> _Survey:
    with PDFIUM_LOCK:
        survey = _Survey(title=_title(document), pages=len(document))
    chars = 0
    for index in range(survey.pages):
        if chars > limits.max_chars:
            # The text is cut there anyway (join_pages): reading on would only fill memory.
            survey.notes.append(
                f"pages {index + 1}–{survey.pages} not read: the text is over "
                f"{limits.max_chars} characters"
            )
            break
        _survey_page(document, index, survey)
        chars += len(survey.texts.get(index + 1, "")) + len(PAGE_SEPARATOR)
    return survey


def page_list(numbers: Sequence[int]) -> str:
    """Page numbers as runs: [2, 3, 4, 7] -> '2–4, 7' (at most 12 runs shown)."""
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    shown = [f"{a}–{b}" if b > a else str(a) for a, b in runs[:12]]
    more = f", … ({len(numbers)} pages)" if len(runs) > 12 else ""
    return ", ".join(shown) + more


def _skipped_note(numbers: list[int], kind: str, *, language: str) -> str:
    where = f"page {numbers[0]}" if len(numbers) == 1 else f"pages {page_list(numbers)}"
    what = "scanned page (no text layer)" if kind == SCANNED else "text without a character map"
    if len(numbers) > 1:
        what = what.replace("scanned page", "scanned pages")
    return f"{where}: {what} skipped; install Tesseract to read it: {install_hint(language)}"


def _ocr_pages(document, survey: _Survey, *, ocr: OcrEngine | None, limits: ReadLimits) -> None:
    """OCR the pages that need it into survey.texts, or note them as skipped."""
    if not survey.to_ocr:
        return
    if ocr is None:
        for kind in (SCANNED, GARBLED):
            numbers = [n for n, k in survey.to_ocr.items() if k == kind]
            if numbers:
                survey.notes.append(_skipped_note(numbers, kind, language=limits.ocr_language))
        return
    jobs = [
        PageImage(n, functools.partial(render_for_ocr, document, index=n - 1))
        for n in sorted(survey.to_ocr)
    ]
    result = recognise_pages(jobs, engine=ocr, limits=limits)
    survey.notes.extend(result.notes)
    for number, page in result.pages.items():
        if page.text.strip():
            survey.texts[number] = page.text
        else:
            survey.notes.append(f"page {number}: OCR found no text")


def join_pages(
    texts: dict[int, str], *, ocr_pages: set[int], max_chars: int
) -> tuple[str, tuple[Segment, ...], list[str]]:
    """Page texts in page order joined by blank lines, one soft page segment each, cut at
    max_chars (the cut noted)."""
    parts: list[str] = []
    segments: list[Segment] = []
    notes: list[str] = []
    offset = 0
    for number in sorted(texts):
        start = offset + (len(PAGE_SEPARATOR) if parts else 0)
        if start >= max_chars:
            notes.append(f"text cut at {max_chars} characters: pages {number} on left out")
            break
        body = texts[number][: max_chars - start]
        if parts:
            parts.append(PAGE_SEPARATOR)
        parts.append(body)
        segments.append(Segment(start, start + len(body), PAGE, number, ocr=number in ocr_pages))
        offset = start + len(body)
        if len(body) < len(texts[number]):
            notes.append(f"page {number}: text cut at {max_chars} characters; the rest left out")
            break
    return "".join(parts), tuple(segments), notes


def read_pdf(path: Path, *, limits: ReadLimits, ocr: OcrEngine | None) -> Extraction:
    """The PDF's text with one soft page segment per page; pages without a text layer OCRed
    (or left out with a note). ValueError when the file cannot be read at all."""
    with PDFIUM_LOCK:
        document = open_pdf(path)
    try:
        survey = _survey(document, limits=limits)
        _ocr_pages(document, survey, ocr=ocr, limits=limits)
    finally:
        with PDFIUM_LOCK:
            document.close()
    ocred = {n for n in survey.to_ocr if n in survey.texts}
    text, segments, cut = join_pages(survey.texts, ocr_pages=ocred, max_chars=limits.max_chars)
    notes = [*survey.notes, *cut]
    if not segments and survey.to_ocr:
        # Nothing readable: the reason is the skip's reason, not a silent "no text".
        raise ValueError(f"no text read from {survey.pages} page(s): " + "; ".join(notes[:3]))
    if not segments and survey.notes:
        raise ValueError("no readable page: " + "; ".join(notes[:3]))
    return Extraction(text=text, title=survey.title, segments=segments, notes=tuple(notes))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from index.ocr import find_ocr

    found = find_ocr(language="eng")
    result = read_pdf(Path(sys.argv[1]), limits=ReadLimits(), ocr=found)
    sys.stdout.write(f"{pdf_reader_version(found)}\ntitle: {result.title}\n")
    for segment in result.segments:
        head = result.text[segment.start : segment.end][:70].replace("\n", " ")
        sys.stdout.write(
            f"p. {segment.number} [{segment.start}, {segment.end}) ocr={segment.ocr} {head!r}\n"
        )
    sys.stdout.write("".join(f"note: {note}\n" for note in result.notes))
