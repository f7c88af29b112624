"""End to end on the real corpus with the real model: cited answers, abstentions, CLI, JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rag import ABSTAIN_SENTENCE
from tests.conftest import ROOT

# (question, acceptable sources, a string the answer must contain)
QUESTIONS = [
    (
        "Where did Vance hold the joint press conference?",
        {"000_3b56b7e336b84316.txt"},
        "Eagle Pass",
    ),
    (
        "When was the call between Hegseth and Mexico's top military officials?",
        {"000_3b56b7e336b84316.txt", "001_8519b1fb3011066c.txt", "002_113a1a336eb66b34.txt"},
        "Jan. 31",
    ),
    (
        "How many cartel bosses did Mexico hand over to the United States?",
        {"001_8519b1fb3011066c.txt", "002_113a1a336eb66b34.txt", "003_8bd5a12c37d93380.txt"},
        "29",
    ),
    (
        "How many National Guard troops did Sheinbaum send to the border?",
        {"001_8519b1fb3011066c.txt", "002_113a1a336eb66b34.txt", "003_8bd5a12c37d93380.txt"},
        "10,000",
    ),
    (
        "Which drug boss is accused of killing DEA agent Enrique Camarena?",
        {"002_113a1a336eb66b34.txt"},
        "Caro Quintero",
    ),
    ("Who is the Mexican Attorney General?", {"002_113a1a336eb66b34.txt"}, "Gertz"),
    ("How many overdose deaths were recorded in 2023?", {"003_8bd5a12c37d93380.txt"}, "87,000"),
    (
        "By when are the U.S. attacks on cartels expected to be ready?",
        {"004_b24285a9b201835e.txt"},
        "mid-September",
    ),
    ("Who commands NORTHCOM?", {"004_b24285a9b201835e.txt"}, "Guillot"),
    ("Where is Nathan Jones an associate professor?", {"004_b24285a9b201835e.txt"}, "Sam Houston"),
    (
        "Which Chinese electric vehicle maker had plans for a factory in Mexico?",
        {"002_113a1a336eb66b34.txt"},
        "BYD",
    ),
    (
        "What did Scott Bessent tell Bloomberg TV about Mexico's proposal?",
        {"001_8519b1fb3011066c.txt", "002_113a1a336eb66b34.txt"},
        "China",
    ),
]
UNANSWERABLE = [
    "What is the capital of Australia?",
    "Who won the 2022 FIFA World Cup?",
    "Who wrote Don Quixote?",
]


@pytest.mark.parametrize(
    ("question", "sources", "expected"), QUESTIONS, ids=[q[0][:40] for q in QUESTIONS]
)
def test_answers_cite_a_right_document(pipeline, question, sources, expected):
    answer = pipeline.ask(question)
    assert not answer.abstained, answer.answer
    assert answer.citations
    assert {c.source for c in answer.citations} & sources
    assert expected in answer.answer
    for n in range(1, len(answer.citations) + 1):
        assert f"[{n}]" in answer.answer


@pytest.mark.parametrize("question", UNANSWERABLE)
def test_abstains_when_corpus_cannot_answer(pipeline, question):
    answer = pipeline.ask(question)
    assert answer.abstained
    assert answer.answer == ABSTAIN_SENTENCE
    assert answer.citations == []


def test_citation_spans_are_exact(pipeline, config):
    answer = pipeline.ask("What did Hegseth say when asked if he would rule out military strikes?")
    for citation in answer.citations:
        original = (config.index.corpus_dir / citation.source).read_text(encoding="utf-8")
        assert original[citation.start : citation.end] == citation.text
        for s, e in citation.highlights:
            assert citation.start <= s < e <= citation.end


def test_every_chunk_fits_the_model(pipeline, embedder, config):
    limit = config.index.max_seq_length - 2
    chunks = pipeline.index.chunks_of()
    assert len(chunks) == pipeline.index.size > 0
    for chunk in chunks:
        assert embedder.count_tokens([chunk.search_text])[0] <= limit
        original = (config.index.corpus_dir / chunk.source).read_text(encoding="utf-8")
        assert original[chunk.start : chunk.end] == chunk.text


def test_forum_chrome_and_duplicates_not_indexed(pipeline):
    texts = [c.search_text for c in pipeline.index.chunks_of() if c.source.startswith("002_")]
    joined = " ".join(texts)
    assert "Please, Log in or Register" not in joined
    assert "Registered Member" not in joined
    assert joined.count("Coming soon. The US Territory of Mexico") == 1


def test_duplicates_do_not_crowd_results(pipeline):
    result = pipeline.retriever.retrieve(
        "Hegseth told the officials that if Mexico didn't deal with the collusion", top_k=5
    )
    texts = [h.chunk.search_text for h in result.hits]
    assert sum("deal with the collusion" in t for t in texts) == 1


def test_hits_carry_both_scores(pipeline):
    result = pipeline.retriever.retrieve("fentanyl overdose deaths", top_k=3)
    assert [h.rank for h in result.hits] == [1, 2, 3]
    assert all(h.dense_score > 0 and h.fused_score > 0 for h in result.hits)
    assert any(h.bm25_score > 0 for h in result.hits)
    # One store search gives both engines' candidates (no separate dense and BM25 passes).
    assert list(result.timings_ms) == ["embed", "search", "damping", "fusion"]
    assert all(t >= 0 for t in result.timings_ms.values())


def test_long_and_control_character_questions(pipeline):
    long_answer = pipeline.ask("Who is Caro Quintero? " + "x" * 100_000)
    assert long_answer.warnings and "cut" in long_answer.warnings[0]
    weird = pipeline.ask("Who is\x00 Caro\x1b[31m Quintero?")
    assert "Caro Quintero" in weird.answer
    with pytest.raises(ValueError, match="empty"):
        pipeline.ask(" \n\t ")


def test_follow_up_uses_history(pipeline):
    answer = pipeline.ask(
        "Where did he say that?",
        history=["What did JD Vance reply when asked about U.S. forces going into Mexico?"],
    )
    assert "Vance" in answer.query
    assert any(c.source.startswith("000_") for c in answer.citations)


def run_cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "rag", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_cli_json_format(config):
    result = run_cli(
        "ask", "How many National Guard troops did Sheinbaum send?", "--json", "-q",
        "--corpus", str(config.index.corpus_dir), "--index", str(config.index.index_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == [
        "answer", "abstained", "mode", "mode_detail", "short_answer", "answerability",
        "citations", "timings_ms", "sentences", "warnings",
    ]  # fmt: skip
    short = data["short_answer"]
    assert short["text"] == "10,000" and short["citation"] == data["citations"][0]["n"]
    document = (config.index.corpus_dir / short["source"]).read_text(encoding="utf-8")
    assert document[short["start"] : short["end"]] == short["text"]
    assert all(s["supported"] and s["citations"] for s in data["sentences"])
    assert data["mode"] == "extractive"
    assert list(data["timings_ms"]) == ["retrieve", "answer"]
    for citation in data["citations"]:
        assert list(citation) == [
            "n", "source", "title", "start", "end", "text", "page", "locator", "ocr"
        ]  # fmt: skip
        original = (config.index.corpus_dir / citation["source"]).read_text(encoding="utf-8")
        assert original[citation["start"] : citation["end"]] == citation["text"]


def test_cli_bad_input(tmp_path, config):
    empty = run_cli("ask", "   ", "--index", str(config.index.index_dir))
    assert empty.returncode != 0
    assert empty.stderr.strip().count("\n") == 0 and "empty" in empty.stderr
    (tmp_path / "empty_corpus").mkdir()
    no_docs = run_cli(
        "ask",
        "anything?",
        "--corpus",
        str(tmp_path / "empty_corpus"),
        "--index",
        str(tmp_path / "i"),
    )
    assert no_docs.returncode != 0 and "no documents" in no_docs.stderr
    missing = run_cli(
        "index", "--corpus", str(tmp_path / "missing"), "--index", str(tmp_path / "i")
    )
    assert missing.returncode != 0 and "corpus folder not found" in missing.stderr
