"""The document library: uploads never clobber, removals go to a trash, failures leave nothing.

python -m pytest -q tests/test_library.py

Each test gets its own copy of a small indexed corpus (three real documents), so uploads and
removals stay private to it.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from index.corpus_files import (
    STAGING_PREFIX,
    clean_staging,
    list_trash,
    save_upload,
    storage_name,
    trash_folder,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["000_3b56b7e336b84316.txt", "001_8519b1fb3011066c.txt", "004_b24285a9b201835e.txt"]
NORTHCOM = "004_b24285a9b201835e.txt"
ZORBLATT = b"The Zorblatt Commission set a tariff of 17 percent on avocados in April 2025.\n"
LIMIT = 1_000_000


@pytest.fixture(scope="module")
def built(tmp_path_factory, embedder) -> Path:
    """A small corpus and its index, built once; tests work on copies."""
    from index import IndexConfig, update_index

    base = tmp_path_factory.mktemp("library")
    (base / "corpus").mkdir()
    for name in DOCS:
        shutil.copy(ROOT / "corpus" / name, base / "corpus" / name)
    (base / "corpus" / "page.html").write_text(
        "<html><body><p>The Quuxville ferry leaves the north pier at noon.</p></body></html>"
    )
    update_index(
        IndexConfig(corpus_dir=base / "corpus", index_dir=base / "index"),
        progress=False,
        embedder=embedder,
    )
    return base


def _pipeline_at(base: Path, embedder):
    from index import IndexConfig
    from rag import Config, Pipeline

    config = IndexConfig(
        corpus_dir=base / "corpus", index_dir=base / "index", trash_dir=base / "trash"
    )
    return Pipeline(Config(index=config), embedder=embedder)


@pytest.fixture
def lib(built, tmp_path, embedder):
    """A Pipeline over a private copy of the small corpus, with its trash under tmp_path."""
    for part in ("corpus", "index"):
        shutil.copytree(built / part, tmp_path / part)
    return _pipeline_at(tmp_path, embedder)


def corpus_of(pipeline) -> Path:
    return Path(pipeline.config.index.corpus_dir)


def files_in(folder: Path) -> dict[str, bytes]:
    """Every entry of folder (hidden ones included) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def indexed(pipeline) -> list[str]:
    return [d.source for d in pipeline.index.documents]


def index_contents(pipeline) -> tuple[dict, list]:
    """What the live index holds: each document's bytes and chunk count, and every chunk."""
    index = pipeline.index
    documents = {d.source: (d.sha256, d.fingerprint, d.chunks) for d in index.documents}
    return documents, index.chunks_of()


# --- item 1: removal goes to a trash, restorable, never a default ------------------------------


def test_remove_moves_to_the_trash_and_restore_brings_it_back(lib):
    from rag.library import library_view, remove, restore

    corpus = corpus_of(lib)
    original = (corpus / NORTHCOM).read_bytes()
    removal = remove(lib, NORTHCOM)
    assert not (corpus / NORTHCOM).exists() and NORTHCOM not in indexed(lib)
    assert removal.report.removed == [NORTHCOM]
    (entry,) = library_view(lib).trash
    assert entry.source == NORTHCOM and entry.reason == "removed"
    assert entry.path.read_bytes() == original and entry.size == len(original)
    assert entry.path.is_relative_to(trash_folder(corpus, trash_dir=lib.config.index.trash_dir))
    assert "Guillot" not in lib.ask("Who commands NORTHCOM?").answer

    done = restore(lib, entry.id)
    assert done.restored.source == NORTHCOM and (corpus / NORTHCOM).read_bytes() == original
    assert NORTHCOM in indexed(lib) and library_view(lib).trash == []
    assert lib.ask("Who commands NORTHCOM?").citations[0].source == NORTHCOM


def test_restore_takes_a_free_name_when_its_own_was_taken(lib):
    from rag.library import remove, restore

    corpus = corpus_of(lib)
    entry = remove(lib, "page.html").entry
    (corpus / "page.html").write_text("<p>A newer page about the Quuxville bakery.</p>")
    done = restore(lib, entry.id)
    assert done.restored.source == "page (2).html"
    assert "bakery" in (corpus / "page.html").read_text()
    assert "ferry" in (corpus / "page (2).html").read_text()
    assert {"page.html", "page (2).html"} <= set(indexed(lib))
    with pytest.raises(ValueError, match="no longer in the trash"):
        restore(lib, entry.id)


