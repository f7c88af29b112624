"""Generate a mixed corpus of every supported type from SQuAD paragraphs, with scanned pages.

    python -m bench.mixed_corpus OUT_DIR [--files 1000] [--scans 8] [--seed 7]

Each file holds a few real paragraphs (SQuAD v1.1 dev, CC BY-SA 4.0), so parsing and
embedding cost what real documents cost. Scanned PDFs and images are rendered with Pillow
(DejaVu Sans when Debian's fonts are there), so OCR sees real glyphs. Nothing is committed:
the ingestion benchmark (bench/ingest.py) generates the corpus each run.
"""

from __future__ import annotations

import argparse
import csv
import json
import mailbox
import random
import sys
import zlib
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

DEFAULT_SQUAD = Path(__file__).resolve().parent.parent.parent / "shared/data/squad-dev-v1.1.json"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
TYPES = (
    "txt", "md", "html", "pdf", "docx", "pptx", "xlsx", "csv", "epub", "eml", "mbox", "odt",
    "rtf",
)  # fmt: skip


def paragraphs(squad: Path) -> list[str]:
    """Every SQuAD dev paragraph, in file order."""
    data = json.loads(squad.read_text(encoding="utf-8"))["data"]
    return [p["context"] for article in data for p in article["paragraphs"]]


def pdf_from_objects(objects: list[bytes]) -> bytes:
    """A PDF from raw object bodies (object 1 is the catalog) with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def _pdf(pages: list[list[str]]) -> bytes:
    """A text-layer PDF: one Helvetica line per entry, pages as given."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    font = 3
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for lines in pages:
        ops = ["BT /F1 10 Tf 50 760 Td 12 TL"]
        for line in lines:
            safe = line.encode("latin-1", "replace").decode("latin-1")
            safe = safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({safe}) Tj T*")
        stream = zlib.compress(("\n".join(ops) + " ET").encode("latin-1"))
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream"
        )
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (content, font)
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        " ".join(f"{k} 0 R" for k in kids).encode(),
        len(kids),
    )
    return pdf_from_objects(objects)


def _wrap(text: str, width: int = 95) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def write_pdf(path: Path, paras: list[str]) -> None:
    """Two paragraphs a page."""
    pages = [sum((_wrap(p) + [""] for p in paras[i : i + 2]), []) for i in range(0, len(paras), 2)]
    path.write_bytes(_pdf(pages))


def write_docx(path: Path, paras: list[str]) -> None:
    """A heading, paragraphs and a small table."""
    import docx

    document = docx.Document()
    document.add_heading(paras[0].split(".")[0][:60], level=1)
    for para in paras:
        document.add_paragraph(para)
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate(table.rows):
        for c, cell in enumerate(row.cells):
            cell.text = f"cell {r}.{c}"
    document.save(path)


def write_pptx(path: Path, paras: list[str]) -> None:
    """One slide per paragraph, with speaker notes."""
    from pptx import Presentation

    deck = Presentation()
    for para in paras:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = para.split(".")[0][:60]
        slide.placeholders[1].text = para
        slide.notes_slide.notes_text_frame.text = "Speaker notes: " + para[:80]
    deck.save(path)


def _rows(paras: list[str]) -> list[list[str]]:
    rows = [["Topic", "Sentence", "Length"]]
    for para in paras:
        for sentence in para.split(". "):
            rows.append([para.split()[0], sentence.strip(), str(len(sentence))])
    return rows


def write_xlsx(path: Path, paras: list[str]) -> None:
    """One sheet of sentence rows."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Facts")
    for row in _rows(paras):
        sheet.append(row)
    book.save(path)


def write_csv(path: Path, paras: list[str]) -> None:
    """Sentence rows with a header."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(_rows(paras))


