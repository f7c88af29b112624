"""Extractive answers: the retrieved sentences that best cover the question, each cited.

    python -m rag ask "How many cartel bosses did Mexico hand over?"

Sentence score = weighted coverage of the question's terms (BM25 idf weights, stemmed) plus the
passage's dense similarity, so a sentence must share the question's rare words and come from a
passage about the question.

Abstention. The answer is withheld when the evidence is weak: the best passage's cosine
similarity to the question plus the best passage's idf-weighted coverage of the question's
terms is below `Config.min_evidence`. Terms the corpus never uses get the highest idf, so a
question about something absent scores low. Questions that ask for a quantity or a time
("how many", "when", "what year") also need a sentence that states a number or a date;
without one the system abstains. The threshold was calibrated on eval/queries/corpus.jsonl
(answerable vs unanswerable) by `python -m eval --queries eval/queries/corpus.jsonl`; the
figures are in the closing note of issue 2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from index import LexicalStore
from rag.retrieve import Hit, shingles

_MIN_ANSWER_WORDS = 4


@dataclass(frozen=True)
class Evidence:
    """How strongly the retrieved passages bear on the question."""

    dense: float
    coverage: float


@dataclass(frozen=True)
class PickedSentence:
    """An answer sentence: its text, the hit it comes from, and its span in the document."""

    text: str
    hit: Hit
    start: int
    end: int
    score: float


def question_weights(question: str, lexical: LexicalStore) -> dict[str, float]:
    """idf weight per question term; terms absent from the corpus weigh the most."""
    terms = lexical.tokenize(question)
    known = lexical.idf(terms)
    ceiling = max(known.values(), default=1.0) + 1.0
    return {t: known.get(t, ceiling) for t in terms}


def coverage(weights: dict[str, float], terms: set[str]) -> float:
    """Share of the question's idf weight whose terms occur in terms."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return sum(w for t, w in weights.items() if t in terms) / total


def measure_evidence(question: str, hits: Sequence[Hit], lexical: LexicalStore) -> Evidence:
    """Best dense score and best passage coverage among the hits."""
    if not hits:
        return Evidence(0.0, 0.0)
    weights = question_weights(question, lexical)
    best_cov = max(coverage(weights, set(lexical.tokenize(h.chunk.search_text))) for h in hits)
    return Evidence(dense=max(h.dense_score for h in hits), coverage=best_cov)


def is_weak(evidence: Evidence, *, min_evidence: float) -> bool:
    """True when the passages are too far from the question to answer it."""
    return evidence.dense + evidence.coverage < min_evidence


_QUANTITY_Q = re.compile(
    r"^\s*(how (many|much|long|far|old)|what (percentage|share|number|amount))\b", re.I
)
_TIME_Q = re.compile(r"^\s*(when|what (year|date|day|month|time))\b", re.I)
_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozen|hundred|"
    r"thousand|million|billion|half|quarter|several|few)\b",
    re.I,
)
_TIME = re.compile(
    r"\d|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\b|\b(monday|tuesday|"
    r"wednesday|thursday|friday|saturday|sunday|today|yesterday|tomorrow|week|month|year|"
    r"ago|last|next|earlier|later|since|before|after|during|recently|soon)\b",
    re.I,
)


def fits_answer_type(question: str, sentence: str) -> bool:
    """A quantity question needs a number in the sentence, a time question a time expression."""
    if _QUANTITY_Q.search(question):
        return bool(_NUMBER.search(sentence))
    if _TIME_Q.search(question):
        return bool(_TIME.search(sentence))
    return True


def clean_sentence(text: str) -> str:
    """A sentence as shown in an answer: spaces collapsed, its own "[8]" made "(8)".

    Bracketed numbers inside a quoted document (a verse number, a footnote) would read as
    citations of sources that do not exist.
    """
    return re.sub(r"\[(\d+)\]", r"(\1)", re.sub(r"\s+", " ", text).strip())


def pick_sentences(
    question: str, hits: Sequence[Hit], lexical: LexicalStore, *, max_sentences: int
) -> list[PickedSentence]:
    """The best one to max_sentences sentences, strongest first, without near-repeats."""
    weights = question_weights(question, lexical)
    candidates: list[PickedSentence] = []
    for hit in hits:
        chunk = hit.chunk
        for start, end in chunk.sentences:
            text = clean_sentence(chunk.text[start - chunk.start : end - chunk.start])
            if len(text.split()) < _MIN_ANSWER_WORDS or not fits_answer_type(question, text):
                continue
            cov = coverage(weights, set(lexical.tokenize(text)))
            score = cov + 0.3 * hit.dense_score + 0.05 / hit.rank
            candidates.append(PickedSentence(text, hit, start, end, score))
    candidates.sort(key=lambda c: -c.score)
    if not candidates:
        return []
    picked: list[PickedSentence] = []
    seen: list[set] = []
    floor = candidates[0].score * 0.75
    for cand in candidates:
        if len(picked) >= max_sentences or cand.score < floor:
            break
        sh = shingles(cand.text, 3)
        if any(len(sh & other) / max(1, min(len(sh), len(other))) > 0.5 for other in seen):
            continue
        picked.append(cand)
        seen.append(sh)
    return picked
