"""Query-set validation, and a small end-to-end evaluation through the real pipeline."""

from __future__ import annotations

import json

import pytest

from eval.__main__ import main
from eval.queries import (
    Query,
    QueryFormatError,
    check_sources,
    load_queries,
    parse_queries,
    select_queries,
)
from eval.report import write_report
from eval.runner import METHODS, evaluate, write_json

GOOD = {"id": "a", "question": "Q?", "answers": ["x"], "sources": ["d.txt"]}


def _line(**fields) -> str:
    data = {**GOOD, **fields}
    return json.dumps({k: v for k, v in data.items() if v is not ...})


def test_valid_lines_defaults_and_unknown_fields():
    lines = [
        _line(id="a", comment="ignored", history=["Earlier?"]),
        "",
        "   ",
        _line(id="b", answerable=False, answers=[], sources=[]),
    ]
    queries = parse_queries(lines)
    assert queries == [
        Query("a", "Q?", ("x",), ("d.txt",), True, ("Earlier?",)),
        Query("b", "Q?", (), (), False, ()),
    ]
    assert [q.line for q in queries] == [1, 4]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "a", "question": ', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (_line(id=...), "missing field 'id'"),
        (_line(id=7), "'id' must be a non-empty string"),
        (_line(question="  "), "'question' must be a non-empty string"),
        (_line(answers=...), "missing field 'answers'"),
        (_line(sources="d.txt"), "'sources' must be a list"),
        (_line(answers=["ok", 3]), "'answers' item 1"),
        (_line(answerable="yes"), "'answerable' must be true or false"),
        (_line(history="Earlier?"), "'history' must be a list"),
        (_line(sources=[]), "needs at least one file in 'sources'"),
        (_line(answerable=False), "must have empty 'answers' and 'sources'"),
        (_line(sources=["../secret.txt"]), "relative to the corpus folder"),
        (_line(sources=["/etc/passwd"]), "relative to the corpus folder"),
    ],
)
def test_malformed_line_is_reported_with_its_number(line, message):
    with pytest.raises(QueryFormatError) as info:
        parse_queries([_line(id="first"), line], path="set.jsonl")
    assert info.value.problems[0][0] == 2
    reported = str(info.value).splitlines()[1]
    assert reported.startswith("set.jsonl:2: ") and message in reported


def test_every_problem_is_listed_and_duplicates_name_the_first_line():
    lines = [_line(id="a"), "not json", _line(id="b"), _line(id="a"), _line(question=5)]
    with pytest.raises(QueryFormatError) as info:
        parse_queries(lines, path="q.jsonl")
    assert [n for n, _ in info.value.problems] == [2, 4, 5]
    assert "q.jsonl:4: duplicate id 'a' (first on line 1)" in str(info.value)
    assert str(info.value).startswith("invalid query set (3 problems)")


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(QueryFormatError, match="holds no queries"):
        load_queries(empty)
    with pytest.raises(QueryFormatError, match="file not found"):
        load_queries(tmp_path / "missing.jsonl")


def test_sources_must_exist_in_the_corpus(tmp_path):
    (tmp_path / "d.txt").write_text("text")
    queries = parse_queries([_line(id="a"), _line(id="b", sources=["d.txt", "gone.txt"])])
    with pytest.raises(QueryFormatError, match=r"q:2: source 'gone.txt' is not a file"):
        check_sources(queries, tmp_path, path="q")


def test_select_queries_is_seeded_and_keeps_file_order():
    queries = parse_queries([_line(id=str(i)) for i in range(20)])
    first = select_queries(queries, limit=5, seed=1)
    assert first == select_queries(queries, limit=5, seed=1)
    assert [q.line for q in first] == sorted(q.line for q in first)
    assert select_queries(queries, limit=3) == queries[:3]
    assert select_queries(queries, limit=50) == queries


