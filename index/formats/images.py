"""Read image files (.png .jpg .jpeg .tif .tiff) through OCR: one page segment per frame.

    python -m index.formats.images scan.tiff        # prints each frame's recognised text

A multi-page TIFF gives one page per frame. Frames are turned upright (EXIF orientation), laid
on white where transparent and made grayscale before OCR; the viewer draws the same frame, so
the OCR cache (keyed by that bitmap) gives it the word boxes. Only PNG, JPEG and TIFF decoders
are used, whatever the file's name says, so no other Pillow plugin ever sees a file.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from index.extraction import Extraction, ReadLimits
from index.formats.pdf import join_pages
from index.ocr import OcrEngine, PageImage, Rendered, install_hint, recognise_pages

logger = logging.getLogger(__name__)

VERSION = "image-1"
# Pillow's decoders, by format name (JPEG opens a multi-picture MPO file too).
FORMATS = ("PNG", "JPEG", "TIFF")
# Pixels of one frame: a 600 dpi A3 scan is 70 M. Below Pillow's own bomb limit (89 M), so a
# larger frame is refused here, before anything is decoded.
MAX_PIXELS = 80_000_000
# Frames read from one multi-page TIFF.
MAX_FRAMES = 5_000


def _check_size(image: Image.Image) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(
            f"image too large ({width}x{height} pixels; at most {MAX_PIXELS:,} are read)"
        )
    if width < 1 or height < 1:
        raise ValueError(f"not a readable image: empty ({width}x{height} pixels)")


def open_image(path: Path) -> Image.Image:
    """The image opened (header read, nothing decoded) and checked; ValueError when it is not
    a PNG, JPEG or TIFF image or is absurdly large. Close it when done."""
    try:
        image = Image.open(path, formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ValueError("not a readable image: not a PNG, JPEG or TIFF file") from exc
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's errors for a damaged header
        raise ValueError(f"not a readable image: {exc}") from exc
    try:
        _check_size(image)
    except ValueError:
        image.close()
        raise
    return image


def frame_count(image: Image.Image) -> int:
    """Frames in the image (pages of a TIFF)."""
    try:
        return max(1, int(getattr(image, "n_frames", 1)))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"not a readable image: {exc}") from exc


def frame_image(image: Image.Image, *, index: int) -> Image.Image:
    """Frame `index` upright, on white where transparent, in grayscale: what OCR reads."""
    try:
        image.seek(index)
        _check_size(image)
        frame = ImageOps.exif_transpose(image)
        if frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info:
            # Black text on a transparent background would turn black on black.
            frame = frame.convert("RGBA")
            frame = Image.alpha_composite(Image.new("RGBA", frame.size, "white"), frame)
        return frame.convert("L")
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image too large ({exc})") from exc
    except (OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"not a readable image: frame {index + 1}: {exc}") from exc


def frame_dpi(image: Image.Image) -> int | None:
    """The resolution the file declares, when it is plausible (Tesseract guesses otherwise)."""
    dpi = image.info.get("dpi")
    try:
        value = round(float(dpi[0]))
    except (TypeError, ValueError, IndexError):
        return None
    return value if 50 <= value <= 2400 else None


def _render(image: Image.Image, lock: threading.Lock, *, index: int) -> Rendered:
    # One Image object, one file position: the OCR threads take turns seeking it.
    with lock:
        return Rendered(frame_image(image, index=index), 1.0, dpi=frame_dpi(image))


def read_image(path: Path, *, limits: ReadLimits, ocr: OcrEngine | None) -> Extraction:
    """The image's text by OCR, one page segment per frame; ValueError when it is not an image,
    too large, or no OCR is installed."""
    with open_image(path) as image:
        total = frame_count(image)
        frames = min(total, MAX_FRAMES)
        if ocr is None:
            raise ValueError(
                "an image: reading it needs OCR; install Tesseract: "
                f"{install_hint(limits.ocr_language)}"
            )
        lock = threading.Lock()
        jobs = [
            PageImage(index + 1, functools.partial(_render, image, lock, index=index))
            for index in range(frames)
        ]
        result = recognise_pages(jobs, engine=ocr, limits=limits)
    notes = list(result.notes)
    if total > frames:
        notes.append(f"frames {frames + 1}–{total} not read (at most {MAX_FRAMES} are)")
    texts = {number: page.text for number, page in result.pages.items() if page.text.strip()}
    text, segments, cut = join_pages(texts, ocr_pages=set(texts), max_chars=limits.max_chars)
    if not segments and notes:
        raise ValueError("no text recognised: " + "; ".join(notes[:3]))
    return Extraction(text=text, segments=segments, notes=(*notes, *cut))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from index.ocr import find_ocr

    read = read_image(Path(sys.argv[1]), limits=ReadLimits(), ocr=find_ocr(language="eng"))
    for segment in read.segments:
        sys.stdout.write(f"--- frame {segment.number}\n{read.text[segment.start : segment.end]}\n")
    sys.stdout.write("".join(f"note: {note}\n" for note in read.notes))
