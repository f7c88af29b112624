"""Zip safety, upload content checks and exact-offset text building, shared by the format readers.

    python -m index.formats.containers report.docx scan.png    # the upload content check

`check_zip` refuses a zip-based file (docx, pptx, xlsx, odt, epub) that is corrupt, encrypted,
an OLE2 container (a password-protected or legacy Office file), a zip bomb, or missing the parts
its format needs, before any library decompresses it. `check_upload_content` is the upload
panel's content check for the new types. `TextBuilder` joins blocks of text once (no quadratic
string building), keeps segment offsets exact, removes NULs and stops at `max_chars`.
"""

from __future__ import annotations

import functools
import io
import logging
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import ParamSpec, TypeVar

from index.extraction import Attachment, Extraction, ReadLimits, Segment
from index.loaders import looks_binary

logger = logging.getLogger(__name__)

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
IMAGE_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
# Parts each zip-based format cannot be read without.
REQUIRED_PARTS = {
    ".docx": ("word/document.xml",),
    ".pptx": ("ppt/presentation.xml",),
    ".xlsx": ("xl/workbook.xml",),
    ".odt": ("content.xml", "mimetype"),
    ".epub": ("META-INF/container.xml",),
}
_FORMAT_NAMES = {
    ".docx": "a Word document (.docx)",
    ".pptx": "a PowerPoint presentation (.pptx)",
    ".xlsx": "an Excel workbook (.xlsx)",
    ".odt": "an OpenDocument text (.odt)",
    ".epub": "an e-book (.epub)",
}
# Real Office XML compresses 5-30x; deflate tops out near 1000x, which only padding reaches.
MAX_RATIO = 250
RATIO_CHECK_BYTES = 16 * 1024 * 1024
# A central directory of millions of entries costs memory before any check could run.
MAX_ZIP_ENTRIES = 50_000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
TEXT_LIKE_SUFFIXES = (".csv", ".eml", ".mbox")
CHECKED_SUFFIXES = (*REQUIRED_PARTS, ".rtf", *TEXT_LIKE_SUFFIXES, *IMAGE_SUFFIXES)

P = ParamSpec("P")
R = TypeVar("R")


class ReadError(ValueError):
    """A file this reader cannot read, with a reason a person can act on."""


