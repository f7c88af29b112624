"""Incremental re-indexing, mismatch detection, crash safety and corruption, with the real model."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil

import numpy as np
import pytest

from index import CorpusIndex, IndexConfig, IndexCorrupt, IndexMismatch, update_index
from index.corpus_index import current_generation
from index.segments import MAX_SEGMENTS, SEGMENTS_FOLDER
from tests.conftest import CORPUS

DOCS = ["001_8519b1fb3011066c.txt", "003_8bd5a12c37d93380.txt", "004_b24285a9b201835e.txt"]
ALL_DOCS = sorted(p.name for p in CORPUS.iterdir() if p.suffix == ".txt")
# The smallest document of the corpus (6 of 59 chunks): changing it deletes too few rows of
# the first segment for that segment to be merged (index.segments.MAX_DELETED_SHARE).
SMALL_DOC = "001_8519b1fb3011066c.txt"
QUESTIONS = [
    "What did Hegseth threaten Mexico with?",
    "Who commands NORTHCOM?",
    "How many cartel members did Mexico extradite?",
    "What tariff did Trump announce on Canada and Mexico?",
    "Did Vance say troops would be sent to Mexico?",
]


@pytest.fixture
def small(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in DOCS:
        shutil.copy(CORPUS / name, corpus / name)
    config = IndexConfig(corpus_dir=corpus, index_dir=tmp_path / "index")
    first = update_index(config, progress=False, embedder=embedder)
    return config, first


@pytest.fixture
def full(tmp_path, embedder):
    """An index of a private copy of the whole corpus (one segment)."""
    shutil.copytree(CORPUS, tmp_path / "corpus")
    config = IndexConfig(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")
    update_index(config, progress=False, embedder=embedder)
    return config


def _segment_files(config: IndexConfig) -> dict[str, tuple[int, str]]:
    """Every file under segments/: (mtime_ns, sha256) by relative path."""
    root = config.index_dir / SEGMENTS_FOLDER
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _segment_names(index: CorpusIndex) -> list[str]:
    return [item["name"] for item in index.manifest["store"]["segments"]]


def _append(path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def _top(index: CorpusIndex, embedder, question: str, k: int = 5):
    """Top-k (dense ids, lexical ids, lexical scores) of the store for a question."""
    found = index.store.search(text=question, vector=embedder.encode([question])[0], k=k)
    return found.dense_ids.tolist(), found.lexical_ids.tolist(), found.lexical_scores


def _sources(index: CorpusIndex, ids: list[int]) -> list[str]:
    return [c.source for c in index.store.fetch(ids)]


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
    _append(target, "\nA brand new closing sentence.\n")
    report = update_index(config, progress=False, embedder=embedder)
    assert report.changed == [DOCS[1]] and report.kept == [DOCS[0], DOCS[2]]
    loaded = CorpusIndex.load(config)
    changed = loaded.chunks_of([DOCS[1]])
    # Only the changed document's chunks get vectors: embedded anew or reused by id.
    assert report.chunks_embedded + report.chunks_reused == len(changed)
    assert report.chunks_embedded >= 1
    assert any("brand new closing" in c.text for c in changed)
    # Kept vectors are carried over unchanged: searching a kept chunk's text finds it first.
    kept_chunk = loaded.chunks_of([DOCS[0]])[0]
    vector = embedder.encode([kept_chunk.search_text])[0]
    found = loaded.store.search(text=None, vector=vector, k=1)
    assert int(found.dense_ids[0]) == kept_chunk.id and found.dense_scores[0] > 0.99


def test_deleted_file_disappears(small, embedder):
    config, _ = small
    (config.corpus_dir / DOCS[2]).unlink()
    report = update_index(config, progress=False, embedder=embedder)
    assert report.removed == [DOCS[2]] and report.chunks_embedded == 0
    loaded = CorpusIndex.load(config)
    assert all(c.source != DOCS[2] for c in loaded.chunks_of())
    found = loaded.store.search(text="NORTHCOM Guillot Klippenstein", vector=None, k=10)
    assert all(c.source != DOCS[2] for c in loaded.store.fetch(found.lexical_ids.tolist()))


def test_other_settings_are_detected_and_rebuilt(small, embedder):
    config, _ = small
    other = IndexConfig(corpus_dir=config.corpus_dir, index_dir=config.index_dir, chunk_tokens=100)
    with pytest.raises(IndexMismatch, match="chunking"):
        CorpusIndex.load(other)
    report = update_index(other, progress=False, embedder=embedder)
    assert "chunking" in report.rebuilt_reason and sorted(report.added) == DOCS
    assert CorpusIndex.load(other).manifest["chunking"]["chunk_tokens"] == 100


@pytest.mark.parametrize(
    ("module", "owner", "name"),
    [
        ("index.segments", "Postings", "save"),  # while writing the new segment
        ("index.analyzer", "TermStats", "save"),  # segment written, generation not
        ("index.build", None, "swap_current"),  # generation written, not live
    ],
)
def test_crash_mid_build_keeps_previous_index(small, embedder, monkeypatch, module, owner, name):
    config, first = small
    (config.corpus_dir / "new.txt").write_text(
        "A new document about tariffs on avocados.", encoding="utf-8"
    )

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash while writing the index")

    generation = current_generation(config.index_dir)
    # By object, not by dotted path: `index.analyzer` is also the name of a function.
    target = importlib.import_module(module)
    monkeypatch.setattr(getattr(target, owner) if owner else target, name, boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        update_index(config, progress=False, embedder=embedder)
    assert current_generation(config.index_dir) == generation
    loaded = CorpusIndex.load(config)
    assert loaded.size == first.chunks_total
    assert not any("avocados" in c.text for c in loaded.chunks_of())
    for folder in (config.index_dir, config.index_dir / SEGMENTS_FOLDER):
        assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    report = update_index(config, progress=False, embedder=embedder)
    assert report.added == ["new.txt"]
    loaded = CorpusIndex.load(config)
    assert loaded.size == first.chunks_total + 1
    # A segment the crashed build wrote but never made live is pruned by the next build.
    listed = {
        item["name"]
        for gen in config.index_dir.glob("gen-*")
        for item in json.loads((gen / "manifest.json").read_text())["store"]["segments"]
    }
    assert {p.name for p in (config.index_dir / SEGMENTS_FOLDER).iterdir()} == listed


def _segment_file(config: IndexConfig, name: str):
    index = CorpusIndex.load(config)
    return config.index_dir / SEGMENTS_FOLDER / _segment_names(index)[0] / name


@pytest.mark.parametrize(
    "damaged", ["dense.faiss", "chunks.sqlite3", "postings/rows.npy", "ids.npy", "terms.json"]
)
def test_corrupt_file_detected_and_rebuilt(small, embedder, damaged):
    config, _ = small
    if damaged == "terms.json":  # the generation's term table
        path = current_generation(config.index_dir) / damaged
    else:
        path = _segment_file(config, damaged)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IndexCorrupt, match="checksum"):
        CorpusIndex.load(config)
    report = update_index(config, progress=False, embedder=embedder)
    assert report.rebuilt_reason and report.chunks_embedded == report.chunks_total
    assert CorpusIndex.load(config).size == report.chunks_total


def test_large_segment_switches_to_hnsw(small, embedder):
    import faiss

    config, _ = small
    approx = IndexConfig(
        corpus_dir=config.corpus_dir, index_dir=config.index_dir, exact_search_max_chunks=5
    )
    # A document of 21 chunks: the segment that holds it is past the exact-search size.
    shutil.copy(CORPUS / "002_113a1a336eb66b34.txt", config.corpus_dir / "extra.txt")
    update_index(approx, progress=False, embedder=embedder)
    loaded = CorpusIndex.load(approx)
    assert loaded.manifest["dense"]["type"] == "hnsw"
    newest = loaded.store.segments[-1]
    assert newest.meta["dense"]["type"] == "hnsw" and isinstance(newest.dense, faiss.IndexHNSW)
    # Both the new HNSW segment and the older flat one answer a dense search.
    for chunk in (loaded.chunks_of(["extra.txt"])[3], loaded.chunks_of([DOCS[0]])[1]):
        found = loaded.store.search(text=None, vector=embedder.encode([chunk.search_text])[0], k=3)
        assert int(found.dense_ids[0]) == chunk.id


# New guarantees of format 3: segments are immutable, ids are stable, vectors are reused.


def test_one_document_change_adds_one_segment_and_touches_no_other(full, embedder):
    before_index = CorpusIndex.load(full)
    before_segments = _segment_names(before_index)
    before_files = _segment_files(full)
    _append(full.corpus_dir / SMALL_DOC, "\nOne more closing sentence about the talks.\n")
    report = update_index(full, progress=False, embedder=embedder)
    assert report.changed == [SMALL_DOC]
    after = CorpusIndex.load(full)
    after_segments = _segment_names(after)
    # Every file of every existing segment is still there, byte for byte and untouched.
    after_files = _segment_files(full)
    assert {k: after_files.get(k) for k in before_files} == before_files
    # Exactly one segment was added; the old one is still listed with the same checksums.
    assert after_segments[: len(before_segments)] == before_segments
    assert len(after_segments) == len(before_segments) + 1
    old_entries = before_index.manifest["store"]["segments"]
    assert after.manifest["store"]["segments"][: len(old_entries)] == old_entries
    new_files = {k for k in after_files if k not in before_files}
    assert {k.split("/")[0] for k in new_files} == {after_segments[-1]}
    # The changed document's old rows are deleted by a list in the generation, not rewritten.
    generation = current_generation(full.index_dir)
    assert (generation / "deleted" / f"{before_segments[0]}.npy").is_file()
    assert after.size == report.chunks_total


@pytest.mark.parametrize("damage", ["missing", "edited"])
def test_damaged_deleted_rows_list_is_detected(full, embedder, damage):
    """Losing a generation's deleted-rows list would bring a changed document's old chunks back."""
    before = CorpusIndex.load(full)
    old_ids = before.store.ids_of([SMALL_DOC]).tolist()
    segment = _segment_names(before)[0]
    _append(full.corpus_dir / SMALL_DOC, "\nA sentence that replaces the old last chunk.\n")
    update_index(full, progress=False, embedder=embedder)
    after = CorpusIndex.load(full)
    stale = sorted(set(old_ids) - set(after.store.ids_of([SMALL_DOC]).tolist()))
    assert stale and after.store.fetch(stale) == []
    deleted = current_generation(full.index_dir) / "deleted" / f"{segment}.npy"
    if damage == "missing":
        deleted.unlink()
    else:  # a valid array that no longer lists every deleted row
        np.save(deleted, np.load(deleted)[:-1])
    with pytest.raises(IndexCorrupt, match=damage if damage == "missing" else "checksum"):
        CorpusIndex.load(full)
    report = update_index(full, progress=False, embedder=embedder)
    assert report.rebuilt_reason
    rebuilt = CorpusIndex.load(full)
    assert rebuilt.store.fetch(stale) == [] and rebuilt.size == report.chunks_total


def test_unchanged_documents_keep_their_chunk_ids(full, embedder):
    others = [d for d in ALL_DOCS if d != SMALL_DOC]
    before = CorpusIndex.load(full)
    ids_before = before.store.ids_of(others)
    chunks_before = before.chunks_of(others)
    vectors_before = before.store.vectors(ids_before.tolist())
    target = full.corpus_dir / SMALL_DOC
    target.write_text("Entirely new text.\n\n" + target.read_text(encoding="utf-8"), "utf-8")
    update_index(full, progress=False, embedder=embedder)
    after = CorpusIndex.load(full)
    assert np.array_equal(after.store.ids_of(others), ids_before)
    assert after.chunks_of(others) == chunks_before
    assert np.array_equal(after.store.vectors(ids_before.tolist()), vectors_before)


def test_changed_document_reuses_vectors_of_unchanged_chunks(full, embedder):
    before = CorpusIndex.load(full)
    old_ids = set(before.store.ids_of([SMALL_DOC]).tolist())
    old_first = before.chunks_of([SMALL_DOC])[0]
    old_vector = before.store.vectors([old_first.id])[0]
    _append(full.corpus_dir / SMALL_DOC, "\nA final remark that was added later.\n")
    report = update_index(full, progress=False, embedder=embedder)
    after = CorpusIndex.load(full)
    chunks = after.chunks_of([SMALL_DOC])
    assert report.changed == [SMALL_DOC]
    assert report.chunks_reused > 0 and report.chunks_embedded < len(chunks)
    assert report.chunks_reused + report.chunks_embedded == len(chunks)
    # The reused chunks are exactly those whose id survived; the first one is among them.
    assert report.chunks_reused == len(old_ids & {c.id for c in chunks})
    assert chunks[0] == old_first
    assert np.array_equal(after.store.vectors([old_first.id])[0], old_vector)
    assert any("added later" in c.text for c in chunks)


def test_many_small_updates_keep_segments_bounded_and_results_unchanged(full, embedder, tmp_path):
    updates = 2 * MAX_SEGMENTS + 2
    for n in range(updates):
        (full.corpus_dir / f"note_{n:02d}.txt").write_text(
            f"Note {n}: a short memo about border talks, round {n}.\n", encoding="utf-8"
        )
        if n % 3 == 0:  # now and then a document changes too
            _append(full.corpus_dir / f"note_{n // 2:02d}.txt", f"Amended in round {n}.\n")
        report = update_index(full, progress=False, embedder=embedder)
        assert report.wrote_generation
        loaded = CorpusIndex.load(full)
        assert 1 <= len(_segment_names(loaded)) <= MAX_SEGMENTS
        # Folders on disk are those of the live and the previous generation only.
        listed = {
            item["name"]
            for gen in full.index_dir.glob("gen-*")
            for item in json.loads((gen / "manifest.json").read_text())["store"]["segments"]
        }
        assert {p.name for p in (full.index_dir / SEGMENTS_FOLDER).iterdir()} == listed
        assert len(listed) <= 2 * MAX_SEGMENTS
    incremental = CorpusIndex.load(full)
    fresh_config = IndexConfig(corpus_dir=full.corpus_dir, index_dir=tmp_path / "fresh")
    update_index(fresh_config, progress=False, embedder=embedder)
    fresh = CorpusIndex.load(fresh_config)
    assert len(_segment_names(fresh)) == 1
    assert incremental.size == fresh.size
    assert np.array_equal(incremental.store.ids_of(ALL_DOCS), fresh.store.ids_of(ALL_DOCS))
    assert incremental.stats.df == fresh.stats.df
    for question in QUESTIONS:
        dense_a, lexical_a, scores_a = _top(incremental, embedder, question)
        dense_b, lexical_b, scores_b = _top(fresh, embedder, question)
        assert _sources(incremental, dense_a) == _sources(fresh, dense_b), question
        assert _sources(incremental, lexical_a) == _sources(fresh, lexical_b), question
        assert lexical_a == lexical_b and np.allclose(scores_a, scores_b, rtol=1e-5)


def test_deleted_document_is_gone_and_others_are_unchanged(full, embedder, tmp_path):
    gone = "004_b24285a9b201835e.txt"
    before = CorpusIndex.load(full)
    gone_ids = before.store.ids_of([gone]).tolist()
    others = [d for d in ALL_DOCS if d != gone]
    chunks_before = before.chunks_of(others)
    k = before.size  # every chunk: the ranking of the others is compared whole
    dense_before = {
        q: before.store.search(text=None, vector=embedder.encode([q])[0], k=k).dense_ids
        for q in QUESTIONS
    }
    (full.corpus_dir / gone).unlink()
    report = update_index(full, progress=False, embedder=embedder)
    assert report.removed == [gone] and report.chunks_embedded == 0
    after = CorpusIndex.load(full)
    assert after.store.fetch(gone_ids) == [] and len(after.store.ids_of([gone])) == 0
    with pytest.raises(KeyError):
        after.store.vectors(gone_ids[:1])
    assert not np.any(after.store.lexical_scores("NORTHCOM Guillot Klippenstein", gone_ids))
    assert after.chunks_of(others) == chunks_before
    for question in [*QUESTIONS, "NORTHCOM Guillot Klippenstein"]:
        found = after.store.search(text=question, vector=embedder.encode([question])[0], k=k)
        assert not set(gone_ids) & set(found.dense_ids.tolist())
        assert not set(gone_ids) & set(found.lexical_ids.tolist())
    # Dense: the other documents' ranking is the old one with the deleted chunks left out.
    for question, old in dense_before.items():
        vector = embedder.encode([question])[0]
        new = after.store.search(text=None, vector=vector, k=k).dense_ids.tolist()
        assert new == [i for i in old.tolist() if i not in set(gone_ids)], question
    # Lexical: the same ids and scores as an index built without the document.
    fresh_config = IndexConfig(corpus_dir=full.corpus_dir, index_dir=tmp_path / "fresh")
    update_index(fresh_config, progress=False, embedder=embedder)
    fresh = CorpusIndex.load(fresh_config)
    for question in QUESTIONS:
        a = after.store.search(text=question, vector=None, k=10)
        b = fresh.store.search(text=question, vector=None, k=10)
        assert a.lexical_ids.tolist() == b.lexical_ids.tolist(), question
        assert np.allclose(a.lexical_scores, b.lexical_scores, rtol=1e-5)


def test_tied_scores_rank_by_chunk_id_whatever_the_segments(full, embedder, tmp_path):
    """At the top-k cut, chunks with equal scores go by chunk id (index.segments.top_k), so an
    index grown by updates ranks exactly like a fresh build of the same corpus."""
    for n in range(6):  # one segment per note; the notes score the same for the question
        (full.corpus_dir / f"note_{n:02d}.txt").write_text(
            f"Note {n}: a short memo about border talks.\n", encoding="utf-8"
        )
        update_index(full, progress=False, embedder=embedder)
    fresh_config = IndexConfig(corpus_dir=full.corpus_dir, index_dir=tmp_path / "fresh")
    update_index(fresh_config, progress=False, embedder=embedder)
    question = "memo about border talks"
    for index in (CorpusIndex.load(full), CorpusIndex.load(fresh_config)):
        every = index.store.ids_of([f"note_{n:02d}.txt" for n in range(6)])
        scores = index.store.lexical_scores(question, every.tolist())
        assert len(set(scores.tolist())) == 1  # all six tie
        for allowed in (None, every):
            found = index.store.search(text=question, vector=None, k=3, allowed=allowed)
            assert found.lexical_ids.tolist() == sorted(every.tolist())[:3], (
                f"{len(index.store.segments)} segments, allowed={allowed is not None}"
            )
