"""Adding and removing documents in the corpus folder, safely (used by the chat's upload panel).

    python -m index.corpus_files corpus/ some/file.pdf

Names are sanitised (no separators, no "..", no hidden or reserved names), types are checked by
content as well as by extension, sizes are limited, and files land only inside the corpus.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from pathlib import Path

from index.loaders import looks_binary

ALLOWED_SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf")
MAX_NAME_BYTES = 200  # well under the 255-byte limit of common file systems, with room to spare
_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}


def sanitize_filename(name: str) -> str:
    """A safe file name for the corpus folder, or ValueError saying why there is none."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("file name is empty")
    if "\x00" in name:
        raise ValueError("file name contains a NUL character")
    base = re.split(r"[\\/]", name.strip())[-1]  # drop any directory part, POSIX or Windows
    base = unicodedata.normalize("NFKC", base)
    base = re.sub(r"[^\w.\- ()]+", "_", base).strip(" .")
    if not base or base in (".", "..") or set(base) <= {".", "_"}:
        raise ValueError(f"file name {name!r} has no usable characters")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        raise ValueError(
            f"file name {name!r} has no extension (allowed: {', '.join(ALLOWED_SUFFIXES)})"
        )
    # Windows ignores what follows the first dot and trailing spaces: "CON .txt", "nul.tar.md".
    if stem.split(".")[0].strip().lower() in _RESERVED:
        raise ValueError(f"file name {name!r} is a reserved device name")
    if f".{suffix.lower()}" not in ALLOWED_SUFFIXES:
        raise ValueError(
            f"unsupported file type .{suffix} (allowed: {', '.join(ALLOWED_SUFFIXES)})"
        )
    if len(base.encode("utf-8")) > MAX_NAME_BYTES:
        # Shorten the stem, not the extension (cutting the whole name used to drop ".txt"),
        # and count bytes: 200 accented letters are 400 bytes, over the usual 255-byte limit.
        room = MAX_NAME_BYTES - len(suffix.encode("utf-8")) - 1
        stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(" .")
        base = f"{stem}.{suffix}"
    return base


def check_content(name: str, data: bytes) -> None:
    """Raise ValueError when the bytes do not match the extension (a PDF must be a PDF...)."""
    suffix = Path(name).suffix.lower()
    if not data.strip():
        raise ValueError(f"{name} is empty")
    if suffix == ".pdf":
        if not data.startswith(b"%PDF"):
            raise ValueError(f"{name} is not a PDF (no %PDF header)")
        return
    if data.startswith(b"%PDF"):
        raise ValueError(f"{name} is a PDF renamed to {suffix}")
    if looks_binary(data):
        raise ValueError(f"{name} is binary, not text")


def add_document(corpus_dir: Path, name: str, data: bytes, *, max_bytes: int) -> Path:
    """Write an uploaded document into the corpus folder; returns its path."""
    corpus_dir = Path(corpus_dir)
    safe = sanitize_filename(name)
    if len(data) > max_bytes:
        raise ValueError(
            f"{safe} is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit"
        )
    check_content(safe, data)
    target = (corpus_dir / safe).resolve()
    if target.parent != corpus_dir.resolve():
        raise ValueError(f"{name!r} would be stored outside the corpus folder")
    tmp = target.with_name(f".{safe}.upload")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def remove_document(corpus_dir: Path, source: str) -> None:
    """Delete a document (given by its corpus-relative path) from the corpus folder."""
    corpus_dir = Path(corpus_dir).resolve()
    target = (corpus_dir / source).resolve()
    if not target.is_relative_to(corpus_dir) or target == corpus_dir:
        raise ValueError(f"{source!r} is not inside the corpus folder")
    if not target.is_file():
        raise ValueError(f"{source!r} is not in the corpus")
    target.unlink()


if __name__ == "__main__":
    path = Path(sys.argv[2])
    written = add_document(Path(sys.argv[1]), path.name, path.read_bytes(), max_bytes=20_000_000)
    sys.stdout.write(f"saved {written}\n")
