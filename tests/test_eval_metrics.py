"""Metric functions of eval/ against hand-computed cases (no model, no index)."""

from __future__ import annotations

import pytest

from eval.metrics import (
    Outcome,
    aggregate,
    best_over_golds,
    citation_precision,
    contains_answer,
    distinct_in_order,
    exact_match,
    first_rank,
    hit_at,
    is_correct,
    mean_reciprocal_rank,
    mrr_at_k,
    ndcg_at_k,
    normalize_answer,
    percentile,
    recall_at_k,
    strip_citation_markers,
    token_f1,
)
from eval.squad import parse_squad, slug, squad_scores


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("an apple a day", "apple day"),
        ("A, B. and C!", "b and c"),  # "a" alone is an article; punctuation gone
        ("  Denver   Broncos\n", "denver broncos"),
        ("theater another", "theater another"),  # articles only as whole words
        ("U.S.-Mexico", "usmexico"),  # punctuation removed, not replaced by a space
        ("$1,000.50", "100050"),
        ("Rome wasn’t built", "rome wasn’t built"),  # the official script keeps non-ASCII
        ("THE", ""),
        ("", ""),
    ],
)
def test_normalize_answer_like_the_official_script(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("prediction", "gold", "em", "f1"),
    [
        ("Denver Broncos", "Denver Broncos", 1.0, 1.0),
        ("the Denver Broncos!", "Denver Broncos", 1.0, 1.0),
        ("Denver", "Denver Broncos", 0.0, 2 * (1 * 0.5) / 1.5),  # p=1, r=1/2 -> 2/3
        ("Broncos of Denver", "Denver Broncos", 0.0, 2 * (2 / 3 * 1) / (2 / 3 + 1)),  # 0.8
        ("Carolina Panthers", "Denver Broncos", 0.0, 0.0),
        ("a a b", "a b b", 0.0, 2 / 3),  # articles vanish: "b" vs "b b" -> p=1, r=1/2
        ("x x y", "x y y", 0.0, 2 * (2 / 3) * (2 / 3) / (4 / 3)),  # common {x:1,y:1} = 2
        ("", "Denver", 0.0, 0.0),
        ("the", "a", 1.0, 0.0),  # both normalise to "": equal, but no common tokens
    ],
)
def test_exact_match_and_token_f1(prediction, gold, em, f1):
    assert exact_match(prediction, gold) == em
    assert token_f1(prediction, gold) == pytest.approx(f1)


def test_best_over_golds_takes_the_maximum():
    golds = ["Denver Broncos", "Broncos", "the Broncos"]
    assert best_over_golds(exact_match, "Broncos", golds) == 1.0
    assert best_over_golds(token_f1, "Denver", golds) == pytest.approx(2 / 3)
    assert best_over_golds(token_f1, "Denver", []) == 0.0


@pytest.mark.parametrize(
    ("text", "golds", "expected"),
    [
        ("Mexico handed over 29 cartel bosses. [1]", ["29"], True),
        ("Mexico handed over 290 cartel bosses.", ["29"], False),  # word bounds
        ("He spoke in Eagle Pass, Texas.", ["Eagle Pass, Texas"], True),
        ("He spoke in EAGLE PASS.", ["the Eagle Pass"], True),
        ("“Rome wasn't built in a day,” he said", ["Rome wasn’t built in a day"], True),
        ("It was a three-hour exercise", ["three-hour"], True),
        ("It was a three hour exercise", ["three-hour"], True),
        ("with gold-themed initiatives", ["gold"], True),  # hyphens split words here
        ("U.S.-Mexico border", ["U.S."], True),
        ("nothing relevant", ["29", "Eagle Pass"], False),
        ("anything", [], False),
        ("anything", ["the"], False),  # a gold that normalises to nothing never matches
    ],
)
def test_contains_answer(text, golds, expected):
    assert contains_answer(text, golds) is expected


def test_strip_citation_markers():
    assert strip_citation_markers("A fact [1]. Another [2] [3]") == "A fact. Another"
    assert strip_citation_markers("in [the] text") == "in [the] text"


@pytest.mark.parametrize(
    ("ranked", "gold", "expected"),
    [
        (["a", "b", "c"], {"a"}, 1),
        (["a", "b", "c"], {"c", "b"}, 2),
        (["a", "b", "c"], {"z"}, None),
        ([], {"a"}, None),
    ],
)
def test_first_rank(ranked, gold, expected):
    assert first_rank(ranked, gold) == expected


def test_distinct_in_order():
    assert distinct_in_order(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("ranks", "k", "expected"),
    [
        ([1, 2, None, 6], 1, 0.25),
        ([1, 2, None, 6], 3, 0.5),
        ([1, 2, None, 6], 5, 0.5),
        ([1, 2, None, 6], 10, 0.75),
        ([], 5, None),
    ],
)
def test_hit_at(ranks, k, expected):
    assert hit_at(ranks, k) == expected


