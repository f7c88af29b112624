"""Reading retrieved passages: answerability, the short answer, and span support.

    python -m rag ask "What does TCO stand for?" --json

The reader (rag/reader.py) reads the best few passages; its best margin over "no answer
here" is the question's answerability: below `Config.min_answerability` the system abstains
(and an LLM is not called). A span stays inside one sentence, and a question that asks for a
quantity, a duration, a year, a date or a place takes only a span of that type
(rag/answer_type.py), and a span made only of the question's own words ("Which cartels ...?"
-> "cartels") answers nothing: a passage whose best span is either holds no answer. The
winning span becomes the short answer, the sentence holding it leads the extractive answer,
and in LLM mode a sentence whose cited passages hold no answer span is marked unsupported.

Calibration (issue 13, measured by `python -m eval.squad --abstention` and `make eval`): on
SQuAD the margin separates questions about indexed and absent articles well (threshold 0,
five passages read: false abstention 0.08, abstain recall 0.82), but on the default corpus's
news and forum text the reader is unsure of many answerable questions too (threshold 0:
false abstention 0.11). The default, -4, keeps false abstention under 0.05 on both of the
project's query sets (-3 reaches 0.050 on the unseen one; see Config.min_answerability).
Below `Config.unsure_margin` (by default the same -4, so the band is empty) a span counts
only when the passages' retrieval evidence is not weak too (`answers`): a question about an
absent SQuAD article has both a low margin and little evidence (median 0.56, against 1.25
for an indexed one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from index.analyzer import analyzer
from rag.answer_type import expected_type
from rag.config import Config
from rag.extractive import Evidence, PickedSentence, clean_sentence
from rag.injection import flagged_spans
from rag.reader import Reader, Reading, asks_for_explanation, asks_how
from rag.retrieve import Hit

# The answerability of a question no passage was read for (no reader, no passages).
NOT_READ = float("-inf")


@dataclass(frozen=True)
class PassageReading:
    """The reader's best span in a retrieved passage, in document offsets."""

    hit: Hit
    reading: Reading
    # The passage's retrieval prior (retrieval_priors), added to the margin to choose a span.
    prior: float = 0.0

    @property
    def start(self) -> int:
        """Document offset where the span starts."""
        return self.hit.chunk.start + self.reading.start

    @property
    def end(self) -> int:
        """Document offset where the span ends."""
        return self.hit.chunk.start + self.reading.end

    @property
    def margin(self) -> float:
        """The reader's margin of the span over "no answer here"."""
        return self.reading.margin


@dataclass(frozen=True)
class ShortAnswer:
    """The exact span that answers: `text == document_text[start:end]`, in citation n."""

    text: str
    source: str
    start: int
    end: int
    citation: int

    def to_dict(self) -> dict:
        """The JSON form (in `rag ask --json`, /api/ask, the eval report)."""
        return {
            "text": self.text,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "citation": self.citation,
        }


_NUMBER = re.compile(r"\d[\d,.:]*")


def question_numbers(question: str) -> set[str]:
    """The numbers a question states ("in 2022", "the 53rd state"), trailing marks removed."""
    return {m.group().rstrip(",.:") for m in _NUMBER.finditer(question)}


def _states_numbers(hit: Hit, numbers: set[str]) -> bool:
    """True when the passage (text, title, date) holds every number of the question.

    A question about 2022 is not answered by a passage about 2023, however alike they read;
    the reader's score barely notices the difference (measured on eval/queries/corpus.jsonl:
    this check raised abstain recall from 0.08 to 0.11 with no false abstention added).
    """
    chunk = hit.chunk
    found = set(_NUMBER.findall(f"{chunk.text} {chunk.title} {chunk.date}"))
    found |= {n.rstrip(",.:") for n in found}
    return numbers <= found


_CHOICE = re.compile(r"\bor\b", re.I)


def restatable_terms(question: str) -> frozenset[str]:
    """The question's terms a span may not consist of alone (none for a choice question).

    "What was the outcome of the U.S. attacks ...?" is not answered by "attacks". A choice
    between two things ("high-voltage or low-voltage?") is answered by one of its own words,
    so it is exempt. On the questions of the reader's training articles, 0.4% of gold answers
    restate their question (24 of 5,626), most of them about terms ("randomized algorithms").
    """
    if _CHOICE.search(question):
        return frozenset()
    return frozenset(analyzer().tokenize(question))


