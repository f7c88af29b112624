"""The Milvus engine against a real Milvus Lite (one .db file per test under tmp_path).

python -m pytest tests/test_milvus_store.py -q -x
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from index import milvus_store  # noqa: E402
from index.analyzer import analyzer  # noqa: E402
from index.corpus_index import Chunk  # noqa: E402
from index.milvus_store import (  # noqa: E402
    ChunkCache,
    CollectionNotFound,
    MilvusStore,
    MilvusWriter,
    collection_name,
    is_lite_uri,
)
from index.store import TermCounts, chunk_id  # noqa: E402

DIM = 8
COLLECTION = "corpusqa_test"
ROOT = Path(__file__).resolve().parent.parent

TEXTS = {
    "run.txt": ["The dog runs fast in the park.", "She will run the marathon tomorrow."],
    "cats.txt": ["Cats sleep most of the day.", "A cat purrs when it is content."],
    'odd "name" \\ é.md': ["Quoted names must survive filters."],
    "line\nbreak.txt": ["A source with a line break in its name."],
    "weather.txt": ["Rain is expected over the weekend.", "Sunny skies return on Monday."],
}


def make_chunk(source: str, index: int, text: str) -> Chunk:
    """A made-up chunk with every field set (page None on even indexes)."""
    start = index * 100
    search_text = f"{source} {text}"
    return Chunk(
        id=chunk_id(source, start, start + len(text), text, search_text),
        source=source,
        title=f"Title of {source}",
        date="2024-05-01",
        start=start,
        end=start + len(text),
        text=text,
        search_text=search_text,
        sentences=((0, len(text) // 2), (len(text) // 2 + 1, len(text))),
        n_tokens=len(text.split()),
        page=None if index % 2 == 0 else index,
        locator="" if index % 2 == 0 else f"p. {index}",
        ocr=index % 2 == 1,
    )


def corpus() -> tuple[list[Chunk], np.ndarray]:
    """Every made-up chunk and a random unit vector for each."""
    chunks = [
        make_chunk(source, i, text)
        for source, texts in TEXTS.items()
        for i, text in enumerate(texts)
    ]
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(len(chunks), DIM)).astype(np.float32)
    return chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build(uri: str, chunks: list[Chunk], vectors: np.ndarray, tmp: Path) -> dict:
    """Write chunks into the test collection; the manifest entry of the write."""
    writer = MilvusWriter.create(
        uri=uri, collection=COLLECTION, dimension=DIM, expected_chunks=len(chunks)
    )
    writer.upsert(chunks, vectors)
    return writer.finish(tmp).manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A read-only store over the whole made-up corpus, shared by the read tests."""
    folder = tmp_path_factory.mktemp("milvus")
    chunks, vectors = corpus()
    build(str(folder / "milvus.db"), chunks, vectors, folder)
    store = MilvusStore.open(uri=str(folder / "milvus.db"), collection=COLLECTION)
    yield store, chunks, vectors
    store.close()


@pytest.fixture
def uri(tmp_path) -> str:
    """A fresh Milvus Lite file for one test."""
    return str(tmp_path / "milvus.db")


def test_fetch_and_vectors_round_trip(built):
    store, chunks, vectors = built
    asked = [chunks[3].id, 12345, chunks[0].id, chunks[1].id]
    assert store.fetch(asked) == [chunks[3], chunks[0], chunks[1]]
    assert store.fetch([chunks[0].id])[0].page is None
    assert store.fetch([chunks[1].id])[0].page == 1
    got = store.vectors([chunks[2].id, chunks[0].id])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, vectors[[2, 0]])
    with pytest.raises(KeyError, match="12345"):
        store.vectors([chunks[0].id, 12345])
    assert store.size == len(chunks)


