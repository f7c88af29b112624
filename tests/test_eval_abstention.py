"""Kinds of question, abstention metrics with Wilson intervals, the short answer's scores,
the abstention PR curve and plots, and the by-kind report table (no model, no index)."""

from __future__ import annotations

import json
import math

import pytest

from eval.__main__ import write_run_plots
from eval.metrics import Outcome, aggregate, by_kind, short_answer_scores, wilson_interval
from eval.plots import (
    PRPoint,
    abstention_point,
    abstention_pr_points,
    histogram_edges,
    plot_abstention_pr,
    plot_answerability,
)
from eval.queries import Query, QueryFormatError, parse_queries, query_to_dict
from eval.report import (
    by_kind_rows,
    format_by_kind,
    format_summary,
    format_value,
    markdown_failure,
    write_report,
)
from eval.runner import EvalRun, MethodRun, QueryResult
from rag.reading import ShortAnswer

INF = math.inf
PNG = b"\x89PNG\r\n\x1a\n"
ANSWERABLE = {"id": "a", "question": "Q?", "answers": ["x"], "sources": ["d.txt"]}
UNANSWERABLE = {"id": "a", "question": "Q?", "answers": [], "sources": []}


@pytest.mark.parametrize(
    ("fields", "answerable", "kind"),
    [
        (ANSWERABLE, True, "answerable"),
        ({**ANSWERABLE, "kind": "answerable"}, True, "answerable"),
        ({**ANSWERABLE, "answerable": True, "kind": "answerable"}, True, "answerable"),
        ({**UNANSWERABLE, "answerable": False}, False, "unanswerable"),  # old files
        ({**UNANSWERABLE, "answerable": False, "kind": "off-topic"}, False, "off-topic"),
        ({**UNANSWERABLE, "kind": "on-topic-missing"}, False, "on-topic-missing"),  # inferred
        ({**UNANSWERABLE, "answerable": False, "kind": "false-premise"}, False, "false-premise"),
        ({**UNANSWERABLE, "answerable": False, "kind": "unanswerable"}, False, "unanswerable"),
    ],
)
def test_kind_is_parsed_defaulted_and_written(fields, answerable, kind):
    (query,) = parse_queries([json.dumps(fields)])
    assert (query.answerable, query.kind) == (answerable, kind)
    assert query_to_dict(query)["kind"] == kind
    assert parse_queries([json.dumps(query_to_dict(query))]) == [query]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {**ANSWERABLE, "answerable": True, "kind": "off-topic"},
            "kind 'off-topic' needs \"answerable\": false, got true",
        ),
        # Without "answerable" the kind decides, so answers and sources are out of place.
        ({**ANSWERABLE, "kind": "off-topic"}, "(kind 'off-topic') must have empty 'answers'"),
        ({**ANSWERABLE, "answerable": True, "kind": "unanswerable"}, '"answerable": false'),
        (
            {**UNANSWERABLE, "answerable": False, "kind": "answerable"},
            "kind 'answerable' needs \"answerable\": true, got false",
        ),
        ({**UNANSWERABLE, "kind": "answerable"}, "needs at least one file"),  # answerable
        ({**ANSWERABLE, "kind": "offtopic"}, "'kind' must be one of answerable, off-topic"),
        ({**ANSWERABLE, "kind": 3}, "'kind' must be one of"),
        ({**ANSWERABLE, "kind": None}, "'kind' must be one of"),
        ({**ANSWERABLE, "kind": "answerable", "answerable": "yes"}, "must be true or false"),
    ],
)
def test_bad_kind_is_reported_with_its_line(fields, message):
    with pytest.raises(QueryFormatError) as info:
        parse_queries([json.dumps({**ANSWERABLE, "id": "first"}), json.dumps(fields)], path="q")
    assert info.value.problems[0][0] == 2
    assert message in str(info.value)


def test_query_built_in_code_gets_a_default_kind_and_is_checked():
    assert Query("a", "Q?", ("x",), ("d",)).kind == "answerable"
    assert Query("b", "Q?", (), (), False).kind == "unanswerable"
    with pytest.raises(ValueError, match="needs"):
        Query("c", "Q?", (), (), False, kind="answerable")


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # p = k/n, d = 1 + z²/n, centre = (p + z²/2n)/d, half = z·sqrt(p(1-p)/n + z²/4n²)/d
        (0, 10, 0.0, 0.27754),  # centre = half = 0.19208 / 1.38416 = 0.13877
        (5, 10, 0.23659, 0.76341),  # centre 0.5, half 1.96·0.186022/1.38416 = 0.26341
        (10, 10, 0.72246, 1.0),
        (1, 1, 0.20654, 1.0),  # d = 4.8416, centre 2.9208/4.8416, half 1.96·0.98/4.8416
        (81, 263, 0.25529, 0.36621),  # p = 0.30798, d = 1.01461
        (0, 0, 0.0, 1.0),  # no questions: uninformative
    ],
)
def test_wilson_interval_hand_computed(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)
    assert 0.0 <= lo <= (k / n if n else 0.0) <= hi <= 1.0


