"""Cleaning: sentence spans, text normalisation, boilerplate by repetition, title and date.

    python -m index.cleaning corpus/002_113a1a336eb66b34.txt

Cleaning never rewrites the document: it finds sentence spans in the original text and marks
page chrome, so that every passage stays an exact slice of the original. Normalised text
(ASCII punctuation, single spaces) is what gets embedded and BM25-indexed.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_PUNCT_MAP = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u00ab": '"', "\u00bb": '"', "\u2013": "-", "\u2014": "-", "\u2015": "-",
        "\u2212": "-", "\u2010": "-", "\u2011": "-", "\u2026": "...", "\u00a0": " ",
        "\u200b": "", "\u200c": "", "\u200d": "", "\ufeff": "", "\u00ad": "",
    }
)  # fmt: skip

# Words that end with a period without ending the sentence ("Jan. 31", "Gen. Guillot").
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "gen", "col", "lt", "sgt", "capt", "cmdr", "adm", "maj",
    "sen", "rep", "gov", "pres", "st", "jr", "sr", "vs", "etc", "inc", "co", "corp",
    "ltd", "dept", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "approx", "est", "rtr", "ret", "mt", "ft", "cf", "al",
}  # fmt: skip
# Abbreviations only before a number ("No. 5", "Fig. 2"); "No." alone ends a sentence.
_NUMBER_ABBREVIATIONS = {"no", "nos", "fig", "vol", "pp", "art", "p"}
_CLOSERS = "\"'\u201d\u2019)\\]\u300d\u300f\uff09\u3011\u3015\u3009\u300b\uff63"
# Latin-style stops end a sentence before whitespace; the stops of other scripts (Chinese and
# Japanese 。！？, Arabic ؟ and ۔, Devanagari । ॥, Ethiopic ። ፧, Armenian ։, Myanmar ။,
# Khmer ។) also without it, since Chinese and Japanese put no space between sentences.
_BOUNDARY = re.compile(
    rf"(?P<latin>[.!?\u2026]+[{_CLOSERS}]*\s+)"
    r"|(?P<wide>[\u3002\uff01\uff1f\uff61\u061f\u06d4\u0964\u0965\u1362\u1367\u0589\u104b\u17d4]+"
    rf"(?P<closed>[{_CLOSERS}]*)(?P<space>\s*))"
)
_NEXT_STARTS_SENTENCE = re.compile(r"[\"'\u201c\u2018(\[]*[A-Z0-9\u00c0-\u024f]")
_OPENERS = re.compile(r"[\"'\u201c\u2018\u201e\u00ab\u00bf\u00a1(\[]*")
_WORD = re.compile(r"\w+", re.UNICODE)
_WORD_BEFORE = re.compile(r"[\w.]+$")
_ABBREVIATION_WINDOW = 64
_DOT_NUMBER = re.compile(r"\.\s*\d")
_ISO_DATE = re.compile(
    r"\b(?:date|published|posted|updated)?[:\s]*((?:19|20)\d\d-[01]\d-[0-3]\d)\b", re.I
)
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_LONG_DATE = re.compile(rf"\b({_MONTHS})\s+([0-3]?\d),\s+((?:19|20)\d\d)\b")


@dataclass(frozen=True)
class Sentence:
    """A sentence as a span of the original text; chrome lines are flagged, not removed."""

    start: int
    end: int
    boilerplate: bool = False


def normalize_text(text: str) -> str:
    """Typographic punctuation to ASCII, Unicode NFKC, whitespace collapsed to single spaces."""
    if not text.isascii():  # both steps are identities on ASCII, and most text is ASCII
        text = unicodedata.normalize("NFKC", text.translate(_PUNCT_MAP))
    return " ".join(text.split())


def line_key(line: str) -> str:
    """The form under which repeated lines are counted: normalised and lower-cased."""
    return normalize_text(line).lower()


def word_count(text: str) -> int:
    """Number of word tokens in text."""
    return len(_WORD.findall(text))


def sentence_key(text: str) -> str:
    """Case- and punctuation-insensitive form of a sentence, for duplicate detection."""
    return " ".join(_WORD.findall(normalize_text(text).lower()))


def _is_abbreviation(text: str, dot_index: int) -> bool:
    """True when the period at dot_index closes an abbreviation, not a sentence."""
    # Look back a bounded window only: searching all of text[:dot_index] made splitting a
    # document quadratic in its length (minutes for a few hundred kB).
    window_start = max(0, dot_index - _ABBREVIATION_WINDOW)
    match = _WORD_BEFORE.search(text, window_start, dot_index)
    if not match or (match.start() == window_start and window_start > 0):
        return False  # no word, or one longer than any abbreviation
    word = match.group(0)
    if word.lower() in _ABBREVIATIONS:
        return True
    if word.lower() in _NUMBER_ABBREVIATIONS:
        return bool(_DOT_NUMBER.match(text, dot_index))
    # Initialisms and initials: "U.S", "D.C", "J" in "J. Smith".
    return bool(re.fullmatch(r"(?:[A-Za-z]\.)*[A-Za-z]", word))


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans (start, end) of text[start:end], whitespace trimmed, never empty."""
    return list(iter_sentences(text, start, end))