def test_empty_trash_deletes_only_the_trash(lib):
    from rag.library import empty, library_view, remove

    remove(lib, "page.html")
    remove(lib, NORTHCOM)
    assert len(library_view(lib).trash) == 2
    assert empty(lib) == 2
    assert library_view(lib).trash == [] and sorted(indexed(lib)) == sorted(DOCS[:2])


def fail_first_update(monkeypatch) -> None:
    """The next index update fails with a full disk; later ones run as usual."""
    import rag.library

    real = rag.library.update_index
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            _no_space()
        return real(*args, **kwargs)

    monkeypatch.setattr(rag.library, "update_index", failing_once)


def test_empty_trash_deletes_only_what_was_shown(lib):
    from rag.library import empty, library_view, remove

    shown = [remove(lib, "page.html").entry.id]
    later = remove(lib, NORTHCOM).entry  # trashed after the user was asked
    assert empty(lib, ids=shown) == 1
    assert [e.id for e in library_view(lib).trash] == [later.id]


def test_two_uploads_of_one_name_roll_back_to_the_original(lib, monkeypatch):
    from rag.library import upload

    corpus = corpus_of(lib)
    before = files_in(corpus)
    fail_first_update(monkeypatch)
    pairs = [("page.html", b"<p>first upload</p>"), ("page.html", b"<p>second upload</p>")]
    result = upload(lib, pairs, max_bytes=LIMIT, replace=True)
    assert result.added == []
    assert files_in(corpus) == before  # the original page.html, not the first upload
    assert list_trash(corpus, trash_dir=lib.config.index.trash_dir) == []


@pytest.mark.parametrize(
    "name", ["", "   ", None, "missing.txt", "../index/CURRENT", "/etc/passwd"]
)
def test_remove_needs_the_name_of_a_listed_document(lib, name):
    from rag.library import remove

    before = files_in(corpus_of(lib))
    with pytest.raises(ValueError, match="name the document|no longer in the corpus"):
        remove(lib, name)
    assert files_in(corpus_of(lib)) == before
    assert list_trash(corpus_of(lib), trash_dir=lib.config.index.trash_dir) == []


def test_two_corpora_never_share_a_trash(tmp_path):
    one, two = tmp_path / "a" / "corpus", tmp_path / "b" / "corpus"
    assert trash_folder(one, trash_dir=tmp_path / "t") != trash_folder(
        two, trash_dir=tmp_path / "t"
    )
    assert trash_folder(one, trash_dir=tmp_path / "t").name.startswith("corpus-")


def test_panel_preselects_nothing_and_asks_before_removing(lib):
    from ui.app import ask_remove, confirm_action, view_updates

    corpus = corpus_of(lib)
    before = files_in(corpus)
    *_, choice, _, _, trash_choice = view_updates(lib)
    assert choice["value"] is None and trash_choice["value"] is None
    assert [v for _, v in choice["choices"]] == indexed(lib)
    # A press on Remove with nothing chosen removes nothing.
    box, _, _, pending, message, *_ = ask_remove(lib, source=None)
    assert box["visible"] is False and pending is None and "Choose a document" in message
    # Choosing a file only asks, naming it; Cancel or no confirm changes nothing.
    box, text, _, pending, _, *_ = ask_remove(lib, source="page.html")
    assert box["visible"] is True and "page" in text and "trash" in text
    assert files_in(corpus) == before
    _, _, message, *_ = confirm_action(lib, pending=pending)
    assert "Moved page.html to the trash" in message.replace("\\", "")
    assert "page.html" not in files_in(corpus) and "page.html" not in indexed(lib)
    _, _, message, *_ = confirm_action(lib, pending=None)
    assert message == "Nothing to confirm."


# --- item 2: what is listed is what is on disk now ----------------------------------------------


def test_listing_follows_an_index_changed_by_another_process(lib, embedder):
    from index import update_index
    from rag.library import library_view, list_documents

    assert library_view(lib).stats.documents == 4
    (corpus_of(lib) / "avocado.txt").write_bytes(ZORBLATT)
    update_index(lib.config.index, progress=False, embedder=embedder)  # as `rag index` would
    view = library_view(lib)
    assert view.stats.documents == 5 and "avocado.txt" in [d.source for d in view.documents]
    assert view.stats.chunks == lib.index.size == len(lib.index.chunks_of())
    assert "avocado.txt" in [d.source for d in list_documents(lib)]
    assert lib.ask("What tariff did the Zorblatt Commission set?").citations[0].source == (
        "avocado.txt"
    )


