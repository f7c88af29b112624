"""Each document's extracted text and segments, compressed, shared by all index generations.

    python -m index.document_store data/index <key>     # prints a stored document's text

Spans index this text: `text[start:end]` is exactly what a citation quotes, for every format.
Files are named by the SHA-256 of their content (`texts/<key>.json.gz`), so an unchanged
document is never written twice and a damaged file is detected on read. A build writes the
texts of new documents before it swaps CURRENT and prunes the ones no kept generation uses.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from index.durable import fsync_files, fsync_path
from index.extraction import Segment

FOLDER = "texts"


@dataclass(frozen=True)
class StoredDocument:
    """A document's text and segments as the index holds them."""

    text: str
    segments: tuple[Segment, ...]


def _payload(text: str, segments: Iterable[Segment]) -> bytes:
    body = {"text": text, "segments": [s.to_json() for s in segments]}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def document_key(text: str, segments: Iterable[Segment]) -> str:
    """The content key under which a document's text is stored."""
    return hashlib.sha256(_payload(text, segments)).hexdigest()


def put_document(index_dir: Path, text: str, segments: Iterable[Segment]) -> str:
    """Store a document's text (once per content) and return its key."""
    return put_documents(index_dir, [(text, tuple(segments))])[0]


def put_documents(index_dir: Path, documents: Sequence[tuple[str, Sequence[Segment]]]) -> list[str]:
    """Store documents' texts (each content once); their keys, in order.

    Every new file is written and flushed before any is renamed into place, so after a
    crash a stored key's file is whole or absent (an existing file is trusted and reused).
    """
    folder = Path(index_dir) / FOLDER
    keys, staged = [], {}
    try:
        for text, segments in documents:
            payload = _payload(text, segments)
            key = hashlib.sha256(payload).hexdigest()
            keys.append(key)
            if key in staged or (folder / f"{key}.json.gz").is_file():
                continue
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{key}.{os.getpid()}.tmp"
            staged[key] = tmp
            # mtime=0: the same text always compresses to the same bytes.
            tmp.write_bytes(gzip.compress(payload, compresslevel=6, mtime=0))
        fsync_files(list(staged.values()))
        for key, tmp in staged.items():
            os.replace(tmp, folder / f"{key}.json.gz")
        if staged:
            fsync_path(folder)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    return keys


def get_document(index_dir: Path, key: str) -> StoredDocument:
    """A stored document; ValueError when it is missing or damaged."""
    if not key or not all(c in "0123456789abcdef" for c in key):
        raise ValueError(f"not a document key: {key!r}")
    path = Path(index_dir) / FOLDER / f"{key}.json.gz"
    try:
        payload = gzip.decompress(path.read_bytes())
    except FileNotFoundError as exc:
        raise ValueError(f"the text of this document is missing from the index ({path})") from exc
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path} is damaged ({exc}); run: python -m rag index --rebuild") from exc
    if hashlib.sha256(payload).hexdigest() != key:
        raise ValueError(f"{path} does not match its checksum; run: python -m rag index --rebuild")
    body = json.loads(payload)
    return StoredDocument(body["text"], tuple(Segment.from_json(s) for s in body["segments"]))


def prune_documents(index_dir: Path, *, keep: set[str]) -> int:
    """Delete stored texts whose key is not in keep (and stale temporary files); returns count."""
    folder = Path(index_dir) / FOLDER
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        key = path.name.split(".")[0] if not path.name.startswith(".") else ""
        if key not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


if __name__ == "__main__":
    stored = get_document(Path(sys.argv[1]), sys.argv[2])
    sys.stdout.write(stored.text + "\n")
