"""The embedded engine: immutable segments of FAISS vectors, BM25 postings and SQLite chunks.

    python -m index.segments data/index/segments/<name>      # rows, dense kind, vocabulary

A build writes its new and changed chunks as one new segment and marks the rows it replaces
as deleted (a per-generation row list), so one changed document writes one small segment,
never the whole index. Segments are never modified; small or mostly deleted ones are merged
into the new one (`plan_merge`). A segment folder:

    segment.json        rows, dense index kind and parameters, analyzer (human-readable)
    ids.npy             int64 chunk id of each row
    dense.faiss         unit vectors, row i = chunk i: IndexFlatIP, or IndexHNSWFlat when large
    postings/terms.json the segment's terms; column j of the postings is terms[j]
    postings/*.npy      indptr (per term), rows and tf (per posting), lengths (terms per row)
    chunks.sqlite3      the chunks' text and metadata, read by id (never held all in memory)

BM25 is scored at query time from raw term frequencies with the index's own statistics
(`index.analyzer.TermStats`), so scores are comparable across segments and equal to what
one bm25s index over the same chunks gives (Lucene variant, k1 1.2, b 0.75).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from index.analyzer import ANALYZER, TermStats, analyzer
from index.durable import file_sha256, fsync_path, fsync_tree
from index.store import Candidates, Chunk, StoreState, check_vectors, no_candidates

logger = logging.getLogger(__name__)

SEGMENTS_FOLDER = "segments"
DELETED_FOLDER = "deleted"
K1, B = 1.2, 0.75
# A filtered dense search over at most this many rows runs exactly in numpy (1.5 MB per 1,000
# rows of 384 floats is copied); above, FAISS searches its own index through an ID selector.
EXACT_SUBSET_ROWS = 20_000
# More segments than this and the smallest are merged into the next build's segment: each
# segment costs a FAISS search and a SQLite lookup per question.
MAX_SEGMENTS = 8
# A segment with at least this share of its rows deleted is rewritten (merged) by the next build.
MAX_DELETED_SHARE = 0.3
_CHUNK_COLUMNS = (
    "id", "source", "title", "date", "start", "end", "text", "search_text", "sentences",
    "n_tokens", "page", "locator", "ocr",
)  # fmt: skip


def _single_thread_search() -> None:
    """One OpenMP thread for FAISS: a single-query search on 2 cores took 36 ms with two
    spinning threads and 9 ms with one (100k x 384 flat, bench/scale.py)."""
    import faiss

    faiss.omp_set_num_threads(1)


def stored_vectors(index) -> np.ndarray:
    """The float32 vectors inside a flat or HNSW-flat index, as a view (no copy).

    The view does not keep the index alive: hold the index as long as the view is used.
    """
    import faiss

    storage = index if isinstance(index, faiss.IndexFlat) else faiss.downcast_index(index.storage)
    if storage.ntotal == 0:
        return np.zeros((0, storage.d), dtype=np.float32)
    flat = faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * storage.d)
    return flat.reshape(storage.ntotal, storage.d)


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (ids, scores) of parallel arrays, best first (ties: the lower id first)."""
    if len(ids) == 0 or k <= 0:
        return no_candidates()
    if k < len(ids):  # every row tied with the k-th stays a candidate: ties go by id
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        top = np.flatnonzero(scores >= kth)
    else:
        top = np.arange(len(ids))
    top = top[np.lexsort((ids[top], -scores[top]))][:k]
    return ids[top].astype(np.int64), scores[top].astype(np.float32)


def bm25_norm(lengths: np.ndarray, average_length: float) -> np.ndarray:
    """Lucene BM25's length normalisation per row: k1 * (1 - b + b * length / average)."""
    return K1 * (1 - B + B * np.asarray(lengths, dtype=np.float32) / average_length)


def _best_of_all(scores: np.ndarray, k: int) -> np.ndarray:
    """The rows scoring > 0 at or above the k-th best score (ties kept: ids decide later).

    At 1M chunks: a partition of all scores and one comparison took 2.4 ms, where listing the
    non-zero rows first (flatnonzero on floats) took 5 ms alone.
    """
    n = len(scores)
    kth = np.partition(scores, n - k)[n - k] if n > k else 0.0
    return np.flatnonzero(scores >= kth) if kth > 0 else np.flatnonzero(scores > 0)


