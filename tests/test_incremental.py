"""Incremental re-indexing, mismatch detection, crash safety and corruption, with the real model."""

from __future__ import annotations

import shutil

import pytest

from index import CorpusIndex, IndexConfig, IndexCorrupt, IndexMismatch, update_index
from index.corpus_index import current_generation
from tests.conftest import CORPUS

DOCS = ["001_8519b1fb3011066c.txt", "003_8bd5a12c37d93380.txt", "004_b24285a9b201835e.txt"]


@pytest.fixture
def small(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in DOCS:
        shutil.copy(CORPUS / name, corpus / name)
    config = IndexConfig(corpus_dir=corpus, index_dir=tmp_path / "index")
    first = update_index(config, progress=False, embedder=embedder)
    return config, first


def test_first_build_then_no_change(small, embedder):
    config, first = small
    assert sorted(first.added) == DOCS and first.chunks_embedded == first.chunks_total > 0
    generation = current_generation(config.index_dir)
    again = update_index(config, progress=False, embedder=embedder)
    assert again.chunks_embedded == 0 and again.kept == DOCS and not again.wrote_generation
    assert current_generation(config.index_dir) == generation


def test_changed_file_alone_is_reembedded(small, embedder):
    config, _ = small
    target = config.corpus_dir / DOCS[1]
    target.write_text(
        target.read_text(encoding="utf-8") + "\nA brand new closing sentence.\n", encoding="utf-8"
    )
    report = update_index(config, progress=False, embedder=embedder)
    assert report.changed == [DOCS[1]] and report.kept == [DOCS[0], DOCS[2]]
    loaded = CorpusIndex.load(config)
    assert report.chunks_embedded == sum(c.source == DOCS[1] for c in loaded.chunks)
    assert any("brand new closing" in c.text for c in loaded.chunks)
    # Kept vectors are carried over unchanged: searching a kept chunk's text finds it first.
    kept_chunk = next(c for c in loaded.chunks if c.source == DOCS[0])
    ids, scores = loaded.vectors.search(embedder.encode([kept_chunk.search_text])[0], 1)
    assert int(ids[0]) == kept_chunk.id and scores[0] > 0.99


def test_deleted_file_disappears(small, embedder):
    config, _ = small
    (config.corpus_dir / DOCS[2]).unlink()
    report = update_index(config, progress=False, embedder=embedder)
    assert report.removed == [DOCS[2]] and report.chunks_embedded == 0
    loaded = CorpusIndex.load(config)
    assert all(c.source != DOCS[2] for c in loaded.chunks)
    ids, _ = loaded.lexical.search("NORTHCOM Guillot Klippenstein", 10)
    assert all(loaded.chunks[i].source != DOCS[2] for i in ids)


def test_other_settings_are_detected_and_rebuilt(small, embedder):
    config, _ = small
    other = IndexConfig(corpus_dir=config.corpus_dir, index_dir=config.index_dir, chunk_tokens=100)
    with pytest.raises(IndexMismatch, match="chunking"):
        CorpusIndex.load(other)
    report = update_index(other, progress=False, embedder=embedder)
    assert "chunking" in report.rebuilt_reason and sorted(report.added) == DOCS
    assert CorpusIndex.load(other).manifest["chunking"]["chunk_tokens"] == 100


def test_crash_mid_build_keeps_previous_index(small, embedder, monkeypatch):
    config, first = small
    (config.corpus_dir / "new.txt").write_text(
        "A new document about tariffs on avocados.", encoding="utf-8"
    )

    def boom(self, folder):
        raise RuntimeError("simulated crash while writing BM25")

    monkeypatch.setattr("index.build.BM25Store.save", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        update_index(config, progress=False, embedder=embedder)
    loaded = CorpusIndex.load(config)
    assert len(loaded.chunks) == first.chunks_total
    assert not [p for p in config.index_dir.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    report = update_index(config, progress=False, embedder=embedder)
    assert report.added == ["new.txt"]


def test_corrupt_file_detected_and_rebuilt(small, embedder):
    config, _ = small
    faiss_file = current_generation(config.index_dir) / "dense.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    with pytest.raises(IndexCorrupt, match="checksum"):
        CorpusIndex.load(config)
    report = update_index(config, progress=False, embedder=embedder)
    assert report.rebuilt_reason and report.chunks_embedded == report.chunks_total
    CorpusIndex.load(config)


def test_large_index_switches_to_hnsw(small, embedder):
    config, _ = small
    approx = IndexConfig(
        corpus_dir=config.corpus_dir, index_dir=config.index_dir, exact_search_max_chunks=5
    )
    (config.corpus_dir / "extra.txt").write_text("Avocado quotas rose in March.", encoding="utf-8")
    update_index(approx, progress=False, embedder=embedder)
    loaded = CorpusIndex.load(approx)
    assert loaded.manifest["dense"]["type"] == "hnsw" and loaded.vectors.kind == "hnsw"
    chunk = loaded.chunks[3]
    ids, _ = loaded.vectors.search(embedder.encode([chunk.search_text])[0], 3)
    assert int(ids[0]) == chunk.id