def test_mean_reciprocal_rank():
    # (1 + 1/2 + 0 + 1/4) / 4 = 0.4375
    assert mean_reciprocal_rank([1, 2, None, 4]) == pytest.approx(0.4375)
    assert mean_reciprocal_rank([]) is None


# log2(3) = 1.58496, so 1/log2(3) = 0.63093 (rank 2) and 1/log2(4) = 0.5 (rank 3).
@pytest.mark.parametrize(
    ("ranked", "qrels", "k", "expected"),
    [
        (["a", "b", "c"], {"a": 1}, 10, 1.0),
        (["b", "a"], {"a": 1}, 10, 0.630930),
        # Graded: DCG 1/1 + 2/log2(3) = 2.26186; ideal 2/1 + 1/log2(3) = 2.63093.
        (["b", "a", "x"], {"a": 2, "b": 1}, 10, 0.859719),
        # Only b (grade 2) at rank 3 of ideal [2, 1]: (2 * 0.5) / 2.63093.
        (["x", "y", "b"], {"a": 1, "b": 2}, 10, 0.380094),
        # A zero grade is judged non-relevant and left out of the ideal ranking.
        (["a", "b"], {"a": 0, "b": 1}, 10, 0.630930),
        (["x", "a"], {"a": 1}, 1, 0.0),
        # Ideal cut at k too: DCG@1 = 1, ideal@1 = 3 -> 1/3.
        (["b", "a"], {"a": 3, "b": 1}, 1, 0.333333),
        (["a"], {"a": 0}, 10, None),
    ],
)
def test_ndcg_at_k(ranked, qrels, k, expected):
    value = ndcg_at_k(ranked=ranked, qrels=qrels, k=k)
    assert value == (None if expected is None else pytest.approx(expected, abs=1e-5))


@pytest.mark.parametrize(
    ("ranked", "qrels", "k", "expected"),
    [
        (["a", "x"], {"a": 1, "b": 2, "c": 0}, 100, 0.5),
        (["x", "a"], {"a": 1, "b": 2}, 1, 0.0),
        (["b", "c", "a"], {"a": 1, "b": 2, "c": 0}, 100, 1.0),
        ([], {"a": 0}, 100, None),
    ],
)
def test_recall_at_k(ranked, qrels, k, expected):
    assert recall_at_k(ranked=ranked, qrels=qrels, k=k) == expected


@pytest.mark.parametrize(
    ("ranked", "qrels", "k", "expected"),
    [
        (["x", "y", "a"], {"a": 1}, 10, 1 / 3),
        (["x", "y", "a"], {"a": 1}, 2, 0.0),
        (["c", "a"], {"c": 0, "a": 1}, 10, 0.5),
        (["a"], {}, 10, None),
    ],
)
def test_mrr_at_k(ranked, qrels, k, expected):
    assert mrr_at_k(ranked=ranked, qrels=qrels, k=k) == expected


def test_rank_metrics_reject_k_below_one():
    for metric in (ndcg_at_k, recall_at_k, mrr_at_k):
        with pytest.raises(ValueError, match="k must be >= 1, got 0"):
            metric(ranked=["a"], qrels={"a": 1}, k=0)


@pytest.mark.parametrize(
    ("cited", "gold", "expected"),
    [
        (["a", "b", "a"], {"a"}, 2 / 3),
        (["b"], {"a"}, 0.0),
        ([], {"a"}, None),
    ],
)
def test_citation_precision(cited, gold, expected):
    assert citation_precision(cited, gold) == expected


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([10.0], 50, 10.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 95, 3.85),  # position 0.95 * 3 = 2.85
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        ([], 50, None),
    ],
)
def test_percentile_matches_numpy_linear(values, q, expected):
    result = percentile(values, q)
    assert result == (None if expected is None else pytest.approx(expected))


def _outcome(**overrides) -> Outcome:
    fields = {
        "answerable": True,
        "abstained": False,
        "answer": "",
        "golds": (),
        "gold_sources": (),
        "passage_rank": None,
        "cited_sources": (),
        "cited_texts": (),
        "retrieve_ms": 10.0,
        "answer_ms": 1.0,
    }
    fields.update(overrides)
    return Outcome(**fields)


