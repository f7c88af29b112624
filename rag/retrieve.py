"""Hybrid retrieval: dense and BM25 rankings fused by reciprocal rank fusion (RRF).

    python -m rag ask "Who did Hegseth call on Jan. 31?" --json

Each hit keeps both engines' scores and ranks beside its fused rank. Near-duplicate passages
(the same paragraph quoted by two documents) are collapsed so they cannot crowd others out.
A `SourceFilter` (some files, or folders of the corpus) restricts both engines' searches to
the chunks of those documents, so the top passages are the best allowed ones.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from index import Candidates, Chunk, CorpusIndex, Embedder
from rag.injection import repetition_shares, stuffing_damping

_SHINGLE_WORD = re.compile(r"\w+")
# Allowed-row arrays kept per retriever (one per distinct filter); past this it starts over.
_FILTER_CACHE_SIZE = 64


def _clean_path(value: object, *, what: str) -> str:
    """A corpus-relative POSIX path ('a/b.txt'), or ValueError naming what is wrong."""
    if not isinstance(value, str):
        raise ValueError(f"a filter {what} must be a string, got {type(value).__name__}")
    text = value.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    text = text.strip("/")
    parts = text.split("/")
    if not text or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"filter {what} {value!r} is not a path inside the corpus")
    return text


@dataclass(frozen=True)
class SourceFilter:
    """Which documents a question may use: corpus-relative files and folder prefixes.

    A file also admits the documents inside it (a mail's attachments, `message.eml/a.pdf`);
    a folder admits every document below it. A document matches when any entry admits it.
    """

    files: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("files", "folders"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence | frozenset | set):
                raise ValueError(f"filter {name} must be a list of paths, got {value!r}")
            what = name[:-1]
            cleaned = tuple(dict.fromkeys(_clean_path(v, what=what) for v in value))
            object.__setattr__(self, name, cleaned)
        if not self.files and not self.folders:
            raise ValueError("the filter names no file and no folder")

    @classmethod
    def from_dict(cls, data: object) -> SourceFilter:
        """A filter from its JSON form: {"files": [...], "folders": [...]}."""
        if not isinstance(data, dict):
            raise ValueError(f"a filter must be an object with files and folders, got {data!r}")
        unknown = set(data) - {"files", "folders"}
        if unknown:
            raise ValueError(f"unknown filter field(s): {', '.join(sorted(unknown))}")
        return cls(files=tuple(data.get("files") or ()), folders=tuple(data.get("folders") or ()))

    def to_dict(self) -> dict:
        """The JSON form of the filter."""
        return {"files": list(self.files), "folders": list(self.folders)}

    def describe(self) -> str:
        """The filter in words: 'files a.txt, b.txt; folders notes/'."""
        parts = []
        if self.files:
            parts.append("files " + ", ".join(self.files))
        if self.folders:
            parts.append("folders " + ", ".join(f + "/" for f in self.folders))
        return "; ".join(parts)

    def matches(self, source: str) -> bool:
        """True when the document at corpus-relative path source may be used."""
        if any(source == f or source.startswith(f + "/") for f in self.files):
            return True
        return any(source.startswith(folder + "/") for folder in self.folders)


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with its fused rank (1-based) and both engines' evidence."""

    chunk: Chunk
    rank: int
    fused_score: float
    dense_score: float
    bm25_score: float
    dense_rank: int | None
    bm25_rank: int | None


@dataclass
class RetrievalResult:
    """Hits best first, and where the time went (milliseconds)."""

    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)


