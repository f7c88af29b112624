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

Also abstaining: a question with no content words (only question and stop words: "what is
the"), and a question mostly in another script than Latin whose terms the best passage covers
less than `Config.min_coverage_non_latin` (MiniLM knows English only). Never an answer
sentence: a question, text addressed to an AI model, a run of repeated words, a restatement
of the question; passages stuffed with the question's terms are damped (rag/injection.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from index import Lexicon
from rag.injection import (
    flagged_spans,
    injection_reason,
    is_question,
    is_stuffed_sentence,
    repetition_share,
    stuffing_damping,
)
from rag.retrieve import Hit, shingles

_MIN_ANSWER_WORDS = 4
# Words that ask but carry no topic: a question made only of these (and stop words) is no
# real question ("what is the", "tell me about it"). Stemmed by the store before comparing.
QUESTION_WORDS = (
    "what who whom whose which when where why how many much is are was were be been do does "
    "did has have had can could would should will shall might must tell me about please "
    "explain describe say said know i you we he she it its they them this that these "
    "those there here a an the of to in on at by for with from as and or but not no yes so if "
    "than then also any some more other else kind sort type thing things"
)


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


def question_weights(question: str, lexical: Lexicon) -> dict[str, float]:
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


def passage_trust(
    terms: Sequence[str], weights: dict[str, float], *, stuffing_limit: float
) -> float:
    """1.0 for ordinary text; less for a passage stuffed with the question's terms."""
    return stuffing_damping(repetition_share(terms, set(weights)), limit=stuffing_limit)


def measure_evidence(
    question: str, hits: Sequence[Hit], lexical: Lexicon, *, stuffing_limit: float = 0.0
) -> Evidence:
    """Best dense score and best passage coverage among the hits (stuffed passages damped)."""
    if not hits:
        return Evidence(0.0, 0.0)
    weights = question_weights(question, lexical)
    best_cov = 0.0
    for hit in hits:
        terms = lexical.tokenize(hit.chunk.search_text)
        trust = passage_trust(terms, weights, stuffing_limit=stuffing_limit)
        best_cov = max(best_cov, trust * coverage(weights, set(terms)))
    return Evidence(dense=max(h.dense_score for h in hits), coverage=best_cov)


def is_weak(evidence: Evidence, *, min_evidence: float) -> bool:
    """True when the passages are too far from the question to answer it."""
    return evidence.dense + evidence.coverage < min_evidence


def has_content_words(question: str, lexical: Lexicon) -> bool:
    """True when the question has a term besides question words and stop words."""
    return bool(set(lexical.tokenize(question)) - set(lexical.tokenize(QUESTION_WORDS)))


def latin_share(text: str) -> float:
    """Share of the letters of text that are Latin (1.0 when it has no letters)."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 1.0
    latin = sum(ch.isascii() or unicodedata.name(ch, "").startswith("LATIN") for ch in letters)
    return latin / len(letters)


def is_non_latin(text: str) -> bool:
    """True when most letters of text are in a script other than Latin (no model involved)."""
    return latin_share(text) < 0.5


_QUANTITY_Q = re.compile(
    r"^\s*(how (many|much|long|far|old)|what (percentage|share|number|amount))\b", re.I
)
_TIME_Q = re.compile(r"^\s*(when|what (year|date|day|month|time))\b", re.I)
_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|(?:thir|four|fif|six|"
    r"seven|eigh|nine)teen|(?:twen|thir|for|fif|six|seven|eigh|nine)ty|dozens?|hundreds?|"
    r"thousands?|millions?|billions?|trillions?|half|quarter|several|few)\b",
    re.I,
)
_TIME = re.compile(
    r"\d|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\b|\b(monday|tuesday|"
    r"wednesday|thursday|friday|saturday|sunday)s?\b|\b(today|yesterday|tomorrow|weeks?|months?|years?|"
    r"daily|weekly|monthly|annually|nightly|mornings?|evenings?|noon|midnight|"
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


def word_count(text: str) -> int:
    """Words of text; wide (CJK) characters count two to a word, since Chinese has no spaces."""
    wide = sum(1 for ch in text if ch.isalpha() and unicodedata.east_asian_width(ch) in "WF")
    if not wide:
        return len(text.split())
    return len(text.split()) + wide // 2


def clean_sentence(text: str) -> str:
    """A sentence as shown in an answer: spaces collapsed, its own "[8]" made "(8)".

    Bracketed numbers inside a quoted document (a verse number, a footnote) would read as
    citations of sources that do not exist.
    """
    return re.sub(r"\[(\d+)\]", r"(\1)", re.sub(r"\s+", " ", text).strip())


def answer_candidate(
    question: str, text: str, terms: Sequence[str], weights: dict[str, float]
) -> bool:
    """True when a sentence may answer: long enough, of the asked type, not hostile text.

    A question, text addressed to an AI model, a run of repeated words, and a sentence that
    adds no term to the question's own (its words restated) never answer.
    """
    if word_count(text) < _MIN_ANSWER_WORDS or not fits_answer_type(question, text):
        return False
    if is_question(text) or injection_reason(text) or is_stuffed_sentence(terms):
        return False
    return bool(set(terms) - set(weights))


def _overlaps(start: int, end: int, spans: Sequence[tuple[int, int, str]]) -> bool:
    """True when [start, end) overlaps one of the spans."""
    return any(start < e and s < end for s, e, _ in spans)


def pick_sentences(
    question: str,
    hits: Sequence[Hit],
    lexical: Lexicon,
    *,
    max_sentences: int,
    stuffing_limit: float = 0.0,
) -> list[PickedSentence]:
    """The best one to max_sentences sentences, strongest first, without near-repeats."""
    weights = question_weights(question, lexical)
    candidates: list[PickedSentence] = []
    for hit in hits:
        chunk = hit.chunk
        trust = passage_trust(
            lexical.tokenize(chunk.search_text), weights, stuffing_limit=stuffing_limit
        )
        hostile = flagged_spans(chunk.text)
        for start, end in chunk.sentences:
            if _overlaps(start - chunk.start, end - chunk.start, hostile):
                continue
            text = clean_sentence(chunk.text[start - chunk.start : end - chunk.start])
            terms = lexical.tokenize(text)
            if not answer_candidate(question, text, terms, weights):
                continue
            cov = coverage(weights, set(terms))
            score = trust * (cov + 0.3 * hit.dense_score + 0.05 / hit.rank)
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
