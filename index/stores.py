"""The two search engines behind a small interface: dense (FAISS) and lexical (BM25 via bm25s).

    python -m index.stores data/index/current

`rag/` talks only to `VectorStore` and `LexicalStore`; a server-based engine can implement the
same four methods. Row i of either store is chunk i of the index's chunks.jsonl.
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)

# ASCII words; the Unicode pattern below gives the same terms on ASCII text, this one is faster.
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Name of the lexical analyzer (tokenizer, stop words, stemmer). Recorded in the manifest: an
# index built with another analyzer is rebuilt, since its BM25 terms would not match queries.
ANALYZER = "unicode-v2+snowball-en+stopwords"
_APOSTROPHES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\uff07": "'"})
# Code point ranges (start, end inclusive) of scripts written without spaces between words:
# Thai, Lao, Myanmar, Hangul jamo, Khmer, CJK radicals/kana/ideographs, Hangul syllables,
# compatibility ideographs, half-width forms, supplementary ideographs. Indexed by character
# bigrams, since a whitespace "word" there is a whole clause.
_UNSPACED = (
    (0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1100, 0x11FF), (0x1780, 0x17FF), (0x2E80, 0x9FFF),
    (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xF900, 0xFAFF), (0xFF66, 0xFFDC), (0x20000, 0x3FFFF),
)  # fmt: skip
# Ideographs carry meaning one by one (a one-character word is common), so they are also
# indexed alone; kana, Hangul and Thai characters alone are syllables and would only add noise.
_IDEOGRAPHS = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))
# Below Devanagari (Latin, Greek, Cyrillic, Hebrew, Arabic...) and in Latin/Greek Extended,
# combining marks are optional accents and vowel points: folded away, so "café" finds "cafe".
# In Indic and Southeast Asian scripts they are vowels and are kept.
_FOLDED = ((0x0000, 0x08FF), (0x1E00, 0x1FFF))
_LATIN = ((0x0000, 0x024F), (0x1E00, 0x1EFF))
_TATWEEL = "\u0640"  # Arabic elongation: typography, not spelling
# A filtered dense search over at most this many rows runs exactly in numpy (1.5 MB per 1,000
# rows of 384 floats is copied); above, FAISS searches its own index through an ID selector.
EXACT_SUBSET_ROWS = 20_000


class VectorStore(Protocol):
    """Nearest-neighbour search over unit vectors (inner product = cosine)."""

    size: int

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, scores) for one query vector, best first; only `allowed` rows if given."""
        ...

    def score(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Similarity of the query to the given rows."""
        ...

    def save(self, folder: Path) -> list[str]:
        """Write the store into folder; returns the file names written."""
        ...


class LexicalStore(Protocol):
    """Keyword search (BM25) over the chunks' searchable text."""

    size: int

    def search(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, scores) for a query string, best first; only `allowed` rows if given."""
        ...

    def score(self, query: str, ids: np.ndarray) -> np.ndarray:
        """BM25 score of the query for the given rows."""
        ...

    def tokenize(self, text: str) -> list[str]:
        """Terms as this store indexes them."""
        ...

    def idf(self, terms: list[str]) -> dict[str, float]:
        """Inverse document frequency of known terms (unknown terms are left out)."""
        ...

    def save(self, folder: Path) -> list[str]:
        """Write the store into folder; returns the file names written."""
        ...


class FaissVectorStore:
    """Inner-product search over normalised float32 vectors: exact (flat) or HNSW.

    Exact search is the default; past `IndexConfig.exact_search_max_chunks` the builder picks
    HNSW (recall@10 0.963 at 1M chunks with efSearch 768 in bench/scale.py). The kind and its
    parameters are recorded in the manifest.
    """

    index_file = "dense.faiss"

    def __init__(
        self, vectors: np.ndarray, *, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 768
    ) -> None:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-D, got shape {vectors.shape}")
        if kind not in ("flat", "hnsw"):
            raise ValueError(f"unknown dense index kind {kind!r} (flat or hnsw)")
        self.dimension = vectors.shape[1]
        self.kind = kind
        if kind == "flat":
            self.index = faiss.IndexFlatIP(self.dimension)
        else:
            self.index = faiss.IndexHNSWFlat(self.dimension, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = 80
            self.index.hnsw.efSearch = ef_search
        if len(vectors):
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            self.index.add(vectors)
        _single_thread_search()
        self.size = int(self.index.ntotal)
        self.vectors = _stored_vectors(self.index)

    @classmethod
    def load(
        cls, folder: Path, *, dimension: int, ef_search: int | None = None
    ) -> FaissVectorStore:
        """Read dense.faiss and check its shape against the manifest."""
        import faiss

        index = faiss.read_index(str(Path(folder) / cls.index_file))
        if index.d != dimension:
            raise ValueError(f"FAISS index has dimension {index.d}, manifest says {dimension}")
        _single_thread_search()
        store = cls.__new__(cls)
        store.index = index
        store.kind = "hnsw" if isinstance(index, faiss.IndexHNSW) else "flat"
        if store.kind == "hnsw" and ef_search:
            index.hnsw.efSearch = ef_search
        store.dimension = index.d
        store.size = int(index.ntotal)
        store.vectors = _stored_vectors(index)
        return store

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, scores) for one query vector, best first; only `allowed` rows if given.

        A small allowed set is searched exactly with numpy (an HNSW graph walk restricted to
        a few rows misses most of them); a large one inside FAISS through an ID selector.
        """
        if self.size == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        query = query.reshape(1, -1).astype(np.float32)
        if allowed is None:
            scores, ids = self.index.search(query, min(k, self.size))
            keep = ids[0] >= 0
            return ids[0][keep], scores[0][keep]
        allowed = np.asarray(allowed, dtype=np.int64)
        if len(allowed) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if len(allowed) <= EXACT_SUBSET_ROWS:
            return _top_k(allowed, self.vectors[allowed] @ query[0], k)
        import faiss

        selector = faiss.IDSelectorBatch(allowed)  # referenced until the search returns
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=self.index.hnsw.efSearch)
        else:
            params = faiss.SearchParameters(sel=selector)
        scores, ids = self.index.search(query, min(k, len(allowed)), params=params)
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def score(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Similarity of the query to the given rows."""
        if len(ids) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.vectors[np.asarray(ids)] @ query.astype(np.float32)

    def save(self, folder: Path) -> list[str]:
        """Write dense.faiss into folder."""
        import faiss

        faiss.write_index(self.index, str(Path(folder) / self.index_file))
        return [self.index_file]


def _top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (ids, scores) of parallel arrays, best first (ties: the lower row first)."""
    if len(ids) == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if k < len(ids):  # every row tied with the k-th stays a candidate: ties go by row
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        top = np.flatnonzero(scores >= kth)
    else:
        top = np.arange(len(ids))
    top = top[np.lexsort((ids[top], -scores[top]))][:k]
    return ids[top].astype(np.int64), scores[top].astype(np.float32)


def _single_thread_search() -> None:
    """One OpenMP thread for FAISS: a single-query search on 2 cores took 36 ms with two
    spinning threads and 9 ms with one (100k x 384 flat, bench/scale.py)."""
    import faiss

    faiss.omp_set_num_threads(1)


def _stored_vectors(index) -> np.ndarray:
    """The float32 vectors inside a flat or HNSW-flat index, as a view (no copy)."""
    import faiss

    storage = index if isinstance(index, faiss.IndexFlat) else faiss.downcast_index(index.storage)
    if storage.ntotal == 0:
        return np.zeros((0, storage.d), dtype=np.float32)
    flat = faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * storage.d)
    return flat.reshape(storage.ntotal, storage.d)