def write_epub(path: Path, paras: list[str]) -> None:
    """One chapter per paragraph."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier(path.stem)
    book.set_title(path.stem)
    book.set_language("en")
    chapters = []
    for i, para in enumerate(paras, start=1):
        chapter = epub.EpubHtml(title=f"Chapter {i}", file_name=f"c{i}.xhtml", lang="en")
        chapter.content = f"<h1>Chapter {i}</h1><p>{para}</p>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.spine = ["nav", *chapters]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(path), book)


def _message(paras: list[str], n: int) -> EmailMessage:
    message = EmailMessage()
    subject = " ".join(paras[0].split(".")[0].split())[:50]
    message["Subject"] = f"Note {n}: {subject}"
    message["From"] = "alice@example.org"
    message["To"] = "bob@example.org"
    message["Date"] = "Mon, 03 Mar 2025 10:00:00 +0000"
    message.set_content("\n\n".join(paras))
    return message


def write_eml(path: Path, paras: list[str]) -> None:
    """A message with a text attachment."""
    message = _message(paras, 1)
    message.add_attachment(paras[-1].encode(), maintype="text", subtype="plain", filename="a.txt")
    path.write_bytes(message.as_bytes())


def write_mbox(path: Path, paras: list[str]) -> None:
    """One message per paragraph."""
    box = mailbox.mbox(str(path))
    try:
        for i, para in enumerate(paras, start=1):
            box.add(_message([para], i))
    finally:
        box.close()


def write_odt(path: Path, paras: list[str]) -> None:
    """A heading and paragraphs."""
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    document = OpenDocumentText()
    document.text.addElement(H(outlinelevel=1, text=paras[0].split(".")[0][:60]))
    for para in paras:
        document.text.addElement(P(text=para))
    document.save(str(path))


def write_rtf(path: Path, paras: list[str]) -> None:
    """Plain RTF paragraphs (non-ASCII as \\u escapes)."""
    body = "".join(
        "".join(c if ord(c) < 128 else f"\\u{ord(c)}?" for c in p).replace("{", "").replace("}", "")
        + "\\par\n"
        for p in paras
    )
    path.write_text("{\\rtf1\\ansi\\deff0 {\\fonttbl {\\f0 Times;}}\n" + body + "}", "ascii")


def write_text(path: Path, paras: list[str]) -> None:
    """Plain text, Markdown (with a heading) or HTML, by suffix."""
    if path.suffix == ".md":
        path.write_text(f"# {paras[0][:40]}\n\n" + "\n\n".join(paras), encoding="utf-8")
    elif path.suffix == ".html":
        body = "".join(f"<p>{p}</p>" for p in paras)
        path.write_text(f"<html><head><title>{path.stem}</title></head><body>{body}</body></html>")
    else:
        path.write_text("\n\n".join(paras), encoding="utf-8")


WRITERS: dict[str, Callable[[Path, list[str]], None]] = {
    "txt": write_text, "md": write_text, "html": write_text, "pdf": write_pdf,
    "docx": write_docx, "pptx": write_pptx, "xlsx": write_xlsx, "csv": write_csv,
    "epub": write_epub, "eml": write_eml, "mbox": write_mbox, "odt": write_odt, "rtf": write_rtf,
}  # fmt: skip


def scan_image(text: str):
    """A white A4-ish page at 150 dpi with the text drawn in black, as OCR would see a scan."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), 22) if FONT.exists() else ImageFont.load_default(22)
    image = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(image)
    y = 80
    for line in _wrap(text, 80):
        draw.text((80, y), line, fill=0, font=font)
        y += 34
    return image


def write_scans(out: Path, paras: list[str], *, count: int, pages: int) -> int:
    """count image-only PDFs of `pages` pages and count PNG scans; returns OCR pages made."""
    made = 0
    for i in range(count):
        images = [scan_image(paras[(i * pages + j) % len(paras)][:900]) for j in range(pages)]
        images[0].save(out / f"scan-{i:03d}.pdf", save_all=True, append_images=images[1:])
        scan_image(paras[(i + 7) % len(paras)][:900]).save(out / f"photo-{i:03d}.png")
        made += pages + 1
    return made


def generate(out: Path, *, squad: Path, files: int, scans: int, seed: int) -> dict[str, int]:
    """Write the corpus; returns files per type (and 'ocr_pages')."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    pool = paragraphs(squad)
    counts: dict[str, int] = {}
    for i in range(files):
        kind = TYPES[i % len(TYPES)]
        paras = rng.sample(pool, 3)
        WRITERS[kind](out / f"doc-{i:05d}.{kind}", paras)
        counts[kind] = counts.get(kind, 0) + 1
    counts["ocr_pages"] = write_scans(out, pool, count=scans, pages=3)
    return counts


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench.mixed_corpus`."""
    parser = argparse.ArgumentParser(prog="python -m bench.mixed_corpus")
    parser.add_argument("out", type=Path)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--scans", type=int, default=8, help="scanned PDFs (3 pages) and PNGs")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--squad", type=Path, default=DEFAULT_SQUAD)
    args = parser.parse_args(argv)
    counts = generate(
        args.out, squad=args.squad, files=args.files, scans=args.scans, seed=args.seed
    )
    sys.stdout.write(json.dumps(counts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
