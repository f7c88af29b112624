"""Table-driven tests of rank fusion, near-duplicate collapse and follow-up rewriting. No model."""

from __future__ import annotations

import pytest

from rag.followup import needs_context, standalone_query
from rag.retrieve import DuplicateFilter, collapse_near_duplicates, rrf_fuse


@pytest.mark.parametrize(
    ("rankings", "k", "expected"),
    [
        # 1/61 + 1/63 > 2/62: a first and a third place beat two second places.
        ([[1, 2, 3], [3, 2, 1]], 60, [1, 3, 2]),
        ([[1, 2], []], 60, [1, 2]),
        ([[5], [6]], 0, [5, 6]),  # tie broken by best rank, then id
        ([[7, 8, 9], [9, 10]], 1, [9, 7, 8, 10]),
        ([], 60, []),
    ],
)
def test_rrf_order(rankings, k, expected):
    assert [doc for doc, _ in rrf_fuse(rankings, k=k)] == expected


def test_rrf_scores_and_weights():
    fused = dict(rrf_fuse([[1, 2], [2]], k=60, weights=[1.0, 2.0]))
    assert fused[1] == pytest.approx(1 / 61)
    assert fused[2] == pytest.approx(1 / 62 + 2 / 61)
    with pytest.raises(ValueError):
        rrf_fuse([[1]], k=60, weights=[1.0, 1.0])
    with pytest.raises(ValueError):
        rrf_fuse([[1]], k=-1)


def test_collapse_near_duplicates():
    quote = "hegseth told the officials that if mexico did not deal with the cartels the military would act"
    texts = [
        quote,
        "something else entirely about tariffs on china",
        quote + " said people briefed",
        "short",
    ]
    assert collapse_near_duplicates(texts) == [0, 1, 3]
    assert collapse_near_duplicates(texts, limit=2) == [0, 1]


def test_duplicate_filter_offered_in_pages_keeps_what_one_pass_keeps():
    quote = "the cartels were designated foreign terrorist organizations by the state department"
    texts = [quote, "tariffs on steel", quote + " last month", "tariffs on aluminum", "x"]
    seen = DuplicateFilter()
    first_page = [i for i in (0, 1) if seen.offer(texts[i])]
    second_page = [i for i in (2, 3, 4) if seen.offer(texts[i])]
    assert first_page + second_page == collapse_near_duplicates(texts) == [0, 1, 3, 4]
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("question", "history", "must_contain"),
    [
        (
            "When did he say that?",
            ["What did JD Vance say about invading Mexico?"],
            ["Vance", "invading"],
        ),
        (
            "Where?",
            ["Who is Rafael Caro Quintero?", "What is he accused of?"],
            ["Caro", "Quintero"],
        ),
        (
            "What about China?",
            ["Which tariffs did Trump announce on Mexico?"],
            ["tariffs", "China"],
        ),
        (
            "Who is the Treasury Secretary quoted about China tariffs?",
            ["Unrelated earlier question?"],
            [],
        ),
    ],
)
def test_standalone_query(question, history, must_contain):
    query = standalone_query(question, history)
    assert query.startswith(question)
    for word in must_contain:
        assert word in query
    if not must_contain:
        assert query == question


def test_needs_context():
    assert needs_context("When did he say that?")
    assert needs_context("And Canada?")
    assert not needs_context("How many National Guard troops did Sheinbaum send to the border?")