def _load_stemmer():
    try:
        import Stemmer
    except ImportError as exc:  # pragma: no cover - pinned dependency
        raise ImportError("BM25 stemming needs PyStemmer: pip install PyStemmer") from exc
    return Stemmer.Stemmer("english")


def _stopwords() -> tuple[set[str], set[str]]:
    """English stop words (Latin words), and Chinese and Korean ones (bigrams and characters)."""
    import bm25s

    # Question words (什么, 哪里, 谁) would otherwise weigh as much as the topic: in a corpus
    # with few documents in that language every term is rare.
    cjk = set(bm25s.stopwords.STOPWORDS_CHINESE) | set(bm25s.stopwords.STOPWORDS_KOREAN)
    return set(bm25s.stopwords.STOPWORDS_EN), cjk


def _in(ranges: tuple[tuple[int, int], ...], char: str) -> bool:
    """True when the code point of char lies in one of the sorted, disjoint ranges."""
    position = bisect.bisect_right(ranges, (ord(char), 0x10FFFF)) - 1
    return position >= 0 and ranges[position][0] <= ord(char) <= ranges[position][1]


def _is_mark(char: str) -> bool:
    """True for a combining mark (accent, vowel sign, tone mark)."""
    return unicodedata.category(char)[0] == "M"


def _char_class(code_points: Iterable[int]) -> str:
    """A regex character class body for the given ascending code points, as ranges."""
    parts: list[str] = []
    run: list[int] = []
    for cp in code_points:
        if run and cp != run[-1] + 1:
            parts.append(f"\\U{run[0]:08x}-\\U{run[-1]:08x}")
            run = []
        run.append(cp)
    if run:
        parts.append(f"\\U{run[0]:08x}-\\U{run[-1]:08x}")
    return "".join(parts)


