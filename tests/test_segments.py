"""The embedded engine's parts, without the model: BM25 scoring, merging, writes and deletes.

python -m pytest tests/test_segments.py -q
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from index.analyzer import TermStats, analyzer
from index.segments import (
    MAX_SEGMENTS,
    EmbeddedStore,
    EmbeddedWriter,
    Postings,
    bm25_norm,
    plan_merge,
)
from index.store import Chunk, chunk_id

TEXTS = [
    "Mexico and the United States signed a treaty on water rights in 1944.",
    "The cartel used tunnels under the border; the tunnels were found in 2016.",
    "Rain fell on the plains of Spain while the rain gauges were read.",
    "A treaty is an agreement between states; treaties are ratified.",
    "",
    "Water, water everywhere, nor any drop to drink.",
]


def _chunk(source: str, text: str, start: int = 0) -> Chunk:
    return Chunk(
        id=chunk_id(source, start, start + len(text), text, text), source=source, title=source,
        date="", start=start, end=start + len(text), text=text, search_text=text,
        sentences=((start, start + len(text)),), n_tokens=len(text.split()),
    )  # fmt: skip


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("query", ["treaty water", "tunnels border 2016", "rain", "drink drop"])
def test_bm25_equals_bm25s_lucene(query):
    import bm25s

    tokens = [analyzer().tokenize(t) for t in TEXTS]
    stats = TermStats.of(tokens)
    postings = Postings.build(tokens)
    norm = bm25_norm(postings.lengths, stats.average_length)
    ours = postings.scores(postings.query_terms(stats.idf(analyzer().tokenize(query))), norm)
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index([t or ["\x00"] for t in tokens], show_progress=False)
    vocab = reference.vocab_dict
    ids = sorted({vocab[t] for t in analyzer().tokenize(query) if t in vocab})
    expected = reference.get_scores_from_ids(ids)
    # bm25s counts the empty text as one placeholder term: lengths differ only there.
    assert np.flatnonzero(ours).tolist() == np.flatnonzero(expected).tolist()
    assert ours[[0, 1, 2, 3, 5]] == pytest.approx(expected[[0, 1, 2, 3, 5]], rel=0.02)


@pytest.mark.parametrize(
    ("segments", "new_rows", "merged"),
    [
        ([("a", 100, 100)], 5, set()),
        ([("a", 100, 60)], 5, {"a"}),  # 40% deleted
        ([("a", 100, 0)], 0, {"a"}),  # all deleted
        ([(f"s{i}", 10 + i, 10 + i) for i in range(MAX_SEGMENTS)], 1, {"s0"}),
        ([(f"s{i}", 10 + i, 10 + i) for i in range(MAX_SEGMENTS + 2)], 1, {"s0", "s1", "s2"}),
        ([(f"s{i}", 10, 10) for i in range(MAX_SEGMENTS)], 0, set()),
    ],
)
def test_plan_merge(segments, new_rows, merged):
    assert plan_merge(segments, new_rows=new_rows) == merged


def _write(tmp_path, store, chunks, vectors, *, delete=(), terms=None):
    generation = tmp_path / f"gen{len(list(tmp_path.glob('gen*')))}"
    generation.mkdir()
    entry = {"segments": store.items} if store is not None else {}
    writer = EmbeddedWriter(tmp_path, store, entry=entry, dense_for=lambda rows: {"type": "flat"})
    writer.delete_documents(list(delete))
    writer.upsert(chunks, vectors, terms=terms)
    state = writer.finish(generation)
    stats = TermStats.of(analyzer().tokenize(c.search_text) for c in chunks)
    opened = EmbeddedStore.open(tmp_path, generation, state.manifest, stats)
    opened.items = state.manifest["segments"]
    return opened


def test_writes_deletes_and_upserts_by_id(tmp_path):
    chunks = [_chunk(f"doc{i}.txt", t) for i, t in enumerate(TEXTS[:4])]
    vectors = _vectors(4)
    first = _write(tmp_path, None, chunks, vectors)
    assert first.size == 4 and first.fetch([c.id for c in chunks]) == chunks
    assert np.allclose(first.vectors([chunks[2].id]), vectors[2:3])
    found = first.search(text="tunnels", vector=vectors[1], k=2)
    assert found.dense_ids[0] == chunks[1].id and found.lexical_ids.tolist() == [chunks[1].id]
    # doc0 deleted, doc1 replaced by a new chunk, doc2 upserted with its own id (a no-op row move)
    new = _chunk("doc1.txt", "The tunnels were sealed in 2017.")
    second = _write(
        tmp_path, first, [new, chunks[2]], _vectors(2, seed=1), delete=["doc0.txt", "doc1.txt"]
    )
    assert second.size == 3
    live = second.ids_of(["doc0.txt", "doc1.txt", "doc2.txt", "doc3.txt"]).tolist()
    assert sorted(live) == sorted([new.id, chunks[2].id, chunks[3].id])
    assert second.fetch([chunks[0].id, new.id]) == [new]
    with pytest.raises(KeyError):
        second.vectors([chunks[0].id])
    found = second.search(text="tunnels", vector=None, k=5)
    assert found.lexical_ids.tolist() == [new.id]
    # Three of the first segment's four rows were replaced: it was merged into the new one.
    assert len(second.segments) == 1 and second.segments[0].rows == 3


def test_terms_given_to_upsert_build_the_same_postings(tmp_path):
    chunks = [_chunk(f"doc{i}.txt", t) for i, t in enumerate(TEXTS)]
    terms = [analyzer().tokenize(c.search_text) for c in chunks]
    for name in ("given", "own", "bad"):
        (tmp_path / name).mkdir()
    given = _write(tmp_path / "given", None, chunks, _vectors(6), terms=terms)
    own = _write(tmp_path / "own", None, chunks, _vectors(6))
    for query in ("treaty water", "tunnels 2016", "drink"):
        a, b = given.search(text=query, vector=None, k=6), own.search(text=query, vector=None, k=6)
        assert a.lexical_ids.tolist() == b.lexical_ids.tolist()
        assert a.lexical_scores.tolist() == b.lexical_scores.tolist()
    with pytest.raises(ValueError, match="2 term lists for 6 chunks"):
        _write(tmp_path / "bad", None, chunks, _vectors(6), terms=terms[:2])


def test_dense_side_on_a_thread_finds_what_one_thread_finds(tmp_path, monkeypatch):
    import index.segments as segments

    chunks = [_chunk(f"doc{i}.txt", t) for i, t in enumerate(TEXTS)]
    store = _write(tmp_path, None, chunks, _vectors(6))
    vector = _vectors(1, seed=3)[0]
    alone = store.search(text="treaty water rain", vector=vector, k=4)
    monkeypatch.setattr(segments, "PARALLEL_SEARCH_ROWS", 0)
    threads = []
    real = store._dense_top
    monkeypatch.setattr(
        store, "_dense_top", lambda *a: threads.append(threading.current_thread().name) or real(*a)
    )
    threaded = store.search(text="treaty water rain", vector=vector, k=4)
    assert len(threads) == 1 and threads[0].startswith("dense-search")  # not the caller's
    for field in ("dense_ids", "dense_scores", "lexical_ids", "lexical_scores"):
        assert getattr(threaded, field).tolist() == getattr(alone, field).tolist()


def test_allowed_ids_limit_both_searches(tmp_path):
    chunks = [_chunk(f"doc{i}.txt", t) for i, t in enumerate(TEXTS[:4])]
    store = _write(tmp_path, None, chunks, _vectors(4))
    allowed = np.array(sorted([chunks[0].id, chunks[3].id]), dtype=np.int64)
    found = store.search(text="treaty tunnels", vector=_vectors(1, 5)[0], k=4, allowed=allowed)
    assert set(found.dense_ids.tolist()) == set(allowed.tolist())
    assert set(found.lexical_ids.tolist()) == set(allowed.tolist())


@pytest.mark.parametrize(
    "manifest",
    [
        {"format_version": 3, "documents": {}, "files": {}},
        {"documents": {"a b/é.txt": {"title": 'a "quoted"\nline', "chunks": 2}, "z": {}}},
        {"skipped": [["x", "why"]], "documents": {"x": {"notes": []}}, "store": {"segments": []}},
    ],
)
def test_manifest_text_is_the_same_json_one_line_per_document(manifest):
    import json

    from index.build import manifest_text

    text = manifest_text(manifest)
    assert json.loads(text) == manifest
    assert text.count("\n") >= len(manifest) + len(manifest.get("documents", {}))


MANIFEST = {"format_version": 3, "documents": {"a.txt": {"title": "Água", "chunks": 2}}}


def _edit_title(text: str) -> str:
    return text.replace("Água", "Agua")


def _edit_seal(text: str) -> str:
    seal = json.loads(text)["manifest_sha256"]
    return text.replace(seal, seal[::-1])


def _canonical(_: str) -> str:
    """A manifest as written before the sealed text: canonical checksum, any layout."""
    from index.corpus_index import manifest_checksum

    old = dict(MANIFEST)
    old["manifest_sha256"] = manifest_checksum(old)
    return json.dumps(old, indent=2)


@pytest.mark.parametrize(
    ("change", "accepted"),
    [
        (lambda text: text, True),
        (_canonical, True),
        (_edit_title, False),
        (_edit_seal, False),
        (lambda text: text.replace('\n "manifest_sha256"', ' "manifest_sha256"'), False),
        (lambda text: json.dumps(json.loads(text), indent=2), False),
    ],
    ids=["as written", "old canonical", "title edited", "seal edited", "seal moved", "re-dumped"],
)
def test_sealed_manifest_detects_any_edit(tmp_path, change, accepted):
    from index.build import write_manifest
    from index.corpus_index import IndexCorrupt, read_manifest

    written = dict(MANIFEST)
    write_manifest(tmp_path, written, [])
    path = tmp_path / "manifest.json"
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")
    if accepted:
        read = read_manifest(tmp_path)
        assert {k: v for k, v in read.items() if k not in ("manifest_sha256", "files")} == MANIFEST
    else:
        with pytest.raises(IndexCorrupt, match="checksum"):
            read_manifest(tmp_path)


def test_sealing_needs_a_manifest_object_with_keys():
    from index.corpus_index import seal_manifest_text, sealed_text_holds

    for bad in ("{\n\n}\n", "[1]\n", ""):
        with pytest.raises(ValueError, match="at least one key"):
            seal_manifest_text(bad)
    text, checksum = seal_manifest_text('{\n "a": 1\n}\n')
    assert json.loads(text) == {"a": 1, "manifest_sha256": checksum}
    assert sealed_text_holds(text) and not sealed_text_holds(text.replace("1", "2"))


def _zipf_corpus(rows: int, seed: int) -> list[list[str]]:
    """Token lists over a Zipf-like vocabulary: a few common terms, many rare ones."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"t{i}" for i in range(2000)]
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    weights /= weights.sum()
    lengths = rng.integers(0, 40, size=rows)
    return [list(rng.choice(vocabulary, size=n, p=weights)) for n in lengths]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maxscore_top_rows_equal_scoring_every_row(seed):
    rng = np.random.default_rng(seed)
    tokens = _zipf_corpus(4000, seed)
    stats = TermStats.of(tokens)
    postings = Postings.build(tokens)
    norm = bm25_norm(postings.lengths, stats.average_length)
    live = rng.random(len(tokens)) > 0.2
    # Lists read whole (not looked up row by row): the pruned path stops before the longest.
    lists_read = []
    read_list, look_up = postings._term, postings.term_frequencies
    postings._term = lambda j: (lists_read.append(j), read_list(j))[1]
    postings.term_frequencies = lambda j, rows: (lists_read.pop(), look_up(j, rows))[1]
    pruned = 0
    for _ in range(60):
        query = list(rng.choice([f"t{i}" for i in range(400)], size=rng.integers(1, 7)))
        terms = postings.query_terms(stats.idf(query))
        if not terms:
            continue
        full = postings.scores(terms, norm)
        full[~live] = 0.0
        np.testing.assert_array_equal(
            postings.scores_of(terms, norm, np.arange(len(tokens))), postings.scores(terms, norm)
        )
        for k in (1, 10, 100):
            postings.top_rows(terms, norm, k, live)  # the terms' bounds read once, then cached
            lists_read.clear()
            rows, scores = postings.top_rows(terms, norm, k, live)
            pruned += len(lists_read) < len(terms)  # stopped before the longest lists
            assert live[rows].all()
            np.testing.assert_array_equal(scores, full[rows])
            expected = np.flatnonzero(full)
            expected = expected[np.lexsort((expected, -full[expected]))][:k]
            got = rows[np.lexsort((rows, -scores))][:k]
            assert got.tolist() == expected.tolist()
    assert pruned > 30  # pruning happened, not only full scoring


