"""Ingestion steps: worker processes with time limits, cancellation, locators, stored texts.

python -m pytest -q tests/test_ingest_pipeline.py
"""

from __future__ import annotations

import dataclasses
import gzip
import threading

import pytest

from index import CorpusIndex, IndexConfig, update_index
from index.build import _chunk_raw
from index.corpus_index import current_generation
from index.document_store import get_document, prune_documents, put_document, put_documents
from index.extraction import PAGE, ROW, SLIDE, ReadLimits, Segment, hard_groups, locate
from index.loaders import RawDocument, Skipped
from index.parse_pool import ParsePool, ParseTask
from index.progress import BuildControl, IndexCancelled
from tests.parse_fixture import misbehaving_worker, slow_start_worker
from tests.test_reliability_faults import NORTHCOM, assert_answers, small_corpus

# --- locators (pure logic) -------------------------------------------------------------------

TEXT = "Page one text.\n\nPage two text.\n\nPage three."
PAGES = (Segment(0, 14, PAGE, 1), Segment(16, 30, PAGE, 2), Segment(32, 43, PAGE, 3))


@pytest.mark.parametrize(
    ("segments", "span", "page", "locator"),
    [
        (PAGES, (16, 30), 2, "p. 2"),
        (PAGES, (5, 20), 1, "pp. 1–2"),
        ((Segment(0, 14, SLIDE, 3, "Intro", hard=True),), (0, 10), 3, "slide 3"),
        ((Segment(0, 14, ROW, 12, "Budget", True), Segment(15, 30, ROW, 13, "Budget")),
         (0, 30), None, "sheet Budget, rows 12–13"),
        ((Segment(0, 43, "section", 0, "Audit"),), (20, 25), None, "§ Audit"),
        ((Segment(0, 43, "chapter", 2, "The Sea"),), (20, 25), None, "chapter 2 (The Sea)"),
        ((Segment(0, 43, "message", 0, "Re: budget"),), (0, 5), None, "Re: budget"),
        ((), (16, 40), None, "lines 3–5"),
        ((), (0, 5), None, "line 1"),
    ],
)  # fmt: skip
def test_locate(segments, span, page, locator):
    where = locate(TEXT, segments, *span)
    assert (where.page, where.locator) == (page, locator)


def test_hard_groups_cut_only_at_hard_starts():
    segments = [Segment(0, 10, SLIDE, 1, hard=True), Segment(12, 20, SLIDE, 2, hard=True)]
    assert hard_groups(20, segments) == [(0, 12), (12, 20)]
    assert hard_groups(43, PAGES) == [(0, 43)]  # pages are soft: a chunk may cross them


def test_chunks_never_cross_a_slide(embedder):
    slides = [
        f"Slide {i} title\nThe quarterly figure number {i} is discussed here." for i in (1, 2, 3)
    ]
    text, segments, at = "", [], 0
    for i, body in enumerate(slides, start=1):
        segments.append(Segment(at, at + len(body), SLIDE, i, f"Slide {i}", hard=True))
        text += body + "\n\n"
        at = len(text)
    doc = RawDocument("deck.pptx", text, "0" * 64, "pptx", segments=tuple(segments), reader="x")
    _, _, spans = _chunk_raw(doc, set(), IndexConfig(), embedder)
    assert len(spans) == 3  # short slides would share one chunk without the hard boundary
    for span in spans:
        where = locate(text, segments, span.start, span.end)
        assert where.locator.startswith("slide ") and "–" not in where.locator


# --- the document store ----------------------------------------------------------------------


def test_document_store_roundtrip_prune_and_damage(tmp_path):
    key = put_document(tmp_path, "Hello café", PAGES[:1])
    assert put_document(tmp_path, "Hello café", PAGES[:1]) == key  # stored once
    stored = get_document(tmp_path, key)
    assert stored.text == "Hello café" and stored.segments == PAGES[:1]
    other = put_document(tmp_path, "Other", ())
    assert prune_documents(tmp_path, keep={key}) == 1
    with pytest.raises(ValueError, match="missing"):
        get_document(tmp_path, other)
    path = tmp_path / "texts" / f"{key}.json.gz"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="damaged|checksum"):
        get_document(tmp_path, key)
    with pytest.raises(ValueError, match="not a document key"):
        get_document(tmp_path, "../../etc/passwd")