def test_wilson_interval_z_and_bad_counts():
    assert wilson_interval(5, 10, z=0.0) == (0.5, 0.5)
    narrow, wide = wilson_interval(5, 10, z=1.0), wilson_interval(5, 10, z=2.576)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    for k, n in ((11, 10), (-1, 10), (1, 0)):
        with pytest.raises(ValueError, match="0 <= k <= n"):
            wilson_interval(k, n)


# Scores: answerable [2.0, 1.0, -inf], unanswerable [-1.0, 0.5, -inf, 1.5].
SCORES_A = [2.0, 1.0, -INF]
SCORES_U = [-1.0, 0.5, -INF, 1.5]


def test_abstention_pr_points_hand_computed():
    points = abstention_pr_points(SCORES_A, SCORES_U)
    # Abstain when score < t; the -inf scores abstain at every threshold.
    expected = [
        (-1.0, 1 / 2, 1 / 4, 2),  # -inf of each
        (0.5, 2 / 3, 2 / 4, 3),  # + unanswerable -1.0
        (1.0, 3 / 4, 3 / 4, 4),  # + unanswerable 0.5
        (1.5, 3 / 5, 3 / 4, 5),  # + answerable 1.0
        (2.0, 4 / 6, 4 / 4, 6),  # + unanswerable 1.5
        (INF, 4 / 7, 4 / 4, 7),  # everything
    ]
    assert [(p.threshold, p.abstained) for p in points] == [(t, n) for t, _, _, n in expected]
    for point, (_, precision, recall, _) in zip(points, expected, strict=True):
        assert point.precision == pytest.approx(precision)
        assert point.recall == pytest.approx(recall)


@pytest.mark.parametrize(
    ("answerable", "unanswerable", "threshold", "expected"),
    [
        (SCORES_A, SCORES_U, 0.0, PRPoint(0.0, 2 / 3, 2 / 4, 3)),
        ([1.0], [2.0], 0.0, PRPoint(0.0, None, 0.0, 0)),  # nothing abstains
        ([1.0], [], 5.0, PRPoint(5.0, 0.0, None, 1)),  # no unanswerable: recall undefined
    ],
)
def test_abstention_point(answerable, unanswerable, threshold, expected):
    assert abstention_point(answerable, unanswerable, threshold) == expected


def test_pr_points_edge_cases():
    assert abstention_pr_points([1.0, 2.0], []) == []
    # No -inf: the lowest threshold abstains on nothing, so it is left out.
    points = abstention_pr_points([2.0], [1.0])
    assert [(p.threshold, p.precision, p.recall) for p in points] == [
        (2.0, 1.0, 1.0),
        (INF, 0.5, 1.0),
    ]
    # Nothing was read: one point, everything abstains at any threshold.
    only = abstention_pr_points([-INF], [-INF, -INF])
    assert [(p.threshold, p.precision, p.recall) for p in only] == [(INF, 2 / 3, 1.0)]


@pytest.mark.parametrize(
    ("values", "first", "last"),
    [([0.0, 10.0], 0.0, 10.0), ([3.0, -INF], 2.5, 3.5), ([-INF], -0.5, 0.5), ([], -0.5, 0.5)],
)
def test_histogram_edges(values, first, last):
    edges = histogram_edges(values, bins=4)
    assert len(edges) == 5 and (edges[0], edges[-1]) == pytest.approx((first, last))


def _outcome(kind="", answerable=True, abstained=False, golds=("Eagle Pass",), short=None):
    return Outcome(
        answerable=answerable, abstained=abstained, answer="", golds=golds if answerable else (),
        gold_sources=("a.txt",) if answerable else (), passage_rank=1 if answerable else None,
        cited_sources=(), cited_texts=(), retrieve_ms=1.0, answer_ms=1.0, kind=kind,
        short_answer=short,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("short", "golds", "abstained", "contains", "em", "f1"),
    [
        ("Eagle Pass", ("Eagle Pass, Texas", "Eagle Pass"), False, 1.0, 1.0, 1.0),
        ("the Eagle Pass border town", ("Eagle Pass",), False, 1.0, 0.0, 2 * 0.5 / 1.5),
        ("Texas", ("Eagle Pass, Texas",), False, 0.0, 0.0, 0.5),  # a fragment: not contained
        ("Eagle-Pass", ("Eagle Pass",), False, 1.0, 0.0, 0.0),  # hyphen: contains, not EM
        (None, ("Eagle Pass",), False, 0.0, 0.0, 0.0),  # no short answer
        ("Eagle Pass", ("Eagle Pass",), True, 0.0, 0.0, 0.0),  # abstained
    ],
)
def test_short_answer_scores(short, golds, abstained, contains, em, f1):
    scores = short_answer_scores(_outcome(short=short, golds=golds, abstained=abstained))
    assert scores == {
        "short_contains": contains,
        "short_exact_match": em,
        "short_f1": pytest.approx(f1),
    }


