"""Page chrome kept up to date per document: the corpus's table of short-line counts.

    python -m index.chrome corpus/        # the chrome lines of a folder's .txt files

`index.cleaning.find_boilerplate` counts every line of every document to find page chrome
(short one-phrase lines repeated across the corpus). `LineCounts` keeps those counts so that
adding, removing or changing one document updates them without reading the others:

    counts = LineCounts(min_repeats=3, max_words=12)
    counts.add(new_text); counts.subtract(old_text)
    chrome = counts.chrome()              # what find_boilerplate says for the texts counted

Only keys that can ever be chrome are kept (non-empty, at most max_words words). The one
thing find_boilerplate reads beyond the counts is its sentence check on the first example of
a key, which depends on the order of the texts when two documents write the same key
differently ("Coming soon. The US" is two sentences, "coming soon. the us" one). So the
table counts, per key, the documents whose first line with that key is not one sentence, and
a key is chrome only when there are none: the answer of find_boilerplate in every order of
the texts. When no key is written both ways it is exactly find_boilerplate's answer, in any
order; and it never depends on the order in which documents were added.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from index.cleaning import _ISO_DATE, iter_lines, line_key, split_sentences, word_count

FILE_NAME = "lines.json"
_FORMAT = "line-counts"
_VERSION = 1


def _document_lines(text: str, max_words: int) -> tuple[Counter[str], set[str]]:
    """Occurrences of each countable key in text, and the keys whose first line is not one
    sentence (find_boilerplate's example check, on this document's first example)."""
    counts: Counter[str] = Counter()
    multi: set[str] = set()
    rejected: set[str] = set()  # keys that can never be chrome: not counted
    for s, e in iter_lines(text):
        line = text[s:e]
        key = line_key(line)
        if key in counts:
            counts[key] += 1
            continue
        if key in rejected:
            continue
        if not key or word_count(key) > max_words:
            rejected.add(key)
            continue
        counts[key] = 1
        if len(split_sentences(line)) != 1:
            multi.add(key)
    return counts, multi


def keys_in(text: str, keys: set[str] | frozenset[str]) -> set[str]:
    """The line keys of text (iter_lines, line_key: as segment() sees them) that are in keys."""
    if not keys:
        return set()
    return {key for s, e in iter_lines(text) if (key := line_key(text[s:e])) in keys}


class LineCounts:
    """How often each short line occurs in the documents counted, for find_boilerplate's rule."""

    def __init__(self, *, min_repeats: int = 3, max_words: int = 12) -> None:
        if isinstance(min_repeats, bool) or not isinstance(min_repeats, int) or min_repeats < 2:
            raise ValueError(f"min_repeats must be an integer >= 2, got {min_repeats!r}")
        if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 0:
            raise ValueError(f"max_words must be an integer >= 0, got {max_words!r}")
        self.min_repeats = min_repeats
        self.max_words = max_words
        self.documents = 0  # texts added minus texts subtracted
        self.counts: dict[str, int] = {}  # key -> occurrences (every line, as find_boilerplate)
        self.multi: dict[str, int] = {}  # key -> documents whose first such line is not 1 sentence

    @classmethod
    def from_texts(
        cls, texts: Iterable[str], *, min_repeats: int = 3, max_words: int = 12
    ) -> LineCounts:
        """A table with every text of texts added."""
        table = cls(min_repeats=min_repeats, max_words=max_words)
        for text in texts:
            table.add(text)
        return table

    def add(self, text: str) -> None:
        """Count the lines of one document."""
        counts, multi = _document_lines(text, self.max_words)
        for key, n in counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        for key in multi:
            self.multi[key] = self.multi.get(key, 0) + 1
        self.documents += 1

    def subtract(self, text: str) -> None:
        """Uncount the lines of a document counted before; ValueError (no change) if it was not."""
        counts, multi = _document_lines(text, self.max_words)
        short = [k for k, n in counts.items() if self.counts.get(k, 0) < n]
        short += [k for k in multi if self.multi.get(k, 0) < 1]
        if short or self.documents < 1:
            sample = ", ".join(repr(k) for k in sorted(short)[:3])
            raise ValueError(f"subtracting a text that was not counted (lines {sample or 'none'})")
        for key, n in counts.items():
            left = self.counts[key] - n
            if left:
                self.counts[key] = left
            else:
                del self.counts[key]
        for key in multi:
            left = self.multi[key] - 1
            if left:
                self.multi[key] = left
            else:
                del self.multi[key]
        self.documents -= 1

    def chrome(self) -> set[str]:
        """The chrome line keys of the texts counted (find_boilerplate's set; see the module)."""
        return {
            key
            for key, count in self.counts.items()
            if count >= self.min_repeats and key not in self.multi and not _ISO_DATE.fullmatch(key)
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LineCounts):
            return NotImplemented
        return (self.min_repeats, self.max_words, self.documents, self.counts, self.multi) == (
            other.min_repeats, other.max_words, other.documents, other.counts, other.multi,
        )  # fmt: skip

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"LineCounts(min_repeats={self.min_repeats}, max_words={self.max_words}, "
            f"documents={self.documents}, keys={len(self.counts)})"
        )

    def to_json(self) -> dict:
        """The table as lines.json stores it."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "min_repeats": self.min_repeats,
            "max_words": self.max_words,
            "documents": self.documents,
            "counts": dict(sorted(self.counts.items())),
            "multi_sentence_documents": dict(sorted(self.multi.items())),
        }

    def save(self, folder: Path | str) -> str:
        """Write folder/lines.json (via a temporary file, fsynced, then renamed); its name.

        The caller fsyncs the folder to make the rename durable.
        """
        folder = Path(folder)
        path = folder / FILE_NAME
        data = self.to_json()
        try:
            payload = json.dumps(data, ensure_ascii=False, indent=1)
            encoded = payload.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escaped, and read back as it was
            encoded = json.dumps(data, ensure_ascii=True, indent=1).encode("ascii")
        temporary = folder / f".{FILE_NAME}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(encoded + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return FILE_NAME

    @classmethod
    def load(cls, folder: Path | str, *, min_repeats: int = 3, max_words: int = 12) -> LineCounts:
        """Read folder/lines.json; ValueError when it is malformed or its parameters differ.

        A missing file raises FileNotFoundError (an OSError).
        """
        path = Path(folder) / FILE_NAME
        raw = path.read_bytes()
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a JSON line-count table ({exc})") from exc
        return cls.from_json(data, min_repeats=min_repeats, max_words=max_words, where=str(path))

    @classmethod
    def from_json(
        cls, data: object, *, min_repeats: int = 3, max_words: int = 12, where: str = FILE_NAME
    ) -> LineCounts:
        """A table from to_json's dict; ValueError when it is malformed or its parameters differ."""

        def bad(what: str) -> ValueError:
            return ValueError(f"{where}: malformed line-count table: {what}")

        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise bad(f"expected an object with format {_FORMAT!r}")
        if data.get("version") != _VERSION:
            raise bad(f"unsupported version {data.get('version')!r} (expected {_VERSION})")
        for name in ("min_repeats", "max_words", "documents"):
            if not _is_count(data.get(name), minimum=0):
                raise bad(f"{name} must be a non-negative integer, got {data.get(name)!r}")
        stored = (data["min_repeats"], data["max_words"])
        if stored != (min_repeats, max_words):
            raise ValueError(
                f"{where}: counted with min_repeats={stored[0]}, max_words={stored[1]}, but "
                f"min_repeats={min_repeats}, max_words={max_words} were asked for (recount)"
            )
        counts, multi = data.get("counts"), data.get("multi_sentence_documents")
        if not isinstance(counts, dict) or not all(_is_count(n) for n in counts.values()):
            raise bad("counts must map lines to positive integers")
        if not isinstance(multi, dict) or not all(
            _is_count(n) and n <= counts.get(k, 0) for k, n in multi.items()
        ):
            raise bad("multi_sentence_documents must map counted lines to positive integers")
        if any(n > data["documents"] for n in multi.values()):
            raise bad("multi_sentence_documents counts more documents than were counted")
        table = cls(min_repeats=min_repeats, max_words=max_words)
        table.documents = data["documents"]
        table.counts = dict(counts)
        table.multi = dict(multi)
        return table


def _is_count(value: object, *, minimum: int = 1) -> bool:
    """True for an int (not a bool) of at least minimum."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    table = LineCounts()
    for file in sorted(folder.rglob("*.txt")):
        table.add(file.read_text(encoding="utf-8", errors="replace"))
    for key in sorted(table.chrome()):
        sys.stdout.write(f"{table.counts[key]}\t{key}\n")