def restates_question(span: str, question_terms: frozenset[str]) -> bool:
    """True when every term of the span is among the question's (restatable_terms)."""
    terms = set(analyzer().tokenize(span))
    return bool(terms) and terms <= question_terms


def _usable(hit: Hit, reading: Reading, question_terms: frozenset[str]) -> bool:
    """A span inside hostile text (addressed to an AI), an empty one, or one restating the
    question answers nothing."""
    if reading.end <= reading.start or restates_question(reading.text, question_terms):
        return False
    return not any(
        reading.start < e and s < reading.end for s, e, _ in flagged_spans(hit.chunk.text)
    )


# Markup and chat-template markers in a question say nothing about what it asks, and they
# pull the reader's attention away from its words ("<script>...</script> Who commands X?").
_MARKUP = re.compile(r"<[^<>]{0,60}>|\[/?INST\]|<\|[^|]{0,30}\|>")


_WH = re.compile(r"\b(who|whom|whose|what|which|when|where|why|how)\b", re.I)


def reader_question(question: str) -> str:
    """The question as the reader sees it: markup removed, spaces collapsed.

    A question wrapped in markup keeps only the clause from its last question word, since
    what came around the markup ("alert(1)", "You are evil") is not what is asked.
    """
    if not _MARKUP.search(question):
        return question
    cleaned = " ".join(_MARKUP.sub(" ", question).split())
    asks = list(_WH.finditer(cleaned))
    if asks:
        cleaned = cleaned[asks[-1].start() :]
    return cleaned or question


def passage_sentences(hit: Hit) -> list[tuple[int, int]]:
    """The passage's sentences as offsets into its text (the chunk's are document offsets)."""
    chunk = hit.chunk
    return [(s - chunk.start, e - chunk.start) for s, e in chunk.sentences]


def retrieval_priors(
    hits: Sequence[Hit], *, dense_weight: float, bm25_weight: float
) -> list[float]:
    """Each passage's prior for span choice: weighted cosine plus weighted relative BM25.

    BM25 is taken relative to the best BM25 score among the passages, so the prior reads
    the same whatever an engine's BM25 scale (FAISS with bm25s, Milvus's full-text search).
    """
    best_bm25 = max((h.bm25_score for h in hits), default=0.0)
    scale = bm25_weight / best_bm25 if best_bm25 > 0 else 0.0
    return [dense_weight * h.dense_score + scale * max(h.bm25_score, 0.0) for h in hits]


def read_passages(
    reader: Reader,
    question: str,
    hits: Sequence[Hit],
    *,
    priors: Sequence[float] | None = None,
    max_margin: float = float("inf"),
) -> list[PassageReading]:
    """The reader's best usable span per passage read, in the order of the hits.

    A passage is skipped when even a span of margin max_margin would not let it win, its
    prior being that far below the best choice score so far: its read could not change the
    answer unless its margin were exceptional (99% are under 12). On 2,000 SQuAD questions,
    max margin 8 read 2.0 passages of 5 and kept F1 within 0.15 of reading all five.
    """
    question = reader_question(question)
    numbers = question_numbers(question)
    kind = expected_type(question)
    question_terms = restatable_terms(question)
    priors = list(priors) if priors is not None else [0.0] * len(hits)
    if len(priors) != len(hits):
        raise ValueError(f"{len(priors)} priors for {len(hits)} passages")
    out: list[PassageReading] = []
    best = -float("inf")
    for hit, prior in zip(hits, priors, strict=True):
        if out and best - prior >= max_margin:
            continue
        if not _states_numbers(hit, numbers):  # not worth reading
            out.append(PassageReading(hit, Reading(0, 0, "", NOT_READ, 0.0), prior))
            continue
        reading = reader.read_one(
            question, hit.chunk.text, sentences=passage_sentences(hit), kind=kind
        )
        if not _usable(hit, reading, question_terms):
            reading = Reading(0, 0, "", NOT_READ, reading.null_score)
        out.append(PassageReading(hit, reading, prior))
        best = max(best, choice_score(out[-1]))
    return out