BY_KIND_RUN = [
    _outcome(kind="answerable", short="Eagle Pass"),
    _outcome(kind="answerable", short="in Texas"),
    _outcome(kind="answerable", abstained=True),
    _outcome(kind="answerable", golds=(), abstained=True),  # retrieval-only
    _outcome(kind="off-topic", answerable=False, abstained=True),
    _outcome(kind="off-topic", answerable=False, abstained=True),
    _outcome(kind="false-premise", answerable=False, abstained=False),
    _outcome(kind="on-topic-missing", answerable=False, abstained=True),
    _outcome(kind="on-topic-missing", answerable=False, abstained=False),
    _outcome(answerable=False, abstained=True),  # no kind: "unanswerable"
]


def test_by_kind_hand_computed():
    rows = by_kind(BY_KIND_RUN)
    assert list(rows) == [
        "answerable", "retrieval-only", "off-topic", "on-topic-missing", "false-premise",
        "unanswerable",
    ]  # fmt: skip
    expected = {  # kind: (n, abstained, share, Wilson interval)
        "answerable": (3, 1, 0.3333, wilson_interval(1, 3)),
        "retrieval-only": (1, 1, 1.0, wilson_interval(1, 1)),
        "off-topic": (2, 2, 1.0, wilson_interval(2, 2)),
        "on-topic-missing": (2, 1, 0.5, wilson_interval(1, 2)),
        "false-premise": (1, 0, 0.0, wilson_interval(0, 1)),
        "unanswerable": (1, 1, 1.0, wilson_interval(1, 1)),
    }
    for kind, (n, k, share, (low, high)) in expected.items():
        row = rows[kind]
        assert (row["n"], row["abstained"], row["abstained_share"]) == (n, k, share)
        assert row["abstained_ci"] == [pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4)]
    # Short answers of the three judged answerable questions: 1 contained and EM; "in Texas"
    # vs "eagle pass" shares nothing; the abstention scores 0.
    answerable = rows["answerable"]
    assert answerable["short_contains"] == answerable["short_exact_match"] == 0.3333
    assert answerable["short_f1"] == 0.3333
    assert "short_f1" not in rows["off-topic"] and "short_f1" not in rows["retrieval-only"]


def test_aggregate_overall_abstention_with_intervals():
    m = aggregate(BY_KIND_RUN)
    # Unanswerable: 4 of 6 abstained; judged answerable: 1 of 3 abstained.
    assert m["abstain_recall"] == 0.6667 and m["false_abstain"] == 0.3333
    assert m["abstain_recall_ci"] == [round(x, 4) for x in wilson_interval(4, 6)]
    assert m["false_abstain_ci"] == [round(x, 4) for x in wilson_interval(1, 3)]
    assert (m["short_contains"], m["short_exact_match"]) == (0.3333, 0.3333)
    assert m["by_kind"] == by_kind(BY_KIND_RUN)
    empty = aggregate([_outcome(kind="answerable", short="Eagle Pass")])
    assert empty["abstain_recall"] is None and empty["abstain_recall_ci"] is None
    assert empty["short_exact_match"] == 1.0


def test_by_kind_table_text_and_values():
    metrics = aggregate(BY_KIND_RUN)
    rows = by_kind_rows(metrics)
    assert [r[0] for r in rows] == [*metrics["by_kind"], "unanswerable (all)"]
    assert rows[0][:3] == ["answerable", "3", "0.333"]
    assert rows[0][3] == format_value("ci", metrics["false_abstain_ci"])
    assert rows[0][4:] == ["0.333", "0.333", "0.333"]
    assert rows[2][4:] == ["-", "-", "-"]  # off-topic: no short-answer scores
    assert rows[-1][:3] == ["unanswerable (all)", "6", "0.667"]
    text = format_by_kind(metrics)
    assert text.splitlines()[0].split()[:4] == ["kind", "n", "abstained", "95%"]
    assert format_by_kind({"queries": 0}) == ""
    assert format_value("x_ci", [0.12345, 0.9]) == "[0.123, 0.900]"


