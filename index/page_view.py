"""Draw a page of a PDF (or a frame of an image) with the cited spans highlighted, as a PNG.

    python -m index.page_view report.pdf 2 120 180 page.png   # page 2, its characters 120..180

Highlights are document-text offsets; `page_start` is the page segment's start, so offset o is
character o - page_start of the page (see `index.formats.pdf`). Text-layer pages are marked
with pdfium's character boxes, merged per line; OCR pages with the word boxes of the OCR cache,
found by drawing the page again exactly as the reader did and hashing it. A page whose boxes
cannot be found is still shown, unmarked. Every failure is a ValueError.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from index.config import IMAGE_EXTENSIONS
from index.formats.images import MAX_FRAMES, frame_count, frame_image, open_image
from index.formats.pdf import (
    GARBLED,
    PDFIUM_LOCK,
    SCANNED,
    TEXT,
    load_pdfium,
    open_pdf,
    page_kind,
    page_text,
    render_for_ocr,
)
from index.ocr import OcrCache, OcrPage, Rendered, cache_key

logger = logging.getLogger(__name__)

# Translucent amber over the text, so the words stay readable.
HIGHLIGHT = (255, 196, 0, 96)
MAX_VIEW_PIXELS = 20_000_000
# Images are shown at their own size, shrunk to this many pixels on the long side.
MAX_IMAGE_SIDE = 2000
Box = tuple[float, float, float, float]  # left, top, right, bottom, in pixels of the picture


@contextlib.contextmanager
def _as_value_error(path: Path) -> Iterator[None]:
    try:
        yield
    except ValueError:
        raise
    except Exception as exc:  # the viewer must get one kind of error, whatever broke
        raise ValueError(f"cannot show {path.name}: {type(exc).__name__}: {exc}") from exc


def _check_page(page: int, count: int) -> None:
    if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= count:
        raise ValueError(f"page {page!r} out of range (the document has {count} page(s))")


def page_count(path: Path) -> int:
    """Pages of a PDF, or frames of an image (as the readers count them)."""
    path = Path(path)
    with _as_value_error(path):
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            with open_image(path) as image:
                return min(frame_count(image), MAX_FRAMES)
        with PDFIUM_LOCK:
            document = open_pdf(path)
            try:
                return len(document)
            finally:
                document.close()


def local_spans(
    highlights: Sequence[tuple[int, int]], *, page_start: int, length: int
) -> list[tuple[int, int]]:
    """Document spans as [start, end) within the page's text, clipped to it; empty ones dropped."""
    spans = []
    for start, end in highlights:
        low, high = max(0, int(start) - page_start), min(length, int(end) - page_start)
        if high > low:
            spans.append((low, high))
    return spans


def _same_line(a: Box, b: Box) -> bool:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    height = max(a[3] - a[1], b[3] - b[1])
    gap = max(b[0] - a[2], a[0] - b[2])
    # Same line: overlapping heights; and no jump across a column gutter.
    return overlap >= 0.5 * min(a[3] - a[1], b[3] - b[1]) and gap <= 3 * height


def merge_lines(boxes: Sequence[Box]) -> list[Box]:
    """Consecutive boxes on the same line merged into one rectangle per line."""
    merged: list[Box] = []
    for box in boxes:
        if merged and _same_line(merged[-1], box):
            left, top, right, bottom = merged[-1]
            merged[-1] = (
                min(left, box[0]),
                min(top, box[1]),
                max(right, box[2]),
                max(bottom, box[3]),
            )
        else:
            merged.append(box)
    return merged


