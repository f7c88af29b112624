"""The reader: span decoding, word widening, question types, short answers, answerability."""

from __future__ import annotations

import re

import numpy as np
import pytest

from index import Chunk
from rag.answer_type import AnswerType, expected_type, fits
from rag.config import Config
from rag.extractive import Evidence
from rag.pipeline import Citation
from rag.reader import Reader, Reading, asks_for_explanation, asks_how, widen_to_words
from rag.reading import (
    PassageReading,
    answerability,
    answers,
    best_reading,
    citation_holding,
    lead_with_span,
    read_passages,
    restatable_terms,
    restates_question,
    retrieval_priors,
    short_answer_for,
    span_sentence,
)
from rag.retrieve import Hit


@pytest.mark.parametrize(
    ("text", "start", "end", "expected"),
    [
        ("the golden anniversary", 4, 8, "golden"),  # a word piece grows to its word
        ("in Eagle Pass, Texas.", 3, 21, "Eagle Pass, Texas"),  # trailing period trimmed
        ("named (TCO) here", 6, 11, "(TCO)"),  # balanced brackets kept
        ("about 25%) of", 6, 10, "25%"),  # an unopened closing bracket is not the answer's
        ("  spaced  ", 0, 10, "spaced"),
    ],
)
def test_widen_to_words(text, start, end, expected):
    s, e = widen_to_words(text, start, end)
    assert text[s:e] == expected


@pytest.mark.parametrize(
    ("question", "explanation", "how"),
    [
        ("Who won Super Bowl 50?", False, False),
        ("How many cartel bosses were sent?", False, False),
        ("How long did the call last?", False, False),
        ("When did he say it?", False, False),
        ("Why did the peso fall?", True, False),
        ("How does the tariff work?", False, True),
        ("How did Mexico's generals react?", False, True),
        ("Explain the drone programme", True, False),
    ],
)
def test_question_forms(question, explanation, how):
    assert asks_for_explanation(question) is explanation
    assert asks_how(question) is how


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many troops did Canada send?", AnswerType.QUANTITY),
        ("By how much have deaths fallen?", AnswerType.QUANTITY),
        ("How much money did BYD plan to invest?", AnswerType.QUANTITY),
        ("What percentage of fentanyl comes from Mexico?", AnswerType.QUANTITY),
        ("How long was the exercise?", AnswerType.DURATION),
        ("How old was he?", AnswerType.QUANTITY),
        ("In what year was he arrested?", AnswerType.YEAR),
        ("On what date did Vance speak?", AnswerType.DATE),
        ("On which day of the week was it held?", AnswerType.DATE),
        ("In which city was Camarena killed?", AnswerType.NAMED_PLACE),
        ("What country did BYD pick?", AnswerType.NAMED_PLACE),
        ("Where did Vance speak?", AnswerType.PLACE),
        ("In which state was the plant planned?", AnswerType.PLACE),
        # A state of matter, not a place.
        ("What state is oxygen shipped in?", None),
        # Left untyped: their answers are as often events, adverbs or phrases.
        ("When did the earliest examples occur?", None),
        ("When declining to announce invasions, what did Vance say?", None),
        ("How often does the Doctor travel alone?", None),
        ("How much literature has been written on it?", None),
        ("Who is the president of Mexico?", None),
    ],
)
def test_expected_answer_type(question, kind):
    assert expected_type(question) is kind


