"""Both store engines behind one interface: the same corpus, questions and guarantees.

python -m pytest tests/test_store_engines.py -q

The embedded engine (FAISS + segments) and Milvus Lite 2.5 (the Milvus C++ core as a local
process) index the same corpus; chunk ids, the analyzer's statistics, answers and abstentions
are compared, then a kill -9 in the middle of a Milvus build and damage on both are tested.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from index import CorpusIndex, IndexConfig, IndexCorrupt, update_index
from rag import Config, Pipeline

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    json.loads(line)["question"]
    for line in (ROOT / "eval/queries/corpus.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]


def _config(corpus: Path, folder: Path, store: str) -> IndexConfig:
    extra = {"milvus_uri": str(folder / "milvus.db")} if store == "milvus" else {}
    return IndexConfig(corpus_dir=corpus, index_dir=folder / "index", store=store, **extra)


@pytest.fixture(scope="module")
def engines(tmp_path_factory, corpus_copy, embedder):
    """The real corpus indexed by each engine: {store: Pipeline}."""
    pipelines = {}
    for store in ("faiss", "milvus"):
        folder = tmp_path_factory.mktemp(store)
        config = _config(corpus_copy, folder, store)
        update_index(config, progress=False, embedder=embedder)
        pipelines[store] = Pipeline(Config(index=config), embedder=embedder)
    return pipelines


def test_both_engines_hold_the_same_chunks(engines):
    faiss_index, milvus_index = engines["faiss"].index, engines["milvus"].index
    assert faiss_index.store.engine == "faiss" and milvus_index.store.engine == "milvus"
    assert faiss_index.size == milvus_index.size > 0
    assert faiss_index.chunks_of() == milvus_index.chunks_of()
    ids = [c.id for c in faiss_index.chunks_of()]
    assert abs(faiss_index.store.vectors(ids) - milvus_index.store.vectors(ids)).max() < 1e-6


def test_the_analyzer_and_its_statistics_are_the_index_s(engines):
    faiss_lexicon, milvus_lexicon = engines["faiss"].index.lexicon, engines["milvus"].index.lexicon
    for question in QUESTIONS:
        terms = faiss_lexicon.tokenize(question)
        assert terms == milvus_lexicon.tokenize(question)
        assert faiss_lexicon.idf(terms) == milvus_lexicon.idf(terms)


def test_same_questions_same_answers_on_both_engines(engines):
    """Dense scores agree exactly; BM25 is each engine's own, so a few rankings may differ."""
    same_top, same_abstention, same_answer = 0, 0, 0
    for question in QUESTIONS:
        a = engines["faiss"].ask(question)
        b = engines["milvus"].ask(question)
        same_abstention += a.abstained == b.abstained
        same_answer += a.answer == b.answer
        top_a = [c.source for c in a.citations[:1]]
        top_b = [c.source for c in b.citations[:1]]
        same_top += top_a == top_b
    n = len(QUESTIONS)
    assert same_abstention / n >= 0.97, (same_abstention, n)
    assert same_top / n >= 0.95, (same_top, n)
    assert same_answer / n >= 0.85, (same_answer, n)


def test_filtered_search_and_lexical_scores_on_both_engines(engines):
    for store in ("faiss", "milvus"):
        index = engines[store].index
        source = index.documents[0].source
        allowed = index.store.ids_of([source])
        vector = index.store.vectors(allowed[:1].tolist())[0]
        found = index.store.search(text="Mexico cartels", vector=vector, k=5, allowed=allowed)
        assert set(found.dense_ids) <= set(allowed) and set(found.lexical_ids) <= set(allowed)
        assert found.dense_ids[0] == allowed[0] and found.dense_scores[0] > 0.99
        scores = index.store.lexical_scores("Mexico cartels", found.lexical_ids.tolist())
        assert scores == pytest.approx(found.lexical_scores, rel=1e-4)