def _result(query: Query, *, answerability: float, abstained: bool, short: str | None = None):
    return QueryResult(
        query=query, method="hybrid", answer="The documents do not answer." if abstained else
        "It was Eagle Pass. [1]", abstained=abstained, mode="extractive", citations=[],
        retrieved_sources=["a.txt"], hit_rank=1, passage_rank=1,
        latency_ms={"retrieve": 1.0, "answer": 2.0},
        short_answer=ShortAnswer(short, "a.txt", 10, 20, 1) if short else None,
        answerability=answerability,
    )  # fmt: skip


def _run(tmp_path) -> EvalRun:
    answerable = Query("a", "Where?", ("Eagle Pass",), ("a.txt",))
    missing = Query("m", "When?", (), (), False, kind="on-topic-missing")
    off = Query("o", "Who wrote Don Quixote?", (), (), False, kind="off-topic")
    results = [
        _result(answerable, answerability=3.2, abstained=False, short="Eagle Pass"),
        _result(missing, answerability=-1.5, abstained=True),
        _result(off, answerability=-INF, abstained=True),
    ]
    metrics = aggregate([r.outcome() for r in results])
    method = MethodRun(method="hybrid", results=results, metrics=metrics, seconds=1.0)
    config = {"queries_file": str(tmp_path / "corpus_unseen.jsonl"), "min_answerability": 0.0}
    return EvalRun(runs={"hybrid": method}, config=config)


def test_per_query_json_has_kind_short_answer_and_answerability(tmp_path):
    entries = _run(tmp_path).to_dict()["queries"]
    assert [e["kind"] for e in entries] == ["answerable", "on-topic-missing", "off-topic"]
    assert entries[0]["short_answer"] == {
        "text": "Eagle Pass", "source": "a.txt", "start": 10, "end": 20, "citation": 1
    }  # fmt: skip
    assert entries[1]["short_answer"] is None
    assert [e["answerability"] for e in entries] == [3.2, -1.5, None]  # -inf: not read
    json.dumps(entries, allow_nan=False)
    failure = markdown_failure(_run(tmp_path).primary.results[0])
    assert "- short answer: `Eagle Pass`" in failure and "- answerability: 3.200" in failure


def test_plots_are_png_files(tmp_path):
    a, u = [2.0, 1.0, 0.4, -INF], [-1.0, 0.5, -INF, -INF]
    hist = plot_answerability(a, u, threshold=0.0, path=tmp_path / "h.png", title="t")
    pr = plot_abstention_pr(a, u, threshold=0.0, path=tmp_path / "sub" / "pr.png", title="t")
    for path in (hist, pr):
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 1000
    # Degenerate sets still give a picture: nothing read, no unanswerable questions.
    plot_answerability([-INF], [], threshold=0.0, path=tmp_path / "none.png", title="t")
    plot_abstention_pr([1.0], [], threshold=0.0, path=tmp_path / "no-u.png", title="t")
    assert (tmp_path / "none.png").read_bytes()[:8] == PNG
    # From a run: named by the query set's stem.
    written = write_run_plots(_run(tmp_path), tmp_path / "plots")
    assert [p.name for p in written] == [
        "corpus_unseen-answerability.png", "corpus_unseen-abstention-pr.png"
    ]  # fmt: skip
    assert all(p.read_bytes()[:8] == PNG for p in written)
    assert write_run_plots(_run(tmp_path), None) == []


def test_report_has_the_by_kind_table_intervals_and_links_the_plots(tmp_path):
    run = _run(tmp_path)
    plots = write_run_plots(run, tmp_path / "plots")
    report = write_report(run, tmp_path / "report.md", plots=plots)[0]
    text = report.read_text()
    assert "## By kind of question (hybrid)" in text
    assert "| kind | n | abstained | 95% CI | short contains gold | short EM | short F1 |" in text
    assert "| answerable | 1 | 0.000 | [0.000, 0.793] | 1.000 | 1.000 | 1.000 |" in text
    assert "| off-topic | 1 | 1.000 | [0.206, 1.000] | - | - | - |" in text
    assert "| unanswerable (all) | 2 | 1.000 | [0.342, 1.000] | - | - | - |" in text
    assert "](plots/corpus_unseen-answerability.png)" in text
    assert "](plots/corpus_unseen-abstention-pr.png)" in text
    summary = format_summary(run.metrics_by_method())
    assert "abstain recall 95% CI" in summary and "[0.342, 1.000]" in summary
    assert "short answer EM" in summary
