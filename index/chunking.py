"""Chunking: pack sentences into passages that fit the embedder, with one-sentence overlap.

    python -m index.chunking corpus/000_3b56b7e336b84316.txt

A passage is a contiguous span of the original text, so `text[start:end]` is exactly what is
cited. Chrome lines inside a span are left out of the searchable text; a sentence repeated
within a document (the forum quoting an article again) is dropped and ends the passage there.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from index.cleaning import Sentence, normalize_text, sentence_key, word_count

TokenCounter = Callable[[Sequence[str]], list[int]]


@dataclass(frozen=True)
class ChunkSpan:
    """A passage: its span in the original text, its searchable text and its sentences."""

    start: int
    end: int
    search_text: str
    sentences: tuple[tuple[int, int], ...]
    n_tokens: int


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    clean: str
    tokens: int
    after_gap: bool  # a dropped duplicate stands between this unit and the previous one


def drop_duplicates(
    text: str, sentences: Sequence[Sentence], *, min_words: int
) -> list[tuple[Sentence, bool]]:
    """Non-chrome sentences whose text did not occur earlier in the document, with gap flags.

    A repeated sentence of at least `min_words` words is a duplicate. A shorter repeated one
    ("They are targeting Chinese companies.") is dropped only next to a dropped duplicate,
    as part of a quoted block; alone it may be an ordinary phrase ("No.").
    """
    candidates = [s for s in sentences if not s.boilerplate]
    keys = [sentence_key(text[s.start : s.end]) for s in candidates]
    seen: set[str] = set()
    repeated = []
    for key in keys:
        repeated.append(key in seen)
        seen.add(key)
    long_dup = [
        rep and word_count(text[s.start : s.end]) >= min_words
        for s, rep in zip(candidates, repeated, strict=True)
    ]
    kept: list[tuple[Sentence, bool]] = []
    gap = False
    for i, (sentence, key) in enumerate(zip(candidates, keys, strict=True)):
        near_dup = (i > 0 and long_dup[i - 1]) or (i + 1 < len(long_dup) and long_dup[i + 1])
        if not key or long_dup[i] or (repeated[i] and near_dup):
            gap = gap or bool(key)
            continue
        kept.append((sentence, gap))
        gap = False
    return kept


def _split_long(
    text: str, start: int, end: int, limit: int, count: TokenCounter
) -> list[tuple[int, int]]:
    """Cut an over-long sentence at word boundaries into spans of at most `limit` tokens."""
    words = [m.span() for m in re.finditer(r"\S+", text[start:end])]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        # Binary search the longest word run that fits. A word is at least one word piece
        # (or none, when the tokenizer drops it), so no run longer than `limit` words needs
        # probing; searching up to the end of the sentence made this quadratic in its length.
        lo, hi = i + 1, min(len(words), i + limit)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            piece = normalize_text(text[start + words[i][0] : start + words[mid - 1][1]])
            if count([piece])[0] <= limit:
                lo = mid
            else:
                hi = mid - 1
        first, last = start + words[i][0], start + words[lo - 1][1]
        if lo == i + 1 and count([normalize_text(text[first:last])])[0] > limit:
            # One "word" over the limit: unspaced scripts (Chinese, Japanese) or a long run of
            # symbols. Cut it by characters, or the embedder would silently truncate it.
            spans.extend(_split_characters(text, first, last, limit, count))
        else:
            spans.append((first, last))
        i = lo
    return spans


def _split_characters(
    text: str, start: int, end: int, limit: int, count: TokenCounter
) -> list[tuple[int, int]]:
    """Cut text[start:end] into the longest character runs of at most `limit` tokens."""
    spans: list[tuple[int, int]] = []
    s = start
    while s < end:
        lo, hi = s + 1, end
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count([normalize_text(text[s:mid])])[0] <= limit:
                lo = mid
            else:
                hi = mid - 1
        spans.append((s, lo))
        s = lo
    return spans


def _units(
    text: str, kept: Sequence[tuple[Sentence, bool]], limit: int, count: TokenCounter
) -> list[_Unit]:
    cleans = [normalize_text(text[s.start : s.end]) for s, _ in kept]
    tokens = count(cleans)
    units: list[_Unit] = []
    for (sentence, gap), clean, n in zip(kept, cleans, tokens, strict=True):
        if n <= limit:
            units.append(_Unit(sentence.start, sentence.end, clean, n, gap))
            continue
        for i, (s, e) in enumerate(_split_long(text, sentence.start, sentence.end, limit, count)):
            piece = normalize_text(text[s:e])
            units.append(_Unit(s, e, piece, count([piece])[0], gap and i == 0))
    return units


def chunk_document(
    text: str,
    sentences: Sequence[Sentence],
    *,
    count_tokens: TokenCounter,
    chunk_tokens: int,
    max_tokens: int,
    overlap_sentences: int,
    dedup_min_words: int,
    counts_add_up: bool = False,
) -> list[ChunkSpan]:
    """Pack a document's sentences into passages of at most max_tokens word pieces.

    counts_add_up: the tokenizer counts texts joined by a space as the sum of their counts
    (BERT word pieces do), so a passage's size is summed instead of tokenised again.
    """
    if chunk_tokens > max_tokens:
        raise ValueError(f"chunk_tokens {chunk_tokens} > max_tokens {max_tokens}")
    kept = drop_duplicates(text, sentences, min_words=dedup_min_words)
    units = _units(text, kept, chunk_tokens, count_tokens)
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    for unit in units:
        # Joining adds no word pieces between sentences; the final exact count below checks it.
        size = sum(u.tokens for u in current)
        if current and (unit.after_gap or size + unit.tokens > chunk_tokens):
            groups.append(current)
            carry = (
                [] if unit.after_gap else current[-overlap_sentences:] if overlap_sentences else []
            )
            while carry and sum(u.tokens for u in carry) + unit.tokens > chunk_tokens:
                carry = carry[1:]
            current = list(carry)
        current.append(unit)
    if current:
        groups.append(current)
    # A group made only of the previous group's tail adds nothing.
    groups = [g for i, g in enumerate(groups) if i == 0 or g[-1] is not groups[i - 1][-1]]
    chunks: list[ChunkSpan] = []
    pending = list(reversed(groups))
    while pending:
        group = pending.pop()
        search_text = " ".join(u.clean for u in group)
        n = sum(u.tokens for u in group) if counts_add_up else count_tokens([search_text])[0]
        if n > max_tokens and len(group) > 1:
            # Sentence counts are summed approximately above; the exact count decides.
            half = len(group) // 2
            pending.extend([group[half:], group[:half]])
            continue
        chunks.append(
            ChunkSpan(
                start=group[0].start,
                end=group[-1].end,
                search_text=search_text,
                sentences=tuple((u.start, u.end) for u in group),
                n_tokens=n,
            )
        )
    return chunks


if __name__ == "__main__":
    from index.cleaning import find_boilerplate, segment

    doc = Path(sys.argv[1]).read_text(encoding="utf-8", errors="replace")
    chrome = find_boilerplate([doc], min_repeats=2, max_words=12)
    for chunk in chunk_document(
        doc,
        segment(doc, chrome),
        count_tokens=lambda texts: [len(t.split()) for t in texts],
        chunk_tokens=120,
        max_tokens=254,
        overlap_sentences=1,
        dedup_min_words=6,
    ):
        sys.stdout.write(f"[{chunk.start}:{chunk.end}] {chunk.n_tokens} {chunk.search_text[:80]}\n")