def test_query_term_counts_equal_tokenized_counts(tmp_path):
    from index.analyzer import analyzer
    from index.store import TermCounts

    texts = [*TEXTS, "water water water treaty water", "rain rain rain"]
    chunks = [_chunk(f"d{i}.txt", t) for i, t in enumerate(texts)]
    store = _write(tmp_path, None, chunks, _vectors(len(chunks)))
    ids = [c.id for c in chunks][::-1] + [12345]
    for query in ["water treaty", "rain in Spain", "nothing here"]:
        got = store.query_term_counts(query, ids)
        terms = [analyzer().tokenize(c.search_text) for c in chunks][::-1] + [[]]
        want = TermCounts.of_terms(terms, query)
        for field in ("lengths", "occurrences", "distinct"):
            assert getattr(got, field).tolist() == getattr(want, field).tolist(), (query, field)


def test_term_stats_merge_and_json_round_trip():
    """Counting a table out and back in, and through JSON, gives the same statistics."""
    a = TermStats.of([["tariff", "steel"], ["tariff"]])
    b = TermStats.of([["steel", "mexico"]])
    both = TermStats.of([["tariff", "steel"], ["tariff"], ["steel", "mexico"]])
    merged = a.copy()
    merged.merge(b)
    assert (merged.chunks, merged.tokens, merged.df) == (both.chunks, both.tokens, both.df)
    merged.merge(b, sign=-1)
    assert (merged.chunks, merged.tokens, merged.df) == (a.chunks, a.tokens, a.df)
    again = TermStats.from_json(json.loads(json.dumps(both.to_json())))
    assert (again.chunks, again.tokens, again.df) == (both.chunks, both.tokens, both.df)
    with pytest.raises(ValueError, match="negative"):
        a.copy().merge(both, sign=-1)
    with pytest.raises(ValueError, match="analyzer"):
        TermStats.from_json({**both.to_json(), "analyzer": "other"})


def test_frozen_heap_thaws_on_exit_even_after_an_error():
    import gc

    from index.build import frozen_heap

    with frozen_heap() as freeze:
        freeze()
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap() as freeze:
        freeze()
        raise RuntimeError("a failed update")
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("enabled", [True, False])
def test_manifest_parsing_leaves_the_collector_as_it_was(enabled):
    import gc

    from index.corpus_index import parse_json_without_collecting

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        assert parse_json_without_collecting('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
        with pytest.raises(json.JSONDecodeError):
            parse_json_without_collecting("{")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
