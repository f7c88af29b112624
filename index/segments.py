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
one bm25s index over the same chunks gives (Lucene variant, k1 1.2, b 0.75). The top k are
found by MaxScore (`Postings.top_rows`): the rare terms' lists are read whole, the common
terms' long lists only looked up for the rows that can still reach the top k.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from index.analyzer import ANALYZER, TermStats, analyzer
from index.durable import file_sha256, fsync_path, fsync_tree
from index.store import (
    Candidates,
    Chunk,
    StoreState,
    TermCounts,
    check_vectors,
    no_candidates,
)

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
# From this many chunks on, a search runs the dense side on a second thread while BM25 runs
# (FAISS releases the GIL); below it the hand-off costs more than it saves. Measured with
# `python -m bench.parallel_search`: search p50 17 ms threaded vs 22 inline at 200k chunks,
# 21-29 vs 18-19 ms at 100k.
PARALLEL_SEARCH_ROWS = 200_000
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
        # Plain views of the maps: slicing a np.memmap costs a subclass object each time
        # (about 0.6 ms a question at 1M chunks, over 180 slices).
        arrays = [np.asarray(np.load(path / f"{a}.npy", mmap_mode="r")) for a in _ARRAYS]
        return cls(terms, *arrays)

    def query_terms(self, idf: dict[str, float]) -> list[tuple[int, float]]:
        """(column, idf weight) of the query's terms this segment holds, in idf's order."""
        return [(j, w) for term, w in idf.items() if (j := self.column.get(term)) is not None]

    def _term(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(self.indptr[j]), int(self.indptr[j + 1])
        return self.rows[lo:hi], self.tf[lo:hi]

    def scores(self, terms: list[tuple[int, float]], norm: np.ndarray) -> np.ndarray | None:
        """BM25 of every row for the weighted terms (None when no term occurs here)."""
        rows, parts = [], []
        for j, weight in terms:
            term_rows, tf = self._term(j)
            rows.append(term_rows)
            parts.append(weight * tf / (tf + norm[term_rows]))
        if not rows:
            return None
        # One pass over the rows for all terms: a bincount per term cost a full array each.
        return np.bincount(np.concatenate(rows), np.concatenate(parts), minlength=len(norm))

    def term_frequencies(self, j: int, rows: np.ndarray) -> np.ndarray:
        """How often term column j occurs in each of the given rows (0 where it does not)."""
        term_rows, tf = self._term(j)
        out = np.zeros(len(rows), dtype=np.float32)
        if len(term_rows) and len(rows):
            # A term's rows are sorted (postings are built row by row), so binary search works.
            where = np.minimum(np.searchsorted(term_rows, rows), len(term_rows) - 1)
            found = term_rows[where] == rows
            out[found] = tf[where[found]]
        return out

    def scores_of(
        self, terms: list[tuple[int, float]], norm: np.ndarray, rows: np.ndarray
    ) -> np.ndarray:
        """BM25 of the given rows, equal bit for bit to what scores() gives them."""
        out = np.zeros(len(rows), dtype=np.float64)
        for j, weight in terms:  # the same terms, order and float32 steps as scores()
            tf = self.term_frequencies(j, rows)
            found = tf > 0
            tf = tf[found]
            out[found] += weight * tf / (tf + norm[rows[found]])
        return out

    def top_rows(
        self, terms: list[tuple[int, float]], norm: np.ndarray, k: int, live: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows that may be among the k best, with their exact scores (MaxScore pruning).

        Terms are added from the shortest posting list up. Once the k-th best partial score
        exceeds what the remaining (long, common) terms could add at most (idf times the
        term's largest tf / (tf + norm)), no row outside the candidates can reach the top k,
        and the long lists are only looked up for the candidates left.
        """
        sizes = [int(self.indptr[j + 1] - self.indptr[j]) for j, _ in terms]
        order = sorted(range(len(terms)), key=sizes.__getitem__)
        bound = [w * self.max_share(j, norm) for j, w in terms]
        rest = sum(bound)
        scratch = self._scratch(len(norm))
        partial, seen = scratch
        added: list[np.ndarray] = []
        try:
            for step, t in enumerate(order):
                j, weight = terms[t]
                term_rows, tf = self._term(j)
                partial[term_rows] += weight * tf / (tf + norm[term_rows])  # rows are unique
                new = term_rows[~seen[term_rows]]
                seen[new] = True
                added.append(new)
                rest -= bound[t]
                last = step + 1 == len(order)
                candidates = np.concatenate(added)
                if live is not None:
                    candidates = candidates[live[candidates]]
                if len(candidates) < k and not last:
                    continue
                found = partial[candidates]
                kth = np.partition(found, len(found) - k)[len(found) - k] if len(found) > k else 0
                # The sums run in another order than scores(): a margin keeps rounding from
                # dropping a row that belongs in the top k.
                slack = 1e-6 * max(1.0, float(kth))
                if rest < kth - slack or last:
                    keep = candidates[found + rest >= kth - slack]
                    keep = self._narrow(
                        terms, order[step + 1 :], norm, keep, found_of=partial, k=k, bound=bound
                    )
                    return keep, self.scores_of(terms, norm, keep)
        finally:
            touched = np.concatenate(added) if added else np.zeros(0, dtype=np.int64)
            partial[touched] = 0.0
            seen[touched] = False
            self._give_back(scratch)
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)

    def _narrow(
        self,
        terms: list[tuple[int, float]],
        remaining: list[int],
        norm: np.ndarray,
        rows: np.ndarray,
        *,
        found_of: np.ndarray,
        k: int,
        bound: list[float],
    ) -> np.ndarray:
        """The candidate rows left after adding the remaining terms one at a time (sorted).

        Each term is looked up for the candidates only; after each, those that can no longer
        reach the k-th best partial score are dropped.
        """
        partial = found_of[rows]
        rest = sum(bound[t] for t in remaining)
        for t in remaining:
            if len(rows) <= k:
                break
            j, weight = terms[t]
            tf = self.term_frequencies(j, rows)
            partial = partial + weight * tf / (tf + norm[rows])
            rest -= bound[t]
            kth = np.partition(partial, len(partial) - k)[len(partial) - k]
            slack = 1e-6 * max(1.0, float(kth))
            keep = partial + rest >= kth - slack
            rows, partial = rows[keep], partial[keep]
        return np.sort(rows)

    def max_share(self, j: int, norm: np.ndarray) -> float:
        """The largest tf / (tf + norm) of term column j over its rows (cached per norm).

        A term adds at most its idf times this to any row's score. Computed the first time a
        term is asked for, so a long-running process reads each list once for it.
        """
        cache = self.__dict__.get("_shares")
        if cache is None or cache[0] is not norm:
            cache = (norm, {})
            self._shares = cache
        share = cache[1].get(j)
        if share is None:
            term_rows, tf = self._term(j)
            share = float(np.max(tf / (tf + norm[term_rows]))) if len(term_rows) else 0.0
            # Never below a contribution computed in float32: rounding must not prune a row.
            share = min(1.0, share * (1 + 1e-6))
            cache[1][j] = share
        return share

    def _scratch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Zeroed score and seen-row arrays of n rows, lent until _give_back (pooled).

        A pool, not one pair per thread: a chat server runs many threads but few questions
        at once, and each pair costs 9 bytes per row.
        """
        with _SCRATCH_LOCK:
            pool = self.__dict__.setdefault("_pool", [])
            if pool:
                return pool.pop()
        return np.zeros(n, dtype=np.float64), np.zeros(n, dtype=bool)

    def _give_back(self, scratch: tuple[np.ndarray, np.ndarray]) -> None:
        with _SCRATCH_LOCK:
            self.__dict__.setdefault("_pool", []).append(scratch)


_ARRAYS = ("indptr", "rows", "tf", "lengths")
_SCRATCH_LOCK = threading.Lock()
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


def _allowed_top_rows(segment: Segment, terms, norm: np.ndarray, k: int, allowed: np.ndarray):
    """Every row scored, then the best k of the allowed rows (a filtered search)."""
    scores = segment.postings.scores(terms, norm)
    if not segment.all_live:
        scores[segment.dead_rows] = 0.0
    rows = _best_rows(allowed, scores, k)
    return rows, scores[rows]


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

    def cheap_size(self) -> int:
        """Live chunks (always cheap here)."""
        return self._size

    def load(self) -> None:
        """Nothing to do: segments are read when opened."""

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
        dense_job = None
        if vector is not None:
            query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
            if text is not None and self._size >= PARALLEL_SEARCH_ROWS:
                dense_job = _search_thread().submit(self._dense_top, query, k, allowed_rows)
            else:
                dense = self._dense_top(query, k, allowed_rows)
        if text is not None:
            lexical = self._lexical_top(text, k, allowed_rows)
        if dense_job is not None:
            dense = dense_job.result()
        return Candidates(dense[0], dense[1], lexical[0], lexical[1])

    def _dense_top(self, query: np.ndarray, k: int, allowed_rows) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = self._merge(
            s.dense_search(query, k, allowed_rows[i] if allowed_rows else None)
            for i, s in enumerate(self.segments)
        )
        return ids[:k], scores[:k]

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

    def _query_terms(self, text: str) -> list[list[tuple[int, float]]]:
        """Per segment, (column, idf) of the text's terms it holds."""
        idf = self.stats.idf(analyzer().tokenize(text))
        return [segment.postings.query_terms(idf) for segment in self.segments]

    def _lexical_top(self, text: str, k: int, allowed_rows) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        average = self.stats.average_length
        for i, (segment, terms) in enumerate(
            zip(self.segments, self._query_terms(text), strict=True)
        ):
            if not terms:
                continue
            norm = segment.norm(average)
            if allowed_rows is None:
                live = None if segment.all_live else segment.live
                rows, scores = segment.postings.top_rows(terms, norm, k, live)
            else:
                rows, scores = _allowed_top_rows(segment, terms, norm, k, allowed_rows[i])
            # Ties are broken by chunk id, as across segments: results never depend on
            # how the chunks happen to be split into segments.
            parts.append(top_k(segment.ids[rows], scores.astype(np.float32), k))
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
        average = self.stats.average_length
        for (segment, positions, rows), terms in zip(
            self._locate(ids), self._query_terms(text), strict=True
        ):
            if terms and len(positions):
                out[positions] = segment.postings.scores_of(terms, segment.norm(average), rows)
        return out

    def query_term_counts(self, text: str, ids: Sequence[int]) -> TermCounts:
        """Per id: its length in terms, its occurrences of the text's terms, how many differ."""
        counts = TermCounts.zeros(len(ids))
        terms = set(analyzer().tokenize(text))
        for segment, positions, rows in self._locate(ids):
            if not len(positions):
                continue
            postings = segment.postings
            counts.lengths[positions] = postings.lengths[rows]
            for term in terms:
                j = postings.column.get(term)
                if j is not None:
                    tf = postings.term_frequencies(j, rows)
                    counts.occurrences[positions] += tf.astype(np.int64)
                    counts.distinct[positions] += tf > 0
        return counts

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
    token_lists: Iterable[list[str]] | None = None,
) -> dict:
    """Write chunks as a new segment (staged, fsynced, renamed); its manifest entry.

    token_lists: the chunks' analyzer terms in order, when the caller has them.
    """
    vectors = check_vectors(chunks, vectors)
    name = new_segment_name()
    root = Path(index_dir) / SEGMENTS_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{name}.tmp"
    staging.mkdir()
    try:
        tokens = (
            token_lists if token_lists is not None
            else (analyzer().tokenize(c.search_text) for c in chunks)
        )  # fmt: skip
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


@functools.cache
def _search_thread() -> ThreadPoolExecutor:
    """Workers for the dense side of large searches (two: concurrent questions share them)."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="dense-search")


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
        self.pending: dict[int, tuple[Chunk, np.ndarray, list[str] | None]] = {}

    def delete_documents(self, sources: Sequence[str]) -> None:
        """Mark every live row of these documents deleted, and drop pending ones."""
        wanted = sorted(set(sources))
        if not wanted:
            return
        for segment in self.segments:
            live = self.live[segment.name]
            live[segment.rows_of(segment.source_ids(wanted), live)[1]] = False
        self.pending = {i: p for i, p in self.pending.items() if p[0].source not in wanted}

    def upsert(
        self,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        *,
        terms: Sequence[list[str]] | None = None,
    ) -> None:
        """Add chunks (replacing live rows with the same ids) to the new segment.

        terms: the chunks' analyzer terms, if the build has them (else tokenized on finish).
        """
        vectors = check_vectors(chunks, vectors)
        if terms is not None and len(terms) != len(chunks):
            raise ValueError(f"{len(terms)} term lists for {len(chunks)} chunks")
        ids = np.array([c.id for c in chunks], dtype=np.int64)
        for segment in self.segments:
            live = self.live[segment.name]
            live[segment.rows_of(ids, live)[1]] = False
        for n, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True)):
            self.pending[chunk.id] = (chunk, vector, terms[n] if terms is not None else None)

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
        terms = [p[2] for p in self.pending.values()]
        for segment in self.segments:
            if segment.name in merged:
                rows = np.flatnonzero(self.live[segment.name])
                found = segment.chunks(segment.ids[rows].tolist())
                chunks += [found[int(i)] for i in segment.ids[rows]]
                vectors += list(segment.matrix[rows])
                terms += [None] * len(rows)
        items = [self.items[s.name] for s in kept]
        if chunks:
            matrix = np.stack(vectors).astype(np.float32)
            dense = self.dense_for(len(chunks))
            tokenize = analyzer().tokenize
            token_lists = (
                t if t is not None else tokenize(c.search_text)
                for c, t in zip(chunks, terms, strict=True)
            )
            items.append(
                write_segment(self.index_dir, chunks, matrix, dense=dense, token_lists=token_lists)
            )
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