@pytest.mark.parametrize(
    ("kind", "span", "ok"),
    [
        (AnswerType.QUANTITY, "10,000", True),
        (AnswerType.QUANTITY, "half a dozen", True),
        (AnswerType.QUANTITY, "three-hour", True),
        (AnswerType.QUANTITY, "80%", True),
        (AnswerType.QUANTITY, "fentanyl labs", False),
        (AnswerType.QUANTITY, "top military officials", False),
        (AnswerType.YEAR, "1985", True),
        (AnswerType.YEAR, "the 6th century", True),
        (AnswerType.YEAR, "last September", False),
        (AnswerType.DATE, "Jan. 31", True),
        (AnswerType.DATE, "Thursday", True),
        (AnswerType.DATE, "mid-September", True),
        (AnswerType.DATE, "three", False),
        (AnswerType.DURATION, "three-hour", True),
        (AnswerType.DURATION, "20 minutes", True),
        (AnswerType.DURATION, "until the end of the Parliament", True),
        (AnswerType.DURATION, "first time", False),
        (AnswerType.PLACE, "Eagle Pass, Texas", True),
        (AnswerType.PLACE, "in the cytoplasm", True),
        (AnswerType.PLACE, "1985", False),
        (AnswerType.PLACE, "Jan. 31", False),
        (AnswerType.PLACE, "March 2025", False),
        (AnswerType.NAMED_PLACE, "Guadalajara", True),
        (AnswerType.NAMED_PLACE, "the capital", False),
        (AnswerType.NAMED_PLACE, "1985", False),
        # "What day of the week does it take place?" -> "Wednesdays".
        (AnswerType.DATE, "Wednesdays", True),
        (None, "anything at all", True),
    ],
)
def test_span_fits_its_answer_type(kind, span, ok):
    assert fits(kind, span) is ok


def _hit(text: str, *, source="a.txt", start=100, sentences=None, chunk_id=0) -> Hit:
    chunk = Chunk(
        id=chunk_id, source=source, title="A", date="", start=start, end=start + len(text),
        text=text, search_text=text, sentences=tuple(sentences or [(start, start + len(text))]),
        n_tokens=len(text.split()),
    )  # fmt: skip
    return Hit(chunk, 1, 1.0, 0.5, 1.0, 1, 1)


def _reading(hit: Hit, word: str, margin: float) -> PassageReading:
    s = hit.chunk.text.index(word)
    return PassageReading(hit, Reading(s, s + len(word), word, margin, 0.0))


def test_span_sentence_and_lead():
    text = "Vance spoke first. He was in Eagle Pass on Friday."
    hit = _hit(text, sentences=[(100, 118), (119, 100 + len(text))])
    lead = span_sentence(_reading(hit, "Eagle Pass", 3.0))
    assert lead is not None and lead.text == "He was in Eagle Pass on Friday."
    assert (lead.start, lead.end) == (119, 100 + len(text))
    other = span_sentence(_reading(hit, "Vance", 1.0))
    ordered = lead_with_span([other, lead], lead, max_sentences=3)
    assert [p.start for p in ordered] == [119, 100]


def _citation(n: int, hit: Hit, highlights) -> Citation:
    c = hit.chunk
    return Citation(n, c.source, c.title, c.start, c.end, c.text, highlights=tuple(highlights))


def test_short_answer_lies_in_a_cited_sentence_with_document_offsets():
    text = "Vance spoke first. He was in Eagle Pass on Friday."
    hit = _hit(text, sentences=[(100, 118), (119, 100 + len(text))])
    reading = _reading(hit, "Eagle Pass", 3.0)
    cited = [_citation(1, hit, [(119, 100 + len(text))])]
    short = short_answer_for("Where was Vance?", [reading], cited, min_margin=0.0,
                             within_highlights=True)  # fmt: skip
    assert short is not None
    assert (short.text, short.citation) == ("Eagle Pass", 1)
    document = " " * 100 + text
    assert document[short.start : short.end] == short.text
    # Outside every cited sentence, too weak, or a why question: no short answer.
    only_first = [_citation(1, hit, [(100, 118)])]
    assert short_answer_for("Where?", [reading], only_first, min_margin=0.0,
                            within_highlights=True) is None  # fmt: skip
    assert short_answer_for("Where?", [reading], cited, min_margin=5.0,
                            within_highlights=True) is None  # fmt: skip
    assert short_answer_for("Why was he there?", [reading], cited, min_margin=0.0,
                            within_highlights=True) is None  # fmt: skip
    # A "how" question gets a short answer only when the reader is sure of it.
    assert short_answer_for("How did he get there?", [reading], cited, min_margin=0.0,
                            within_highlights=True, min_how_margin=4.0) is None  # fmt: skip
    sure = short_answer_for("How did he get there?", [reading], cited, min_margin=0.0,
                            within_highlights=True, min_how_margin=2.0)  # fmt: skip
    assert sure is not None and sure.text == "Eagle Pass"