def _best_rows(rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Of the given rows, those scoring > 0 at or above the k-th best score among them."""
    found = scores[rows]
    rows = rows[found > 0]
    found = found[found > 0]
    if len(rows) <= k:
        return rows
    kth = np.partition(found, len(found) - k)[len(found) - k]
    return rows[found >= kth]


def dense_index(vectors: np.ndarray, dense: dict):
    """A FAISS index of the kind the settings name, holding vectors (row i = vector i)."""
    import faiss

    dimension = vectors.shape[1]
    if dense["type"] == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif dense["type"] == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, dense["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = dense["ef_search"]
    else:
        raise ValueError(f"unknown dense index type {dense['type']!r} (flat or hnsw)")
    if len(vectors):
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        index.add(vectors)
        _single_thread_search()
    return index


class Postings:
    """A segment's inverted index: per term, the rows holding it and how often."""

    def __init__(self, terms: list[str], indptr, rows, tf, lengths) -> None:
        self.terms = terms
        self.column = {t: j for j, t in enumerate(terms)}
        self.indptr, self.rows, self.tf, self.lengths = indptr, rows, tf, lengths

    @classmethod
    def build(cls, token_lists: Iterable[list[str]]) -> Postings:
        """Postings of the rows' terms (row i = the i-th token list)."""
        column: dict[str, int] = {}
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        cols: list[int] = []
        rows: list[int] = []
        tfs: list[int] = []
        lengths: list[int] = []
        for row, tokens in enumerate(token_lists):
            lengths.append(len(tokens))
            counts: dict[str, int] = {}
            for t in tokens:
                counts[t] = counts.get(t, 0) + 1
            for term, n in counts.items():
                cols.append(column.setdefault(term, len(column)))
                rows.append(row)
                tfs.append(n)
            if len(cols) >= _POSTINGS_BLOCK:  # Python ints cost 36 bytes: flush to arrays
                parts.append(_posting_arrays(cols, rows, tfs))
                cols, rows, tfs = [], [], []
        parts.append(_posting_arrays(cols, rows, tfs))
        all_cols = np.concatenate([p[0] for p in parts])
        order = np.argsort(all_cols, kind="stable")
        indptr = np.zeros(len(column) + 1, dtype=np.int64)
        np.cumsum(np.bincount(all_cols, minlength=len(column)), out=indptr[1:])
        return cls(
            list(column),
            indptr,
            np.concatenate([p[1] for p in parts])[order],
            np.concatenate([p[2] for p in parts])[order],
            np.array(lengths, dtype=np.int32),
        )

    def save(self, folder: Path) -> list[str]:
        """Write terms.json and the arrays into folder/postings."""
        path = folder / "postings"
        path.mkdir()
        (path / "terms.json").write_text(json.dumps(self.terms, ensure_ascii=False))
        for name in ("indptr", "rows", "tf", "lengths"):
            np.save(path / f"{name}.npy", getattr(self, name))
        return [f"postings/{n}" for n in ("terms.json", *(f"{a}.npy" for a in _ARRAYS))]

    @classmethod
    def load(cls, folder: Path) -> Postings:
        """Read what save wrote (arrays memory-mapped)."""
        path = folder / "postings"
        terms = json.loads((path / "terms.json").read_text(encoding="utf-8"))
        arrays = [np.load(path / f"{a}.npy", mmap_mode="r") for a in _ARRAYS]
        return cls(terms, *arrays)

    def scores(self, idf: dict[str, float], norm: np.ndarray) -> np.ndarray | None:
        """BM25 of every row for the weighted terms (None when no term occurs here)."""
        rows, parts = [], []
        for term, weight in idf.items():
            j = self.column.get(term)
            if j is None:
                continue
            lo, hi = int(self.indptr[j]), int(self.indptr[j + 1])
            term_rows, tf = self.rows[lo:hi], self.tf[lo:hi]
            rows.append(term_rows)
            parts.append(weight * tf / (tf + norm[term_rows]))
        if not rows:
            return None
        # One pass over the rows for all terms: a bincount per term cost a full array each.
        return np.bincount(np.concatenate(rows), np.concatenate(parts), minlength=len(norm))


_ARRAYS = ("indptr", "rows", "tf", "lengths")
# Postings gathered in Python lists before they become arrays (bounds a build's memory).
_POSTINGS_BLOCK = 1_000_000


def _posting_arrays(cols: list[int], rows: list[int], tfs: list[int]):
    return (
        np.array(cols, dtype=np.int64),
        np.array(rows, dtype=np.int32),
        np.array(tfs, dtype=np.float32),
    )


class Segment:
    """One immutable segment, loaded: ids, FAISS index, postings and its chunk database."""

    def __init__(self, folder: Path, *, ef_search: int | None = None, mmap: bool = False) -> None:
        import faiss

        self.folder = Path(folder)
        self.name = self.folder.name
        self.meta = json.loads((self.folder / "segment.json").read_text(encoding="utf-8"))
        if self.meta.get("analyzer") != ANALYZER:
            raise ValueError(f"segment {self.name} uses analyzer {self.meta.get('analyzer')!r}")
        self.ids = np.load(self.folder / "ids.npy")
        # A build maps the vectors instead of reading them (it touches a few rows); readers
        # hold them in memory, safe from a file damaged in place under a running process.
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        self.dense = faiss.read_index(str(self.folder / "dense.faiss"), flags)
        if isinstance(self.dense, faiss.IndexHNSW) and ef_search:
            self.dense.hnsw.efSearch = ef_search
        _single_thread_search()
        self.matrix = stored_vectors(self.dense)
        self.postings = Postings.load(self.folder)
        rows = int(self.meta["rows"])
        if not (len(self.ids) == self.dense.ntotal == len(self.postings.lengths) == rows):
            raise ValueError(
                f"segment {self.name} parts disagree: {len(self.ids)} ids, "
                f"{self.dense.ntotal} vectors, {len(self.postings.lengths)} postings rows"
            )
        self.order = np.argsort(self.ids, kind="stable")
        self.sorted_ids = self.ids[self.order]
        self._db_path = self.folder / "chunks.sqlite3"
        self._local = threading.local()
        self.live = np.ones(rows, dtype=bool)
        self.all_live = True
        self.live_count = rows

    @property
    def rows(self) -> int:
        """Rows written (live or deleted)."""
        return len(self.ids)

    def db(self) -> sqlite3.Connection:
        """This thread's read-only connection to the chunk database."""
        connection = getattr(self._local, "db", None)
        if connection is None:
            uri = f"file:{self._db_path}?mode=ro&immutable=1"
            connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._local.db = connection
        return connection

    def set_deleted(self, rows: np.ndarray) -> None:
        """Mark rows as deleted (the generation's list for this segment)."""
        self.live = np.ones(self.rows, dtype=bool)
        self.live[np.asarray(rows, dtype=np.int64)] = False
        self.all_live = bool(self.live.all())
        self.live_count = int(self.live.sum())
        self.dead_rows = np.flatnonzero(~self.live)

    def rows_of(
        self, ids: np.ndarray, live: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ids, rows) of the ids live in this segment (by live, else its own)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self.sorted_ids) or not len(ids):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        where = np.minimum(np.searchsorted(self.sorted_ids, ids), len(self.sorted_ids) - 1)
        found = self.sorted_ids[where] == ids
        rows = self.order[where[found]]
        keep = (self.live if live is None else live)[rows]
        return np.flatnonzero(found)[keep], rows[keep]

    def source_ids(self, sources: Sequence[str]) -> np.ndarray:
        """Ids of this segment's rows (live or not) from these documents."""
        found: list[int] = []
        for start in range(0, len(sources), 500):
            batch = list(sources[start : start + 500])
            marks = ",".join("?" * len(batch))
            query = f"SELECT id FROM chunks WHERE source IN ({marks})"
            found += [r[0] for r in self.db().execute(query, batch)]
        return np.array(found, dtype=np.int64)

    def chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        """The chunks with these ids (live here), by id."""
        out: dict[int, Chunk] = {}
        wanted = [int(i) for i in ids]
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            marks = ",".join("?" * len(batch))
            query = f"SELECT {','.join(_CHUNK_COLUMNS)} FROM chunks WHERE id IN ({marks})"
            for row in self.db().execute(query, batch):
                out[row[0]] = _chunk_of(row)
        return out

    def dense_search(self, query: np.ndarray, k: int, allowed_rows: np.ndarray | None):
        """Top-k (chunk ids, scores) of the live rows (or of allowed_rows, which are live)."""
        import faiss

        if allowed_rows is not None:
            if len(allowed_rows) <= EXACT_SUBSET_ROWS:
                return top_k(self.ids[allowed_rows], self.matrix[allowed_rows] @ query, k)
            selector = faiss.IDSelectorBatch(allowed_rows)
        elif self.all_live:
            selector = None
        else:
            dead = np.flatnonzero(~self.live).astype(np.int64)
            batch = faiss.IDSelectorBatch(dead)
            selector = faiss.IDSelectorNot(batch)
        count = self.live_count if allowed_rows is None else len(allowed_rows)
        if count == 0:
            return no_candidates()
        if selector is None:
            params = None
        elif isinstance(self.dense, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=self.dense.hnsw.efSearch)
        else:
            params = faiss.SearchParameters(sel=selector)
        scores, rows = self.dense.search(query.reshape(1, -1), min(k, count), params=params)
        keep = rows[0] >= 0
        return self.ids[rows[0][keep]], scores[0][keep]

    def norm(self, average_length: float) -> np.ndarray:
        """BM25 length normalisation per row for the index's average length (cached)."""
        cached = getattr(self, "_norm", None)
        if cached is None or cached[0] != average_length:
            cached = (average_length, bm25_norm(self.postings.lengths, average_length))
            self._norm = cached
        return cached[1]


