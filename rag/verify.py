"""Checking an LLM answer against its passages: markers, support per sentence, and the verdict.

    python -m rag ask "What did Hegseth threaten?" --model models/x.gguf --json   # "sentences"

A sentence is supported when most of its content words occur in the passages it cites, or when
about half do and its embedding is close to a cited passage; a number the passages do not
contain makes it unsupported. An answer with no valid citation, with most sentences
unsupported, empty, or cut off by the token limit is rejected (the caller falls back to the
extractive answer).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from index.cleaning import normalize_text, split_sentences
from rag.config import ABSTAIN_SENTENCE

_MARKER = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
_NUMBER = re.compile(r"\d[\d,.]*\d|\d")
MIN_OVERLAP = 0.75
MIN_OVERLAP_WITH_SIMILARITY = 0.4
MIN_SIMILARITY = 0.45


@dataclass(frozen=True)
class CheckedSentence:
    """An answer sentence without its markers, the passages it cites, and the verdict."""

    text: str
    citations: tuple[int, ...]
    supported: bool


@dataclass(frozen=True)
class Verification:
    """The checked sentences, the count of markers that pointed nowhere, and any rejection."""

    sentences: list[CheckedSentence]
    invalid_markers: int
    abstained: bool
    problem: str | None


def _marker_numbers(text: str, n_passages: int) -> tuple[list[int], int]:
    """Valid passage numbers in the markers of text, and how many pointed nowhere."""
    valid, invalid = [], 0
    for match in _MARKER.finditer(text):
        for raw in re.split(r"[,;]", match.group(1)):
            if 1 <= int(raw) <= n_passages:
                valid.append(int(raw))
            else:
                invalid += 1
    return valid, invalid


def split_cited(text: str, *, n_passages: int) -> tuple[list[tuple[str, tuple[int, ...]]], int]:
    """Sentences of an answer with their valid passage numbers; also counts invalid markers.

    Markers opening a sentence ("... border. [2] Next ...") belong to the sentence before.
    """
    pieces: list[tuple[str, list[int]]] = []
    invalid = 0
    for start, end in split_sentences(text):
        body = text[start:end]
        leading = re.match(r"^(?:\s*\[[^\]]*\])+", body)
        if leading and pieces:
            numbers, bad = _marker_numbers(leading.group(0), n_passages)
            pieces[-1][1].extend(numbers)
            invalid += bad
            body = body[leading.end() :]
        numbers, bad = _marker_numbers(body, n_passages)
        invalid += bad
        clean = re.sub(r"\s+([.,;:!?])", r"\1", normalize_text(_MARKER.sub(" ", body)))
        if re.search(r"\w", clean):
            pieces.append((clean, numbers))
        elif numbers and pieces:
            pieces[-1][1].extend(numbers)
    return [(t, tuple(dict.fromkeys(ns))) for t, ns in pieces], invalid


def is_abstention(text: str) -> bool:
    """True when the answer is the fixed abstention sentence (markers and case ignored)."""
    bare = normalize_text(_MARKER.sub(" ", text)).strip().lower().rstrip(".")
    return bare.startswith(ABSTAIN_SENTENCE.lower().rstrip("."))


def sentence_supported(
    sentence: str,
    passages: Sequence[str],
    *,
    tokenize: Callable[[str], list[str]],
    similarity: float,
) -> bool:
    """Lexical overlap with the cited passages, helped by embedding similarity."""
    if not passages:
        return False
    joined = " ".join(passages)
    for number in _NUMBER.findall(sentence):
        if number not in joined:
            return False
    words = set(tokenize(sentence))
    if not words:
        return similarity >= MIN_SIMILARITY
    overlap = len(words & set(tokenize(joined))) / len(words)
    if overlap >= MIN_OVERLAP:
        return True
    return overlap >= MIN_OVERLAP_WITH_SIMILARITY and similarity >= MIN_SIMILARITY


def verify_answer(
    text: str,
    passages: Sequence[str],
    *,
    finish_reason: str | None,
    tokenize: Callable[[str], list[str]],
    similarities: Callable[[list[str], list[tuple[int, ...]]], list[float]],
) -> Verification:
    """Check every sentence of an answer against the passages it cites (numbered from 1).

    `similarities(sentences, citations)` gives, per sentence, its best embedding similarity
    to the passages it cites.
    """
    if not text.strip():
        return Verification([], 0, False, "the model returned an empty answer")
    if is_abstention(text):
        return Verification([], len(_MARKER.findall(text)), True, None)
    cited, invalid = split_cited(text, n_passages=len(passages))
    if not cited:
        return Verification([], invalid, False, "the answer has no sentence")
    sims = similarities([t for t, _ in cited], [c for _, c in cited])
    checked = [
        CheckedSentence(
            text=t,
            citations=c,
            supported=bool(c)
            and sentence_supported(
                t, [passages[n - 1] for n in c], tokenize=tokenize, similarity=sim
            ),
        )
        for (t, c), sim in zip(cited, sims, strict=True)
    ]
    problem = None
    stripped = text.rstrip()
    if finish_reason == "length" and not stripped.endswith((".", "!", "?", "]", '"', "”")):
        problem = "the answer was cut off at the token limit"
    elif not any(s.citations for s in checked):
        problem = "the answer cites no passage"
    elif sum(not s.supported for s in checked) * 2 > len(checked):
        problem = "most sentences are not supported by the passages they cite"
    return Verification(checked, invalid, False, problem)