def test_a_second_server_sees_and_removes_what_the_first_uploaded(lib, embedder):
    from rag.library import remove, upload
    from ui.app import ask_remove, view_updates

    other = _pipeline_at(corpus_of(lib).parent, embedder)  # another process on the same corpus
    upload(lib, [("dup.txt", ZORBLATT)], max_bytes=LIMIT)
    stats, _, choice, *_ = view_updates(other)
    assert stats.startswith("5 documents") and "dup.txt" in [v for _, v in choice["choices"]]
    remove(other, "dup.txt")
    # The first server's page still offers dup.txt: it is told, not shown a Gradio error.
    _, _, _, _, message, *_ = ask_remove(lib, source="dup.txt")
    assert "dup.txt is no longer in the corpus" in message.replace("\\", "")
    with pytest.raises(ValueError, match="no longer in the corpus"):
        remove(lib, "dup.txt")


def test_files_the_index_skipped_are_listed_and_removable(lib, embedder):
    from index import update_index
    from rag.library import library_view, remove

    (corpus_of(lib) / "blank.html").write_text("<html><script>var x = 1;</script></html>")
    update_index(lib.config.index, progress=False, embedder=embedder)
    view = library_view(lib)
    assert [(n.source, n.reason) for n in view.not_indexed] == [("blank.html", "no text")]
    remove(lib, "blank.html")
    assert library_view(lib).not_indexed == [] and not (corpus_of(lib) / "blank.html").exists()


# --- item 3: uploads never replace unless asked to ------------------------------------------------


def test_an_upload_with_a_taken_name_gets_a_free_one(lib):
    from rag.library import upload
    from ui.render import upload_message

    corpus = corpus_of(lib)
    upload(lib, [("dup.txt", b"The first dup file talks about harbors.\n")], max_bytes=LIMIT)
    result = upload(lib, [("dup.txt", ZORBLATT)], max_bytes=LIMIT)
    (added,) = result.added
    assert added.source == "dup (2).txt" and added.clashed_with == "dup.txt" and not added.replaced
    assert (corpus / "dup.txt").read_bytes() == b"The first dup file talks about harbors.\n"
    assert (corpus / "dup (2).txt").read_bytes() == ZORBLATT
    assert {"dup.txt", "dup (2).txt"} <= set(indexed(lib))
    message = upload_message(result).replace("\\", "")
    assert "Added dup.txt as dup (2).txt: dup.txt already exists" in message
    third = upload(lib, [("dup (2).txt", b"A third one about pier schedules.\n")], max_bytes=LIMIT)
    assert third.added[0].source == "dup (3).txt"


@pytest.mark.parametrize("replace", [False, True])
def test_names_that_only_look_different_do_not_replace(lib, replace):
    from rag.library import upload

    corpus = corpus_of(lib)
    (corpus / "dup.txt").write_bytes(b"The original dup file about harbors.\n")
    result = upload(lib, [("\uff44\uff55\uff50.txt", ZORBLATT)], max_bytes=LIMIT, replace=replace)
    assert result.added[0].source == "dup (2).txt" and not result.added[0].replaced
    assert (corpus / "dup.txt").read_bytes() == b"The original dup file about harbors.\n"
    assert list_trash(corpus, trash_dir=lib.config.index.trash_dir) == []


def test_composed_and_decomposed_names_clash_instead_of_replacing(lib):
    from rag.library import upload

    corpus = corpus_of(lib)
    composed = unicodedata.normalize("NFC", "café.md")
    decomposed = unicodedata.normalize("NFD", "café.md")
    upload(lib, [(composed, b"# Cafe\n\nThe cafe opens at seven.\n")], max_bytes=LIMIT)
    result = upload(lib, [(decomposed, b"# Cafe\n\nThe cafe closes at nine.\n")], max_bytes=LIMIT)
    assert result.added[0].source == "café (2).md"
    assert (
        "seven" in (corpus / composed).read_text()
        and "nine" in (corpus / "café (2).md").read_text()
    )