def iter_sentences(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """split_sentences one span at a time (the first sentence without splitting the rest)."""
    end = len(text) if end is None else end
    cursor = start
    for match in _BOUNDARY.finditer(text, start, end):
        after = match.end()
        if after >= end:
            continue
        if match.group("latin") and not _starts_sentence(text, after):
            continue
        if match.group("closed") and not match.group("space") and text[after].isalpha():
            continue  # 「こんにちは。」と言った: the quoted sentence is part of a longer one
        if match.group(0).startswith(".") and _is_abbreviation(text, match.start()):
            continue
        span = _trim(text, cursor, match.start() + len(match.group(0).rstrip()))
        if span:
            yield span
        cursor = after
    span = _trim(text, cursor, end)
    if span:
        yield span


def _starts_sentence(text: str, position: int) -> bool:
    """True when text at position can open a sentence: a capital, a digit, a caseless letter."""
    if _NEXT_STARTS_SENTENCE.match(text, position):
        return True
    first = _OPENERS.match(text, position).end()
    if first >= len(text):
        return False
    # Uppercase Greek or Cyrillic, or a letter of a script without case (Arabic, Hebrew, CJK,
    # Devanagari): "Привет. Как дела" and "مرحبا. كيف" are two sentences each.
    char = text[first]
    return char.isalpha() and not char.islower()


def _trim(text: str, s: int, e: int) -> tuple[int, int] | None:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return (s, e) if e > s else None


def iter_lines(text: str) -> Iterable[tuple[int, int]]:
    """Spans of the non-blank lines of text, surrounding whitespace trimmed."""
    for match in re.finditer(r"[^\n]+", text):
        s, e = match.span()
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            yield s, e


def find_boilerplate(texts: Iterable[str], *, min_repeats: int, max_words: int) -> set[str]:
    """Line keys that are page chrome: short one-phrase lines repeated across the corpus.

    A line repeated within or across documents is chrome when it is short and a single
    phrase ("Registered Member", "Please, Log in or Register to view URLs content!").
    Repeated multi-sentence lines are quoted content and are left to de-duplication.
    """
    if min_repeats < 2:
        raise ValueError(f"min_repeats must be >= 2, got {min_repeats}")
    counts: Counter[str] = Counter()
    example: dict[str, str] = {}
    for text in texts:
        for s, e in iter_lines(text):
            key = line_key(text[s:e])
            counts[key] += 1
            example.setdefault(key, text[s:e])
    chrome = set()
    for key, count in counts.items():
        if count < min_repeats or not key or word_count(key) > max_words:
            continue
        # Sentence boundaries need the original case ("Coming soon. The US ...").
        if len(split_sentences(example[key])) == 1 and not _ISO_DATE.fullmatch(key):
            chrome.add(key)
    return chrome


_DATE_LABEL = re.compile(
    r"(?:date|published|posted|updated)[:\s]+(?:19|20)\d\d-[01]\d-[0-3]\d\b", re.I
)


def segment(text: str, boilerplate: set[str]) -> list[Sentence]:
    """All sentences of text, in order, with chrome lines flagged."""
    sentences: list[Sentence] = []
    for s, e in iter_lines(text):
        is_chrome = line_key(text[s:e]) in boilerplate
        label = _DATE_LABEL.match(text, s, e)
        if label and not is_chrome:
            # A dateline run into the first paragraph ("date 2025-03-09 Earlier this week").
            sentences.append(Sentence(s, label.end(), False))
            s = label.end()
            while s < e and text[s].isspace():
                s += 1
        for ss, se in split_sentences(text, s, e):
            sentences.append(Sentence(ss, se, is_chrome))
    return sentences


def extract_date(text: str) -> str:
    """The document's date as YYYY-MM-DD where its opening text states one, else ''."""
    head = text[:2000]
    match = _ISO_DATE.search(head)
    if match:
        return match.group(1)
    match = _LONG_DATE.search(head)
    if match:
        month = _MONTHS.split("|").index(match.group(1)) + 1
        return f"{match.group(3)}-{month:02d}-{int(match.group(2)):02d}"
    return ""


def extract_title(text: str, *, boilerplate: set[str], fallback: str, hint: str = "") -> str:
    """A human title: the HTML/PDF title, else a short first line, else the first sentence."""
    if hint.strip():
        return normalize_text(hint)[:200]
    for s, e in iter_lines(text):
        line = text[s:e]
        key = line_key(line)
        if key in boilerplate or _ISO_DATE.fullmatch(key.strip()):
            continue
        words = word_count(line)
        if 2 <= words <= 20 and not line.rstrip().endswith((".", ",", ";", ":")):
            return normalize_text(line)
        first = text[slice(*next(iter_sentences(text, s, e)))]
        first = normalize_text(_ISO_DATE.sub(" ", first, count=1)) if words else ""
        if first:
            return first if len(first) <= 90 else first[:87].rsplit(" ", 1)[0] + "..."
        break
    return fallback


if __name__ == "__main__":
    doc = Path(sys.argv[1]).read_text(encoding="utf-8", errors="replace")
    chrome = find_boilerplate([doc], min_repeats=2, max_words=12)
    for sentence in segment(doc, chrome):
        flag = "CHROME " if sentence.boilerplate else ""
        sys.stdout.write(
            f"{sentence.start}-{sentence.end} {flag}{doc[sentence.start : sentence.end]!r}\n"
        )