@functools.cache
def _unicode_word() -> re.Pattern:
    """Words of any script: letters, digits and the combining marks inside them."""
    # Python's \w leaves combining marks out, which would cut Thai, Devanagari or vowelled
    # Arabic words apart at every vowel sign.
    marks = (cp for cp in range(0x300, 0x20000) if _is_mark(chr(cp)))
    inner = rf"[^\W_]|[{_char_class(marks)}]"
    return re.compile(rf"(?:{inner})+(?:'[^\W\d_]+)?")


def _fold(word: str) -> str:
    """The word without optional accents (scripts in _FOLDED only) and Arabic tatweel."""
    if word.isascii() or not _in(_FOLDED, word[0]):
        return word
    decomposed = unicodedata.normalize("NFKD", word.replace(_TATWEEL, ""))
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not _is_mark(ch)))


def _script_runs(word: str) -> list[tuple[str, bool]]:
    """The word cut where it changes between unspaced and spaced scripts ("iphone手机")."""
    runs: list[tuple[str, bool]] = []
    start = 0
    kinds = [_in(_UNSPACED, ch) for ch in word]
    for i in range(1, len(word)):
        if _is_mark(word[i]):
            kinds[i] = kinds[i - 1]  # a combining mark belongs to the letter before it
    for i in range(1, len(word) + 1):
        if i == len(word) or kinds[i] != kinds[start]:
            runs.append((word[start:i], kinds[start]))
            start = i
    return runs


def _bigrams(run: str) -> list[str]:
    """Character bigrams of an unspaced run, plus its ideographs alone (a lone character too)."""
    units: list[str] = []
    for ch in run:
        # A combining vowel or tone mark belongs to the character before it.
        if units and _is_mark(ch):
            units[-1] += ch
        else:
            units.append(ch)
    if len(units) == 1:
        return units
    grams = [units[i] + units[i + 1] for i in range(len(units) - 1)]
    return grams + [u for u in units if _in(_IDEOGRAPHS, u[0])]


def split_terms(text: str) -> tuple[list[str], list[str]]:
    """Latin words (to stop-word and stem) and the other terms of text, case- and accent-folded."""
    text = unicodedata.normalize("NFKC", text.translate(_APOSTROPHES)).casefold()
    latin: list[str] = []
    other: list[str] = []
    for word in _unicode_word().findall(text):
        if word.isascii():
            latin.append(word)
            continue
        for run, unspaced in _script_runs(word):
            if unspaced:
                other.extend(_bigrams(run))
                continue
            folded = _fold(run)
            if folded:  # a stray accent alone folds to nothing
                (latin if all(_in(_LATIN, ch) for ch in folded) else other).append(folded)
    return latin, other