@pytest.mark.parametrize("syncfs", [True, False])
def test_documents_stored_in_one_batch(tmp_path, monkeypatch, syncfs):
    """Keys in order, one file per content, each flushed before it is renamed into place."""
    import index.document_store as store
    import index.durable as durable

    flushed, renamed = [], []
    if not syncfs:  # a system without syncfs(2): each file is flushed on its own
        monkeypatch.setattr(durable, "_syncfs", lambda: None)
    real_fsync, real_replace = durable.fsync_path, store.os.replace
    monkeypatch.setattr(durable, "fsync_path", lambda p: (flushed.append(p), real_fsync(p)))
    monkeypatch.setattr(
        store.os, "replace", lambda a, b: (renamed.append((a, flushed[:])), real_replace(a, b))
    )
    first = put_document(tmp_path, "Kept", ())
    flushed.clear()
    renamed.clear()
    keys = put_documents(tmp_path, [("A", ()), ("Kept", ()), ("B", PAGES[:1]), ("A", ())])
    assert keys[1] == first and keys[0] == keys[3] and len(set(keys)) == 3
    assert [get_document(tmp_path, k).text for k in keys] == ["A", "Kept", "B", "A"]
    assert len(renamed) == 2  # "Kept" was there already, "A" is written once
    if not syncfs:
        assert all(tmp in done for tmp, done in renamed)  # flushed before the rename
    assert not list((tmp_path / "texts").glob(".*.tmp"))


def test_a_failed_batch_leaves_no_partial_text(tmp_path, monkeypatch):
    import index.document_store as store

    calls, real_compress = [], gzip.compress

    def failing_compress(payload, **kwargs):
        calls.append(payload)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_compress(payload, **kwargs)

    monkeypatch.setattr(store.gzip, "compress", failing_compress)
    with pytest.raises(OSError, match="disk full"):
        put_documents(tmp_path, [("A", ()), ("B", ())])
    assert len(calls) == 2  # the first text was staged, the second failed
    assert list((tmp_path / "texts").iterdir()) == []  # neither staged nor renamed


def test_index_stores_every_document_text(tmp_path, embedder):
    config = small_corpus(tmp_path, [NORTHCOM, "001_8519b1fb3011066c.txt"])
    update_index(config, progress=False, embedder=embedder)
    loaded = CorpusIndex.load(config)
    texts = {d.source: get_document(config.index_dir, d.text_key).text for d in loaded.documents}
    chunks = loaded.chunks_of()
    assert {c.source for c in chunks} == set(texts) and len(chunks) == loaded.size
    for chunk in chunks:
        assert texts[chunk.source][chunk.start : chunk.end] == chunk.text
        assert chunk.locator.startswith("line")
    (config.corpus_dir / NORTHCOM).unlink()
    update_index(config, progress=False, embedder=embedder)
    update_index(config, rebuild=True, progress=False, embedder=embedder)
    keys = {p.name.split(".")[0] for p in (config.index_dir / "texts").iterdir()}
    assert keys == {d.text_key for d in CorpusIndex.load(config).documents}


# --- worker processes with time limits -------------------------------------------------------


def run_pool(tmp_path, names: list[str], *, seconds: float, page_seconds: float = 1.0, target=None):
    """Parse files named names with the misbehaving worker; returns source -> result."""
    tasks = []
    for name in names:
        path = tmp_path / name
        path.write_bytes(b"%PDF-1.4 junk")
        tasks.append(ParseTask(path, name, 1_000_000))
    limits = ReadLimits(ocr_page_seconds=page_seconds)
    target = target or misbehaving_worker
    pool = ParsePool(limits=limits, workers=2, seconds=seconds, target=target)
    results: dict = {}
    try:
        pool.run(tasks, on_result=lambda task, result: results.__setitem__(task.source, result))
    finally:
        pool.close()
    return results


def test_hanging_and_crashing_files_are_cut_off_and_the_rest_read(tmp_path):
    names = ["hang.pdf", "crash.pdf", "a.pdf", "b.pdf", "c.pdf"]
    results = run_pool(tmp_path, names, seconds=2.0)
    assert set(results) == set(names)
    assert isinstance(results["hang.pdf"], Skipped) and "longer than" in results["hang.pdf"].reason
    assert "crashed" in results["crash.pdf"].reason
    for name in ("a.pdf", "b.pdf", "c.pdf"):  # read by the (replaced) workers
        assert isinstance(results[name], Skipped) and "could not extract" in results[name].reason


def test_ocr_pages_extend_the_deadline(tmp_path):
    # 2.4 s in all (over the 1 s file limit), 0.6 s a page (well under the 3 s page limit)
    results = run_pool(tmp_path, ["slowscan.pdf"], seconds=1.0, page_seconds=3.0)
    assert "longer than" not in results["slowscan.pdf"].reason


def test_a_workers_start_up_does_not_count_against_its_first_file(tmp_path):
    results = run_pool(tmp_path, ["a.pdf"], seconds=1.0, target=slow_start_worker)
    assert "could not extract" in results["a.pdf"].reason  # read, not cut off at 1 s


# --- cancellation ----------------------------------------------------------------------------


