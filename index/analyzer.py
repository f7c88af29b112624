"""The index's lexical analyzer and term statistics, shared by every engine.

    python -m index.analyzer "Who signed the treaty of Guadalupe Hidalgo?"

Abstention, sentence support and highlighting weigh terms with `Analyzer.tokenize` and
`TermStats.idf`; both belong to the index (its manifest names the analyzer, its generation
holds the document-frequency table), so the FAISS and Milvus engines give identical answers.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

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


class Analyzer:
    """Terms as the index sees them: Latin words stop-worded and stemmed, CJK as bigrams."""

    name = ANALYZER

    def __init__(self) -> None:
        self._stemmer = _load_stemmer()
        self._stopwords, self._cjk_stopwords = _stopwords()

    def tokenize(self, text: str) -> list[str]:
        """Terms of text: Latin words stemmed, unspaced scripts as character bigrams."""
        if text.isascii():
            words = [w for w in _TOKEN.findall(text.lower()) if w not in self._stopwords]
            return self._stemmer.stemWords(words)
        latin, other = split_terms(text)
        stemmed = self._stemmer.stemWords([w for w in latin if w not in self._stopwords])
        return stemmed + [t for t in other if t not in self._cjk_stopwords]


@functools.cache
def analyzer() -> Analyzer:
    """The process's analyzer (the stemmer and stop lists load once)."""
    return Analyzer()


class TermStats:
    """Chunk count, total term count and document frequency of every term in the index.

    Updated by adding and subtracting the terms of the chunks a build adds and removes, so
    an update never re-reads the corpus; `idf` is Lucene BM25's.
    """

    file_name = "terms.json"

    def __init__(self, *, chunks: int = 0, tokens: int = 0, df: dict[str, int] | None = None):
        if chunks < 0 or tokens < 0:
            raise ValueError(f"term stats cannot be negative: {chunks} chunks, {tokens} tokens")
        self.chunks = chunks
        self.tokens = tokens
        self.df: dict[str, int] = dict(df or {})

    def add(self, token_lists: Iterable[list[str]], *, sign: int = 1) -> None:
        """Count the chunks' terms in (sign 1) or out (sign -1)."""
        self.merge(TermStats.of(token_lists), sign=sign)

    @classmethod
    def of(cls, token_lists: Iterable[list[str]]) -> TermStats:
        """Statistics of the given chunks' terms."""
        stats, counts = cls(), Counter()
        for tokens in token_lists:
            stats.chunks += 1
            stats.tokens += len(tokens)
            counts.update(set(tokens))
        stats.df = dict(counts)
        return stats

    def merge(self, other: TermStats, *, sign: int = 1) -> None:
        """Count another table's chunks in (sign 1) or out (sign -1)."""
        self.chunks += sign * other.chunks
        self.tokens += sign * other.tokens
        for term, n in other.df.items():
            left = self.df.get(term, 0) + sign * n
            if left > 0:
                self.df[term] = left
            else:
                self.df.pop(term, None)
        if self.chunks < 0 or self.tokens < 0:
            raise ValueError("term stats went negative: removed chunks that were never added")

    def to_json(self) -> dict:
        """The table as JSON (terms sorted, so equal stats give equal bytes)."""
        return {
            "analyzer": ANALYZER, "chunks": self.chunks, "tokens": self.tokens,
            "df": dict(sorted(self.df.items())),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> TermStats:
        """A table from to_json's form; ValueError when another analyzer wrote it."""
        if not isinstance(data, dict) or data.get("analyzer") != ANALYZER:
            raise ValueError(f"term statistics not written by analyzer {ANALYZER}")
        return cls(chunks=int(data["chunks"]), tokens=int(data["tokens"]), df=data["df"])

    @property
    def average_length(self) -> float:
        """Mean terms per chunk (1 for an empty index, so BM25 never divides by zero)."""
        return self.tokens / self.chunks if self.chunks else 1.0

    def idf(self, terms: Iterable[str]) -> dict[str, float]:
        """Lucene BM25 idf of the known terms: log(1 + (N - df + 0.5) / (df + 0.5))."""
        weights = {}
        for term in set(terms):
            df = self.df.get(term)
            if df:
                weights[term] = math.log(1.0 + (self.chunks - df + 0.5) / (df + 0.5))
        return weights

    def save(self, folder: Path) -> str:
        """Write terms.json into folder (terms sorted, so equal stats give equal bytes)."""
        text = json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))
        (Path(folder) / self.file_name).write_text(text, encoding="utf-8")
        return self.file_name

    @classmethod
    def load(cls, folder: Path) -> TermStats:
        """Read terms.json from folder; ValueError when it is not what save wrote."""
        data = json.loads((Path(folder) / cls.file_name).read_text(encoding="utf-8"))
        try:
            return cls.from_json(data)
        except ValueError as exc:
            raise ValueError(f"{folder / cls.file_name}: {exc}") from exc

    def copy(self) -> TermStats:
        """An independent copy (a build updates it without touching the live index's)."""
        return TermStats(chunks=self.chunks, tokens=self.tokens, df=self.df)


if __name__ == "__main__":
    sys.stdout.write(" ".join(analyzer().tokenize(" ".join(sys.argv[1:]))) + "\n")