def _char_boxes(textpage, page, *, text: str, spans: list[tuple[int, int]], size) -> list[Box]:
    """Pixel boxes of the characters in spans (whitespace skipped), merged per line."""
    raw = load_pdfium().raw
    x, y = ctypes.c_int(), ctypes.c_int()

    def device(px: float, py: float) -> tuple[int, int]:
        # Page space to the bitmap's pixels: handles /Rotate and the crop box offset.
        raw.FPDF_PageToDevice(page, 0, 0, size[0], size[1], 0, px, py, x, y)
        return x.value, y.value

    boxes: list[Box] = []
    for low, high in spans:
        line: list[Box] = []
        for index in range(low, high):
            if text[index].isspace() or text[index] == "\u00ad":
                continue
            left, bottom, right, top = textpage.get_charbox(index, loose=True)
            (x0, y0), (x1, y1) = device(left, top), device(right, bottom)
            if x0 != x1 and y0 != y1:
                line.append((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        boxes.extend(merge_lines(line))
    return boxes


def word_boxes(page: OcrPage, *, spans: list[tuple[int, int]], size) -> list[Box]:
    """Pixel boxes of the OCR words overlapping spans, merged per line."""
    width, height = size
    boxes: list[Box] = []
    for low, high in spans:
        words = [w for w in page.words if w.start < high and w.end > low]
        boxes.extend(
            merge_lines(
                [
                    (w.left * width, w.top * height, w.right * width, w.bottom * height)
                    for w in words
                ]
            )
        )
    return boxes


def _cached_ocr(rendered: Rendered, *, cache_dir, version: str | None) -> OcrPage | None:
    if not version or not cache_dir:
        return None
    key = cache_key(rendered.image, scale=rendered.scale, version=version)
    found = OcrCache(cache_dir).get(key)
    if found is None:
        logger.info("no OCR boxes cached for this page (engine %s)", version)
    return found


def _view_scale(scale: float, width: float, height: float) -> float:
    area = max(width, 1.0) * max(height, 1.0)
    return min(scale, math.sqrt(MAX_VIEW_PIXELS / area))


def _draw_pdf_page(document, *, page: int, highlights, page_start: int, scale: float):
    """The page drawn, the boxes of its highlighted characters, and whether it is an OCR page."""
    pdf_page = document[page - 1]
    try:
        textpage = pdf_page.get_textpage()
        try:
            text = page_text(textpage)
            kind = page_kind(text, pdf_page)
            view = _view_scale(scale, pdf_page.get_width(), pdf_page.get_height())
            bitmap = pdf_page.render(scale=view)
            picture = bitmap.to_pil().convert("RGB")
            bitmap.close()
            boxes: list[Box] = []
            if kind == TEXT:
                spans = local_spans(highlights, page_start=page_start, length=len(text))
                boxes = _char_boxes(textpage, pdf_page, text=text, spans=spans, size=picture.size)
        finally:
            textpage.close()
    finally:
        pdf_page.close()
    return picture, boxes, kind in (SCANNED, GARBLED)


def _pdf_view(
    path: Path,
    *,
    page: int,
    highlights,
    page_start: int,
    scale: float,
    cache_dir,
    version: str | None,
) -> tuple[Image.Image, list[Box]]:
    rendered = None
    with PDFIUM_LOCK:
        document = open_pdf(path)
        try:
            _check_page(page, len(document))
            picture, boxes, from_ocr = _draw_pdf_page(
                document, page=page, highlights=highlights, page_start=page_start, scale=scale
            )
            if from_ocr and version and cache_dir:
                rendered = render_for_ocr(document, index=page - 1)
        finally:
            document.close()
    found = _cached_ocr(rendered, cache_dir=cache_dir, version=version) if rendered else None
    if found is not None:
        spans = local_spans(highlights, page_start=page_start, length=len(found.text))
        boxes = word_boxes(found, spans=spans, size=picture.size)
    return picture, boxes


def _image_view(
    path: Path, *, page: int, highlights, page_start: int, cache_dir, version: str | None
) -> tuple[Image.Image, list[Box]]:
    with open_image(path) as image:
        _check_page(page, min(frame_count(image), MAX_FRAMES))
        gray = frame_image(image, index=page - 1)
    found = _cached_ocr(Rendered(gray, 1.0), cache_dir=cache_dir, version=version)
    boxes: list[Box] = []
    if found is not None:
        spans = local_spans(highlights, page_start=page_start, length=len(found.text))
        boxes = word_boxes(found, spans=spans, size=gray.size)
    shrink = min(1.0, MAX_IMAGE_SIDE / max(gray.size))
    if shrink < 1.0:
        gray = gray.resize(
            (max(1, round(gray.width * shrink)), max(1, round(gray.height * shrink)))
        )
        boxes = [(a * shrink, b * shrink, c * shrink, d * shrink) for a, b, c, d in boxes]
    return gray.convert("RGB"), boxes


def _png(picture: Image.Image, boxes: list[Box]) -> bytes:
    overlay = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for left, top, right, bottom in boxes:
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=HIGHLIGHT)
    out = Image.alpha_composite(picture.convert("RGBA"), overlay).convert("RGB")
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()


def render_page(
    path: Path,
    *,
    page: int,
    highlights: list[tuple[int, int]],
    page_start: int,
    scale: float = 1.5,
    ocr_cache_dir: Path | str | None = None,
    ocr_version: str | None = None,
) -> bytes:
    """PNG of page `page` (1-based) with the highlighted document spans marked; `scale` is
    pixels per PDF point (images are shown at their own size, at most MAX_IMAGE_SIDE)."""
    path = Path(path)
    if not 0.05 <= scale <= 8:
        raise ValueError(f"scale {scale} out of range (0.05–8)")
    with _as_value_error(path):
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            picture, boxes = _image_view(
                path,
                page=page,
                highlights=highlights,
                page_start=page_start,
                cache_dir=ocr_cache_dir,
                version=ocr_version,
            )
        else:
            picture, boxes = _pdf_view(
                path,
                page=page,
                highlights=highlights,
                page_start=page_start,
                scale=scale,
                cache_dir=ocr_cache_dir,
                version=ocr_version,
            )
        return _png(picture, boxes)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from index.config import IndexConfig
    from index.ocr import find_ocr

    source, number, low, high, target = sys.argv[1:6]
    engine = find_ocr(language="eng")
    png = render_page(
        Path(source),
        page=int(number),
        highlights=[(int(low), int(high))],
        page_start=0,
        ocr_cache_dir=IndexConfig().ocr_cache_dir,
        ocr_version=engine.version if engine else None,
    )
    Path(target).write_bytes(png)
    sys.stdout.write(f"{target}: {len(png)} bytes, page {number} of {page_count(Path(source))}\n")


def forget_ocr_pages(
    path: Path, pages: Sequence[int], *, cache_dir: Path | str, version: str
) -> int:
    """Delete the OCR cache entries of those pages (1-based) of a PDF or image; how many.

    The cache is keyed by the page image, so each page is rendered again as the reader
    rendered it for OCR; pages whose entry is gone already are skipped.
    """
    cache = OcrCache(cache_dir)
    rendered = []
    with _as_value_error(path):
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            with open_image(path) as image:
                count = min(frame_count(image), MAX_FRAMES)
                for page in sorted(set(pages)):
                    if 1 <= page <= count:
                        rendered.append(Rendered(frame_image(image, index=page - 1), 1.0))
        else:
            with PDFIUM_LOCK:
                document = open_pdf(path)
                try:
                    for page in sorted(set(pages)):
                        if 1 <= page <= len(document):
                            rendered.append(render_for_ocr(document, index=page - 1))
                finally:
                    document.close()
    deleted = 0
    for page in rendered:
        entry = cache.path(cache_key(page.image, scale=page.scale, version=version))
        if entry.is_file():
            entry.unlink()
            deleted += 1
    return deleted