def rrf_fuse(
    rankings: Sequence[Sequence[int]], *, k: int, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: score(d) = sum_i w_i / (k + rank_i(d)), ranks 1-based.

    Ties are broken by the best single rank, then by id, so the order is deterministic.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[int, float] = {}
    best_rank: dict[int, int] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
            best_rank[doc] = min(best_rank.get(doc, rank), rank)
    return sorted(scores.items(), key=lambda item: (-item[1], best_rank[item[0]], item[0]))


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Word n-grams of text (lower-cased), or the whole text when it is shorter than n words."""
    words = _SHINGLE_WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return set(zip(*(words[i:] for i in range(n)), strict=False))


def near_duplicate(a: set, b: set, *, threshold: float = 0.5) -> bool:
    """True when most of the smaller passage's shingles also occur in the other one."""
    if not a or not b:
        return False
    return len(a & b) / min(len(a), len(b)) >= threshold


class DuplicateFilter:
    """Keeps each passage that is not a near-duplicate of one kept before it.

    Offered one passage at a time, so a caller fetching candidates in pages shingles and
    compares each passage once, not once per page.
    """

    def __init__(self, *, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self._kept: list[set] = []

    def __len__(self) -> int:
        return len(self._kept)

    def offer(self, text: str) -> bool:
        """True (and the text is kept) when it is not a near-duplicate of a kept one."""
        sh = shingles(text)
        if any(near_duplicate(sh, other, threshold=self.threshold) for other in self._kept):
            return False
        self._kept.append(sh)
        return True


def collapse_near_duplicates(
    texts: Sequence[str], *, threshold: float = 0.5, limit: int | None = None
) -> list[int]:
    """Positions to keep: each text that is not a near-duplicate of an earlier kept one."""
    kept: list[int] = []
    seen = DuplicateFilter(threshold=threshold)
    for i, text in enumerate(texts):
        if limit is not None and len(kept) >= limit:
            break
        if seen.offer(text):
            kept.append(i)
    return kept


class Retriever:
    """Searches one loaded index with the shared embedder."""

    def __init__(
        self,
        index: CorpusIndex,
        embedder: Embedder,
        *,
        candidates: int,
        rrf_k: int,
        dense_weight: float = 1.0,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.dense_weight = dense_weight
        # Rows each filter allows (the index never changes under a retriever).
        self._allowed: dict[SourceFilter, np.ndarray] = {}

    def allowed_ids(self, where: SourceFilter) -> np.ndarray:
        """Sorted chunk ids of the documents the filter admits; ValueError when there are none."""
        ids = self._allowed.get(where)
        if ids is None:
            sources = [d.source for d in self.index.documents if where.matches(d.source)]
            ids = self.index.store.ids_of(sources) if sources else np.zeros(0, dtype=np.int64)
            if len(self._allowed) >= _FILTER_CACHE_SIZE:
                self._allowed.clear()
            self._allowed[where] = ids
        if len(ids) == 0:
            raise ValueError(f"no document matches the filter ({where.describe()})")
        return ids

    def damp_stuffing(
        self, query: str, ids: np.ndarray, scores: np.ndarray, *, limit: float
    ) -> np.ndarray:
        """BM25 candidate ids re-ranked with stuffed passages' scores damped."""
        counts = self.index.store.query_term_counts(query, ids)
        shares = repetition_shares(counts.lengths, counts.occurrences, counts.distinct)
        factors = np.array([stuffing_damping(share, limit=limit) for share in shares])
        if np.all(factors == 1.0):
            return ids
        return ids[np.argsort(-(scores * factors), kind="stable")]

    def retrieve(
        self,
        query: str,
        *,
        top_k: int,
        method: str = "hybrid",
        stuffing_limit: float = 0.0,
        where: SourceFilter | None = None,
    ) -> RetrievalResult:
        """The top_k passages for query by method ("hybrid", "dense" or "bm25").

        stuffing_limit > 0 damps the BM25 rank of passages that repeat the query's terms more
        than that share of their length (see rag/injection.py); 0 leaves BM25 as it is.
        where limits both searches to the documents it admits (ValueError when none does).
        """
        if not query.strip():
            raise ValueError("query is empty")
        if method not in ("hybrid", "dense", "bm25"):
            raise ValueError(f"unknown retrieval method {method!r}")
        if where is not None and not isinstance(where, SourceFilter):
            raise ValueError(f"where must be a SourceFilter, got {type(where).__name__}")
        allowed = self.allowed_ids(where) if where is not None else None
        timings: dict[str, float] = {}
        store = self.index.store
        if store.size == 0:
            return RetrievalResult([], timings)
        t0 = time.perf_counter()
        # BM25-only retrieval embeds the query after fusion, only to give its hits a dense score
        # (the answerer's evidence check uses it).
        query_vector = self.embedder.encode([query])[0] if method != "bm25" else None
        t1 = time.perf_counter()
        timings["embed"] = (t1 - t0) * 1000
        # Each engine contributes `candidates` (at least top_k) to fusion.
        found = store.search(
            text=query if method != "dense" else None,
            vector=query_vector,
            k=max(self.candidates, top_k),
            allowed=allowed,
        )
        t2 = time.perf_counter()
        timings["search"] = (t2 - t1) * 1000
        bm25_ids = found.lexical_ids
        if stuffing_limit > 0 and len(bm25_ids):
            bm25_ids = self.damp_stuffing(
                query, bm25_ids, found.lexical_scores, limit=stuffing_limit
            )
        t3 = time.perf_counter()
        timings["damping"] = (t3 - t2) * 1000
        rankings, weights = [], []
        for ranking, weight in ((found.dense_ids, self.dense_weight), (bm25_ids, 1.0)):
            if len(ranking):
                rankings.append(ranking.tolist())
                weights.append(weight)
        fused = rrf_fuse(rankings, k=self.rrf_k, weights=weights)
        if query_vector is None:
            query_vector = self.embedder.encode([query])[0]
        hits = self._hits(query, query_vector, fused, found, bm25_ids, top_k=top_k)
        timings["fusion"] = (time.perf_counter() - t3) * 1000
        return RetrievalResult(hits, timings)

    def _hits(
        self,
        query: str,
        query_vector: np.ndarray,
        fused: list[tuple[int, float]],
        found: Candidates,
        bm25_ids: np.ndarray,
        *,
        top_k: int,
    ) -> list[Hit]:
        """The fused candidates as Hits, near-duplicates collapsed, both engines' scores."""
        store = self.index.store
        chunks: list[Chunk] = []
        fused_score: list[float] = []
        seen = DuplicateFilter()
        # Fetched in pages: collapsing usually keeps top_k of the first 2 * top_k.
        for start in range(0, len(fused), 2 * top_k):
            page = fused[start : start + 2 * top_k]
            fetched = {c.id: c for c in store.fetch([doc for doc, _ in page])}
            for doc, score in page:
                chunk = fetched.get(doc)
                if chunk is not None and len(chunks) < top_k and seen.offer(chunk.search_text):
                    chunks.append(chunk)
                    fused_score.append(score)
            if len(chunks) >= top_k:
                break
        ids = np.array([c.id for c in chunks], dtype=np.int64)
        dense = _scores_for(ids, found.dense_ids, found.dense_scores)
        lexical = _scores_for(ids, found.lexical_ids, found.lexical_scores)
        unscored = np.isnan(dense)
        if unscored.any():
            dense[unscored] = store.vectors(ids[unscored].tolist()) @ query_vector
        unscored = np.isnan(lexical)
        if unscored.any():
            lexical[unscored] = store.lexical_scores(query, ids[unscored].tolist())
        dense_rank = {int(d): r for r, d in enumerate(found.dense_ids, start=1)}
        bm25_rank = {int(d): r for r, d in enumerate(bm25_ids, start=1)}
        return [
            Hit(
                chunk=chunk, rank=n, fused_score=float(fused_score[n - 1]),
                dense_score=float(dense[n - 1]), bm25_score=float(lexical[n - 1]),
                dense_rank=dense_rank.get(chunk.id), bm25_rank=bm25_rank.get(chunk.id),
            )
            for n, chunk in enumerate(chunks, start=1)
        ]  # fmt: skip


def _scores_for(ids: np.ndarray, known_ids: np.ndarray, known_scores: np.ndarray) -> np.ndarray:
    """Each id's score from a candidate list, NaN where the list does not hold it."""
    lookup = {int(i): float(s) for i, s in zip(known_ids, known_scores, strict=True)}
    return np.array([lookup.get(int(i), np.nan) for i in ids], dtype=np.float64)
