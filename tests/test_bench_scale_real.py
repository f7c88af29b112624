"""The real-system scale benchmark on a tiny generated corpus (a few hundred chunks).

python -m pytest tests/test_bench_scale_real.py -q -x
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import scale_real
from eval.squad import load_squad

SQUAD = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "squad-dev-v1.1.json"

pytestmark = pytest.mark.skipif(not SQUAD.is_file(), reason=f"needs {SQUAD}")


@pytest.fixture(scope="module")
def squad():
    """Six paragraphs of each of the first two SQuAD dev articles, as needles."""
    return scale_real.read_squad(load_squad(SQUAD), articles=2, per_article=6)


def test_vector_cache_matches_recorded_sentences_and_leaves_the_rest():
    cache = scale_real.VectorCache(2)
    cache.add(["The cat sat on the mat all day long.", "It purred."], np.eye(2, dtype=np.float32))
    recorded = scale_real.RecordedEmbedder.__new__(scale_real.RecordedEmbedder)
    recorded.__dict__.update(cache=cache)
    parts = recorded.decompose(
        "It purred. The cat sat on the mat all day long. A dog barked. It purred."
    )
    assert parts == [
        "It purred.",
        "The cat sat on the mat all day long.",
        "A dog barked.",
        "It purred.",
    ]


def test_tiny_corpus_builds_through_update_index_and_finds_its_needles(squad, embedder, tmp_path):
    prepared = scale_real.prepare(
        squad, data_dir=tmp_path, n_questions=24, seed=0, chunks_per_file=10,
        noise=scale_real.NOISE, progress=False, base=embedder,
    )  # fmt: skip
    assert 10 <= len(squad.paragraphs) == prepared.info["needle_files"]
    assert {s for q in prepared.questions for s in q.sources} <= {
        p.source for p in squad.paragraphs
    }
    gold_text = {p.text for p in squad.paragraphs if p.source in prepared.questions[0].sources}
    pooled = {s for pool in prepared.pools.values() for s in pool}
    assert not any(s in text for s in pooled for text in gold_text if len(s) > 40)
    corpus = scale_real.generate_corpus(
        tmp_path / "corpus", squad, prepared.pools,
        distractors=scale_real.distractors_for(300, prepared),
        sentences_per_distractor=prepared.sentences_per_distractor, seed=0, progress=False,
    )  # fmt: skip
    first = corpus.distractor_file(0).read_text(encoding="utf-8")
    assert first == scale_real.distractor(1, 0, prepared.pools, prepared.sentences_per_distractor)
    row = scale_real.measure(
        "faiss", corpus, target=300, recorded=prepared.recorded, base=embedder,
        questions=prepared.questions, latency_questions=5, memory_questions=3,
        store_flag=scale_real.cli_store_flag(), data_dir=tmp_path, progress=False,
    )  # fmt: skip
    missing = [k for k in scale_real.FIGURE_KEYS if row.get(k) is None]
    assert not missing, missing
    assert 200 <= row["chunks"] <= 450
    # Needle chunks got their real vectors; distractor chunks were composed, not embedded.
    assert row["vectors"]["exact"] >= prepared.needle_chunks
    assert row["vectors"]["composed"] >= row["chunks"] - row["vectors"]["exact"] - 5
    assert row["vectors"].get("live_parts", 0) <= 5
    assert row["update_chunks_embedded"] >= 1
    assert row["hit@5"] >= 0.75
    table = scale_real.markdown([row])
    assert table.count("\n") == 3 and "| faiss |" in table


def test_a_question_process_that_runs_out_of_time_keeps_its_measured_figures(tmp_path, monkeypatch):
    """Latency and memory are written before hit@5 scoring; a timeout keeps them."""
    import json
    import subprocess

    from eval.queries import Query
    from index.config import IndexConfig

    def slow_child(command, **kwargs):
        spec = json.loads(Path(command[-1]).read_text(encoding="utf-8"))
        if written:
            Path(spec["out"]).write_text(json.dumps({"question_p50_ms": 12.5}))
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(scale_real.subprocess, "run", slow_child)
    config = IndexConfig(corpus_dir=tmp_path / "c", index_dir=tmp_path / "i")
    questions = [Query(id="q", question="Who?", answers=("A",), sources=("a.txt",))]
    written = True
    row = scale_real.ask_in_child(config, questions, latency=1, memory=1, work=tmp_path / "w")
    assert row["question_p50_ms"] == 12.5 and "timed out" in row["questions_note"]
    written = False
    with pytest.raises(subprocess.TimeoutExpired):
        scale_real.ask_in_child(config, questions, latency=1, memory=1, work=tmp_path / "w")