class BM25Store:
    """BM25 (Lucene variant, bm25s) over case- and accent-folded terms of any script.

    Latin words lose stop words and are Snowball-stemmed (English); other spaced scripts keep
    their words; unspaced scripts (Chinese, Japanese, Korean, Thai...) give character bigrams.
    """

    folder_name = "bm25"

    def __init__(self, texts: list[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        import bm25s

        self._stemmer = _load_stemmer()
        self._stopwords, self._cjk_stopwords = _stopwords()
        corpus_tokens = [self.tokenize(t) for t in texts]
        # An empty-token document would confuse bm25s; give it a placeholder no query has.
        corpus_tokens = [toks or ["\x00"] for toks in corpus_tokens]
        self.retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        if texts:
            self.retriever.index(corpus_tokens, show_progress=False)
        self.size = len(texts)

    @classmethod
    def load(cls, folder: Path) -> BM25Store:
        """Read the bm25s arrays and vocabulary from folder/bm25."""
        import bm25s

        store = cls.__new__(cls)
        store._stemmer = _load_stemmer()
        store._stopwords, store._cjk_stopwords = _stopwords()
        path = Path(folder) / cls.folder_name
        meta = json.loads((path / "store.json").read_text())
        store.size = int(meta["size"])
        store.retriever = (
            bm25s.BM25.load(str(path), show_progress=False) if store.size else bm25s.BM25()
        )
        return store

    def tokenize(self, text: str) -> list[str]:
        """Terms as BM25 sees them: Latin words stemmed, unspaced scripts as character bigrams."""
        if text.isascii():
            words = [w for w in _TOKEN.findall(text.lower()) if w not in self._stopwords]
            return self._stemmer.stemWords(words)
        latin, other = split_terms(text)
        stemmed = self._stemmer.stemWords([w for w in latin if w not in self._stopwords])
        return stemmed + [t for t in other if t not in self._cjk_stopwords]

    def idf(self, terms: list[str]) -> dict[str, float]:
        """Lucene BM25 idf of the known terms: log(1 + (N - df + 0.5) / (df + 0.5))."""
        if not self.size:
            return {}
        vocab = self.retriever.vocab_dict
        indptr = self.retriever.scores["indptr"]
        weights = {}
        for term in set(terms):
            if term in vocab:
                df = float(indptr[vocab[term] + 1] - indptr[vocab[term]])
                weights[term] = float(np.log(1.0 + (self.size - df + 0.5) / (df + 0.5)))
        return weights

    def _query_ids(self, query: str) -> list[int]:
        vocab = self.retriever.vocab_dict if self.size else {}
        # bm25s keeps "" in its vocabulary with an id past its score matrix: never query it.
        return sorted({vocab[t] for t in self.tokenize(query) if t and t in vocab})

    def _all_scores(self, query: str) -> np.ndarray | None:
        # search() then score() for the same question would compute the scores twice; keep
        # the last query's array (one tuple, replaced atomically, so threads cannot mix them).
        cached = getattr(self, "_last", None)
        if cached is not None and cached[0] == query:
            return cached[1]
        ids = self._query_ids(query)
        scores = self.retriever.get_scores_from_ids(ids) if ids else None
        self._last = (query, scores)
        return scores

    def search(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, scores) for a query string, best first; only `allowed` rows if given.

        Empty when no term matches (in the allowed rows).
        """
        scores = self._all_scores(query)
        if scores is None or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.int64)
            ids, top = _top_k(allowed, scores[allowed], k)
            keep = top > 0
            return ids[keep], top[keep].astype(np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[scores[top] > 0]
        return top.astype(np.int64), scores[top].astype(np.float32)

    def score(self, query: str, ids: np.ndarray) -> np.ndarray:
        """BM25 score of the query for the given rows."""
        scores = self._all_scores(query)
        if scores is None:
            return np.zeros(len(ids), dtype=np.float32)
        return scores[np.asarray(ids, dtype=np.int64)].astype(np.float32)

    def save(self, folder: Path) -> list[str]:
        """Write the bm25s arrays (npy) and vocabulary (JSON) into folder/bm25."""
        path = Path(folder) / self.folder_name
        path.mkdir(parents=True, exist_ok=True)
        if self.size:
            self.retriever.save(str(path), show_progress=False)
        (path / "store.json").write_text(json.dumps({"size": self.size, "tokenizer": ANALYZER}))
        return sorted(f"{self.folder_name}/{p.name}" for p in path.iterdir())


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "data/index/current")
    bm25 = BM25Store.load(folder)
    sys.stdout.write(f"BM25 rows: {bm25.size}\n")
