"""`python -m eval.beir` on a tiny BEIR folder: parsing, bad input, an end-to-end run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from eval.beir import file_name, load_benchmark, main, to_queries
from eval.queries import parse_queries

DOCUMENTS = {
    "volcano": ("Volcanoes", "Mount Etna erupted lava and ash over Sicily in the spring."),
    "etna/2": ("Etna tourism", "Tourists climb the Etna volcano crater on guided hikes."),
    "bread": ("Baking", "Sourdough bread rises slowly with a wild yeast starter and flour."),
    "rye": ("Rye loaves", "Dark rye bread is baked with caraway seeds in Germany."),
    "chess": ("Chess", "Magnus Carlsen defended his world chess championship title."),
    "tides": ("Tides", "Ocean tides follow the gravitational pull of the moon."),
}
QUERIES = {
    "q1": "Which volcano erupted in Sicily?",
    "q2": "How is sourdough bread made?",
    "q3": "Who is the world chess champion?",
    "unjudged": "What causes ocean tides?",
}
QRELS = [("q1", "volcano", 2), ("q1", "etna/2", 1), ("q2", "bread", 2), ("q2", "rye", 1),
         ("q2", "tides", 0), ("q3", "chess", 1)]  # fmt: skip


def _write_folder(folder: Path, *, qrels=QRELS, documents=DOCUMENTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = [{"_id": i, "title": t, "text": x} for i, (t, x) in documents.items()]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    queries = [{"_id": i, "text": t} for i, t in QUERIES.items()]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    if qrels is not None:
        (folder / "qrels").mkdir(exist_ok=True)
        rows = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
        (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


def _ndcg10(ranked: list[str], qrels: dict[str, int]) -> float:
    """trec_eval nDCG@10, written out independently of eval.metrics."""
    dcg = sum(qrels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:10]
    return dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))


def test_file_names_are_safe_and_distinct():
    assert file_name("doc-1_a") == "doc-1_a.txt"
    odd = file_name("../etna/2")
    assert "/" not in odd and not odd.startswith(".") and odd.endswith(".txt")
    assert file_name("a b") != file_name("a_b") and file_name(".") != file_name("..")


def test_benchmark_keeps_judged_queries_and_positive_qrels(tmp_path):
    benchmark = load_benchmark(_write_folder(tmp_path / "beir"))
    assert list(benchmark.queries) == ["q1", "q2", "q3"]
    assert benchmark.documents["volcano"].startswith("Volcanoes\n\nMount Etna")
    queries = to_queries(benchmark)
    assert queries[1].sources == (file_name("bread"), file_name("rye"))
    assert all(q.retrieval_only and q.answers == () for q in queries)


def test_queries_with_sources_and_no_answers_are_retrieval_only():
    line = json.dumps({"id": "r", "question": "Q?", "answers": [], "sources": ["d.txt"]})
    (query,) = parse_queries([line])
    assert query.retrieval_only and query.answerable


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p: p.mkdir(), "corpus.jsonl not found in"),
        (lambda p: _write_folder(p, qrels=None), "qrels not found:"),
        (
            lambda p: _write_folder(p, qrels=[*QRELS, ("q3", "nowhere", 1)]),
            "corpus-id 'nowhere' is not in corpus.jsonl",
        ),
        (
            lambda p: _write_folder(p, qrels=[("q9", "chess", 1)]),
            "query-id 'q9' is not in queries.jsonl",
        ),
    ],
)
def test_bad_folder_is_one_line_and_exit_2(tmp_path, capsys, build, message):
    folder = tmp_path / "beir"
    build(folder)
    with pytest.raises(ValueError, match=message):
        load_benchmark(folder)
    work = tmp_path / "work"
    assert main([str(folder), "--index", str(work), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err and not work.exists()


def test_end_to_end_ndcg_matches_the_rankings(tmp_path, capsys, embedder):
    folder = _write_folder(tmp_path / "tiny")
    work, out, report = tmp_path / "work", tmp_path / "run.json", tmp_path / "rep" / "beir.md"
    argv = [str(folder), "--index", str(work), "--compare", "-q"]
    assert main([*argv, "--json", str(out), "--report", str(report)], embedder=embedder) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in (work / "corpus").iterdir()) == sorted(
        file_name(d) for d in DOCUMENTS
    )
    data = json.loads(out.read_text())
    qrels: dict[str, dict[str, int]] = {}
    for q, d, s in QRELS:
        qrels.setdefault(q, {})[d] = s
    entries = {e["id"]: e for e in data["queries"]}
    assert list(entries) == ["q1", "q2", "q3"]
    for entry in entries.values():
        # Every document is reachable: ranked once each, by its original _id.
        assert sorted(entry["ranked_ids"]) == sorted(DOCUMENTS)
        assert entry["beir"]["ndcg@10"] == pytest.approx(
            _ndcg10(entry["ranked_ids"], qrels[entry["id"]])
        )
        assert entry["beir"]["recall@100"] == 1.0
        assert set(entry["methods"]) == {"bm25", "dense", "hybrid"}
    expected = sum(_ndcg10(e["ranked_ids"], qrels[i]) for i, e in entries.items()) / 3
    hybrid = data["metrics"]["hybrid"]
    assert hybrid["ndcg@10"] == pytest.approx(expected, abs=1e-4)
    assert hybrid["recall@100"] == 1.0 and 0 < hybrid["mrr@10"] <= 1
    assert (hybrid["retrieval_only"], hybrid["answer_contains"]) == (3, None)
    for method in ("bm25", "dense"):
        per_query = [e["methods"][method]["beir"]["ndcg@10"] for e in entries.values()]
        assert data["metrics"][method]["ndcg@10"] == pytest.approx(sum(per_query) / 3, abs=1e-4)
    assert data["config"]["report_depth"] >= 6 and data["config"]["candidates"] >= 100
    row = next(line.split() for line in printed.splitlines() if line.startswith("nDCG@10"))
    assert row[3] == f"{expected:.3f}"  # columns: bm25, dense, hybrid
    text = report.read_text()
    assert "| nDCG@10 |" in text and "3 retrieval-only questions" in text
