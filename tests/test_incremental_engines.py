"""Incremental updates on both engines equal a clean rebuild, and a Lite update loads only when
it must.

    python -m pytest tests/test_incremental_engines.py -q

Updates add, change and remove documents so that a line becomes page chrome, stops being it
and becomes it again; after each, every document's chunks and the term table are those a
clean rebuild of the same corpus gives. One document holds the chrome line with a form feed
inside it, which str.splitlines would split and the chunker does not.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from index import CorpusIndex, IndexConfig, update_index

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from index import milvus_store  # noqa: E402
from index.milvus_store import MilvusStore  # noqa: E402

PAST_NS = 1_600_000_000 * 10**9  # far outside the scan's racy window
_TICKS = itertools.count(1)
HEADER = "Acme Weekly News"
BODY = {
    "d1.txt": "The harbour opened a new ferry line to the islands. Tickets cost four euros.",
    "d2.txt": "A storm closed the mountain pass for two days. Snow ploughs cleared it at dawn.",
    "d3.txt": "The library lends telescopes to families. Each loan lasts one week.",
    "d4.txt": "Bakers in the old town start work at three. Their rye bread sells out by nine.",
    "d5.txt": "The river festival returns in June with boat races and music on the quay.",
}


def _write(corpus: Path, name: str, text: str) -> None:
    """Write a document with a distinct modification time in the past (never racy)."""
    path = corpus / name
    path.write_text(text, encoding="utf-8")
    stamp = PAST_NS + next(_TICKS) * 10**9
    os.utime(path, ns=(stamp, stamp))


def _document(name: str, *, header: str | None = HEADER, extra: str = "") -> str:
    lines = [header] if header else []
    return "\n".join([*lines, BODY[name] + extra, ""])


def _config(corpus: Path, folder: Path, store: str) -> IndexConfig:
    extra = {"milvus_uri": str(folder / "milvus.db")} if store == "milvus" else {}
    return IndexConfig(corpus_dir=corpus, index_dir=folder / "index", store=store, **extra)


def _stats(index: CorpusIndex) -> tuple:
    return index.stats.chunks, index.stats.tokens, index.stats.df


def _held(config: IndexConfig) -> tuple[CorpusIndex, list, tuple]:
    """The index's chunks and term table (the index is closed again)."""
    index = CorpusIndex.load(config)
    try:
        return index, index.chunks_of(), _stats(index)
    finally:
        index.store.close()


def _clean(corpus: Path, folder: Path, embedder) -> tuple[list, tuple]:
    """Chunks and term table of a clean rebuild of the corpus (embedded engine)."""
    config = _config(corpus, folder, "faiss")
    update_index(config, rebuild=True, progress=False, embedder=embedder)
    _, chunks, stats = _held(config)
    return chunks, stats


def _chrome(config: IndexConfig) -> bool:
    """Whether the header line is page chrome in the live generation."""
    index = CorpusIndex.load(config)
    index.store.close()
    return HEADER.lower() in index.lines.chrome()


def test_updates_that_flip_chrome_lines_equal_a_clean_rebuild(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("d1.txt", "d2.txt", "d3.txt"):
        _write(corpus, name, _document(name))
    # One line to the chunker and the line table ("acme weekly news"), two to str.splitlines.
    _write(corpus, "d4.txt", _document("d4.txt", header="Acme\fWeekly News"))
    _write(corpus, "d5.txt", _document("d5.txt", header=None))
    steps = [
        ("first build: the header is chrome (4 times)", lambda: None, True),
        ("two removed: it is not (2)", lambda: [(corpus / n).unlink() for n in ("d1.txt", "d2.txt")],
         False),
        ("one back, one gains it: chrome again (4)", lambda: [
            _write(corpus, "d1.txt", _document("d1.txt")),
            _write(corpus, "d5.txt", _document("d5.txt", extra=" Entry is free.")),
        ], True),
        ("one changed, one removed: still chrome (3)", lambda: [
            _write(corpus, "d3.txt", _document("d3.txt", extra=" Returns are due on Monday.")),
            (corpus / "d5.txt").unlink(),
        ], True),
        ("one loses it: not chrome (2)", lambda: _write(
            corpus, "d1.txt", _document("d1.txt", header=None)), False),
    ]  # fmt: skip
    engines = {store: _config(corpus, tmp_path / store, store) for store in ("faiss", "milvus")}
    for number, (what, change, chrome) in enumerate(steps):
        change()
        expected_chunks, expected_stats = _clean(corpus, tmp_path / f"clean-{number}", embedder)
        for store, config in engines.items():
            update_index(config, progress=False, embedder=embedder)
            index, chunks, stats = _held(config)
            assert index.store.engine == store
            assert _chrome(config) is chrome, (what, store)
            assert chunks == expected_chunks, (what, store)
            assert stats == expected_stats, (what, store)


def _load_state(client, collection: str) -> str:
    return str(client.get_load_state(collection)["state"])


def test_a_lite_update_that_writes_nothing_never_loads_the_collection(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in BODY:
        _write(corpus, name, _document(name))
    config = _config(corpus, tmp_path / "milvus", "milvus")
    update_index(config, progress=False, embedder=embedder)
    collection = milvus_store.collection_name(config.index_dir)
    # Held across the updates, this connection keeps one Lite server up (the builds share
    # it), so the load state seen here is the one the builds left.
    key, client = milvus_store._acquire(config.milvus_uri, "")
    try:
        assert _load_state(client, collection) == "NotLoad"
        chunks = CorpusIndex.load(config, for_update=True).stats.chunks
        noop = update_index(config, progress=False, embedder=embedder)
        assert not noop.wrote_generation and noop.chunks_total == chunks
        assert _load_state(client, collection) == "NotLoad"
        # A new file time only: a generation is written (the new stat), no row is touched.
        stamp = PAST_NS + next(_TICKS) * 10**9
        os.utime(corpus / "d2.txt", ns=(stamp, stamp))
        restat = update_index(config, progress=False, embedder=embedder)
        assert restat.wrote_generation and not restat.changed
        assert _load_state(client, collection) == "NotLoad"
        manifest = CorpusIndex.load(config, for_update=True).manifest
        assert manifest["store"]["chunks"] == manifest["chunk_count"] == chunks
        # A changed document is written, which loads the collection (Lite loads on any write).
        _write(corpus, "d3.txt", _document("d3.txt", extra=" The telescopes are new."))
        update_index(config, progress=False, embedder=embedder)
        assert _load_state(client, collection) == "Loaded"
        assert milvus_store._count(client, collection) == chunks
    finally:
        milvus_store._release(key)
    index, held, stats = _held(config)
    assert index.manifest["store"]["chunks"] == index.manifest["chunk_count"] == len(held)
    expected_chunks, expected_stats = _clean(corpus, tmp_path / "clean", embedder)
    assert [c.id for c in held] == [c.id for c in expected_chunks]
    assert stats == expected_stats


def test_a_wrong_cheap_count_is_checked_not_trusted(tmp_path, embedder, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("d1.txt", "d2.txt"):
        _write(corpus, name, _document(name, header=None))
    config = _config(corpus, tmp_path / "milvus", "milvus")
    update_index(config, progress=False, embedder=embedder)
    monkeypatch.setattr(MilvusStore, "cheap_size", lambda self: 10**6)
    index = CorpusIndex.load(config, for_update=True)  # the exact count settles it
    index.store.close()
    report = update_index(config, progress=False, embedder=embedder)
    assert not report.rebuilt_reason