def answerability(readings: Sequence[PassageReading]) -> float:
    """The best margin of any passage's span over "no answer here" (-inf when none read)."""
    return max((r.margin for r in readings), default=NOT_READ)


def answers(margin: float, evidence: Evidence, *, config: Config) -> bool:
    """True when the reader's best margin, with the passages' evidence, says they answer.

    Below min_answerability never. Below unsure_margin (the reader half-believes a span) only
    when the evidence (best cosine plus term coverage, as min_evidence) reaches
    min_unsure_evidence: two weak signals together mean the documents are elsewhere.
    """
    if margin < config.min_answerability:
        return False
    if margin >= config.unsure_margin:
        return True
    return evidence.dense + evidence.coverage >= config.min_unsure_evidence


def choice_score(reading: PassageReading) -> float:
    """How a span is chosen among passages: its margin plus its passage's retrieval prior.

    The margin alone ignores how well the passage matches the question as a whole. On 2,000
    held-out SQuAD questions outside the reported sample (5 passages, max margin 8), F1 of
    the chosen span: margin alone 55.9, plus 10 times the cosine 56.8, plus 8 times the
    relative BM25 57.4, plus both (20 and 8) 58.2. Abstention still uses the margin alone.
    """
    return reading.margin + reading.prior


def best_reading(readings: Sequence[PassageReading]) -> PassageReading | None:
    """The passage reading whose span is chosen (highest choice_score), or None."""
    return max(readings, key=choice_score, default=None)


def span_sentence(reading: PassageReading) -> PickedSentence | None:
    """The passage sentence that holds the reading's span (None if the span crosses two)."""
    chunk = reading.hit.chunk
    for start, end in chunk.sentences:
        if start <= reading.start and reading.end <= end:
            text = clean_sentence(chunk.text[start - chunk.start : end - chunk.start])
            return PickedSentence(text, reading.hit, start, end, score=float("inf"))
    return None


def lead_with_span(
    picked: Sequence[PickedSentence], lead: PickedSentence, *, max_sentences: int
) -> list[PickedSentence]:
    """The span's sentence first, then the other picked sentences (no repeat of it)."""
    rest = [
        p
        for p in picked
        if not (p.hit.chunk.source == lead.hit.chunk.source and p.start == lead.start)
    ]
    return [lead, *rest][:max_sentences]


def citation_holding(reading: PassageReading, citations: Sequence, *, within_highlights: bool):
    """The citation whose passage (or, within_highlights, one of whose sentences) holds the span.

    Matched by document and offsets, not by passage: overlapping passages of one document
    share sentences, and the cited one need not be the one the reader read.
    """
    for c in citations:
        if c.source != reading.hit.chunk.source:
            continue
        ranges = c.highlights if within_highlights else ((c.start, c.end),)
        if any(s <= reading.start and reading.end <= e for s, e in ranges):
            return c
    return None


def short_answer_for(
    question: str,
    readings: Sequence[PassageReading],
    citations: Sequence,
    *,
    min_margin: float,
    within_highlights: bool,
    min_how_margin: float = float("inf"),
) -> ShortAnswer | None:
    """The best span among the cited passages, or None.

    With within_highlights the span must lie inside a cited sentence (extractive answers);
    an LLM's sentences are its own words, so there any span of a cited passage counts. None
    for a question answered by an explanation (why), and when no cited passage holds a span
    the reader believes in. A "how" question gets one only when the reader is sure
    (min_how_margin): "How did Mexico's generals react?" is answered by "shocked and angered",
    "How does the tariff work?" by no phrase.
    """
    if asks_for_explanation(question):
        return None
    if asks_how(question):
        min_margin = max(min_margin, min_how_margin)
    candidates = []
    for r in readings:
        if r.margin < min_margin:
            continue
        citation = citation_holding(r, citations, within_highlights=within_highlights)
        if citation is not None:
            candidates.append((r, citation.n))
    if not candidates:
        return None
    best, n = max(candidates, key=lambda pair: choice_score(pair[0]))
    return ShortAnswer(
        text=best.reading.text, source=best.hit.chunk.source, start=best.start, end=best.end,
        citation=n,
    )  # fmt: skip