def test_cli_stops_before_any_work_on_a_bad_line(tmp_path, capsys):
    queries = tmp_path / "bad.jsonl"
    queries.write_text(_line(id="a") + "\n" + '{"id": "b", "question": "Q?"}\n')
    index_dir = tmp_path / "index"
    code = main(["--queries", str(queries), "--index", str(index_dir), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{queries}:2: missing field 'answers'" in err
    assert "Traceback" not in err
    assert not index_dir.exists()


class _Recorder:
    """The real pipeline, with every ask recorded."""

    def __init__(self, pipeline) -> None:
        self._pipeline = pipeline
        self.calls: list[tuple[str, tuple[str, ...], str]] = []

    def ask(self, question, *, history=(), method=None):
        """Record the call, then answer with the real pipeline."""
        self.calls.append((question, tuple(history), method))
        return self._pipeline.ask(question, history=history, method=method)

    def __getattr__(self, name):
        return getattr(self._pipeline, name)


THREE = [
    {
        "id": "deaths",
        "question": "How many fentanyl overdose deaths were recorded in the U.S. in 2023?",
        "answers": ["87,000"],
        "sources": ["003_8bd5a12c37d93380.txt"],
    },
    {
        "id": "follow",
        "question": "Where did he say that?",
        "answers": ["Eagle Pass"],
        "sources": ["000_3b56b7e336b84316.txt"],
        "history": [
            "What did JD Vance say when asked about U.S. military forces going into Mexico?"
        ],
    },
    {
        "id": "none",
        "question": "Who wrote Don Quixote?",
        "answers": [],
        "sources": [],
        "answerable": False,
    },
]


def test_three_question_run_writes_json_report_and_plots(pipeline, tmp_path):
    queries = parse_queries([json.dumps(q) for q in THREE])
    recorder = _Recorder(pipeline)
    run = evaluate(recorder, queries, methods=METHODS, warm_up=False)
    # The follow-up's history question is asked first, then the question with that history.
    hybrid_calls = [c for c in recorder.calls if c[2] == "hybrid"]
    assert [c[0] for c in hybrid_calls] == [
        THREE[0]["question"],
        THREE[1]["history"][0],
        THREE[1]["question"],
        THREE[2]["question"],
    ]
    assert hybrid_calls[1][1] == () and hybrid_calls[2][1] == tuple(THREE[1]["history"])

    data = json.loads(write_json(run, tmp_path / "out" / "run.json").read_text())
    assert set(data) == {"metrics", "config", "queries"}
    assert list(data["metrics"]) == list(METHODS)
    for metrics in data["metrics"].values():
        assert (metrics["queries"], metrics["answerable"], metrics["unanswerable"]) == (3, 2, 1)
        for key in ("hit@1", "hit@3", "hit@5", "mrr", "answer_contains", "f1"):
            assert 0.0 <= metrics[key] <= 1.0
        for key in ("citation_precision", "citation_support", "abstain_recall", "false_abstain"):
            assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0
        assert metrics["retrieve_p50_ms"] > 0 and metrics["answer_p95_ms"] >= 0
    assert data["config"]["methods"] == list(METHODS)
    assert data["config"]["documents"] == 5

    entries = {q["id"]: q for q in data["queries"]}
    assert list(entries) == ["deaths", "follow", "none"]
    required = {"id", "question", "answer", "abstained", "citations", "retrieved_sources"}
    required |= {"hit_rank", "answer_correct", "latency_ms", "kind", "short_answer"}
    required |= {"answerability"}
    for entry in entries.values():
        assert required <= set(entry)
        assert set(entry["latency_ms"]) == {"retrieve", "answer"}
        assert 1 <= len(entry["retrieved_sources"]) == len(set(entry["retrieved_sources"])) <= 5
        assert set(entry["methods"]) == set(METHODS)
        for citation in entry["citations"]:
            assert set(citation) == {
                "n", "source", "title", "start", "end", "text", "page", "locator", "ocr"
            }  # fmt: skip
    deaths = entries["deaths"]
    assert deaths["hit_rank"] == deaths["retrieved_sources"].index(deaths["gold_sources"][0]) + 1
    assert deaths["hit_rank"] is not None and entries["follow"]["hit_rank"] is not None
    assert deaths["answer_correct"] is ("87,000" in deaths["answer"])
    assert [e["kind"] for e in entries.values()] == ["answerable", "answerable", "unanswerable"]
    for entry in entries.values():
        assert entry["answerability"] is None or isinstance(entry["answerability"], float)
        short = entry["short_answer"]
        assert short is None or set(short) == {"text", "source", "start", "end", "citation"}
    assert "by_kind" in data["metrics"]["hybrid"]
    none = entries["none"]
    assert none["hit_rank"] is None
    assert none["answer_correct"] is none["abstained"]

    report, hit_png, latency_png = write_report(run, tmp_path / "out" / "report.md")
    text = report.read_text()
    assert "| metric | bm25 | dense | hybrid |" in text
    assert f"]({hit_png.name})" in text and f"]({latency_png.name})" in text
    assert "## Failed questions (hybrid)" in text
    for png in (hit_png, latency_png):
        assert png.parent == report.parent
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_single_method_on_a_built_index(pipeline, config, tmp_path, capsys):
    queries = tmp_path / "three.jsonl"
    queries.write_text("".join(json.dumps(q) + "\n" for q in THREE))
    out = tmp_path / "cli.json"
    code = main(
        [
            "--queries", str(queries), "--corpus", str(config.index.corpus_dir),
            "--index", str(config.index.index_dir), "--json", str(out), "--limit", "2", "-q",
            "--plots", str(tmp_path / "plots"),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["metric", "hybrid"]
    data = json.loads(out.read_text())
    assert "hit@1" in data["metrics"]  # one method: metrics are not keyed by method
    assert [q["id"] for q in data["queries"]] == ["deaths", "follow"]
    assert "methods" not in data["queries"][0]
    assert "by kind of question (hybrid):" in printed
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["three-abstention-pr.png", "three-answerability.png"]