def library_version(package: str) -> str:
    """The installed version of a library, or 'missing' (part of the reader fingerprints)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def guarded(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a reader so that any failure surfaces as a ReadError naming the kind of file."""

    def decorate(reader: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(reader)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return reader(*args, **kwargs)
            except ReadError:
                raise
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise ReadError(f"this {what} is damaged (corrupt or truncated: {exc})") from exc
            except RecursionError as exc:
                raise ReadError(f"{what} is nested too deeply to read") from exc
            except Exception as exc:  # libraries raise anything on a broken file
                detail = f"{type(exc).__name__}: {exc}"[:200]
                raise ReadError(f"could not read this {what} ({detail})") from exc

        return wrapper

    return decorate


def _head(source: Path | bytes, size: int = 8) -> bytes:
    if isinstance(source, bytes):
        return source[:size]
    try:
        with open(source, "rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise ReadError(f"cannot open the file: {exc.strerror or exc}") from exc


def _entry_count(source: Path | bytes) -> int | None:
    """Entries the end-of-central-directory record declares (None when it cannot be found)."""
    if isinstance(source, bytes):
        tail = source[-(65_535 + 22) :]
    else:
        try:
            with open(source, "rb") as handle:
                handle.seek(0, io.SEEK_END)
                handle.seek(max(0, handle.tell() - 65_535 - 22))
                tail = handle.read()
        except OSError as exc:
            raise ReadError(f"cannot read the file: {exc.strerror or exc}") from exc
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return None
    count = struct.unpack_from("<H", tail, at + 10)[0]
    if count != 0xFFFF:
        return count
    # 0xFFFF: the real count is in the zip64 end record, just before this one.
    at64 = tail.rfind(b"PK\x06\x06", 0, at)
    return struct.unpack_from("<Q", tail, at64 + 32)[0] if 0 <= at64 <= len(tail) - 40 else None


def _open_zip(source: Path | bytes, fmt: str) -> zipfile.ZipFile:
    head = _head(source)
    if head.startswith(OLE2_MAGIC):
        raise ReadError(
            "password-protected or legacy Office file: save it as .docx/.xlsx/.pptx without "
            "a password"
        )
    if not head.startswith(ZIP_MAGIC):
        raise ReadError(f"not {_FORMAT_NAMES.get(fmt, 'a zip-based file')}: no zip header")
    count = _entry_count(source)
    if count is not None and count > MAX_ZIP_ENTRIES:
        raise ReadError(f"the file holds {count:,} parts (more than {MAX_ZIP_ENTRIES:,})")
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as exc:
        raise ReadError(f"corrupt or truncated file ({exc})") from exc


def _check_sizes(infos: list[zipfile.ZipInfo], limits: ReadLimits) -> None:
    # zipfile never inflates a member past its declared size (it fails the CRC instead), so
    # the declared sizes bound what any library can be made to decompress.
    total = sum(info.file_size for info in infos)
    if total > limits.max_unzipped_bytes:
        raise ReadError(
            f"expands to {total:,} bytes, more than the {limits.max_unzipped_bytes:,} allowed "
            "(a zip bomb or an unusually large file)"
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_CHECK_BYTES and ratio > MAX_RATIO:
            raise ReadError(
                f"part {info.filename} expands {ratio:,.0f} times (a zip bomb): not read"
            )


def _looks_like(names: set[str]) -> str:
    for fmt, parts in REQUIRED_PARTS.items():
        if all(part in names for part in parts):
            return fmt
    return ""


def _check_parts(archive: zipfile.ZipFile, names: set[str], fmt: str) -> None:
    missing = [part for part in REQUIRED_PARTS.get(fmt, ()) if part not in names]
    if missing:
        other = _looks_like(names)
        if other and other != fmt:
            raise ReadError(f"this is {_FORMAT_NAMES[other]} named {fmt}: rename it to {other}")
        raise ReadError(f"not {_FORMAT_NAMES[fmt]}: {', '.join(missing)} is missing")
    if fmt == ".odt":
        mimetype = archive.read("mimetype")[:100].decode("ascii", "replace").strip()
        if not mimetype.startswith("application/vnd.oasis.opendocument.text"):
            raise ReadError(f"not an OpenDocument text (its type is {mimetype or 'empty'})")


def check_zip(source: Path | bytes, *, expected: str, limits: ReadLimits) -> None:
    """Raise ReadError unless source is a sound, unencrypted, bounded zip of the expected format."""
    fmt = expected.lower() if expected.startswith(".") else f".{expected.lower()}"
    with _open_zip(source, fmt) as archive:
        infos = archive.infolist()
        if any(info.flag_bits & 0x1 for info in infos):
            raise ReadError("encrypted zip: remove the password and save it again")
        _check_sizes(infos, limits)
        try:
            _check_parts(archive, {info.filename for info in infos}, fmt)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
            raise ReadError(f"corrupt or truncated file ({exc})") from exc


def _check_text_like(name: str, suffix: str, data: bytes) -> None:
    if data.startswith((b"%PDF", *ZIP_MAGIC, OLE2_MAGIC)):
        raise ReadError(f"{name} is a PDF, Office or zip file, not {suffix}")
    if looks_binary(data):
        raise ReadError(f"{name} is binary, not {suffix} text")
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if suffix == ".mbox" and not head.startswith(b"From "):
        raise ReadError(f"{name} is not a mailbox: it must start with a 'From ' line")
    if suffix == ".eml" and b":" not in head.split(b"\n", 1)[0]:
        raise ReadError(f"{name} is not an e-mail message: it must start with headers")


def check_upload_content(name: str, data: bytes) -> None:
    """Raise ValueError when an upload's bytes do not match its type (zips, RTF, mail, images)."""
    suffix = Path(name).suffix.lower()
    if not data.strip():
        raise ReadError(f"{name} is empty")
    if suffix in REQUIRED_PARTS:
        try:
            check_zip(data, expected=suffix, limits=ReadLimits())
        except ReadError as exc:
            raise ReadError(f"{name}: {exc}") from exc
    elif suffix == ".rtf":
        if not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{\\rtf"):
            raise ReadError(f"{name} is not an RTF document (no {{\\rtf header)")
    elif suffix in TEXT_LIKE_SUFFIXES:
        _check_text_like(name, suffix, data)
    elif suffix in IMAGE_SUFFIXES:
        if not any(data.startswith(magic) for magic in IMAGE_MAGIC):
            raise ReadError(f"{name} is not a PNG, JPEG or TIFF image")
    else:
        raise ReadError(f"no content check for {suffix or 'files without an extension'}")


class TextBuilder:
    """Blocks of text joined once, with segments whose offsets point exactly into the result."""

    def __init__(self, *, max_chars: int) -> None:
        self.max_chars = max_chars
        self.full = False
        self.notes: list[str] = []
        self.segments: list[Segment] = []
        self._parts: list[str] = []
        self._length = 0
        self._open: tuple[str, int, str, bool] | None = None
        self._open_start: int | None = None

    @property
    def length(self) -> int:
        """Characters written so far."""
        return self._length

    def add(self, text: str, *, sep: str = "\n\n") -> bool:
        """Append a block (sep before it unless it is the first); False once the cap is reached."""
        if self.full:
            return False
        text = text.replace("\x00", "")
        if not text:
            return True
        if self._length:
            self._write(sep)
            if self.full:
                return False
        if self._open is not None and self._open_start is None:
            self._open_start = self._length
        self._write(text)
        return not self.full

    def _write(self, piece: str) -> None:
        room = self.max_chars - self._length
        if len(piece) > room:
            piece = piece[: max(room, 0)]
            self.full = True
            self.notes.append(f"text cut at {self.max_chars:,} characters; the rest not read")
        self._parts.append(piece)
        self._length += len(piece)

    def begin(self, kind: str, *, number: int = 0, label: str = "", hard: bool = False) -> None:
        """Start a segment at the next block written (closing the one that is open)."""
        self.end()
        self._open = (kind, number, label, hard)
        self._open_start = None

    def end(self) -> None:
        """Close the open segment; a segment that received no text is dropped."""
        if self._open is not None and self._open_start is not None:
            kind, number, label, hard = self._open
            self.segments.append(Segment(self._open_start, self._length, kind, number, label, hard))
        self._open = None
        self._open_start = None

    def note(self, text: str) -> None:
        """Record a note about a part that was left out."""
        self.notes.append(text)

    def build(self, *, title: str = "", attachments: tuple[Attachment, ...] = ()) -> Extraction:
        """The Extraction of everything written."""
        self.end()
        return Extraction(
            text="".join(self._parts),
            title=" ".join(title.split())[:300],
            segments=tuple(self.segments),
            notes=tuple(self.notes),
            attachments=attachments,
        )


def one_line(text: str) -> str:
    """text with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for arg in sys.argv[1:]:
        try:
            check_upload_content(arg, Path(arg).read_bytes())
            logger.info("%s: ok", arg)
        except (ValueError, OSError) as exc:
            logger.info("%s: %s", arg, exc)