def test_short_answer_found_in_an_overlapping_cited_passage():
    """The passage read and the passage cited can be two overlapping chunks of one file."""
    text = "Vance spoke first. He was in Eagle Pass on Friday. Then he left."
    read = _hit(text, start=0, sentences=[(0, 18), (19, 50), (51, len(text))])
    cited_hit = _hit(text[19:], start=19, sentences=[(19, 50), (51, len(text))], chunk_id=1)
    reading = _reading(read, "Eagle Pass", 3.0)
    cited = [_citation(1, cited_hit, [(19, 50)])]
    assert citation_holding(reading, cited, within_highlights=True) is cited[0]
    short = short_answer_for("Where was Vance?", [reading], cited, min_margin=0.0,
                             within_highlights=True)  # fmt: skip
    assert short is not None and (short.start, short.end, short.citation) == (29, 39, 1)
    # Another file, or a span outside the cited sentence, is not held by that citation.
    elsewhere = [_citation(1, _hit(text, source="b.txt", start=0), [(0, len(text))])]
    assert citation_holding(reading, elsewhere, within_highlights=True) is None
    assert citation_holding(reading, [_citation(1, cited_hit, [(51, len(text))])],
                            within_highlights=True) is None  # fmt: skip
    # An LLM's citation holds any span of its passage.
    assert citation_holding(reading, [_citation(1, cited_hit, [(51, len(text))])],
                            within_highlights=False) is not None  # fmt: skip


def test_answerability_is_the_best_margin():
    hit = _hit("Vance was in Eagle Pass.")
    assert answerability([]) == float("-inf")
    assert answerability([_reading(hit, "Vance", -2.0), _reading(hit, "Eagle", 1.5)]) == 1.5


@pytest.mark.parametrize(
    ("margin", "dense", "coverage", "expected"),
    [
        (5.0, 0.1, 0.1, True),  # a sure span answers, whatever the evidence
        (-4.0, 0.3, 0.2, True),  # at unsure_margin: the margin alone decides
        (-4.1, 0.3, 0.2, False),  # unsure span, weak evidence (0.5 < 0.6)
        (-4.1, 0.4, 0.2, True),  # unsure span, evidence at min_unsure_evidence
        (-6.9, 0.7, 0.5, True),
        (-7.1, 0.9, 0.9, False),  # below min_answerability: never
        (float("-inf"), 0.9, 0.9, False),
    ],
)
def test_answers_combines_the_margin_with_the_evidence(margin, dense, coverage, expected):
    config = Config(min_answerability=-7.0, unsure_margin=-4.0, min_unsure_evidence=0.6)
    assert answers(margin, Evidence(dense, coverage), config=config) is expected


def _scored_hit(text: str, *, dense: float, bm25: float, chunk_id: int) -> Hit:
    hit = _hit(text, chunk_id=chunk_id, start=0)
    return Hit(hit.chunk, chunk_id + 1, 1.0, dense, bm25, 1, 1)


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        # 20 x cosine + 8 x BM25 over the best BM25 among the passages.
        ([(0.5, 10.0), (0.4, 5.0)], [18.0, 12.0]),
        # The BM25 scale does not matter (bm25s and Milvus score differently).
        ([(0.5, 1.0), (0.4, 0.5)], [18.0, 12.0]),
        # A dense-only hit (no BM25 score) and a list without any BM25 score.
        ([(0.5, 2.0), (0.6, 0.0)], [18.0, 12.0]),
        ([(0.5, 0.0), (0.25, 0.0)], [10.0, 5.0]),
    ],
)
def test_retrieval_priors(scores, expected):
    hits = [_scored_hit("x", dense=d, bm25=b, chunk_id=i) for i, (d, b) in enumerate(scores)]
    priors = retrieval_priors(hits, dense_weight=20.0, bm25_weight=8.0)
    assert priors == pytest.approx(expected)


