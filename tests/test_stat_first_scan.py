"""scan_corpus(known_files=...): files whose stat is unchanged are not read again. No model."""

from __future__ import annotations

import os
import time
from email.message import EmailMessage
from types import SimpleNamespace

import pytest

from index import loaders, readers
from index.loaders import RACY_WINDOW_NS, ParseFailure, scan_corpus
from index.progress import BuildControl

EXTS = (".txt", ".md", ".eml")
PAST = time.time_ns() - 3600 * 10**9  # an hour ago: far outside the racy window


def scan(folder, **options):
    return scan_corpus(folder, extensions=EXTS, max_bytes=1_000_000, workers=1, **options)


def write(path, text, mtime_ns=PAST):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_ns, mtime_ns))


def recorded(result):
    """known_files as the index records them: each top-level document's stat."""
    docs = result.documents
    return {
        d.source: (d.size, d.mtime_ns)
        for d in docs
        if not any(d.source.startswith(other.source + "/") for other in docs)  # an attachment
    }


@pytest.fixture
def reads(monkeypatch):
    """Sources of the .txt and .md files actually read (the readers are wrapped to count)."""
    seen: list[str] = []
    for name in ("_read_text", "_read_markdown"):
        original = getattr(readers, name)

        def counting(path, *, limits, original=original):
            seen.append(path.name)
            return original(path, limits=limits)

        monkeypatch.setattr(readers, name, counting)
    return seen


@pytest.fixture
def corpus(tmp_path):
    write(tmp_path / "a.txt", "Alpha document about ferries.")
    write(tmp_path / "b.md", "# Beta\n\nBeta body.")
    write(tmp_path / "sub" / "c.txt", "Gamma text in a folder.")
    return tmp_path


def test_documents_carry_their_files_stat(corpus):
    result = scan(corpus)
    assert result.unchanged == []
    for doc in result.documents:
        stat = (corpus / doc.source).stat()
        assert (doc.size, doc.mtime_ns) == (stat.st_size, stat.st_mtime_ns) == (stat.st_size, PAST)


def test_unchanged_files_are_not_read(corpus, reads):
    first = scan(corpus)
    assert sorted(reads) == ["a.txt", "b.md", "c.txt"]
    reads.clear()
    again = scan(corpus, known_files=recorded(first))
    assert reads == [] and again.documents == [] and again.skipped == []
    assert again.unchanged == ["a.txt", "b.md", "sub/c.txt"]
    assert again.failures == {}


def test_changed_new_and_deleted_files(corpus, reads):
    known = recorded(scan(corpus))
    write(corpus / "a.txt", "Alpha document about cutters.", mtime_ns=PAST + 10**9)  # same size
    assert (corpus / "a.txt").stat().st_size == known["a.txt"][0]
    write(corpus / "new.txt", "A new file.")
    (corpus / "b.md").unlink()
    reads.clear()
    result = scan(corpus, known_files=known)
    assert sorted(reads) == ["a.txt", "new.txt"]
    assert [d.source for d in result.documents] == ["a.txt", "new.txt"]
    assert "cutters" in result.documents[0].text
    assert result.unchanged == ["sub/c.txt"]
    assert "b.md" not in {s.source for s in result.skipped}


def test_a_racy_file_is_read_though_its_stat_matches(corpus, reads):
    now = time.time_ns()
    for name, mtime in (("a.txt", now), ("b.md", now + 60 * 10**9)):  # now, and in the future
        os.utime(corpus / name, ns=(mtime, mtime))
    known = {s: ((corpus / s).stat().st_size, (corpus / s).stat().st_mtime_ns)
             for s in ("a.txt", "b.md", "sub/c.txt")}  # fmt: skip
    reads.clear()
    result = scan(corpus, known_files=known)
    assert sorted(reads) == ["a.txt", "b.md"] and result.unchanged == ["sub/c.txt"]
    # Read in the racy window, a file's stat is recorded so that the next scan reads it again.
    assert {d.source: d.size for d in result.documents} == {"a.txt": -1, "b.md": -1}
    reads.clear()
    assert scan(corpus, known_files=known | recorded(result)).unchanged == ["sub/c.txt"]
    assert sorted(reads) == ["a.txt", "b.md"]


def test_just_outside_the_racy_window_is_trusted(corpus, reads):
    old = time.time_ns() - RACY_WINDOW_NS - 10**9
    os.utime(corpus / "a.txt", ns=(old, old))
    first = scan(corpus)
    assert {d.source: d.size for d in first.documents}["a.txt"] > 0
    assert scan(corpus, known_files=recorded(first)).unchanged == ["a.txt", "b.md", "sub/c.txt"]