def test_long_names_cut_to_200_bytes_stay_distinct(lib):
    from rag.library import upload

    first, second = "x" * 230 + "-one.txt", "x" * 230 + "-two.txt"
    result = upload(
        lib, [(first, b"The first long file.\n"), (second, b"The second long file.\n")],
        max_bytes=LIMIT,
    )  # fmt: skip
    names = [a.source for a in result.added]
    assert len(set(names)) == 2 and all(len(n.encode()) <= 200 for n in names)
    assert all(n.endswith(".txt") and n.startswith("x" * 150) for n in names)
    assert storage_name(first).name == names[0]  # the same long name always maps to one name
    contents = {(corpus_of(lib) / n).read_bytes() for n in names}
    assert contents == {b"The first long file.\n", b"The second long file.\n"}


def test_replace_when_asked_keeps_the_old_version_in_the_trash(lib):
    from rag.library import restore, upload
    from ui.render import upload_message

    corpus = corpus_of(lib)
    old = (corpus / "page.html").read_bytes()
    new = b"<html><body><p>The Quuxville ferry now leaves at one.</p></body></html>"
    result = upload(lib, [("page.html", new)], max_bytes=LIMIT, replace=True)
    assert result.added[0].replaced and result.added[0].source == "page.html"
    assert (corpus / "page.html").read_bytes() == new
    assert "Replaced page.html" in upload_message(result).replace("\\", "")
    (entry,) = list_trash(corpus, trash_dir=lib.config.index.trash_dir)
    assert entry.reason == "replaced" and entry.path.read_bytes() == old
    assert restore(lib, entry.id).restored.source == "page (2).html"
    assert (corpus / "page (2).html").read_bytes() == old


# --- item 4: failures leave no debris and roll back --------------------------------------------


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["fsync", "link"])
def test_a_full_disk_leaves_no_staging_file(lib, monkeypatch, where):
    from rag.library import upload
    from ui.render import upload_message

    corpus = corpus_of(lib)
    before = files_in(corpus)
    if where == "fsync":
        monkeypatch.setattr(os, "fsync", _no_space)
    else:  # the new directory entry cannot be made (also what the old os.replace hit)
        monkeypatch.setattr(os, "link", _no_space)
        monkeypatch.setattr(os, "replace", _no_space)
    result = upload(lib, [("full.txt", ZORBLATT)], max_bytes=LIMIT)
    monkeypatch.undo()
    assert files_in(corpus) == before  # no ".full.txt.upload", no ".upload-*.part"
    assert result.added == [] and "No space left on device" in upload_message(result)
    assert "full.txt" not in indexed(lib)


def test_leftovers_of_crashed_uploads_are_cleaned(lib):
    corpus = corpus_of(lib)
    stale = [corpus / ".dup.txt.upload", corpus / f"{STAGING_PREFIX}0123abcd.part"]
    for path in stale:
        path.write_bytes(b"half an upl")
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    fresh = corpus / f"{STAGING_PREFIX}fresh.part"  # perhaps another process uploading now
    fresh.write_bytes(b"in progress")
    assert sorted(clean_staging(corpus)) == sorted(p.name for p in stale)
    assert fresh.exists() and not any(p.exists() for p in stale)


def test_an_upload_the_index_skips_is_rolled_back(lib):
    from rag.library import upload
    from ui.render import upload_message

    corpus = corpus_of(lib)
    before = files_in(corpus)
    blank = b"<html><body><script>var x = 1;</script></body></html>"
    result = upload(lib, [("blank.html", blank), ("avocado.txt", ZORBLATT)], max_bytes=LIMIT)
    assert [a.source for a in result.added] == ["avocado.txt"]
    assert "blank.html: not added, it could not be indexed (no text)" in result.errors
    assert files_in(corpus) == {**before, "avocado.txt": ZORBLATT}
    assert "blank.html" not in str(lib.index.manifest.get("skipped"))
    assert "not added" in upload_message(result)


def test_a_replacing_upload_the_index_skips_brings_the_old_file_back(lib):
    from rag.library import upload

    corpus = corpus_of(lib)
    before = files_in(corpus)
    blank = b"<html><body><script>var x = 1;</script></body></html>"
    result = upload(lib, [("page.html", blank)], max_bytes=LIMIT, replace=True)
    assert result.added == [] and "could not be indexed" in result.errors[0]
    assert files_in(corpus) == before and "page.html" in indexed(lib)
    assert list_trash(corpus, trash_dir=lib.config.index.trash_dir) == []
    assert lib.ask("Quuxville ferry north pier").hits[0].chunk.source == "page.html"