def _chunk_of(row: tuple) -> Chunk:
    data = dict(zip(_CHUNK_COLUMNS, row, strict=True))
    data["sentences"] = tuple(tuple(s) for s in json.loads(data["sentences"]))
    data["ocr"] = bool(data["ocr"])
    return Chunk(**data)


class EmbeddedStore:
    """The live segments of one generation behind the `ChunkStore` interface."""

    engine = "faiss"

    def __init__(self, segments: list[Segment], stats: TermStats) -> None:
        self.segments = segments
        self.stats = stats
        self._size = int(sum(int(s.live.sum()) for s in segments))
        self._last: tuple | None = None

    @classmethod
    def open(
        cls,
        index_dir: Path,
        generation: Path,
        entry: dict,
        stats: TermStats,
        *,
        ef_search: int | None = None,
        mmap: bool = False,
    ) -> EmbeddedStore:
        """The segments a generation's manifest entry lists, with its deleted rows applied."""
        segments = []
        for item in entry.get("segments", []):
            folder = Path(index_dir) / SEGMENTS_FOLDER / item["name"]
            segment = Segment(folder, ef_search=ef_search, mmap=mmap)
            deleted = generation / DELETED_FOLDER / f"{item['name']}.npy"
            if deleted.is_file():
                segment.set_deleted(np.load(deleted))
            segments.append(segment)
        return cls(segments, stats)

    @property
    def size(self) -> int:
        """Live chunks."""
        return self._size

    def search(
        self,
        *,
        text: str | None,
        vector: np.ndarray | None,
        k: int,
        allowed: np.ndarray | None = None,
    ) -> Candidates:
        """Top-k dense and lexical candidates over every segment, each side best first."""
        dense, lexical = no_candidates(), no_candidates()
        if k <= 0 or self._size == 0:
            return Candidates(*dense, *lexical)
        allowed_rows = self._allowed_rows(allowed)
        if vector is not None:
            query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
            ids, scores = self._merge(
                s.dense_search(query, k, allowed_rows[i] if allowed_rows else None)
                for i, s in enumerate(self.segments)
            )
            dense = (ids[:k], scores[:k])
        if text is not None:
            lexical = self._lexical_top(text, k, allowed_rows)
        return Candidates(dense[0], dense[1], lexical[0], lexical[1])

    def _allowed_rows(self, allowed: np.ndarray | None) -> list[np.ndarray] | None:
        if allowed is None:
            return None
        return [np.sort(s.rows_of(allowed)[1]) for s in self.segments]

    @staticmethod
    def _merge(parts: Iterable) -> tuple[np.ndarray, np.ndarray]:
        """Per-segment (chunk ids, scores) merged, best first (ties: the lower id first)."""
        ids, scores = [], []
        for part_ids, part_scores in parts:
            ids.append(np.asarray(part_ids, dtype=np.int64))
            scores.append(np.asarray(part_scores, dtype=np.float32))
        if not ids:
            return no_candidates()
        all_ids, all_scores = np.concatenate(ids), np.concatenate(scores)
        order = np.lexsort((all_ids, -all_scores))
        return all_ids[order], all_scores[order]

    def _segment_scores(self, text: str) -> list[np.ndarray | None]:
        # search() then lexical_scores() for one question would score twice: keep the last
        # query's arrays (one tuple, replaced whole, so threads cannot mix them).
        cached = self._last
        if cached is not None and cached[0] == text:
            return cached[1]
        idf = self.stats.idf(analyzer().tokenize(text))
        scores = []
        for segment in self.segments:
            row_scores = segment.postings.scores(idf, segment.norm(self.stats.average_length))
            if row_scores is not None and not segment.all_live:
                row_scores[segment.dead_rows] = 0.0
            scores.append(row_scores)
        self._last = (text, scores)
        return scores

    def _lexical_top(self, text: str, k: int, allowed_rows) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for i, (segment, scores) in enumerate(
            zip(self.segments, self._segment_scores(text), strict=True)
        ):
            if scores is None:
                continue
            rows = (
                _best_of_all(scores, k) if allowed_rows is None
                else _best_rows(allowed_rows[i], scores, k)
            )  # fmt: skip
            # Ties are broken by chunk id, as across segments: results never depend on
            # how the chunks happen to be split into segments.
            parts.append(top_k(segment.ids[rows], scores[rows].astype(np.float32), k))
        ids, scores = self._merge(parts)
        return ids[:k], scores[:k]

    def _locate(self, ids: Sequence[int]) -> list[tuple[Segment, np.ndarray, np.ndarray]]:
        """Per segment: (segment, positions in ids, rows) of the ids live there."""
        ids = np.asarray(ids, dtype=np.int64)
        return [(s, *s.rows_of(ids)) for s in self.segments]

    def fetch(self, ids: Sequence[int]) -> list[Chunk]:
        """The chunks with these ids, in the order asked; ids no longer stored are left out."""
        found: dict[int, Chunk] = {}
        ids = [int(i) for i in ids]
        for segment, positions, _ in self._locate(ids):
            if len(positions):
                found.update(segment.chunks([ids[p] for p in positions]))
        return [found[i] for i in ids if i in found]

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored unit vectors of these ids; KeyError for an id that is not live."""
        ids = np.asarray(ids, dtype=np.int64)
        dimension = self.segments[0].matrix.shape[1] if self.segments else 0
        out = np.zeros((len(ids), dimension), dtype=np.float32)
        done = np.zeros(len(ids), dtype=bool)
        for segment, positions, rows in self._locate(ids):
            out[positions] = segment.matrix[rows]
            done[positions] = True
        if not done.all():
            raise KeyError(f"chunk id {int(ids[~done][0])} is not in the index")
        return out

    def lexical_scores(self, text: str, ids: Sequence[int]) -> np.ndarray:
        """BM25 of text for each id (0 where no term matches or the id is gone)."""
        out = np.zeros(len(ids), dtype=np.float32)
        scores = self._segment_scores(text)
        for (_, positions, rows), row_scores in zip(self._locate(ids), scores, strict=True):
            if row_scores is not None and len(positions):
                out[positions] = row_scores[rows]
        return out

    def ids_of(self, sources: Iterable[str]) -> np.ndarray:
        """Sorted chunk ids of these documents."""
        wanted = sorted(set(sources))
        found = [ids[s.rows_of(ids)[0]] for s in self.segments for ids in [s.source_ids(wanted)]]
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)

    def close(self) -> None:
        """Nothing to release: connections close with their threads."""


def new_segment_name() -> str:
    """A unique, sortable segment folder name."""
    return f"seg-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}"


def write_segment(
    index_dir: Path,
    chunks: Sequence[Chunk],
    vectors: np.ndarray,
    *,
    dense: dict,
    token_lists: Sequence[list[str]] | None = None,
) -> dict:
    """Write chunks as a new segment (staged, fsynced, renamed); its manifest entry."""
    vectors = check_vectors(chunks, vectors)
    name = new_segment_name()
    root = Path(index_dir) / SEGMENTS_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{name}.tmp"
    staging.mkdir()
    try:
        tokens = token_lists or (analyzer().tokenize(c.search_text) for c in chunks)
        np.save(staging / "ids.npy", np.array([c.id for c in chunks], dtype=np.int64))
        import faiss

        faiss.write_index(dense_index(vectors, dense), str(staging / "dense.faiss"))
        written = ["ids.npy", "dense.faiss", *Postings.build(tokens).save(staging)]
        _write_chunk_db(staging / "chunks.sqlite3", chunks)
        written.append("chunks.sqlite3")
        meta = {"rows": len(chunks), "dense": dense, "analyzer": ANALYZER}
        (staging / "segment.json").write_text(json.dumps(meta, indent=2))
        written.append("segment.json")
        files = {
            n: {"bytes": (staging / n).stat().st_size, "sha256": file_sha256(staging / n)}
            for n in written
        }
        fsync_tree(staging)
        os.rename(staging, root / name)
        fsync_path(root)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"name": name, "rows": len(chunks), "files": files}


def _write_chunk_db(path: Path, chunks: Sequence[Chunk]) -> None:
    connection = sqlite3.connect(path)
    try:
        columns = ", ".join(_CHUNK_COLUMNS)
        connection.execute(
            "CREATE TABLE chunks (id INTEGER PRIMARY KEY, source TEXT NOT NULL, title TEXT, "
            "date TEXT, start INTEGER, end INTEGER, text TEXT, search_text TEXT, sentences TEXT, "
            "n_tokens INTEGER, page INTEGER, locator TEXT, ocr INTEGER)"
        )
        marks = ", ".join("?" * len(_CHUNK_COLUMNS))
        connection.executemany(
            f"INSERT INTO chunks ({columns}) VALUES ({marks})",
            (
                (
                    c.id, c.source, c.title, c.date, c.start, c.end, c.text, c.search_text,
                    json.dumps(c.sentences), c.n_tokens, c.page, c.locator, int(c.ocr),
                )
                for c in chunks
            ),
        )  # fmt: skip
        connection.execute("CREATE INDEX chunks_source ON chunks (source)")
        connection.commit()
    finally:
        connection.close()


# A build checks the sizes of a segment's files, and the checksums of those up to this size:
# hashing a 1M-chunk segment (4.4 GB) took most of a one-document update. Readers (the chat,
# `rag ask`) and builds after a failed load check every checksum; merges check theirs.
QUICK_CHECKSUM_BYTES = 64 * 1024 * 1024


def verify_segment(index_dir: Path, item: dict, *, quick: bool = False) -> str | None:
    """What is wrong with a listed segment's files (missing, size, checksum), or None."""
    folder = Path(index_dir) / SEGMENTS_FOLDER / item["name"]
    for name, expected in item.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            return f"segment file {path} is missing"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return (
                f"segment file {path} does not match its checksum "
                f"({size} bytes, {expected['bytes']} recorded: truncated or edited)"
            )
        if quick and size > QUICK_CHECKSUM_BYTES:
            continue
        if file_sha256(path) != expected["sha256"]:
            return f"segment file {path} does not match its checksum (edited or damaged)"
    return None