def test_cancelled_build_changes_nothing(tmp_path, embedder):
    config = small_corpus(tmp_path, [NORTHCOM])
    update_index(config, progress=False, embedder=embedder)
    live = current_generation(config.index_dir)
    for i in range(3):
        (config.corpus_dir / f"new-{i}.txt").write_text(f"Note {i}: the codeword is plum{i}.")
    cancel = threading.Event()
    seen: list[tuple[str, int, int]] = []

    def on_progress(stage, done, total):
        seen.append((stage, done, total))
        if stage == "embedding":
            cancel.set()

    control = BuildControl(on_progress=on_progress, cancel=cancel)
    with pytest.raises(IndexCancelled):
        update_index(config, progress=False, embedder=embedder, control=control)
    assert current_generation(config.index_dir) == live
    assert [s for s in seen if s[0] == "reading"][-1][1:] == (4, 4)
    assert_answers(config, embedder)
    report = update_index(config, progress=False, embedder=embedder)
    assert sorted(report.added) == ["new-0.txt", "new-1.txt", "new-2.txt"]


def test_segments_survive_the_manifest_round_trip():
    segment = Segment(3, 9, ROW, 7, "Sheet 1", hard=True, ocr=True)
    assert Segment.from_json(segment.to_json()) == segment
    with pytest.raises(ValueError):
        dataclasses.replace(segment, kind="paragraph")


# --- review fixes: text UTF-8 can store, transient failures, dead workers, pruning -----------


def test_rtf_emoji_surrogates_are_stored(tmp_path, embedder):
    config = small_corpus(tmp_path, [NORTHCOM])
    rtf = "{\\rtf1\\ansi\\uc1 The Smiley cafe \\u-10179?\\u-8704? opens at nine.\\par}"
    (config.corpus_dir / "smile.rtf").write_text(rtf, encoding="ascii")
    report = update_index(config, progress=False, embedder=embedder)
    assert "smile.rtf" in report.added
    doc = next(d for d in CorpusIndex.load(config).documents if d.source == "smile.rtf")
    assert "\U0001f600" in get_document(config.index_dir, doc.text_key).text


def test_a_parse_cut_off_keeps_the_indexed_document(tmp_path, embedder):
    from bench.mixed_corpus import write_docx

    config = small_corpus(tmp_path, [NORTHCOM])
    write_docx(config.corpus_dir / "plan.docx", ["The Quarlow depot opens in May."] * 3)
    update_index(config, progress=False, embedder=embedder)
    indexed = CorpusIndex.load(config).chunks_of(["plan.docx"])
    assert indexed
    hurried = dataclasses.replace(config, parse_seconds=0.001)  # every worker parse is cut off
    report = update_index(hurried, progress=False, embedder=embedder)
    assert "plan.docx" in report.kept and "plan.docx" not in report.removed
    assert "longer than" in {s.source: s.reason for s in report.skipped}["plan.docx"]
    loaded = CorpusIndex.load(config)
    assert loaded.chunks_of(["plan.docx"]) == indexed  # the same chunks, ids included
    assert "plan.docx" not in loaded.manifest["parse_failures"]  # tried again next time
    again = update_index(config, progress=False, embedder=embedder)
    assert not again.skipped


def test_a_dead_idle_worker_is_replaced(tmp_path):
    from index.parse_pool import ParsePool

    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4 junk")
    pool = ParsePool(limits=ReadLimits(), workers=1, seconds=30)
    results: list = []
    task = ParseTask(tmp_path / "a.pdf", "a.pdf", 1_000_000)
    try:
        pool.run([task], on_result=lambda t, r: results.append(r))
        pool._idle[0].process.kill()
        pool._idle[0].process.join()
        pool.run([task], on_result=lambda t, r: results.append(r))
    finally:
        pool.close()
    assert len(results) == 2 and all(isinstance(r, Skipped) for r in results)
    assert all("crashed" not in r.reason for r in results)


def test_texts_of_the_kept_generation_survive_pruning(tmp_path, embedder):
    config = small_corpus(tmp_path, [NORTHCOM, "001_8519b1fb3011066c.txt"])
    update_index(config, progress=False, embedder=embedder)
    gone = next(d for d in CorpusIndex.load(config).documents if d.source != NORTHCOM)
    (config.corpus_dir / gone.source).unlink()
    update_index(config, progress=False, embedder=embedder)
    # The generation before this build is kept (a reader may be opening it): so is its text.
    assert get_document(config.index_dir, gone.text_key).text
    (config.corpus_dir / "new.txt").write_text("One more note about the depot.")
    update_index(config, progress=False, embedder=embedder)
    with pytest.raises(ValueError, match="missing"):
        get_document(config.index_dir, gone.text_key)