class _FixedReader:
    """A reader whose margin for a passage is given by its text ("m=5.0 ..."), recording reads."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def read_one(self, question, text, *, sentences=(), kind=None) -> Reading:
        self.read.append(text)
        margin = float(text.split()[0][2:])
        return Reading(len(text) - 4, len(text), text[-4:], margin, 0.0)


@pytest.mark.parametrize(
    ("margins", "priors", "max_margin", "read"),
    [
        # The first span scores 10 + 10 = 20: a passage with prior 11 would need margin 9.
        ([10.0, 3.0, 3.0], [10.0, 11.0, 13.0], 8.0, [0, 2]),
        ([10.0, 3.0, 3.0], [10.0, 11.0, 13.0], 10.0, [0, 1, 2]),
        # Priors all zero: max_margin acts as a stop at that margin.
        ([9.0, 1.0], [0.0, 0.0], 8.0, [0]),
        ([7.0, 1.0], [0.0, 0.0], 8.0, [0, 1]),
    ],
)
def test_read_passages_skips_what_cannot_win(margins, priors, max_margin, read):
    hits = [_hit(f"m={m} pass word{i}", chunk_id=i) for i, m in enumerate(margins)]
    reader = _FixedReader()
    readings = read_passages(reader, "What word?", hits, priors=priors, max_margin=max_margin)
    assert [r.hit.chunk.id for r in readings] == read
    assert len(reader.read) == len(read)
    with pytest.raises(ValueError, match="priors"):
        read_passages(reader, "What word?", hits, priors=[0.0])


@pytest.mark.parametrize(
    ("margins", "priors", "chosen"),
    [
        ([5.0, 3.0], [0.0, 0.0], 0),  # no prior: the margin decides
        ([5.0, 3.0], [10.0, 13.0], 1),  # a better-matching passage outweighs 2 of margin
        ([5.0, 3.0], [10.0, 11.0], 0),
    ],
)
def test_best_reading_adds_the_prior_to_the_margin(margins, priors, chosen):
    hits = [_hit(f"m={m} pass word{i}", chunk_id=i) for i, m in enumerate(margins)]
    readings = [
        PassageReading(h, Reading(0, 1, "m", m, 0.0), p)
        for h, m, p in zip(hits, margins, priors, strict=True)
    ]
    best = best_reading(readings)
    assert best is not None and best.hit.chunk.id == chosen
    assert best_reading([]) is None


def test_unsure_margin_must_lie_above_min_answerability():
    with pytest.raises(ValueError, match="unsure_margin"):
        Config(min_answerability=-7.0, unsure_margin=-8.0)
    with pytest.raises(ValueError, match="min_unsure_evidence"):
        Config(min_unsure_evidence=3.0)


@pytest.fixture(scope="module")
def reader() -> Reader:
    from rag.pipeline import shared_reader

    return shared_reader()


def test_best_span_stays_inside_the_context_and_length(reader):
    start = np.array([9.0, 0.0, 5.0, 0.0, 0.0, 0.0], dtype=np.float32)
    end = np.array([9.0, 0.0, 0.0, 0.0, 4.0, 0.0], dtype=np.float32)
    score, i, j = reader._best_span(start, end, (2, 5))  # [CLS] and others outside
    assert (score, i, j) == (9.0, 0, 2)  # tokens 2..4 of the sequence
    # A start and an end further apart than MAX_ANSWER_TOKENS never make a span.
    from rag.reader import MAX_ANSWER_TOKENS

    n = MAX_ANSWER_TOKENS + 10
    start, end = np.zeros(n, np.float32), np.zeros(n, np.float32)
    start[0], end[n - 1], end[3] = 9.0, 9.0, 1.0
    score, i, j = reader._best_span(start, end, (0, n))
    assert (i, j) == (0, 3) and score == 10.0


def test_best_span_does_not_cross_a_sentence_boundary(reader):
    start = np.array([0.0, 9.0, 0.0, 0.0, 3.0, 0.0], dtype=np.float32)
    end = np.array([0.0, 0.0, 2.0, 0.0, 9.0, 0.0], dtype=np.float32)
    assert reader._best_span(start, end, (0, 6))[1:] == (1, 4)  # unconstrained: 9 + 9
    sentence_of = np.array([0, 0, 0, 1, 1, 1])
    score, i, j = reader._best_span(start, end, (0, 6), sentence_of)
    assert (score, i, j) == (12.0, 4, 4)  # 3 + 9 beats 9 + 2 inside sentence 0


def test_long_passages_are_read_in_overlapping_windows(reader):
    text = " ".join(f"word{i}" for i in range(600))
    windows = list(reader._windows("Which word?", text))
    assert len(windows) > 2
    covered = set()
    for ids, types, offsets, (lo, hi) in windows:
        assert len(ids) <= reader.max_length and len(types) == len(ids)
        assert hi - lo == len(offsets)
        covered.update(offsets)
    words = {(m.start(), m.end()) for m in re.finditer(r"\S+", text)}
    assert {s for s, _ in words} <= {s for s, _ in covered}


def test_reader_finds_the_expansion_of_an_acronym(reader):
    text = (
        "Trump is uniquely focused on TCOs [transnational criminal organizations, the official "
        "name for cartels], having designated them terrorists in one of his first orders."
    )
    reading = reader.read_one("What does TCO stand for?", text)
    assert "transnational criminal organizations" in reading.text.lower()
    assert reading.margin > 0
    assert text[reading.start : reading.end] == reading.text


def test_reader_says_no_answer_for_an_unrelated_passage(reader):
    text = "The weather in the valley was mild for most of the spring, with little rain."
    answered = reader.read_one("Who designated the cartels as terrorists?", text)
    assert answered.margin < 0


@pytest.mark.parametrize(
    ("question", "numbers"),
    [
        ("How many deaths were recorded in 2022?", {"2022"}),
        ("What replaced the 53rd State idea?", {"53"}),
        ("Who won Super Bowl 50, in 2016?", {"50", "2016"}),
        ("Who commands NORTHCOM?", set()),
    ],
)
def test_question_numbers(question, numbers):
    from rag.reading import question_numbers

    assert question_numbers(question) == numbers


def test_a_passage_without_the_questions_year_is_not_read(reader):
    from rag.reading import read_passages

    hit = _hit("In 2023 about 87,000 people died of fentanyl overdoses in the U.S.")
    asked_2023, asked_2022 = (
        read_passages(reader, f"How many people died of fentanyl overdoses in {y}?", [hit])[0]
        for y in (2023, 2022)
    )
    assert asked_2023.reading.text == "87,000" and asked_2023.margin > 0
    assert asked_2022.margin == float("-inf")


def test_a_span_of_the_wrong_answer_type_is_no_answer(reader):
    from rag.reading import read_passages

    hit = _hit("The CIA has increased secret drone flights over Mexico to find fentanyl labs.")
    typed = read_passages(reader, "How many drone flights did the CIA fly over Mexico?", [hit])
    assert typed[0].margin == float("-inf") and typed[0].reading.text == ""
    untyped = read_passages(reader, "What are the CIA's drone flights looking for?", [hit])
    assert "fentanyl labs" in untyped[0].reading.text


@pytest.mark.parametrize(
    ("question", "span", "restates"),
    [
        ("Which cartels did the administration designate?", "cartels", True),
        ("Who declined to comment on the call with Hegseth?", "Hegseth", True),
        ("What was the outcome of the U.S. attacks?", "the attacks", True),
        ("Which cartels did the administration designate?", "the Sinaloa cartel", False),
        ("Who declined to comment on the call with Hegseth?", "a spokesman", False),
        # A choice is answered by one of its own words.
        ("Were the experiments high-voltage or low-voltage?", "high-voltage", False),
        # Stop words alone say nothing either way.
        ("Did Vance say no?", "no", False),
    ],
)
def test_restates_question(question, span, restates):
    assert restates_question(span, restatable_terms(question)) is restates


def test_a_span_restating_the_question_is_no_answer(reader):
    from rag.reading import read_passages

    text = "The cartels were designated foreign terrorist organizations in February."
    question = "Which cartels were designated foreign terrorist organizations?"
    assert reader.read_one(question, text).text == "cartels"  # what the reader alone gives
    reading = read_passages(reader, question, [_hit(text)])
    assert reading[0].margin == float("-inf") and reading[0].reading.text == ""


def test_the_reader_keeps_its_span_inside_one_sentence(reader):
    text = (
        "The soundtrack for Series 5 was released on 8 November 2010. In February 2011 a "
        "further album followed, with music from the Christmas special."
    )
    from index.cleaning import split_sentences

    sentences = split_sentences(text)
    assert len(sentences) == 2
    reading = reader.read_one(
        "When was the soundtrack for series 5 released?", text, sentences=sentences
    )
    assert "8 November 2010" in reading.text
    assert reading.end <= sentences[0][1]