def test_an_upload_whose_indexing_fails_is_rolled_back(lib, monkeypatch):
    from rag.library import upload

    corpus = corpus_of(lib)
    before, indexed_before = files_in(corpus), index_contents(lib)
    fail_first_update(monkeypatch)
    result = upload(
        lib, [("avocado.txt", ZORBLATT), ("page.html", b"<p>new page</p>")], max_bytes=LIMIT,
        replace=True,
    )  # fmt: skip
    assert result.added == []
    assert "avocado.txt: not added, indexing failed (No space left on device)" in result.errors
    # The resync after the rollback may write a generation that only records the files' stat
    # (index.planning: files indexed within the racy window are read again): same content.
    assert files_in(corpus) == before and index_contents(lib) == indexed_before
    assert list_trash(corpus, trash_dir=lib.config.index.trash_dir) == []


def test_save_upload_without_hard_links_still_never_overwrites(tmp_path, monkeypatch):
    def no_links(*_args, **_kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_bytes(b"first")
    monkeypatch.setattr(os, "link", no_links)
    saved = save_upload(corpus, "a.txt", b"second", max_bytes=100, trash_dir=tmp_path / "trash")
    assert saved.path.name == "a (2).txt" and saved.path.read_bytes() == b"second"
    assert sorted(files_in(corpus)) == ["a (2).txt", "a.txt"]
    assert (corpus / "a.txt").read_bytes() == b"first"


# --- background ingestion: progress, cancel, one change at a time ------------------------------


@pytest.fixture
def held_embedding(monkeypatch, embedder):
    """Embedding that stops until released: a job can be watched and cancelled mid-way."""
    entered, release = threading.Event(), threading.Event()
    real = embedder.encode

    def encode(*args, **kwargs):
        entered.set()
        assert release.wait(60), "the test never released the embedding"
        return real(*args, **kwargs)

    monkeypatch.setattr(embedder, "encode", encode)
    yield entered, release
    release.set()


def test_a_background_refresh_reports_progress_and_indexes(lib):
    from rag.library import DONE, ingest_status, start_refresh

    corpus = corpus_of(lib)
    (corpus / "avocado.txt").write_bytes(ZORBLATT)
    (corpus / "ferry2.txt").write_bytes(b"The Quuxville night ferry leaves at ten.\n")
    job = start_refresh(lib)
    progress = job.wait(120)
    assert progress.state == DONE and "added 2" in progress.message
    assert ingest_status(lib) == (progress, 0)
    assert "avocado.txt" in indexed(lib)
    assert lib.ask("What tariff did the Zorblatt Commission set?").citations[0].source == (
        "avocado.txt"
    )
    assert start_refresh(lib) is not job  # a finished job is not reused


def test_progress_is_reported_while_reading_and_embedding(lib, held_embedding):
    from rag.library import RUNNING, start_refresh

    entered, release = held_embedding
    (corpus_of(lib) / "avocado.txt").write_bytes(ZORBLATT)
    job = start_refresh(lib)
    assert entered.wait(60)
    progress = job.progress()
    assert progress.state == RUNNING and progress.kind == "refresh"
    assert progress.stage == "reading" and progress.done == progress.total == 5
    assert start_refresh(lib) is job  # one refresh at a time
    release.set()
    final = job.wait(120)
    assert final.stage == "embedding" and final.done == final.total > 0


def test_a_cancelled_upload_leaves_corpus_and_index_as_they_were(lib, held_embedding):
    from rag.library import CANCELLED, WAITING, cancel_ingestion, ingest_status, start_upload
    from ui.render import upload_message

    entered, release = held_embedding
    corpus = corpus_of(lib)
    before, generation, chunks = (
        files_in(corpus),
        lib.index.folder,
        lib.index.store.ids_of(indexed(lib)),
    )
    first = start_upload(lib, [("avocado.txt", ZORBLATT)], max_bytes=LIMIT, replace=False)
    assert entered.wait(60)
    second = start_upload(
        lib, [("ferry2.txt", b"A night ferry.\n")], max_bytes=LIMIT, replace=False
    )
    assert second.progress().state == WAITING  # only one change at a time
    shown, waiting = ingest_status(lib)
    assert shown.job_id == first.id and waiting == 1
    assert cancel_ingestion(lib) == 2
    release.set()
    for job in (first, second):
        assert job.wait(120).state == CANCELLED
    assert "avocado.txt: not added (indexing was cancelled)" in first.result.errors
    assert "cancelled" in upload_message(second.result)
    assert files_in(corpus) == before and lib.index.folder == generation
    assert np.array_equal(lib.index.store.ids_of(indexed(lib)), chunks)
    assert lib.index.size == len(chunks) and "avocado.txt" not in indexed(lib)


def test_a_cancelled_refresh_changes_nothing(lib, held_embedding):
    from rag.library import CANCELLED, start_refresh

    entered, release = held_embedding
    (corpus_of(lib) / "avocado.txt").write_bytes(ZORBLATT)
    generation = lib.index.folder
    job = start_refresh(lib)
    assert entered.wait(60)
    job.cancel()
    release.set()
    progress = job.wait(120)
    assert progress.state == CANCELLED and "unchanged" in progress.message
    assert lib.index.folder == generation and "avocado.txt" not in indexed(lib)
    assert (corpus_of(lib) / "avocado.txt").exists()  # a refresh never touches the files


def test_a_failed_job_says_why(lib, monkeypatch):
    import rag.library
    from rag.library import FAILED, start_refresh

    monkeypatch.setattr(rag.library, "update_index", _no_space)
    progress = start_refresh(lib).wait(60)
    assert progress.state == FAILED and "No space left on device" in progress.message


# --- the folder watcher -----------------------------------------------------------------------


def cites_first(answer, source: str) -> bool:
    """True when the answer's first citation is from source (False while it abstains)."""
    return bool(answer.citations) and answer.citations[0].source == source


def wait_for(condition, *, seconds: float = 90.0) -> bool:
    """Poll condition until it is true or seconds have passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_check_corpus_refreshes_only_when_the_folder_changed(lib):
    from rag.library import check_corpus, corpus_snapshot

    first = check_corpus(lib)  # nothing seen yet in this process: always a look
    assert first is not None and first.wait(120).finished
    assert check_corpus(lib) is None
    path = corpus_of(lib) / "page.html"
    path.write_text("<p>The Quuxville ferry now leaves at one.</p>")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    job = check_corpus(lib)
    assert job is not None and "changed 1" in job.wait(120).message
    (corpus_of(lib) / ".hidden.txt").write_text("not a document")
    (corpus_of(lib) / "notes.xyz").write_text("not a supported type")
    assert check_corpus(lib) is None
    snapshot = corpus_snapshot(corpus_of(lib), extensions=(".txt", ".html"))
    assert {Path(p).name for p, _, _ in snapshot} == {*DOCS, "page.html"}


def test_a_failed_refresh_is_tried_again_on_the_next_look(lib, monkeypatch):
    import rag.library
    from rag.library import check_corpus

    assert check_corpus(lib).wait(120).finished  # the first look of this process
    (corpus_of(lib) / "late.txt").write_text("The Quuxville tram starts in June.")
    real = rag.library.update_index
    monkeypatch.setattr(rag.library, "update_index", _no_space)
    assert check_corpus(lib).wait(60).state == "failed"
    monkeypatch.setattr(rag.library, "update_index", real)
    job = check_corpus(lib)  # the folder did not change again, but the index never saw it
    assert job is not None and job.wait(120).state == "done"
    assert "late.txt" in indexed(lib)


def test_the_watcher_indexes_a_new_file_without_a_refresh(lib):
    from rag.library import stop_watching, watch_corpus

    question = "What tariff did the Zorblatt Commission set?"
    watcher = watch_corpus(lib, every=0.2)
    try:
        assert watch_corpus(lib, every=0.2) is watcher  # one watcher per pipeline
        (corpus_of(lib) / "avocado.txt").write_bytes(ZORBLATT)
        assert wait_for(lambda: cites_first(lib.ask(question), "avocado.txt"))
        (corpus_of(lib) / "avocado.txt").unlink()
        assert wait_for(lambda: "avocado.txt" not in indexed(lib))
    finally:
        stop_watching(lib)
    assert not watcher.running
