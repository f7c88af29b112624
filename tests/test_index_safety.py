"""The index never hides a file or loses a generation, and OS errors are one clear line.

python -m pytest -q tests/test_index_safety.py

Items of the hostile-user probe: failed parses not repeated (4), a newer index left alone (5),
a reader racing a rebuild (6), unreadable folders reported (7), disk and permission errors (8).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import faiss
import pytest

import index.build as build
import index.loaders as loaders
from index import CorpusIndex, IndexConfig, IndexTooNew, update_index
from index.corpus_index import current_generation, manifest_checksum
from rag import Config
from rag.pipeline import open_pipeline
from tests.conftest import CORPUS
from tests.test_reliability_faults import NORTHCOM, assert_answers, in_process_cli, small_corpus

JUNK = bytes(range(256)) * 40  # binary bytes in a .txt: nothing a reader can use


def cli(config: IndexConfig, *args: str) -> tuple[int, str]:
    """`python -m rag ARGS` in this process on config's corpus and index."""
    return in_process_cli(
        *args, "-q", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir)
    )


def assert_one_line(err: str, *words: str) -> None:
    """stderr is one 'error:' line naming the words, without a traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err, err
    assert all(w in errors[0] for w in words), errors[0]


# --- 4: a file that failed to parse is not parsed again -------------------------------------


def count_reads(monkeypatch) -> list[str]:
    """Record every source read_document parses."""
    seen: list[str] = []
    original = loaders.read_document

    def counting(path, *, source, max_bytes, limits=None):
        seen.append(source)
        return original(path, source=source, max_bytes=max_bytes, limits=limits)

    monkeypatch.setattr(loaders, "read_document", counting)
    return seen


def test_failed_parse_is_not_repeated_until_file_or_reader_changes(tmp_path, embedder, monkeypatch):
    config = small_corpus(tmp_path, [NORTHCOM])
    junk = config.corpus_dir / "junk.txt"
    junk.write_bytes(JUNK)
    first = update_index(config, progress=False, embedder=embedder)
    assert [s.source for s in first.skipped] == ["junk.txt"]
    assert "junk.txt" in CorpusIndex.load(config).manifest["parse_failures"]

    seen = count_reads(monkeypatch)
    shutil.copy(CORPUS / "001_8519b1fb3011066c.txt", config.corpus_dir / "new.txt")
    report = update_index(config, progress=False, embedder=embedder)
    assert report.added == ["new.txt"] and "junk.txt" not in seen
    assert [s.source for s in report.skipped] == ["junk.txt"]  # still listed, with its reason
    assert report.skipped[0].reason == first.skipped[0].reason
    assert not update_index(config, progress=False, embedder=embedder).wrote_generation

    junk.write_bytes(JUNK + b"changed")  # its bytes change: read again
    update_index(config, progress=False, embedder=embedder)
    assert seen.count("junk.txt") == 1

    monkeypatch.setattr(loaders, "reader_version", lambda suffix: "text-2")
    update_index(config, progress=False, embedder=embedder)  # the reader changed: read again
    assert seen.count("junk.txt") == 2


def test_a_repaired_file_is_indexed(tmp_path, embedder):
    config = small_corpus(tmp_path, [NORTHCOM])
    fixed = config.corpus_dir / "notes.txt"
    fixed.write_bytes(b"\x00\x01\x02 binary junk" * 50)
    assert update_index(config, progress=False, embedder=embedder).skipped
    fixed.write_text("The harbor codeword is pomegranate.", encoding="utf-8")
    report = update_index(config, progress=False, embedder=embedder)
    assert report.added == ["notes.txt"] and not report.skipped


# --- 5: an index written by a newer version is never rebuilt over -----------------------------


def make_newer(config: IndexConfig) -> Path:
    """Mark the live generation as written by a future format (checksum kept valid)."""
    folder = current_generation(config.index_dir)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["format_version"] += 1
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_newer_index_is_left_alone_until_rebuild_is_asked(tmp_path, embedder):
    config = small_corpus(tmp_path, [NORTHCOM])
    update_index(config, progress=False, embedder=embedder)
    newer = make_newer(config)
    for args in (("ask", "Who commands NORTHCOM?"), ("index",)):
        code, err = cli(config, *args)
        assert code == 2
        assert_one_line(err, "newer version", "--rebuild")
        assert current_generation(config.index_dir) == newer and newer.is_dir()
    with pytest.raises(IndexTooNew):
        update_index(config, progress=False, embedder=embedder)
    with pytest.raises(IndexTooNew):
        open_pipeline(Config(index=config), progress=False)
    assert current_generation(config.index_dir) == newer
    code, err = cli(config, "index", "--rebuild")
    assert code == 0, err
    assert current_generation(config.index_dir) != newer
    assert_answers(config, embedder)


# --- 6: a reader that races a rebuild never loses the index -----------------------------------


def load_paused_during(config: IndexConfig, builds: int, embedder, corpus_note: Path) -> object:
    """Load the index with the reader paused after reading CURRENT while builds run."""
    read, go = threading.Event(), threading.Event()
    outcome: dict = {}

    def pause(_folder: Path) -> None:
        read.set()
        go.wait(timeout=60)

    def reader() -> None:
        try:
            outcome["index"] = CorpusIndex.load(config, on_pointer_read=pause)
        except Exception as exc:  # counted as a failure below
            outcome["error"] = exc

    thread = threading.Thread(target=reader)
    thread.start()
    assert read.wait(timeout=60)
    for i in range(builds):
        corpus_note.write_text(f"Build {i}: the codeword is fig{i}.", encoding="utf-8")
        update_index(config, rebuild=i % 2 == 1, progress=False, embedder=embedder)
    go.set()
    thread.join(timeout=60)
    return outcome.get("error") or outcome["index"]


@pytest.mark.parametrize("builds", [1, 2, 3])
def test_reader_paused_during_builds_loads(tmp_path, embedder, builds):
    config = small_corpus(tmp_path, [NORTHCOM])
    update_index(config, progress=False, embedder=embedder)
    results = [
        load_paused_during(config, builds, embedder, config.corpus_dir / "note.txt")
        for _ in range(2)
    ]
    failures = [r for r in results if isinstance(r, Exception)]
    assert failures == []
    assert all(r.manifest["documents"] for r in results)


# --- 7: a folder that cannot be read is reported ----------------------------------------------


def test_unreadable_folder_is_reported(tmp_path, embedder, monkeypatch):
    config = small_corpus(tmp_path, [NORTHCOM])
    sub = config.corpus_dir / "sub"
    sub.mkdir()
    (sub / "hidden-by-permissions.txt").write_text("A secret report.", encoding="utf-8")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == sub:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    # chmod 000 does not stop root (CI runs as root), so the refusal is simulated there.
    if os.geteuid() == 0:
        monkeypatch.setattr(os, "scandir", scandir)
    else:
        sub.chmod(0)
    try:
        report = update_index(config, progress=False, embedder=embedder)
    finally:
        sub.chmod(0o755)
    assert report.added == [NORTHCOM]
    (skipped,) = report.skipped
    assert skipped.source == "sub/" and "Permission denied" in skipped.reason
    assert "folder unreadable" in skipped.reason


# --- 8: disk and permission errors are one line -----------------------------------------------


def test_full_disk_is_one_line_and_keeps_the_index(tmp_path, embedder, monkeypatch):
    config = small_corpus(tmp_path, [NORTHCOM])
    update_index(config, progress=False, embedder=embedder)
    live = current_generation(config.index_dir)
    (config.corpus_dir / "more.txt").write_text("One more document to index.", encoding="utf-8")

    def full(index, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    # The disk fills while the new segment's vectors are written (segments/.seg-*.tmp/).
    monkeypatch.setattr(faiss, "write_index", full)
    code, err = cli(config, "index")
    assert code != 0
    assert_one_line(err, "dense.faiss", "No space left on device", "disk is full")
    assert current_generation(config.index_dir) == live
    assert not [p for p in config.index_dir.iterdir() if p.name.startswith(".gen-")]
    assert not [p for p in (config.index_dir / "segments").iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    assert_answers(config, embedder)


@contextmanager
def read_only_index(index_dir: Path, monkeypatch):
    """The index folder refuses writes: chmod for a normal user, simulated for root."""
    if os.geteuid() != 0:
        index_dir.chmod(0o555)
        try:
            yield
        finally:
            index_dir.chmod(0o755)
        return

    @contextmanager
    def refused(folder):
        raise PermissionError(errno.EACCES, "Permission denied", str(Path(folder) / ".lock"))
        yield  # pragma: no cover

    monkeypatch.setattr(build, "folder_lock", refused)
    yield


def test_read_only_index_is_one_line(tmp_path, embedder, monkeypatch):
    config = small_corpus(tmp_path, [NORTHCOM])
    update_index(config, progress=False, embedder=embedder)
    (config.corpus_dir / "more.txt").write_text("One more document to index.", encoding="utf-8")
    with read_only_index(config.index_dir, monkeypatch):
        code, err = cli(config, "index")
        assert code != 0
        assert_one_line(err, ".lock", "Permission denied")
        # A read command that needs a rebuild (the index is damaged) says the same.
        live = CorpusIndex.load(config, verify=False)
        segment = live.manifest["store"]["segments"][0]["name"]
        (config.index_dir / "segments" / segment / "chunks.sqlite3").unlink()
        code, err = cli(config, "ask", "Who commands NORTHCOM?")
        assert code != 0
        assert_one_line(err, ".lock", "Permission denied")


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/d/x"), ["/d/x", "disk is full"]),
        (
            PermissionError(errno.EACCES, "Permission denied", "/d/.lock"),
            ["/d/.lock", "permission"],
        ),
        (OSError(errno.EROFS, "Read-only file system", "/ro"), ["/ro", "read-only"]),
        (OSError(errno.EIO, "Input/output error", "/d"), ["/d", "Input/output error"]),
        (ValueError("bad\nvalue"), ["bad value"]),
    ],
)
def test_error_line(exc, words):
    from rag.logs import error_line

    line = error_line(exc)
    assert "\n" not in line and all(w in line for w in words), line
