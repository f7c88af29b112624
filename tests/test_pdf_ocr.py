"""PDF pages and offsets, OCR of scanned pages and images, the OCR cache, the page viewer.

    python -m pytest -q tests/test_pdf_ocr.py

Every document is made here (tests/scan_fixture.py); OCR tests need Debian's tesseract-ocr and
tesseract-ocr-eng and are skipped without them.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image

from index.extraction import ReadLimits, locate
from index.formats import pdf as pdf_reader
from index.formats.images import read_image
from index.formats.pdf import page_text, pdf_reader_version, read_pdf
from index.ocr import find_ocr, install_hint, ocr_status
from index.page_view import page_count, render_page
from tests.pdf_fixture import make_pdf
from tests.scan_fixture import build_pdf, encrypted_pdf, font, image_pdf, text_image

ENGINE = find_ocr(language="eng")
needs_ocr = pytest.mark.skipif(ENGINE is None, reason="tesseract-ocr / tesseract-ocr-eng missing")

TEXT_PAGES = [
    ["The first page introduces the survey.", "It was carried out in spring."],
    ["The river bridge was closed for repairs in June.", "Engineers found cracks in two pillars."],
    ["The third page lists the office hours.", "Monday to Friday, nine to five."],
]
SCAN_PAGES = [
    ["The committee approved the annual budget", "on the twelfth of March."],
    ["Volunteers planted eighteen hundred oak trees", "along the northern trail."],
    ["Office hours are Monday to Friday,", "from nine until half past five."],
]
# Amber drawn over white and over black text (see index.page_view.HIGHLIGHT).
MIN_AMBER = 60


@pytest.fixture
def limits(tmp_path) -> ReadLimits:
    return ReadLimits(ocr_cache_dir=str(tmp_path / "ocr-cache"))


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def amber_box(png: bytes) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the highlight's pixels, None when there are none."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    ys, xs = np.nonzero(pixels[..., 0] - pixels[..., 2] > MIN_AMBER)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


# (a) text layer: one soft page segment per page, exact offsets


def test_text_pdf_page_segments_and_offsets(tmp_path, limits):
    path = write(tmp_path, "report.pdf", build_pdf(TEXT_PAGES, title="Survey report"))
    got = read_pdf(path, limits=limits, ocr=None)
    assert got.title == "Survey report" and got.notes == ()
    assert [(s.kind, s.number, s.hard, s.ocr) for s in got.segments] == [
        ("page", n, False, False) for n in (1, 2, 3)
    ]
    for segment, lines in zip(got.segments, TEXT_PAGES, strict=True):
        # pdfium ends a line with "\r\n": written " \n" so lengths (and offsets) stay equal.
        assert got.text[segment.start : segment.end] == " \n".join(lines)
    assert got.text == "\n\n".join(" \n".join(lines) for lines in TEXT_PAGES)
    start = got.text.index("Engineers found cracks")
    assert locate(got.text, got.segments, start, start + 30).locator == "p. 2"
    across = got.text.index("pillars.")
    assert locate(got.text, got.segments, across, across + 20).locator == "pp. 2–3"


def test_page_text_has_one_character_per_pdfium_character(tmp_path):
    path = write(tmp_path, "report.pdf", build_pdf(TEXT_PAGES))
    with pdf_reader.PDFIUM_LOCK:
        document = pdf_reader.open_pdf(path)
        try:
            for index in range(len(document)):
                textpage = document[index].get_textpage()
                text = page_text(textpage)
                assert len(text) == textpage.count_chars()
                first = text.index("The")
                assert textpage.get_text_range(first, 3) == "The"
        finally:
            document.close()


class _FakeTextPage:
    def __init__(self, text: str) -> None:
        self.text = text

    def count_chars(self) -> int:
        return len(self.text)

    def get_text_range(self) -> str:
        return self.text


def test_page_text_keeps_lengths_for_line_breaks_hyphens_and_controls():
    # "\ufffe" is pdfium's end-of-line hyphen (the word continues on the next line).
    raw = "man\ufffeagement\r\nnext\rline\x00end\x02x\ttab"
    text = page_text(_FakeTextPage(raw))
    assert text == "man\u00adagement \nnext line end\u00adx\ttab"
    assert len(text) == len(raw)


def test_page_kind_tells_text_from_garbled_and_blank():
    assert pdf_reader.page_kind("Enough letters for a text layer.", None) == pdf_reader.TEXT
    # Glyphs without a character map come out as private-use or replacement characters.
    assert pdf_reader.page_kind("\ue000\ue001" * 8 + " ab", None) == pdf_reader.GARBLED
    assert pdf_reader.page_kind("\ufffd" * 12, None) == pdf_reader.GARBLED


def test_reader_version_names_library_and_ocr():
    assert pdf_reader_version(None).startswith("pdf-2 pypdfium2-")
    assert pdf_reader_version(None).endswith("ocr=none")
    if ENGINE is not None:
        assert pdf_reader_version(ENGINE).endswith("ocr=" + ENGINE.version.replace(" ", "/"))
        assert ENGINE.version.startswith("tesseract-") and ENGINE.version.endswith(" eng")


# (b) scanned pages: OCR, page by page


@needs_ocr
def test_scanned_pdf_ocr_finds_each_sentence_on_its_page(tmp_path, limits):
    images = [text_image(lines) for lines in SCAN_PAGES]
    path = write(tmp_path, "scan.pdf", image_pdf(images))
    got = read_pdf(path, limits=limits, ocr=ENGINE)
    assert [(s.number, s.ocr) for s in got.segments] == [(1, True), (2, True), (3, True)]
    start = got.text.index("Volunteers planted eighteen hundred oak trees")
    where = locate(got.text, got.segments, start, start + 40)
    assert (where.locator, where.page, where.ocr) == ("p. 2", 2, True)
    page_two = got.segments[1]
    assert "northern trail" in got.text[page_two.start : page_two.end]


@needs_ocr
def test_one_slow_page_is_skipped_and_the_others_kept(tmp_path, limits, monkeypatch):
    images = [text_image(lines) for lines in SCAN_PAGES]
    images[1] = text_image([*SCAN_PAGES[1], "A third line makes this page taller."])
    # Drawn at 300 dpi from 150 dpi pages: page 2 is the only one this tall.
    tall = 2 * max(images[0].height, images[2].height) + 20
    path = write(tmp_path, "scan.pdf", image_pdf(images))
    recognise = type(ENGINE).recognise

    def limited(self, image, *, seconds, dpi=None):
        return recognise(self, image, seconds=0.001 if image.height > tall else seconds, dpi=dpi)

    monkeypatch.setattr(type(ENGINE), "recognise", limited)
    got = read_pdf(path, limits=limits, ocr=ENGINE)
    assert [s.number for s in got.segments] == [1, 3]
    assert len(got.notes) == 1 and got.notes[0].startswith("page 2: OCR took longer than")


# (c) the OCR cache


@needs_ocr
def test_second_read_comes_from_the_cache_without_tesseract(tmp_path, limits, monkeypatch):
    path = write(tmp_path, "scan.pdf", image_pdf([text_image(lines) for lines in SCAN_PAGES[:2]]))
    calls = []
    run = subprocess.run

    def counting(command, *args, **kwargs):
        calls.append(command[0])
        return run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    first = read_pdf(path, limits=limits, ocr=ENGINE)
    assert len(calls) == 2
    second = read_pdf(path, limits=limits, ocr=ENGINE)
    assert len(calls) == 2, "tesseract ran again for unchanged pages"
    assert (second.text, second.segments) == (first.text, first.segments)
    entries = sorted((tmp_path / "ocr-cache").glob("*/*.json"))
    assert len(entries) == 2
    record = json.loads(entries[0].read_text(encoding="utf-8"))
    assert record["engine"] == ENGINE.version and record["text"] in first.text
    for start, end, left, top, right, bottom in record["words"]:
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
        assert record["text"][start:end].strip() == record["text"][start:end] != ""


# (d) no OCR installed: scanned pages noted, the text pages still read


def test_without_ocr_scanned_page_is_noted_and_text_pages_read(tmp_path, limits):
    pages = [TEXT_PAGES[0], text_image(SCAN_PAGES[1]), TEXT_PAGES[2]]
    path = write(tmp_path, "mixed.pdf", build_pdf(pages))
    got = read_pdf(path, limits=limits, ocr=None)
    assert [s.number for s in got.segments] == [1, 3]
    assert "The first page introduces the survey." in got.text
    assert got.notes == (
        "page 2: scanned page (no text layer) skipped; install Tesseract to read it: "
        "apt-get install tesseract-ocr tesseract-ocr-eng",
    )


def test_without_ocr_a_wholly_scanned_pdf_says_what_to_install(tmp_path, limits):
    path = write(tmp_path, "scan.pdf", image_pdf([text_image(lines) for lines in SCAN_PAGES]))
    with pytest.raises(ValueError, match=r"pages 1–3: scanned pages .*tesseract-ocr-eng"):
        read_pdf(path, limits=limits, ocr=None)
    buffer = io.BytesIO()
    text_image(SCAN_PAGES[0]).save(buffer, format="PNG")
    with pytest.raises(ValueError, match="apt-get install tesseract-ocr tesseract-ocr-eng"):
        read_image(write(tmp_path, "page.png", buffer.getvalue()), limits=limits, ocr=None)


@needs_ocr
def test_mixed_pdf_with_ocr_marks_only_the_scanned_page(tmp_path, limits):
    pages = [TEXT_PAGES[0], text_image(SCAN_PAGES[1]), TEXT_PAGES[2]]
    got = read_pdf(write(tmp_path, "mixed.pdf", build_pdf(pages)), limits=limits, ocr=ENGINE)
    assert [(s.number, s.ocr) for s in got.segments] == [(1, False), (2, True), (3, False)]
    start = got.text.index("northern trail")
    assert locate(got.text, got.segments, start, start + 10).ocr


def test_find_ocr_without_tesseract_or_language_returns_none(monkeypatch):
    assert find_ocr(language="xx_none") is None
    assert "tesseract-ocr-xx-none" in ocr_status(language="xx_none")
    assert find_ocr(language="eng; rm -rf") is None
    monkeypatch.setattr("index.ocr.shutil.which", lambda name: None)
    assert find_ocr(language="eng") is None
    assert "apt-get install tesseract-ocr tesseract-ocr-eng" in ocr_status(language="eng")
    assert install_hint("deu+chi_sim") == (
        "apt-get install tesseract-ocr tesseract-ocr-deu tesseract-ocr-chi-sim"
    )


# images


@needs_ocr
def test_multipage_tiff_gives_one_ocr_page_per_frame(tmp_path, limits):
    frames = [text_image(lines).convert("1") for lines in SCAN_PAGES[:2]]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:], dpi=(150, 150))
    got = read_image(write(tmp_path, "fax.tiff", buffer.getvalue()), limits=limits, ocr=ENGINE)
    assert [(s.number, s.ocr) for s in got.segments] == [(1, True), (2, True)]
    start = got.text.index("Volunteers")
    assert locate(got.text, got.segments, start, start + 10).locator == "p. 2"


@needs_ocr
def test_transparent_png_is_read_on_white(tmp_path, limits):
    ink = text_image(SCAN_PAGES[0])
    rgba = Image.new("RGBA", ink.size, (0, 0, 0, 0))
    rgba.putalpha(ink.point(lambda v: 255 - v))  # black text, transparent background
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    got = read_image(write(tmp_path, "clip.png", buffer.getvalue()), limits=limits, ocr=ENGINE)
    assert "committee approved the annual budget" in got.text


# (e) the page viewer


def test_render_page_marks_the_cited_characters_on_a_text_page(tmp_path, limits):
    path = write(tmp_path, "report.pdf", build_pdf(TEXT_PAGES))
    got = read_pdf(path, limits=limits, ocr=None)
    page = got.segments[1]
    start = got.text.index("Engineers found cracks")
    png = render_page(
        path,
        page=2,
        highlights=[(start, start + 22)],
        page_start=page.start,
        scale=1.5,
        ocr_cache_dir=limits.ocr_cache_dir,
        ocr_version=None,
    )
    assert png.startswith(b"\x89PNG")
    # Line 2 of the page: x from 72 pt, baseline 88 pt below the top; 1.5 px per point.
    x0, y0, x1, y1 = amber_box(png)
    assert 100 <= x0 <= 112 and 112 <= y0 <= 124 and 128 <= y1 <= 142
    assert 200 <= x1 <= 300  # "Engineers found cracks" in 12 pt Helvetica, not the whole line
    assert (
        amber_box(
            render_page(
                path, page=1, highlights=[(start, start + 22)], page_start=got.segments[0].start
            )
        )
        is None
    )


def test_render_page_follows_page_rotation(tmp_path, limits):
    path = write(tmp_path, "turned.pdf", build_pdf(TEXT_PAGES[:1], rotate=90))
    got = read_pdf(path, limits=limits, ocr=None)
    start = got.text.index("The first")
    png = render_page(path, page=1, highlights=[(start, start + 9)], page_start=0, scale=1.0)
    picture = Image.open(io.BytesIO(png))
    assert picture.size == (792, 612)
    x0, y0, x1, y1 = amber_box(png)
    assert y1 - y0 > x1 - x0, "the first words run down a page turned by 90 degrees"


@needs_ocr
def test_render_page_marks_the_cited_words_on_an_ocr_page(tmp_path, limits):
    images = [text_image(lines) for lines in SCAN_PAGES]
    path = write(tmp_path, "scan.pdf", build_pdf(images))
    got = read_pdf(path, limits=limits, ocr=ENGINE)
    page = got.segments[1]
    start = got.text.index("eighteen hundred")
    png = render_page(
        path,
        page=2,
        highlights=[(start, start + 16)],
        page_start=page.start,
        scale=1.5,
        ocr_cache_dir=limits.ocr_cache_dir,
        ocr_version=ENGINE.version,
    )
    # Where the words were drawn: image pixels scaled to 612 pt of page width, 1.5 px each.
    line = SCAN_PAGES[1][0]
    face = font(34)
    factor = 612 * 1.5 / images[1].width
    left = (50 + face.getlength(line[: line.index("eighteen")])) * factor
    right = (50 + face.getlength(line[: line.index("hundred") + 7])) * factor
    x0, y0, x1, y1 = amber_box(png)
    assert abs(x0 - left) < 12 and abs(x1 - right) < 12
    assert 30 * factor - 12 < y0 and y1 < (30 + 34 * 1.3) * factor + 12
    # No cached boxes (another engine version): the page is shown, unmarked.
    plain = render_page(
        path,
        page=2,
        highlights=[(start, start + 16)],
        page_start=page.start,
        ocr_cache_dir=limits.ocr_cache_dir,
        ocr_version="tesseract-0 eng",
    )
    assert plain.startswith(b"\x89PNG") and amber_box(plain) is None


@needs_ocr
def test_render_page_of_an_image_file(tmp_path, limits):
    image = text_image(SCAN_PAGES[0])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path = write(tmp_path, "note.png", buffer.getvalue())
    got = read_image(path, limits=limits, ocr=ENGINE)
    start = got.text.index("budget")
    png = render_page(
        path,
        page=1,
        highlights=[(start, start + 6)],
        page_start=0,
        ocr_cache_dir=limits.ocr_cache_dir,
        ocr_version=ENGINE.version,
    )
    x0, _, x1, _ = amber_box(png)
    line = SCAN_PAGES[0][0]
    left = 50 + font(34).getlength(line[: line.index("budget")])
    assert abs(x0 - left) < 10 and x1 > x0
    assert page_count(path) == 1


# (f) bad input: ValueError, with the reason


def _bad_pdfs() -> dict[str, bytes]:
    good = make_pdf("A report that is cut short.")
    return {
        "truncated": good[: len(good) // 2],
        "random": b"%PDF-1.7\n" + bytes(range(256)) * 20,
        "header only": b"%PDF-1.7",
        "locked": encrypted_pdf(good, user_password="secret-pw"),
        "no header": b"plain text, not a PDF",
    }


@pytest.mark.parametrize("kind", sorted(_bad_pdfs()))
def test_bad_pdfs_raise_value_error_only(tmp_path, limits, kind):
    path = write(tmp_path, "bad.pdf", _bad_pdfs()[kind])
    with pytest.raises(ValueError) as caught:
        read_pdf(path, limits=limits, ocr=ENGINE)
    if kind == "locked":
        assert str(caught.value) == "encrypted PDF (a password is needed to open it)"
    if kind == "no header":
        assert "not a PDF" in str(caught.value)
    for call in (
        lambda: page_count(path),
        lambda: render_page(path, page=1, highlights=[], page_start=0),
    ):
        with pytest.raises(ValueError):
            call()


def test_encrypted_pdf_with_empty_password_is_read(tmp_path, limits):
    data = encrypted_pdf(build_pdf(TEXT_PAGES[:1]), user_password="")
    got = read_pdf(write(tmp_path, "open.pdf", data), limits=limits, ocr=None)
    assert got.text.startswith("The first page introduces the survey.")


def test_damaged_page_tree_is_a_value_error(tmp_path, limits):
    looped = make_pdf("x").replace(b"/Kids [3 0 R]", b"/Kids [2 0 R]")
    with pytest.raises(ValueError, match="page 1: could not be read"):
        read_pdf(write(tmp_path, "loop.pdf", looped), limits=limits, ocr=None)


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("fake.png", b"this is not an image at all", "not a readable image"),
        ("cut.png", png_header(64, 64)[:20], "not a readable image"),
        ("huge.png", png_header(100_000, 100_000), "image too large"),
        ("wide.tiff", b"", "not a readable image"),
    ],
)
def test_bad_images_raise_value_error_only(tmp_path, limits, name, data, reason):
    path = write(tmp_path, name, data)
    with pytest.raises(ValueError, match=reason):
        read_image(path, limits=limits, ocr=ENGINE)
    with pytest.raises(ValueError):
        render_page(path, page=1, highlights=[], page_start=0)


def test_render_page_rejects_bad_page_numbers_and_scales(tmp_path):
    path = write(tmp_path, "report.pdf", build_pdf(TEXT_PAGES))
    assert page_count(path) == 3
    for page in (0, 4, -1, True, "2"):
        with pytest.raises(ValueError, match="out of range"):
            render_page(path, page=page, highlights=[], page_start=0)
    with pytest.raises(ValueError, match="scale"):
        render_page(path, page=1, highlights=[], page_start=0, scale=100)
    with pytest.raises(ValueError):
        page_count(tmp_path / "missing.pdf")


def test_text_is_cut_at_max_chars_with_a_note(tmp_path):
    path = write(tmp_path, "report.pdf", build_pdf(TEXT_PAGES))
    got = read_pdf(path, limits=ReadLimits(max_chars=100), ocr=None)
    assert len(got.text) == 100 and got.segments[-1].end == 100
    assert any("cut at 100 characters" in note for note in got.notes)


@needs_ocr
def test_forgetting_a_scan_clears_its_pages_from_the_ocr_cache(tmp_path, limits):
    from pathlib import Path

    from index.page_view import forget_ocr_pages

    path = write(tmp_path, "scan.pdf", build_pdf([text_image(lines) for lines in SCAN_PAGES]))
    read_pdf(path, limits=limits, ocr=ENGINE)
    cache = Path(limits.ocr_cache_dir)
    cached = sorted(cache.rglob("*.json"))
    assert len(cached) == len(SCAN_PAGES)
    gone = forget_ocr_pages(path, [2], cache_dir=cache, version=ENGINE.version)
    assert gone == 1 and len(sorted(cache.rglob("*.json"))) == len(SCAN_PAGES) - 1
    rest = range(1, len(SCAN_PAGES) + 1)
    assert forget_ocr_pages(path, rest, cache_dir=cache, version=ENGINE.version) == 2
    assert not list(cache.rglob("*.json"))
    # Another engine's version names other entries; a page past the end is ignored.
    assert forget_ocr_pages(path, [1, 99], cache_dir=cache, version="tesseract-0") == 0