def test_term_counts_match_the_texts_then_come_from_the_cache(built, monkeypatch):
    store, chunks, _ = built
    monkeypatch.setattr(store, "_cache", ChunkCache())  # the shared store's reads so far
    reads = []
    query = store._client.query
    monkeypatch.setattr(
        store._client, "query", lambda *a, **k: reads.append(k["filter"]) or query(*a, **k)
    )
    ids = [chunks[4].id, 999, chunks[0].id, chunks[1].id]
    terms = [analyzer().tokenize(chunks[i].search_text) for i in (4, 0, 1)]
    want = TermCounts.of_terms([terms[0], [], *terms[1:]], "running dogs run")
    assert want.occurrences[2] > 0
    for _ in range(2):
        got = store.query_term_counts("running dogs run", ids)
        for field in ("lengths", "occurrences", "distinct"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    # The second time only the unknown id is asked for again: the rest come from the cache.
    assert len(reads) == 2 and str(chunks[0].id) in reads[0]
    assert reads[1] == "id in [999]"


def test_chunk_cache_keeps_the_most_recently_used():
    chunks, _ = corpus()
    cache = ChunkCache(size=3)
    cache.sync(0)
    cache.add(chunks[:3])
    assert set(cache.chunks([chunks[0].id])) == {chunks[0].id}  # 0 is now the most recent
    cache.add([chunks[3]])
    assert set(cache.chunks(c.id for c in chunks)) == {c.id for c in (chunks[0], *chunks[2:4])}
    assert cache.terms(chunks[2], str.split) == tuple(chunks[2].search_text.split())
    assert cache.terms(chunks[2], lambda text: []) == tuple(chunks[2].search_text.split())
    assert cache.terms(chunks[1], str.split) == tuple(chunks[1].search_text.split())
    assert len(cache) == 3  # terms of an evicted chunk are computed, not stored


def test_chunk_cache_empties_when_this_process_wrote():
    chunks, _ = corpus()
    cache = ChunkCache(size=10)
    cache.sync(1)
    cache.add(chunks[:2])
    cache.sync(1)
    assert len(cache.chunks([chunks[0].id, chunks[1].id])) == 2
    cache.sync(2)
    assert cache.chunks([chunks[0].id, chunks[1].id]) == {}
    with pytest.raises(ValueError, match="cache size"):
        ChunkCache(size=-1)


def test_dense_search_matches_numpy(built):
    store, chunks, vectors = built
    query = vectors[4] + 0.3 * vectors[1]
    query /= np.linalg.norm(query)
    found = store.search(text=None, vector=query, k=5)
    expected = np.argsort(-(vectors @ query))[:5]
    assert found.dense_ids.tolist() == [chunks[i].id for i in expected]
    assert found.dense_scores.dtype == np.float32
    np.testing.assert_allclose(found.dense_scores, (vectors @ query)[expected], atol=1e-5)
    assert found.lexical_ids.size == 0 and found.lexical_scores.size == 0


def test_lexical_search_stems_english(built):
    store, chunks, _ = built
    found = store.search(text="running", vector=None, k=10)
    by_id = {c.id: c for c in chunks}
    assert {by_id[i].source for i in found.lexical_ids.tolist()} == {"run.txt"}
    assert len(found.lexical_ids) == 2
    assert (found.lexical_scores > 0).all() and found.lexical_scores.dtype == np.float32
    assert found.dense_ids.size == 0


def test_empty_queries_give_empty_sides(built):
    store, _, vectors = built
    for text in ("", "   ", "the of and", "?!"):
        found = store.search(text=text, vector=None, k=5)
        assert found.lexical_ids.dtype == np.int64 and found.lexical_ids.size == 0
    found = store.search(text=None, vector=None, k=5)
    assert all(part.size == 0 for part in found)
    with pytest.raises(ValueError, match="dimensions"):
        store.search(text=None, vector=np.ones(DIM + 1, dtype=np.float32), k=5)
    with pytest.raises(ValueError, match="k must be"):
        store.search(text="cat", vector=vectors[0], k=0)


def test_allowed_limits_both_searches(built, monkeypatch):
    store, chunks, vectors = built
    allowed = np.sort(np.array([chunks[0].id, chunks[2].id, chunks[5].id], dtype=np.int64))
    found = store.search(text="dog cat rain", vector=vectors[1], k=10, allowed=allowed)
    assert set(found.dense_ids.tolist()) == set(allowed.tolist())
    assert set(found.lexical_ids.tolist()) <= set(allowed.tolist())
    assert chunks[0].id in found.lexical_ids and chunks[2].id in found.lexical_ids
    # An allowed set past the filter limit is searched in slices, with the same result.
    monkeypatch.setattr(milvus_store, "ALLOWED_FILTER_MAX", 2)
    sliced = store.search(text="dog cat rain", vector=vectors[1], k=10, allowed=allowed)
    assert sliced.dense_ids.tolist() == found.dense_ids.tolist()
    assert sorted(sliced.lexical_ids.tolist()) == sorted(found.lexical_ids.tolist())
    empty = store.search(text="dog", vector=vectors[1], k=10, allowed=np.zeros(0, np.int64))
    assert all(part.size == 0 for part in empty)


def test_lexical_scores_for_given_ids(built):
    store, chunks, _ = built
    ids = [chunks[2].id, chunks[0].id, 999, chunks[1].id]
    scores = store.lexical_scores("cats running", ids)
    assert scores.dtype == np.float32 and scores.shape == (4,)
    searched = store.search(text="cats running", vector=None, k=10)
    expected = dict(
        zip(searched.lexical_ids.tolist(), searched.lexical_scores.tolist(), strict=True)
    )
    for i, score in zip(ids, scores.tolist(), strict=True):
        assert score == pytest.approx(expected.get(i, 0.0), rel=1e-5)
    assert scores[0] > 0 and scores[2] == 0
    assert store.lexical_scores("", ids).tolist() == [0.0] * 4


def test_ids_of_pages_through_results(built, monkeypatch):
    store, chunks, _ = built
    monkeypatch.setattr(milvus_store, "ITERATOR_BATCH", 1)
    sources = ["run.txt", 'odd "name" \\ é.md', "line\nbreak.txt", "missing.txt"]
    ids = store.ids_of(sources)
    assert ids.dtype == np.int64
    assert ids.tolist() == sorted(c.id for c in chunks if c.source in sources)
    assert store.ids_of([]).size == 0


def test_upsert_is_idempotent(uri, tmp_path):
    chunks, vectors = corpus()
    build(uri, chunks, vectors, tmp_path)
    writer = MilvusWriter.create(uri=uri, collection=COLLECTION, dimension=DIM, expected_chunks=0)
    # Twice again, and one id repeated within the call: the later row wins.
    writer.upsert(chunks, vectors)
    writer.upsert(chunks + chunks[:1], np.vstack([vectors, vectors[1:2]]))
    manifest = writer.finish(tmp_path).manifest
    assert manifest["chunks"] == len(chunks)
    store = MilvusStore.open(uri=uri, collection=COLLECTION)
    try:
        assert store.size == len(chunks)
        np.testing.assert_array_equal(store.vectors([chunks[0].id]), vectors[1:2])
    finally:
        store.close()


def test_rewritten_documents_are_inserted_once_and_others_upserted(uri, tmp_path, monkeypatch):
    """A document's chunks go in by insert after this writer deleted the document (no id
    lookup), by upsert otherwise; either way each id is stored once."""
    chunks, vectors = corpus()
    build(uri, chunks, vectors, tmp_path)
    writer = MilvusWriter.create(uri=uri, collection=COLLECTION, dimension=DIM, expected_chunks=0)
    calls: list[tuple[str, int]] = []
    for name in ("insert", "upsert"):
        real = getattr(writer._client, name)

        def spy(collection, rows, *, _real=real, _name=name, **kwargs):
            calls.append((_name, len(rows)))
            return _real(collection, rows, **kwargs)

        monkeypatch.setattr(writer._client, name, spy)
    run = [i for i, c in enumerate(chunks) if c.source == "run.txt"]
    cats = [i for i, c in enumerate(chunks) if c.source == "cats.txt"]
    writer.delete_documents(["run.txt"])
    writer.upsert([chunks[i] for i in run], vectors[run])  # deleted above: insert
    writer.upsert([chunks[i] for i in run], vectors[run])  # written since: upsert
    writer.upsert([chunks[i] for i in run + cats], vectors[run + cats])  # cats kept: upsert
    manifest = writer.finish(tmp_path).manifest
    assert calls == [("insert", 2), ("upsert", 2), ("upsert", 4)]
    assert manifest["chunks"] == len(chunks)
    store = MilvusStore.open(uri=uri, collection=COLLECTION)
    try:
        assert store.size == len(chunks)
        assert sorted(store.ids_of(["run.txt", "cats.txt"]).tolist()) == sorted(
            chunks[i].id for i in run + cats
        )
    finally:
        store.close()


def test_delete_documents_removes_exactly_those(uri, tmp_path):
    chunks, vectors = corpus()
    build(uri, chunks, vectors, tmp_path)
    store = MilvusStore.open(uri=uri, collection=COLLECTION)
    try:
        assert store.size == len(chunks)
        assert store.fetch([c.id for c in chunks]) == chunks  # now cached by the store
        writer = MilvusWriter.create(
            uri=uri, collection=COLLECTION, dimension=DIM, expected_chunks=0
        )
        gone = ["run.txt", "line\nbreak.txt", 'odd "name" \\ é.md']
        writer.delete_documents(gone)
        writer.delete_documents(gone)  # idempotent
        writer.finish(tmp_path)
        kept = [c for c in chunks if c.source not in gone]
        assert store.size == len(kept)  # the open store sees the writer's change
        assert store.fetch([c.id for c in chunks]) == kept
        assert store.ids_of(gone).size == 0
        assert store.search(text="running", vector=None, k=5).lexical_ids.size == 0
    finally:
        store.close()


def test_reopened_store_sees_finished_data(uri, tmp_path):
    chunks, vectors = corpus()
    manifest = build(uri, chunks, vectors, tmp_path)
    assert manifest == {
        "engine": "milvus",
        "collection": COLLECTION,
        "dimension": DIM,
        "dense_index": "FLAT",
        "chunks": len(chunks),
    }
    # Every connection was closed: this open starts a new Lite server on the file.
    store = MilvusStore.open(uri=uri, collection=COLLECTION)
    try:
        assert store.size == len(chunks) and store.dense_index == "FLAT"
        assert store.search(text=None, vector=vectors[3], k=1).dense_ids.tolist() == [chunks[3].id]
        assert store.fetch([chunks[4].id]) == [chunks[4]]
    finally:
        store.close()


def test_dimension_mismatch_and_missing_collection(uri, tmp_path):
    chunks, vectors = corpus()
    build(uri, chunks, vectors, tmp_path)
    with pytest.raises(ValueError, match="8-dimensional"):
        MilvusWriter.create(uri=uri, collection=COLLECTION, dimension=16, expected_chunks=0)
    with pytest.raises(CollectionNotFound):
        MilvusStore.open(uri=uri, collection="corpusqa_other")
    with pytest.raises(CollectionNotFound):
        MilvusStore.open(uri=str(tmp_path / "absent.db"), collection=COLLECTION)
    writer = MilvusWriter.create(uri=uri, collection=COLLECTION, dimension=DIM, expected_chunks=0)
    with pytest.raises(ValueError, match="dimensions"):
        writer.upsert(chunks[:1], np.ones((1, 4), dtype=np.float32))
    writer.close()
    assert MilvusWriter.drop(uri=uri, collection=COLLECTION) is True
    assert MilvusWriter.drop(uri=uri, collection=COLLECTION) is False
    with pytest.raises(CollectionNotFound):
        MilvusStore.open(uri=uri, collection=COLLECTION)


def test_uri_and_name_validation(tmp_path):
    assert is_lite_uri("data/index/milvus.db") and not is_lite_uri("http://localhost:19530")
    for bad in ("", "  ", "data/index/milvus.sqlite", "grpc://host:19530", "x" * 40 + ".db"):
        with pytest.raises(ValueError):
            is_lite_uri(bad)
    with pytest.raises(ValueError, match="collection name"):
        MilvusStore.open(uri=str(tmp_path / "m.db"), collection="bad-name")
    name = collection_name(tmp_path / "index")
    assert name == collection_name(tmp_path / "index" / ".." / "index")
    assert name != collection_name(tmp_path / "other")
    assert name.startswith("corpusqa_") and len(name) == len("corpusqa_") + 16


def test_second_process_is_refused_and_stdout_clean(uri, tmp_path, capfd):
    chunks, vectors = corpus()
    writer = MilvusWriter.create(uri=uri, collection=COLLECTION, dimension=DIM, expected_chunks=0)
    writer.upsert(chunks, vectors)
    code = (
        "import sys; from index.milvus_store import MilvusStore, MilvusLiteBusy\n"
        "try:\n"
        f"    MilvusStore.open(uri={uri!r}, collection={COLLECTION!r})\n"
        "except MilvusLiteBusy as exc:\n"
        "    sys.stderr.write(str(exc)); sys.exit(3)\n"
    )
    try:
        refused = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    finally:
        writer.finish(tmp_path)
    assert refused.returncode == 3, refused.stderr
    assert "another process" in refused.stderr
    assert capfd.readouterr().out == ""


def test_empty_collection_gives_empty_results(uri, tmp_path):
    writer = MilvusWriter.create(uri=uri, collection=COLLECTION, dimension=DIM, expected_chunks=0)
    store = MilvusStore.open(uri=uri, collection=COLLECTION)
    try:
        # BM25 on a collection that never held a row fails inside Lite; the store skips it.
        found = store.search(text="dog", vector=np.ones(DIM, dtype=np.float32), k=5)
        assert all(part.size == 0 for part in found)
        assert store.lexical_scores("dog", [1, 2]).tolist() == [0.0, 0.0]
        chunks, vectors = corpus()
        writer.upsert(chunks, vectors)
        assert store.search(text="dog", vector=None, k=5).lexical_ids.size == 1
        assert writer.finish(tmp_path).manifest["chunks"] == len(chunks) == store.size
    finally:
        store.close()


def test_open_loads_nothing_and_lite_loads_on_a_read_or_a_write(uri, tmp_path):
    """The facts the store's lazy load rests on (index.milvus_store's docstring)."""
    chunks, vectors = corpus()
    build(uri, chunks, vectors, tmp_path)  # its connection is closed: the file is on disk only
    store = MilvusStore.open(uri=uri, collection=COLLECTION)
    client = store._client

    def state() -> str:
        return str(client.get_load_state(COLLECTION)["state"])

    try:
        client.flush(COLLECTION)
        assert store.cheap_size() == len(chunks) and state() == "NotLoad"
        writer = MilvusWriter.create(
            uri=uri, collection=COLLECTION, dimension=DIM, expected_chunks=0
        )
        writer.delete_documents(["run.txt"])  # Lite loads the collection for any write
        assert state() == "Loaded"
        kept = len(chunks) - len(TEXTS["run.txt"])
        assert writer.finish(tmp_path).manifest["chunks"] == kept
        assert store.cheap_size() == store.size == kept
    finally:
        store.close()
    store = MilvusStore.open(uri=uri, collection=COLLECTION)
    try:
        assert str(store._client.get_load_state(COLLECTION)["state"]) == "NotLoad"
        assert store.fetch([chunks[2].id]) == [chunks[2]]  # the first read loads it
        assert str(store._client.get_load_state(COLLECTION)["state"]) == "Loaded"
    finally:
        store.close()
