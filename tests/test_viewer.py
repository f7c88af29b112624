"""The document view a citation opens: text window, highlights, page image, download, notes.

    .venv/bin/python -m pytest -q tests/test_viewer.py

A small real index (text and HTML files) for the text view; a PDF's page view is checked with
a stored document whose pages are known, drawn by `index.page_view` (or a stand-in while that
module does not exist), and end to end on a real PDF once `index/formats/pdf.py` reads PDFs.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from index.document_store import put_document
from index.extraction import PAGE, Segment
from rag.viewer import (
    CHANGED_NOTE,
    CONTEXT_AFTER,
    CONTEXT_BEFORE,
    MISSING_NOTE,
    corpus_file,
    file_changed,
    open_view,
)

ROOT = Path(__file__).resolve().parent.parent
NORTHCOM = "004_b24285a9b201835e.txt"
LONG = "long.txt"


@pytest.fixture(scope="module")
def small(tmp_path_factory, embedder):
    """A Pipeline over two real documents and a long one, with its own corpus copy."""
    from index import IndexConfig, update_index
    from rag import Config, Pipeline

    base = tmp_path_factory.mktemp("viewer")
    (base / "corpus").mkdir()
    shutil.copy(ROOT / "corpus" / NORTHCOM, base / "corpus" / NORTHCOM)
    filler = "".join(f"Line {i} talks about the weather in the valley.\n" for i in range(600))
    (base / "corpus" / LONG).write_text(
        filler + "The Quuxville lighthouse was painted red in 2024.\n" + filler, encoding="utf-8"
    )
    config = Config(
        index=IndexConfig(
            corpus_dir=base / "corpus", index_dir=base / "index", trash_dir=base / "trash"
        )
    )
    update_index(config.index, progress=False, embedder=embedder)
    return Pipeline(config, embedder=embedder)


def stored_text(pipeline, source: str) -> str:
    """The document text the index holds for source."""
    from index.document_store import get_document

    key = pipeline.index.manifest["documents"][source]["text_key"]
    return get_document(pipeline.config.index.index_dir, key).text


def test_text_view_marks_the_cited_sentence_inside_its_passage(small):
    citation = small.ask("Who commands NORTHCOM?").citations[0]
    view = open_view(
        small, source=citation.source, start=citation.start, end=citation.end,
        highlights=citation.highlights,
    )  # fmt: skip
    text = stored_text(small, citation.source)
    low, high = view.window
    assert "".join(p.text for p in view.pieces) == text[low:high]
    marked = [p.text for p in view.pieces if p.kind == "highlight"]
    assert marked == [text[s:e] for s, e in citation.highlights]
    passage = "".join(p.text for p in view.pieces if p.kind in ("passage", "highlight"))
    assert passage == citation.text == text[citation.start : citation.end]
    assert view.locator == citation.locator and view.page is None and view.page_png is None
    assert (
        view.note == ""
        and view.download_path == (small.config.index.corpus_dir / NORTHCOM).resolve()
    )


def test_a_long_document_is_shown_as_a_window_around_the_passage(small):
    text = stored_text(small, LONG)
    start = text.index("The Quuxville lighthouse")
    end = text.index("\n", start)
    view = open_view(small, source=LONG, start=start, end=end, highlights=[(start, end)])
    low, high = view.window
    assert view.cut_before and view.cut_after
    assert start - CONTEXT_BEFORE <= low < start and end < high <= end + CONTEXT_AFTER
    assert text[low - 1] == "\n" and text[high] == "\n"  # whole lines, not cut words
    assert [p.text for p in view.pieces if p.kind == "highlight"] == [text[start:end]]
    assert view.locator == "line 601"


@pytest.mark.parametrize(
    ("source", "start", "end", "highlights", "message"),
    [("missing.txt", 0, 5, [], "not in the index"), ("", 0, 5, [], "no document named"),
     (NORTHCOM, 10, 5, [], "outside the document text"),
     (NORTHCOM, 0, 10**9, [], "outside the document text"),
     (NORTHCOM, -1, 5, [], "outside the document text"),
     (NORTHCOM, 0, 5, [(3, 10**9)], "highlight .* outside")],
)  # fmt: skip
def test_unknown_sources_and_spans_outside_the_text_are_refused(
    small, source, start, end, highlights, message
):
    with pytest.raises(ValueError, match=message):
        open_view(small, source=source, start=start, end=end, highlights=highlights)


def test_download_is_a_regular_file_inside_the_corpus_only(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "mail").mkdir(parents=True)
    (corpus / "notes.txt").write_text("notes")
    (corpus / "mail" / "message.eml").write_text("Subject: hi\n\nbody")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (corpus / "link.txt").symlink_to(outside)
    (corpus / "linked").symlink_to(tmp_path, target_is_directory=True)
    assert corpus_file(corpus, "notes.txt") == (corpus / "notes.txt").resolve()
    assert (
        corpus_file(corpus, "mail/message.eml/report.pdf")
        == (corpus / "mail" / "message.eml").resolve()
    )  # an attachment offers its message
    for bad in ("link.txt", "linked/secret.txt", "../secret.txt", str(outside), "mail", ""):
        assert corpus_file(corpus, bad) is None, bad


def test_changed_and_missing_files_are_noted(small):
    citation = small.ask("Who commands NORTHCOM?").citations[0]
    path = small.config.index.corpus_dir / NORTHCOM
    original = path.read_bytes()
    spans = {"start": citation.start, "end": citation.end, "highlights": citation.highlights}
    try:
        path.write_bytes(original + b"\nA line added after indexing.\n")
        changed = open_view(small, source=NORTHCOM, **spans)
        assert changed.note == CHANGED_NOTE and changed.download_path is not None
        assert [p.text for p in changed.pieces if p.kind == "highlight"] == [
            citation.text[s - citation.start : e - citation.start] for s, e in citation.highlights
        ]  # the indexed text, so the highlight is still right
        path.unlink()
        missing = open_view(small, source=NORTHCOM, **spans)
        assert missing.note == MISSING_NOTE and missing.download_path is None
    finally:
        path.write_bytes(original)
    assert open_view(small, source=NORTHCOM, **spans).note == ""


def test_file_changed_compares_the_sha256(tmp_path):
    import hashlib

    path = tmp_path / "a.txt"
    path.write_bytes(b"one")
    assert not file_changed(path, hashlib.sha256(b"one").hexdigest())
    path.write_bytes(b"two, longer")
    assert file_changed(path, hashlib.sha256(b"one").hexdigest())


# --- PDF pages -----------------------------------------------------------------------------

PAGES = [
    "The first page is an introduction to the annual audit.",
    "The audit found that the Quuxville harbour fund lost 4 million euros.",
    "The third page lists the people who were interviewed.",
]


def pdf_pipeline(tmp_path: Path, pdf: bytes) -> tuple[SimpleNamespace, str, list[tuple[int, int]]]:
    """A pipeline stand-in whose index holds report.pdf as three page segments."""
    import hashlib

    from index import IndexConfig

    corpus, index_dir = tmp_path / "corpus", tmp_path / "index"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(pdf)
    text, segments, spans = "", [], []
    for number, page in enumerate(PAGES, start=1):
        start = len(text)
        text += page + "\n\n"
        segments.append(Segment(start, start + len(page), PAGE, number, hard=False))
        spans.append((start, start + len(page)))
    key = put_document(index_dir, text, segments)
    documents = {
        "report.pdf": {"title": "Annual audit", "text_key": key,
                       "sha256": hashlib.sha256(pdf).hexdigest()},
    }  # fmt: skip
    config = SimpleNamespace(index=IndexConfig(corpus_dir=corpus, index_dir=index_dir))
    index = SimpleNamespace(manifest={"documents": documents})
    return SimpleNamespace(config=config, index=index), text, spans


def test_pdf_view_draws_the_page_of_the_cited_sentence(tmp_path, multipage_pdf, page_view_stub):
    from PIL import Image

    pipeline, text, spans = pdf_pipeline(tmp_path, multipage_pdf(PAGES))
    start, end = spans[1]
    sentence = (text.index("the Quuxville"), end)
    view = open_view(pipeline, source="report.pdf", start=start, end=end, highlights=[sentence])
    assert view.page == 2 and view.locator == "p. 2" and view.boxes == 1 and view.note == ""
    image = Image.open(io.BytesIO(view.page_png))
    assert image.format == "PNG" and image.width > 100
    if page_view_stub:  # the stand-in: it was asked for page 2 with the sentence's span
        (call,) = page_view_stub
        assert call["page"] == 2 and call["start"] == start and call["highlights"] == [sentence]
    assert [p.text for p in view.pieces if p.kind == "highlight"] == [text[slice(*sentence)]]


def test_pdf_view_falls_back_to_text_when_the_page_cannot_be_drawn(
    tmp_path, multipage_pdf, monkeypatch
):
    import sys
    import types

    def broken(*_args, **_kwargs):
        raise ValueError("not a PDF page")

    stub = types.ModuleType("index.page_view")
    stub.render_page = broken
    monkeypatch.setitem(sys.modules, "index.page_view", stub)
    pipeline, _text, spans = pdf_pipeline(tmp_path, multipage_pdf(PAGES))
    view = open_view(pipeline, source="report.pdf", start=spans[2][0], end=spans[2][1],
                     highlights=[spans[2]])  # fmt: skip
    assert view.page_png is None and view.page == 3 and "could not be drawn" in view.note
    assert view.download_path is not None and view.pieces


def test_a_changed_pdf_is_not_drawn(tmp_path, multipage_pdf, page_view_stub):
    pipeline, _text, spans = pdf_pipeline(tmp_path, multipage_pdf(PAGES))
    (pipeline.config.index.corpus_dir / "report.pdf").write_bytes(multipage_pdf(PAGES[:1]))
    view = open_view(pipeline, source="report.pdf", start=spans[1][0], end=spans[1][1],
                     highlights=[])  # fmt: skip
    assert view.page_png is None and view.note == CHANGED_NOTE and not page_view_stub


@pytest.mark.skipif(
    importlib.util.find_spec("index.formats.pdf") is None, reason="index/formats/pdf.py not there"
)
def test_real_pdf_view_end_to_end(tmp_path, embedder, multipage_pdf, page_view_stub):
    from PIL import Image

    from index import IndexConfig, update_index
    from rag import Config, Pipeline

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "report.pdf").write_bytes(multipage_pdf(PAGES))
    config = Config(index=IndexConfig(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "i"))
    update_index(config.index, progress=False, embedder=embedder)
    pipeline = Pipeline(config, embedder=embedder)
    citation = pipeline.ask("How much did the Quuxville harbour fund lose?").citations[0]
    assert citation.source == "report.pdf"
    view = open_view(pipeline, source="report.pdf", start=citation.start, end=citation.end,
                     highlights=citation.highlights)  # fmt: skip
    assert view.page == 2 and view.boxes >= 1, view.note
    assert Image.open(io.BytesIO(view.page_png)).format == "PNG"


def test_an_attachment_offers_its_message_and_shows_text(tmp_path, multipage_pdf):
    import hashlib

    pipeline, text, spans = pdf_pipeline(tmp_path, multipage_pdf(PAGES))
    corpus = pipeline.config.index.corpus_dir
    message = b"Subject: audit\n\nSee the attached report.\n"
    (corpus / "mail.eml").write_bytes(message)
    documents = pipeline.index.manifest["documents"]
    documents["mail.eml/report.pdf"] = dict(documents["report.pdf"], sha256="0" * 64)
    documents["mail.eml"] = {"title": "audit", "sha256": hashlib.sha256(message).hexdigest()}
    view = open_view(pipeline, source="mail.eml/report.pdf", start=spans[1][0], end=spans[1][1],
                     highlights=[spans[1]])  # fmt: skip
    assert view.download_path == (corpus / "mail.eml").resolve()
    assert view.page_png is None and "inside mail.eml" in view.note
    assert [p.text for p in view.pieces if p.kind == "highlight"] == [text[slice(*spans[1])]]


def test_a_lost_stored_text_is_a_clear_error(tmp_path, multipage_pdf):
    pipeline, _text, _spans = pdf_pipeline(tmp_path, multipage_pdf(PAGES))
    pipeline.index.manifest["documents"]["report.pdf"]["text_key"] = "ab" * 32
    with pytest.raises(ValueError, match="indexed text of report.pdf is missing") as caught:
        open_view(pipeline, source="report.pdf", start=0, end=5, highlights=[])
    assert str(tmp_path) not in str(caught.value)