class SegmentDamaged(ValueError):
    """A segment to merge does not match its checksum."""


class EmbeddedWriter:
    """One build's writes: rows to delete in live segments, and the new segment's chunks."""

    def __init__(
        self, index_dir: Path, previous: EmbeddedStore | None, *, entry: dict, dense_for
    ) -> None:
        self.index_dir = Path(index_dir)
        self.segments = list(previous.segments) if previous else []
        self.items = {i["name"]: i for i in entry.get("segments", [])} if previous else {}
        self.live = {s.name: s.live.copy() for s in self.segments}
        self.dense_for = dense_for
        self.pending: dict[int, tuple[Chunk, np.ndarray]] = {}

    def delete_documents(self, sources: Sequence[str]) -> None:
        """Mark every live row of these documents deleted, and drop pending ones."""
        wanted = sorted(set(sources))
        if not wanted:
            return
        for segment in self.segments:
            live = self.live[segment.name]
            live[segment.rows_of(segment.source_ids(wanted), live)[1]] = False
        self.pending = {i: p for i, p in self.pending.items() if p[0].source not in wanted}

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Add chunks (replacing live rows with the same ids) to the new segment."""
        vectors = check_vectors(chunks, vectors)
        ids = np.array([c.id for c in chunks], dtype=np.int64)
        for segment in self.segments:
            live = self.live[segment.name]
            live[segment.rows_of(ids, live)[1]] = False
        for chunk, vector in zip(chunks, vectors, strict=True):
            self.pending[chunk.id] = (chunk, vector)

    def finish(self, generation: Path) -> StoreState:
        """Write the new segment (with merged ones) and the deleted-row lists of the rest."""
        merged = plan_merge(
            [(s.name, s.rows, int(self.live[s.name].sum())) for s in self.segments],
            new_rows=len(self.pending),
        )
        for name in merged:  # their rows are copied: damage must not move into a new segment
            problem = verify_segment(self.index_dir, self.items[name])
            if problem:
                raise SegmentDamaged(f"{problem}; run: python -m rag index --rebuild")
        kept = [s for s in self.segments if s.name not in merged and self.live[s.name].any()]
        chunks = [p[0] for p in self.pending.values()]
        vectors = [p[1] for p in self.pending.values()]
        for segment in self.segments:
            if segment.name in merged:
                rows = np.flatnonzero(self.live[segment.name])
                found = segment.chunks(segment.ids[rows].tolist())
                chunks += [found[int(i)] for i in segment.ids[rows]]
                vectors += list(segment.matrix[rows])
        items = [self.items[s.name] for s in kept]
        if chunks:
            matrix = np.stack(vectors).astype(np.float32)
            dense = self.dense_for(len(chunks))
            items.append(write_segment(self.index_dir, chunks, matrix, dense=dense))
        files = []
        for segment in kept:
            dead = np.flatnonzero(~self.live[segment.name]).astype(np.int64)
            if len(dead):
                (generation / DELETED_FOLDER).mkdir(exist_ok=True)
                name = f"{DELETED_FOLDER}/{segment.name}.npy"
                np.save(generation / name, dead)
                files.append(name)
        size = len(chunks) + sum(int(self.live[s.name].sum()) for s in kept)
        return StoreState({"engine": "faiss", "segments": items, "chunks": size}, files)


def plan_merge(segments: Sequence[tuple[str, int, int]], *, new_rows: int) -> set[str]:
    """Names of segments (name, rows, live rows) to fold into the build's new segment.

    Mostly deleted ones always; then, while there would be more than MAX_SEGMENTS, the
    smallest (by live rows) go, so a long run of small updates keeps a few segments.
    """
    merged = {
        name for name, rows, live in segments if rows and 1 - live / rows >= MAX_DELETED_SHARE
    }
    rest = sorted((live, name) for name, rows, live in segments if name not in merged and live)
    count = len(rest) + (1 if new_rows or merged else 0)
    while count > MAX_SEGMENTS and rest:
        merged.add(rest.pop(0)[1])
        count = len(rest) + 1
    return merged


def prune_segments(index_dir: Path, *, keep: set[str]) -> int:
    """Delete segment folders not in keep (and staging leftovers); returns how many."""
    import shutil

    root = Path(index_dir) / SEGMENTS_FOLDER
    if not root.is_dir():
        return 0
    removed = 0
    for path in root.iterdir():
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


if __name__ == "__main__":
    segment = Segment(Path(sys.argv[1]))
    sys.stdout.write(
        f"{segment.name}: {segment.rows} rows, dense {segment.meta['dense']['type']}, "
        f"{len(segment.postings.terms)} terms\n"
    )
