"""Ingestion of every supported type, and of files that must be skipped with a reason. No model."""

from __future__ import annotations

import os

from index.loaders import decode_bytes, html_to_text, scan_corpus
from tests.pdf_fixture import make_pdf

EXTS = (".txt", ".md", ".html", ".htm", ".pdf")


def scan(folder):
    result = scan_corpus(folder, extensions=EXTS, max_bytes=1_000_000)
    return result.documents, result.skipped


def test_reads_all_types_recursively(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "a.txt").write_text("Plain text document.", encoding="utf-8")
    (tmp_path / "sub" / "b.md").write_text("# Heading\n\nMarkdown body.", encoding="utf-8")
    (tmp_path / "sub" / "deeper" / "c.html").write_text(
        "<html><head><title>Page T</title><style>p{color:red}</style></head>"
        "<body><script>alert('x')</script><p>Visible &amp; kept.</p><!-- hidden --></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "d.pdf").write_bytes(make_pdf("Hello from the PDF text layer."))
    docs, skipped = scan(tmp_path)
    by_source = {d.source: d for d in docs}
    assert sorted(by_source) == ["a.txt", "d.pdf", "sub/b.md", "sub/deeper/c.html"]
    html_doc = by_source["sub/deeper/c.html"]
    assert html_doc.text == "Visible & kept."
    assert html_doc.html_title == "Page T"
    assert "Hello from the PDF text layer." in by_source["d.pdf"].text
    assert skipped == []


def test_skips_with_reasons(tmp_path):
    (tmp_path / "good.txt").write_text("Still indexed.", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "empty.md").write_text("   \n")
    (tmp_path / "fake.pdf").write_text("not a pdf at all")
    (tmp_path / "broken.pdf").write_bytes(make_pdf("Truncated")[:60])
    (tmp_path / "big.txt").write_text("x" * 1_000_001)
    os.symlink("/etc/hostname", tmp_path / "link.txt")
    docs, skipped = scan(tmp_path)
    assert [d.source for d in docs] == ["good.txt"]
    reasons = {s.source: s.reason for s in skipped}
    assert "unsupported file type .png" in reasons["image.png"]
    assert "binary" in reasons["binary.txt"]
    assert reasons["empty.md"] == "no text"
    assert "not a PDF" in reasons["fake.pdf"]
    assert "broken.pdf" in reasons
    assert "too large" in reasons["big.txt"]
    assert "symbolic link" in reasons["link.txt"]


def test_lenient_decoding(tmp_path):
    assert decode_bytes("café".encode("cp1252")) == "café"
    assert decode_bytes("naïve".encode("utf-16")) == "naïve"
    assert decode_bytes(b"\xef\xbb\xbfBOM text") == "BOM text"
    (tmp_path / "latin.txt").write_bytes("Señor Gertz said «no».".encode("latin-1"))
    docs, skipped = scan(tmp_path)
    assert docs[0].text == "Señor Gertz said «no»."


def test_html_unclosed_and_nested():
    text, title = html_to_text("<div>" * 500 + "deep <b>text" + "<p>para two")
    assert "deep text" in text and "para two" in text
    assert title == ""


def test_missing_corpus_folder(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="corpus folder not found"):
        scan(tmp_path / "nope")


def test_scan_lists_entries_in_path_order_as_strings(tmp_path):
    """The string walk sorts as pathlib sorts (part by part: "a/b" before "a-c")."""
    from pathlib import Path

    from index.loaders import _walk

    for name in ("a/b.txt", "a-c.txt", "a b.txt", "a.txt", "A/z.md", "a/b/c.txt", "ä.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x", encoding="utf-8")
    entries, unreadable = _walk(tmp_path)
    expected = sorted(p for p in tmp_path.rglob("*"))
    assert [Path(e.path) for e in entries] == expected and not unreadable
    assert [e.source for e in entries] == [p.relative_to(tmp_path).as_posix() for p in expected]
    assert all(os.path.join(e.folder, e.name) == e.path for e in entries)


def test_name_suffix_is_pathlibs():
    from pathlib import Path

    from index.loaders import name_suffix

    for name in ("a.txt", "a.tar.gz", "a.", "a", ".txt", "a..b", "x.PDF", "é.Docx", "a.b."):
        assert name_suffix(name) == Path(name).suffix, name
