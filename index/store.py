"""The store interface every engine implements, and the stable chunk ids it is keyed by.

    python -m index.store data/index          # the live index's engine, size and documents

`rag/`, `ui/` and `eval/` reach chunks only through `ChunkStore` (read) and builds only through
`StoreWriter` (write). Two engines implement them: `index.segments` (FAISS + a segmented BM25
+ SQLite, embedded, the default) and `index.milvus_store` (Milvus: Lite, standalone or
cluster). The engine is chosen by `IndexConfig.store` and recorded in the manifest.

A chunk id is derived from the chunk itself (document, span, text), so it stays the same when
other documents change, and a chunk that did not change keeps its id (and its vector).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

# Ids are positive int64 (FAISS and Milvus both key by int64): 63 bits of a BLAKE2b digest.
_ID_MASK = (1 << 63) - 1


def chunk_id(source: str, start: int, end: int, text: str, search_text: str) -> int:
    """The stable id of a chunk: a 63-bit hash of its document, span and texts (never 0)."""
    payload = "\x1f".join((source, str(start), str(end), text, search_text)).encode("utf-8")
    value = int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "big") & _ID_MASK
    return value or 1


@dataclass(frozen=True)
class Chunk:
    """A passage: `text` is exactly the document text between start and end."""

    id: int
    source: str
    title: str
    date: str
    start: int
    end: int
    text: str
    search_text: str
    sentences: tuple[tuple[int, int], ...]
    n_tokens: int
    # Where the passage starts in its source: PDF page or slide (1-based, else None), a short
    # human locator ("p. 4", "slide 3", "sheet Budget, rows 12–18", "§ Audit", "lines 40–52"),
    # and whether its text was recognised by OCR.
    page: int | None = None
    locator: str = ""
    ocr: bool = False

    def to_json(self) -> str:
        """One line of chunks.jsonl."""
        # vars() not asdict(): asdict deep-copies every field (a tenth of indexing overhead).
        return json.dumps(vars(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Chunk:
        """Parse one line of chunks.jsonl."""
        data = json.loads(line)
        data["sentences"] = tuple(tuple(s) for s in data["sentences"])
        return cls(**data)


class Candidates(NamedTuple):
    """One candidate search: each engine's ids (best first) with its own scores."""

    dense_ids: np.ndarray  # int64 chunk ids
    dense_scores: np.ndarray  # float32 inner products of unit vectors (cosine)
    lexical_ids: np.ndarray
    lexical_scores: np.ndarray  # float32 BM25 (engine's own; > 0)


def no_candidates() -> tuple[np.ndarray, np.ndarray]:
    """An empty (ids, scores) pair."""
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class TermCounts:
    """Per chunk: terms in its searchable text, occurrences of a query's terms, distinct ones.

    What the keyword-stuffing check needs (rag/injection.py), without fetching the text.
    """

    lengths: np.ndarray
    occurrences: np.ndarray
    distinct: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> TermCounts:
        """Counts of n chunks, all zero (filled in place by an engine)."""
        return cls(*(np.zeros(n, dtype=np.int64) for _ in range(3)))

    @classmethod
    def of_terms(cls, term_lists: Sequence[Sequence[str]], query: str) -> TermCounts:
        """Counts of texts tokenized by the index's analyzer (engines without postings)."""
        from index.analyzer import analyzer

        terms = set(analyzer().tokenize(query))
        counts = cls.zeros(len(term_lists))
        for i, tokens in enumerate(term_lists):
            hits = Counter(t for t in tokens if t in terms)
            counts.lengths[i] = len(tokens)
            counts.occurrences[i] = sum(hits.values())
            counts.distinct[i] = len(hits)
        return counts


class ChunkStore(Protocol):
    """Read side of an engine: candidate search and chunks by id."""

    engine: str

    @property
    def size(self) -> int:
        """Live chunks."""
        ...

    def cheap_size(self) -> int:
        """Live chunks, counted without loading anything (equals size when the store is sound)."""
        ...

    def load(self) -> None:
        """Get ready to answer now (Milvus loads its collection; otherwise the first read does)."""
        ...

    def search(
        self,
        *,
        text: str | None,
        vector: np.ndarray | None,
        k: int,
        allowed: np.ndarray | None = None,
    ) -> Candidates:
        """Top-k dense candidates for vector and top-k lexical ones for text, in one call.

        At most one request per engine; either side is empty when its query is None. allowed
        (sorted int64 chunk ids) limits both searches to those chunks.
        """
        ...

    def fetch(self, ids: Sequence[int]) -> list[Chunk]:
        """The chunks with these ids, in the order asked; ids no longer stored are left out."""
        ...

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored unit vectors of these ids, rows in the order asked; KeyError for unknown ids."""
        ...

    def lexical_scores(self, text: str, ids: Sequence[int]) -> np.ndarray:
        """The engine's BM25 score of text for each id (0 where no term matches)."""
        ...

    def query_term_counts(self, text: str, ids: Sequence[int]) -> TermCounts:
        """Per id: its length in analyzer terms, its occurrences of text's terms, how many."""
        ...

    def ids_of(self, sources: Iterable[str]) -> np.ndarray:
        """Sorted chunk ids of the documents with these sources."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...


class StoreState(NamedTuple):
    """What a finished write leaves: the manifest's "store" entry and files it wrote."""

    manifest: dict
    files: list[str]  # paths relative to the generation folder, checksummed with it


class StoreWriter(Protocol):
    """Write side of an engine, used by one build: deletes, upserts, then finish."""

    def delete_documents(self, sources: Sequence[str]) -> None:
        """Remove every chunk of these documents (idempotent)."""
        ...

    def upsert(
        self,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        *,
        terms: Sequence[list[str]] | None = None,
    ) -> None:
        """Add chunks with their vectors, replacing any chunk with the same id (idempotent).

        terms: each chunk's analyzer terms when the build already has them (an engine that
        keeps its own postings need not tokenize again); engines may ignore them.
        """
        ...

    def finish(self, generation: Path) -> StoreState:
        """Make every write durable; files of the state go under generation (the staging folder)."""
        ...


def check_vectors(chunks: Sequence[Chunk], vectors: np.ndarray) -> np.ndarray:
    """Vectors as contiguous float32 rows, one per chunk, or ValueError."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(chunks):
        raise ValueError(f"{len(chunks)} chunks but vectors of shape {vectors.shape}")
    return vectors


if __name__ == "__main__":
    from index.config import IndexConfig
    from index.corpus_index import CorpusIndex

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "data/index")
    loaded = CorpusIndex.load(IndexConfig(index_dir=folder))
    sys.stdout.write(f"engine {loaded.store.engine}: {loaded.store.size} chunks\n")
    for doc in loaded.documents:
        sys.stdout.write(f"{doc.source}\t{doc.chunks} chunks\n")