def test_a_write_in_the_same_tick_after_a_racy_read_is_not_missed(corpus, monkeypatch):
    """The case git calls racy clean: read at t, written again at t with the same size and
    mtime. Scanned later, the stat matches; the recorded stat must not."""
    clock = SimpleNamespace(time_ns=lambda: PAST + 10**8)  # the scan starts just after a write
    monkeypatch.setattr(loaders, "time", clock)
    first = scan(corpus)
    monkeypatch.undo()
    write(corpus / "a.txt", "Alpha document about cutters.")  # same size, same mtime (PAST)
    result = scan(corpus, known_files=recorded(first))
    assert [d.source for d in result.documents] == ["a.txt", "b.md", "sub/c.txt"]
    assert "cutters" in result.documents[0].text
    # Had the real stat been recorded, the change would have been missed:
    real_stat = {d.source: ((corpus / d.source).stat().st_size, PAST) for d in first.documents}
    assert scan(corpus, known_files=real_stat).unchanged == ["a.txt", "b.md", "sub/c.txt"]


def test_skip_rules_come_first(corpus, reads):
    known = recorded(scan(corpus))
    # No longer a supported type: skipped as such, not unchanged.
    result = scan_corpus(corpus, extensions=(".txt",), max_bytes=1_000_000, known_files=known)
    assert result.unchanged == ["a.txt", "sub/c.txt"]
    assert "unsupported file type .md" in {s.source: s.reason for s in result.skipped}["b.md"]
    # Over a lowered size limit: read_document says so.
    result = scan_corpus(corpus, extensions=EXTS, max_bytes=20, known_files=known)
    assert result.unchanged == ["b.md"]
    assert {s.source for s in result.skipped if "too large" in s.reason} == {"a.txt", "sub/c.txt"}
    # A recorded parse failure stays a failure.
    failure = ParseFailure(*known["b.md"], loaders.reader_version(".md"), "earlier failure")
    result = scan(corpus, known_files=known, known_failures={"b.md": failure})
    assert result.failures == {"b.md": failure} and "b.md" not in result.unchanged
    # A hidden file or a symbolic link is never a document, listed or not.
    write(corpus / ".hidden.txt", "Hidden.")
    os.symlink(corpus / "a.txt", corpus / "link.txt")
    known |= {".hidden.txt": (8, PAST), "link.txt": known["a.txt"]}
    result = scan(corpus, known_files=known)
    assert result.unchanged == ["a.txt", "b.md", "sub/c.txt"]
    assert "symbolic link" in {s.source: s.reason for s in result.skipped}["link.txt"]


def test_without_known_files_nothing_changes(corpus, reads):
    plain = scan(corpus)
    listed_none = scan(corpus, known_files=None)
    assert plain == listed_none and plain.unchanged == [] and len(plain) == 4
    documents, skipped, failures, unchanged = plain  # a NamedTuple still
    assert loaders.ScanResult(documents, skipped, failures).unchanged == []


def test_progress_counts_unchanged_files_as_done(corpus):
    known = recorded(scan(corpus))
    write(corpus / "new.txt", "A new file.")
    seen: list[tuple[str, int, int]] = []
    control = BuildControl(on_progress=lambda *step: seen.append(step))
    scan(corpus, known_files=known, control=control)
    assert seen[0] == ("reading", 3, 4) and seen[-1] == ("reading", 4, 4)
    seen.clear()
    scan(corpus, known_files=recorded(scan(corpus)), control=control)  # nothing to read
    assert seen == [("reading", 4, 4)]


def test_attachments_carry_their_mails_stat(tmp_path, reads):
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = "Depot", "a@example.org", "b@example.org"
    message.set_content("The body of the message about ferries.")
    message.add_attachment(
        b"Attachment text about the Quarlow depot.", maintype="text", subtype="plain",
        filename="notes.txt",
    )  # fmt: skip
    mail = tmp_path / "m.eml"
    mail.write_bytes(bytes(message))
    os.utime(mail, ns=(PAST, PAST))
    first = scan(tmp_path)
    assert [d.source for d in first.documents] == ["m.eml", "m.eml/notes.txt"]
    stat = mail.stat()
    assert {(d.size, d.mtime_ns) for d in first.documents} == {(stat.st_size, PAST)}
    again = scan(tmp_path, known_files={"m.eml": (first.documents[0].size, PAST)})
    assert again.unchanged == ["m.eml"] and again.documents == []
