"""Test documents for the PDF/OCR readers: multi-page text PDFs, scanned pages, rendered text.

    python -m pytest -q tests/test_pdf_ocr.py

Everything is written from scratch (no PDF library): text pages use Helvetica, scanned pages
are grayscale bitmaps drawn with Pillow and embedded as Flate-compressed image XObjects.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from tests.pdf_fixture import pdf_from_objects

FONT_PATHS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"),
)
# Page size of every generated page, in PDF points (US Letter).
PAGE_W, PAGE_H = 612, 792


def font(size: int) -> ImageFont.FreeTypeFont:
    """A scalable sans-serif font: DejaVu when installed, else Pillow's built-in one."""
    for path in FONT_PATHS:
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def text_image(lines: list[str], *, size: int = 34) -> Image.Image:
    """Lines of black text on white, in grayscale, as a scanner at ~150 dpi would see them."""
    face = font(size)
    width = 100 + int(max(face.getlength(line) for line in lines))
    height = 60 + len(lines) * int(size * 1.6)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((50, 30 + row * int(size * 1.6)), line, fill=0, font=face)
    return image


def _text_stream(lines: list[str]) -> bytes:
    escaped = [s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for s in lines]
    body = " T* ".join(f"({line}) Tj" for line in escaped)
    return f"BT /F1 12 Tf 16 TL 72 720 Td {body} ET".encode("latin-1")


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return (
        b"<< /Length " + str(len(data)).encode() + extra + b" >>\nstream\n" + data + b"\nendstream"
    )


def build_pdf(pages: list[list[str] | Image.Image], *, title: str = "", rotate: int = 0) -> bytes:
    """A PDF whose pages are either lines of text (a text layer) or an image (a scan).

    An image page is drawn over the whole page width, keeping its aspect ratio, at the top;
    rotate sets every page's /Rotate (degrees clockwise, a multiple of 90).
    """
    # 1 catalog, 2 pages, 3 font, 4 info; then per page: page, contents, [image].
    objects: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    info = "(" + title.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"
    objects.append(f"<< /Title {info} /Producer (scan_fixture) >>".encode("latin-1"))
    kids = []
    for page in pages:
        number = len(objects) + 1
        kids.append(f"{number} 0 R")
        if isinstance(page, Image.Image):
            gray = page.convert("L")
            height = PAGE_W * gray.height / gray.width
            draw = f"q {PAGE_W} 0 0 {height:.2f} 0 {PAGE_H - height:.2f} cm /Im1 Do Q".encode()
            image = _stream(
                zlib.compress(gray.tobytes()),
                f" /Type /XObject /Subtype /Image /Width {gray.width} /Height {gray.height} "
                "/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode".encode(),
            )
            resources = f"<< /XObject << /Im1 {number + 2} 0 R >> >>"
        else:
            draw, image, resources = _text_stream(page), b"", "<< /Font << /F1 3 0 R >> >>"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] /Rotate {rotate} "
            f"/Contents {number + 1} 0 R /Resources {resources} >>".encode()
        )
        objects.append(_stream(draw))
        if image:
            objects.append(image)
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode()
    data = pdf_from_objects(objects)
    # pdf_from_objects writes no /Info: add it to the trailer so readers find the title.
    return data.replace(b"/Root 1 0 R >>", b"/Root 1 0 R /Info 4 0 R >>")


def image_pdf(images: list[Image.Image], *, resolution: float = 150.0) -> bytes:
    """An image-only PDF of several pages, written by Pillow (as a scanner's software would)."""
    buffer = io.BytesIO()
    first, *rest = [image.convert("L") for image in images]
    first.save(buffer, format="PDF", save_all=True, append_images=rest, resolution=resolution)
    return buffer.getvalue()


def encrypted_pdf(data: bytes, *, user_password: str) -> bytes:
    """The PDF encrypted with pypdf (RC4-128, needs no cryptography package)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password, "owner-pw", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