def test_aggregate_hand_computed_run():
    outcomes = [
        # Right answer, gold passage first, both citations into the gold source.
        _outcome(
            answer="Mexico sent 29 bosses. [1]",
            golds=("29",),
            gold_sources=("a.txt",),
            passage_rank=1,
            cited_sources=("a.txt", "a.txt"),
            cited_texts=("Mexico sent 29 bosses.", "other"),
            retrieve_ms=10.0,
            answer_ms=1.0,
        ),
        # Wrong answer; gold passage at rank 4; one of two citations gold; none supports.
        _outcome(
            answer="Denver [1]",
            golds=("Denver Broncos",),
            gold_sources=("b.txt",),
            passage_rank=4,
            cited_sources=("b.txt", "c.txt"),
            cited_texts=("the Carolina Panthers", "Denver"),
            retrieve_ms=20.0,
            answer_ms=2.0,
        ),
        # Answerable but abstained, gold never retrieved.
        _outcome(
            abstained=True,
            answer="The documents do not answer this question.",
            golds=("x",),
            gold_sources=("d.txt",),
            retrieve_ms=30.0,
            answer_ms=3.0,
        ),
        # Unanswerable, abstained; unanswerable, answered.
        _outcome(answerable=False, abstained=True, retrieve_ms=40.0, answer_ms=4.0),
        _outcome(answerable=False, abstained=False, answer="a guess", retrieve_ms=50.0),
    ]
    m = aggregate(outcomes)
    assert (m["queries"], m["answerable"], m["unanswerable"]) == (5, 3, 2)
    assert m["hit@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["hit@3"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["hit@5"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["mrr"] == pytest.approx((1 + 1 / 4 + 0) / 3, abs=1e-4)
    assert m["answer_contains"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["exact_match"] == 0.0
    # F1: q1 "mexico sent 29 bosses" vs "29" -> p=1/4, r=1 -> 0.4; q2 "denver" vs
    # "denver broncos" -> 2/3; q3 abstained -> 0. Mean (0.4 + 2/3) / 3.
    assert m["f1"] == pytest.approx((0.4 + 2 / 3) / 3, abs=1e-4)
    # Over the two answered answerable questions: precision (1 + 1/2) / 2, support 1 of 2.
    assert m["citation_precision"] == 0.75
    assert m["citation_support"] == 0.5
    assert m["abstain_recall"] == 0.5
    assert m["false_abstain"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["retrieve_p50_ms"] == 30.0
    assert m["retrieve_p95_ms"] == pytest.approx(48.0)  # 40 + 0.8 * 10
    assert m["answer_p50_ms"] == 2.0


def test_aggregate_without_unanswerable_questions_gives_none():
    m = aggregate([_outcome(answer="29", golds=("29",), gold_sources=("a",), passage_rank=2)])
    assert m["abstain_recall"] is None
    assert m["hit@1"] == 0.0 and m["hit@3"] == 1.0
    assert m["exact_match"] == 1.0 and m["f1"] == 1.0
    assert m["citation_precision"] is None  # answered without citations


def test_retrieval_only_questions_count_for_retrieval_only():
    outcomes = [
        _outcome(answer="29", golds=("29",), gold_sources=("a",), passage_rank=1),
        # Retrieval-only (sources, no answers): ranked, never judged on its answer.
        _outcome(answer="whatever", golds=(), gold_sources=("b",), passage_rank=2),
        _outcome(abstained=True, golds=(), gold_sources=("c",), passage_rank=None),
    ]
    m = aggregate(outcomes)
    assert (m["answerable"], m["retrieval_only"]) == (3, 2)
    assert m["hit@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["mrr"] == pytest.approx((1 + 1 / 2) / 3, abs=1e-4)
    assert m["answer_contains"] == 1.0 and m["exact_match"] == 1.0 and m["f1"] == 1.0
    assert m["false_abstain"] == 0.0
    assert is_correct(outcomes[1]) is None and is_correct(outcomes[0]) is True


def test_squad_conversion_keeps_paragraphs_and_answers():
    data = {
        "data": [
            {
                "title": "Fresno,_California",
                "paragraphs": [
                    {
                        "context": "Fresno is a city.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "What is Fresno?",
                                "answers": [
                                    {"text": "a city", "answer_start": 9},
                                    {"text": "a city", "answer_start": 9},
                                    {"text": "city", "answer_start": 11},
                                ],
                            }
                        ],
                    },
                    {"context": "Second paragraph.", "qas": []},
                ],
            },
            {
                "title": "Other",
                "paragraphs": [
                    {
                        "context": "Fresno is a city.",
                        "qas": [{"id": "q2", "question": "Q?", "answers": [{"text": "city"}]}],
                    }
                ],
            },
        ]
    }
    paragraphs, queries = parse_squad(data)
    assert [p.source for p in paragraphs] == [
        "00_Fresno_California/000.txt",
        "00_Fresno_California/001.txt",
        "01_Other/000.txt",
    ]
    assert queries[0].answers == ("a city", "city")
    # Identical paragraph texts: either file is a gold source.
    assert set(queries[0].sources) == {"00_Fresno_California/000.txt", "01_Other/000.txt"}
    assert set(queries[1].sources) == set(queries[0].sources)
    assert slug("Sky_(United_Kingdom)") == "Sky_United_Kingdom"
    assert squad_scores({"exact_match": 0.12345, "f1": 0.5}) == {"exact_match": 12.35, "f1": 50.0}