def _kill_during_write(command: list[str], index_dir: Path) -> None:
    """Start command and kill -9 it once it has begun writing the store (pending.json)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (index_dir / "pending.json").exists() and process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the build never started writing")
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_kill_9_during_a_milvus_build_leaves_no_duplicate_or_orphan(
    tmp_path, corpus_copy, embedder
):
    corpus = tmp_path / "corpus"
    shutil.copytree(corpus_copy, corpus)
    config = _config(corpus, tmp_path, "milvus")
    update_index(config, progress=False, embedder=embedder)
    # A document changed and one new: the killed run replaces one and adds the other.
    first = sorted(corpus.iterdir())[0]
    first.write_text(first.read_text(encoding="utf-8") + "\nA new closing line.\n", "utf-8")
    (corpus / "new.txt").write_text("Tacos al pastor come from Puebla. " * 30, encoding="utf-8")
    command = [sys.executable, "-m", "rag", "index", "-q", "--corpus", str(corpus),
               "--index", str(config.index_dir), "--store", "milvus",
               "--milvus-uri", config.milvus_uri]  # fmt: skip
    _kill_during_write(command, config.index_dir)
    # The new document vanishes before the rerun: its chunks, if written, are orphans.
    (corpus / "new.txt").unlink()
    update_index(config, progress=False, embedder=embedder)
    milvus = CorpusIndex.load(config)
    reference = _config(corpus, tmp_path / "reference", "faiss")
    update_index(reference, progress=False, embedder=embedder)
    expected = CorpusIndex.load(reference)
    sources = [d.source for d in expected.documents] + ["new.txt"]
    assert milvus.store.ids_of(sources).tolist() == expected.store.ids_of(sources).tolist()
    assert milvus.size == expected.size == milvus.manifest["chunk_count"]
    milvus.store.close()


class Crash(Exception):
    """Stands for a kill -9 after the store writes and before the generation goes live."""


def _crash_after_store_writes(monkeypatch) -> None:
    import index.build

    def crash(*args, **kwargs):
        raise Crash

    monkeypatch.setattr(index.build, "write_generation", crash)


def _same_as_a_clean_build(index_dir_config, corpus: Path, folder: Path, embedder) -> None:
    """The recovered index holds what a clean build of the corpus holds, statistics too."""
    recovered = CorpusIndex.load(index_dir_config)
    reference = _config(corpus, folder, "faiss")
    update_index(reference, progress=False, embedder=embedder)
    expected = CorpusIndex.load(reference)
    sources = sorted({d.source for d in expected.documents} | {"new.txt"})
    assert recovered.store.ids_of(sources).tolist() == expected.store.ids_of(sources).tolist()
    assert recovered.size == expected.size == recovered.manifest["chunk_count"]
    assert (recovered.stats.chunks, recovered.stats.tokens) == (
        expected.stats.chunks, expected.stats.tokens
    )  # fmt: skip
    assert recovered.stats.df == expected.stats.df
    recovered.store.close()


@pytest.mark.parametrize("store", ["faiss", "milvus"])
@pytest.mark.parametrize("then", ["rerun", "revert", "new file deleted"])
def test_a_build_interrupted_after_its_store_writes_is_repaired_in_place(
    tmp_path, corpus_copy, embedder, monkeypatch, store, then
):
    """Milvus holds the interrupted build's deletes and upserts; the rerun repairs them
    incrementally (no rebuild), with the statistics of a clean build, whatever the user did
    to the files in between."""
    corpus = tmp_path / "corpus"
    shutil.copytree(corpus_copy, corpus)
    config = _config(corpus, tmp_path, store)
    update_index(config, progress=False, embedder=embedder)
    first = sorted(corpus.iterdir())[0]
    original, stat = first.read_bytes(), first.stat()
    # Fewer chunks than before: a stale count of them would show in the statistics.
    first.write_text("A short replacement about tariffs on steel.\n", encoding="utf-8")
    if then == "new file deleted":
        first.write_bytes(original)
        os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        (corpus / "new.txt").write_text("Tacos al pastor come from Puebla. " * 30, "utf-8")
    with monkeypatch.context() as patch:
        _crash_after_store_writes(patch)
        with pytest.raises(Crash):
            update_index(config, progress=False, embedder=embedder)
    assert (config.index_dir / "pending.json").is_file()
    if store == "milvus" and then == "rerun":  # a reader meanwhile is told what repairs it
        with pytest.raises(IndexCorrupt, match=r"run: python -m rag index \(an interrupted"):
            CorpusIndex.load(config)
    if then == "revert":  # the same bytes and times as the live index recorded
        first.write_bytes(original)
        os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    if then == "new file deleted":
        (corpus / "new.txt").unlink()
    report = update_index(config, progress=False, embedder=embedder)
    assert report.rebuilt_reason == "" and report.wrote_generation
    assert not (config.index_dir / "pending.json").exists()
    _same_as_a_clean_build(config, corpus, tmp_path / "reference", embedder)


def test_damage_is_detected_on_both_engines(tmp_path, corpus_copy, embedder):
    for store in ("faiss", "milvus"):
        config = _config(corpus_copy, tmp_path / store, store)
        update_index(config, progress=False, embedder=embedder)
        index = CorpusIndex.load(config)
        if store == "faiss":
            segment = index.manifest["store"]["segments"][0]["name"]
            path = config.index_dir / "segments" / segment / "chunks.sqlite3"
            path.write_bytes(path.read_bytes()[:-100])
        else:  # a row deleted behind the index's back
            from index.milvus_store import MilvusWriter, collection_name

            writer = MilvusWriter.create(
                uri=config.milvus_uri, collection=collection_name(config.index_dir),
                dimension=index.dimension, expected_chunks=index.size,
            )  # fmt: skip
            writer.delete_documents([index.documents[0].source])
            writer.finish(tmp_path)
            index.store.close()
        with pytest.raises(IndexCorrupt):
            CorpusIndex.load(config)
        report = update_index(config, progress=False, embedder=embedder)
        assert report.rebuilt_reason and CorpusIndex.load(config).size == index.size
