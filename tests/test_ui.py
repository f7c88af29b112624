"""The chat without a server, then a launched app driven with gradio_client."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag import Answer
from ui.__main__ import is_loopback, main, resolve_auth
from ui.app import chat_turn
from ui.render import escape_markdown, source_cards


def test_chat_streams_growing_text_then_citations(pipeline):
    updates = list(chat_turn(pipeline, "How many cartel bosses did Mexico hand over?", [], []))
    partial = [u[0][-1]["content"] for u in updates[:-1]]
    assert len(partial) > 3
    assert all(len(a) < len(b) for a, b in zip(partial, partial[1:], strict=False))
    chat, cards, status, questions = updates[-1]
    assert [m["role"] for m in chat] == ["user", "assistant", "assistant"]
    assert "29" in chat[1]["content"] and "\\[1\\]" in chat[1]["content"]
    assert chat[2]["metadata"]["title"].startswith("Sources")
    assert "cqa-card" in cards and "<mark>" in cards
    assert status.startswith("extractive")
    assert questions == ["How many cartel bosses did Mexico hand over?"]


def test_chat_uses_history(pipeline):
    first = "What did JD Vance say about U.S. forces going into Mexico?"
    *_, (chat, _, _, questions) = chat_turn(pipeline, first, [], [])
    *_, (chat, cards, _, questions) = chat_turn(pipeline, "Where did he say that?", chat, questions)
    assert "000_3b56b7e336b84316.txt" in cards
    assert questions == [first, "Where did he say that?"]
    assert len(chat) == 6


def test_chat_abstains_and_reports_bad_input(pipeline):
    *_, (chat, cards, status, _) = chat_turn(pipeline, "Who wrote Don Quixote?", [], [])
    assert "do not answer" in chat[-1]["content"] and "No source" in cards
    ((chat, _, status, questions),) = list(chat_turn(pipeline, "   ", [], []))
    assert "empty" in chat[-1]["content"] and status == "not answered" and questions == []


def test_question_markup_shown_as_text(pipeline):
    *_, (chat, _, _, _) = chat_turn(pipeline, "<b>bold</b> Who commands NORTHCOM?", [], [])
    assert chat[0]["content"].startswith("\\<b\\>bold")


def test_markup_is_escaped():
    assert escape_markdown("<script>x</script> *b* [1]") == (
        "\\<script\\>x\\</script\\> \\*b\\* \\[1\\]"
    )
    from rag import Citation

    answer = Answer(
        answer="x [1]", abstained=False, mode="extractive", timings_ms={"retrieve": 1, "answer": 1},
        citations=[Citation(n=1, source="a<b>.txt", title="<img src=x onerror=alert(1)>", start=0,
                            end=12, text="<b>bold</b>!", highlights=((0, 3),))],
    )  # fmt: skip
    html = source_cards(answer)
    assert "<img" not in html and "&lt;img" in html and "<mark>&lt;b&gt;</mark>" in html


def test_streamed_chat_ends_with_the_short_answer_first_and_marked():
    from rag import Citation, Final, Token
    from rag.reading import ShortAnswer

    text = "Trucks waited at Eagle <Pass>."
    final = Answer(
        answer=f"{text} [1]", abstained=False, mode="extractive",
        timings_ms={"retrieve": 1, "answer": 1}, short_answer=ShortAnswer("Eagle <Pass>", "a.txt",
        17, 29, 1), citations=[Citation(n=1, source="a.txt", title="t", start=0, end=len(text),
        text=text, highlights=((0, len(text)),))],
    )  # fmt: skip

    class Streaming:
        model_name = None

        def stream(self, question, *, history=()):
            yield from (Token("Trucks"), Token(" waited"), Final(final))

    *steps, (chat, cards, _, _) = chat_turn(Streaming(), "Where?", [], [])
    assert [s[0][-1]["content"] for s in steps] == ["Trucks", "Trucks waited"]
    assert chat[1]["content"].startswith("**Eagle \\<Pass\\>** \\[1\\]\n\nTrucks waited")
    assert "<mark>Trucks waited at <mark class='short-answer'>Eagle &lt;Pass&gt;</mark>" in cards


@pytest.mark.parametrize(
    ("host", "loop"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("192.168.1.4", False), ("example.org", False)],
)  # fmt: skip
def test_loopback(host, loop):
    assert is_loopback(host) is loop


def test_public_bind_needs_credentials(capsys):
    assert resolve_auth("127.0.0.1", {}) is None
    assert resolve_auth("0.0.0.0", {"RAG_USERNAME": "u", "RAG_PASSWORD": "p"}) == ("u", "p")
    with pytest.raises(ValueError, match="RAG_USERNAME"):
        resolve_auth("0.0.0.0", {})
    assert main(["--host", "0.0.0.0"]) == 2
    assert "refusing to serve" in capsys.readouterr().err


def test_served_ask_endpoint(served_app):
    from gradio_client import Client

    client = Client(served_app, verbose=False)
    result = client.predict("Who commands NORTHCOM?", None, api_name="/ask")
    assert not result["abstained"]
    assert result["citations"][0]["source"] == "004_b24285a9b201835e.txt"
    assert {"short_answer", "answerability", "mode_detail"} <= set(result)
    follow = client.predict(
        "Where did he say that?",
        ["What did JD Vance say about U.S. forces going into Mexico?"],
        api_name="/ask",
    )
    assert any(c["source"].startswith("000_") for c in follow["citations"])
    with pytest.raises(Exception, match="empty"):
        client.predict("  ", None, api_name="/ask")


def test_served_upload_then_ask(served_app, private_pipeline, tmp_path):
    from gradio_client import Client, handle_file

    doc = tmp_path / "avocado report.md"
    doc.write_text(
        "# Avocado tariffs\n\nThe Zorblatt Commission set a tariff of 17 percent on avocados "
        "from Michoacan in April 2025.\n",
        encoding="utf-8",
    )
    client = Client(served_app, verbose=False)
    message = client.predict([handle_file(str(doc))], api_name="/upload")
    assert "Added avocado report" in message and "added 1" in message
    assert (private_pipeline.config.index.corpus_dir / "avocado report.md").is_file()
    answer = client.predict(
        "What tariff did the Zorblatt Commission set on avocados?", None, api_name="/ask"
    )
    assert answer["citations"][0]["source"] == "avocado report.md"
    assert "17 percent" in answer["answer"]

    before = [c.id for c in private_pipeline.index.chunks_of()]
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ\x00\x00")
    with pytest.raises(ValueError, match="Invalid file type"):
        client.predict([handle_file(str(exe))], api_name="/upload")
    fake = tmp_path / "fake.pdf"
    fake.write_text("not really a pdf")
    message = client.predict([handle_file(str(fake))], api_name="/upload")
    assert "not a PDF" in message
    big = tmp_path / "big.txt"
    big.write_text("word " * 60_000)  # 300 kB, over the 200 kB limit of this app
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        client.predict([handle_file(str(big))], api_name="/upload")
    assert [c.id for c in private_pipeline.index.chunks_of()] == before  # nothing was indexed
    assert not (private_pipeline.config.index.corpus_dir / "big.txt").exists()

    result = client.predict("avocado report.md", api_name="/remove")
    assert "Removed avocado report.md" in result["message"]
    gone = client.predict(
        "What tariff did the Zorblatt Commission set on avocados?", None, api_name="/ask"
    )
    assert all(c["source"] != "avocado report.md" for c in gone["citations"])
    client.predict(result["trash_id"], api_name="/restore")  # leave the corpus as it was
    client.predict("avocado report.md", api_name="/remove")
    client.predict(True, api_name="/empty_trash")


def _corpus_files(pipeline) -> dict[str, bytes]:
    folder = pipeline.config.index.corpus_dir
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_served_remove_needs_a_name_and_goes_to_the_trash(served_app, private_pipeline):
    """Item 1: no endpoint removes anything it was not told; removal is undoable."""
    from gradio_client import Client

    client = Client(served_app, verbose=False)
    before = _corpus_files(private_pipeline)
    for missing in ("", None):
        with pytest.raises(Exception, match="name the document"):
            client.predict(missing, api_name="/remove")
    with pytest.raises(Exception, match="confirm=true"):
        client.predict(False, api_name="/empty_trash")
    assert _corpus_files(private_pipeline) == before

    target = "003_8bd5a12c37d93380.txt"
    result = client.predict(target, api_name="/remove")
    listing = client.predict(api_name="/documents")
    assert target not in [d["source"] for d in listing["documents"]]
    assert [(e["id"], e["source"]) for e in listing["trash"]] == [(result["trash_id"], target)]
    assert target not in _corpus_files(private_pipeline)
    restored = client.predict(result["trash_id"], api_name="/restore")
    assert restored["restored"] == target and _corpus_files(private_pipeline) == before
    assert client.predict(api_name="/documents")["trash"] == []


def test_served_sessions_and_processes_see_the_same_library(served_app, private_pipeline, embedder):
    """Item 2: a file another session uploaded can be removed; `rag index` is picked up."""
    from gradio_client import Client

    from index import update_index

    first, second = Client(served_app, verbose=False), Client(served_app, verbose=False)
    count = first.predict(api_name="/documents")["stats"]["documents"]
    corpus = private_pipeline.config.index.corpus_dir
    (corpus / "ferry.txt").write_text("The Quuxville ferry leaves the north pier at noon.\n")
    update_index(
        private_pipeline.config.index, progress=False, embedder=embedder
    )  # another process
    listing = second.predict(api_name="/documents")
    assert listing["stats"]["documents"] == count + 1
    assert "ferry.txt" in [d["source"] for d in listing["documents"]]
    assert second.predict("ferry.txt", api_name="/remove")["removed"] == "ferry.txt"
    with pytest.raises(Exception, match="ferry.txt is no longer in the corpus"):
        first.predict("ferry.txt", api_name="/remove")
    assert first.predict(api_name="/documents")["stats"]["documents"] == count
    first.predict(True, api_name="/empty_trash")


def test_served_uploads_never_replace_unless_asked(served_app, private_pipeline, tmp_path):
    """Item 3: a taken name gets a free one; replace is a choice, and restorable."""
    from gradio_client import Client, handle_file

    client = Client(served_app, verbose=False)
    corpus = private_pipeline.config.index.corpus_dir
    doc = tmp_path / "dup.txt"
    doc.write_text("The first dup file talks about harbors.\n")
    message = client.predict([handle_file(str(doc))], api_name="/upload")
    assert "Added dup.txt." in message.replace("\\", "")
    doc.write_text("The second dup file talks about lighthouses.\n")
    message = client.predict([handle_file(str(doc))], api_name="/upload").replace("\\", "")
    assert "Added dup.txt as dup (2).txt: dup.txt already exists" in message
    assert "harbors" in (corpus / "dup.txt").read_text()
    doc.write_text("The third dup file talks about piers.\n")
    message = client.predict([handle_file(str(doc))], True, api_name="/upload")
    assert "Replaced dup.txt" in message.replace("\\", "")
    assert "piers" in (corpus / "dup.txt").read_text()
    (entry,) = client.predict(api_name="/documents")["trash"]
    assert entry["source"] == "dup.txt" and entry["reason"] == "replaced"
    for name in ("dup.txt", "dup (2).txt"):
        client.predict(name, api_name="/remove")
    client.predict(True, api_name="/empty_trash")


def test_upload_on_a_full_disk_says_so_and_leaves_nothing(private_pipeline, tmp_path, monkeypatch):
    """Item 4: the staging file goes, the message is the reason, not a traceback."""
    import errno
    import os

    from ui.app import upload_files

    def no_space(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    doc = tmp_path / "full.txt"
    doc.write_text("A file for a full disk.\n")
    before = _corpus_files(private_pipeline)
    monkeypatch.setattr(os, "fsync", no_space)
    message = upload_files(private_pipeline, files=[str(doc)], replace=False, limit_bytes=10**6)
    monkeypatch.undo()
    assert message.replace("\\", "") == "⚠️ full.txt: not added (No space left on device)"
    assert _corpus_files(private_pipeline) == before


# --- the document view a source card opens ---------------------------------------------------


def test_a_card_click_opens_the_document_at_the_passage(pipeline):
    from ui.app import chat_steps, view_citation

    *_, last = chat_steps(pipeline, "Who commands NORTHCOM?", [], [])
    citations = last[4]
    assert citations and citations[0].source == "004_b24285a9b201835e.txt"
    box, view, download = view_citation(
        pipeline, citations=citations, index=0, source=citations[0].source
    )
    assert box["open"] is True and citations[0].source in box["label"]
    assert "<mark class='cqa-hit'>" in view and "cqa-passage" in view
    assert citations[0].locator in view
    copy = Path(download["value"])
    assert download["visible"] is True and copy.name == citations[0].source
    source = pipeline.config.index.corpus_dir / citations[0].source
    assert copy.read_bytes() == source.read_bytes() and copy.resolve() != source.resolve()


@pytest.mark.parametrize(("index", "source"), [(5, ""), ("x", ""), (None, ""), (0, "other.txt")])
def test_a_stale_or_bad_click_is_answered_with_a_message(pipeline, index, source):
    from ui.app import chat_steps, view_citation

    *_, last = chat_steps(pipeline, "Who commands NORTHCOM?", [], [])
    _box, view, download = view_citation(pipeline, citations=last[4], index=index, source=source)
    assert "not in the latest answer" in view and download["visible"] is False


def test_the_view_escapes_everything_from_the_document():
    from rag.viewer import DocumentView, TextPiece
    from ui.render import document_view_html

    view = DocumentView(
        source="a<b>.pdf", title="<img src=x onerror=alert(1)>", locator="§ <i>x</i>", page=2,
        page_png=b"\x89PNG fake", pieces=(TextPiece("<script>x</script>"),
        TextPiece("<b>cited</b>", "highlight")), window=(0, 30), cut_before=True,
        cut_after=False, download_path=None, note="<u>changed</u>", boxes=1,
    )  # fmt: skip
    html = document_view_html(view)
    for raw in ("<img src=x", "<script>", "<b>cited", "<u>", "<i>", "a<b>"):
        assert raw not in html, raw
    assert "<mark class='cqa-hit'>&lt;b&gt;cited&lt;/b&gt;</mark>" in html
    assert "data-page='2'" in html and "data-boxes='1'" in html
    assert "src='data:image/png;base64," in html and "a&lt;b&gt;.pdf · p. 2" in html


def test_the_status_line_names_pages_and_slides():
    from rag import Citation
    from ui.render import status_line

    def cite(n, locator, page):
        return Citation(n=n, source="a.pdf", title="t", start=0, end=1, text="x",
                        locator=locator, page=page)  # fmt: skip

    answer = Answer(
        answer="x [1] [2] [3]", abstained=False, mode="extractive",
        timings_ms={"retrieve": 1, "answer": 1},
        citations=[cite(1, "p. 4", 4), cite(2, "slide 3", 3), cite(3, "lines 4–6", None)],
    )  # fmt: skip
    assert status_line(answer, model_name=None).endswith(
        "3 passage(s) cited ([1] p. 4, [2] slide 3)"
    )


# --- background indexing in the status line ---------------------------------------------------


def test_the_ingest_line_says_what_is_going_on():
    import time

    from rag.library import IngestProgress
    from ui.render import ingest_line

    now = time.monotonic()
    assert ingest_line(None) == ""
    running = IngestProgress(1, "upload", "running", "reading", 12, 40)
    assert ingest_line(running, waiting=1) == "⏳ Upload: reading 12/40 files (+1 waiting)"
    embedding = IngestProgress(1, "refresh", "running", "embedding", 300, 900)
    assert ingest_line(embedding) == "⏳ Folder: embedding 300/900 chunks"
    assert "waiting" in ingest_line(IngestProgress(2, "upload", "waiting"))
    done = IngestProgress(1, "refresh", "done", message="added 1, changed 0", finished_at=now)
    assert ingest_line(done).startswith("✓ Folder indexed: added 1")
    cancelled = IngestProgress(1, "upload", "cancelled", finished_at=now)
    assert ingest_line(cancelled) == "Upload: cancelled; the index is unchanged."
    old = IngestProgress(1, "refresh", "done", message="x", finished_at=now - 10_000)
    assert ingest_line(old) == ""


def test_the_timer_sends_only_what_changed_and_rereads_the_panel_once(private_pipeline):
    import gradio as gr

    from rag.library import start_refresh
    from ui.app import ingest_tick

    skip = type(gr.skip())
    start_refresh(private_pipeline).wait(120)
    line, button, seen, stats, *_ = ingest_tick(private_pipeline, seen=None)
    assert line.startswith("✓ Folder indexed") and isinstance(button, skip)
    assert isinstance(stats, skip)  # the first tick of a page only takes note
    start_refresh(private_pipeline).wait(120)
    line, button, seen, stats, *_ = ingest_tick(private_pipeline, seen=seen)
    assert "documents" in stats  # a job finished since the page looked: re-read once
    again = ingest_tick(private_pipeline, seen=seen)
    assert all(isinstance(x, skip) for x in (again[0], again[1], again[3]))


# --- uploads of the new types ----------------------------------------------------------------


def tiny_docx(text: str) -> bytes:
    """A minimal Word document holding one paragraph."""
    import io
    import zipfile

    body = (
        '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats'
        f'.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p>'
        "</w:body></w:document>"
    )
    types = (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
        'package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.wordprocessingml.document.main+xml"/></Types>'
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats'
        '.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
        'openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
        'Target="word/document.xml"/></Relationships>'
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", types)
        archive.writestr("_rels/.rels", rels)
        archive.writestr("word/document.xml", body)
    return out.getvalue()


def test_upload_types_come_from_the_index_config():
    from index.config import SUPPORTED_EXTENSIONS
    from index.corpus_files import ALLOWED_SUFFIXES, check_content

    assert ALLOWED_SUFFIXES == SUPPORTED_EXTENSIONS
    assert {".docx", ".pptx", ".xlsx", ".csv", ".epub", ".eml", ".mbox", ".odt", ".rtf",
            ".png", ".jpg", ".jpeg", ".tif", ".tiff"} <= set(ALLOWED_SUFFIXES)  # fmt: skip
    check_content("report.docx", tiny_docx("Hello"))
    check_content("scan.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    for name, data, why in [
        ("report.docx", b"PK\x03\x04 not really a zip", None),
        ("report.docx", b"just text", None),
        ("scan.png", b"GIF89a....", "not a PNG"),
        ("scan.jpg", b"plain text", "not a PNG"),
        ("notes.rtf", b"no header", "not an RTF"),
    ]:
        with pytest.raises(ValueError, match=why):
            check_content(name, data)


def test_served_upload_of_a_word_document(served_app, private_pipeline, tmp_path):
    from gradio_client import Client, handle_file

    doc = tmp_path / "harbour memo.docx"
    doc.write_bytes(tiny_docx("The Quuxville harbour master ordered 12 new tugboats in May."))
    client = Client(served_app, verbose=False)
    message = client.predict([handle_file(str(doc))], api_name="/upload").replace("\\", "")
    assert "Added harbour memo.docx" in message and "added 1" in message
    answer = client.predict("How many tugboats did the harbour master order?", None,
                            api_name="/ask")  # fmt: skip
    assert answer["citations"][0]["source"] == "harbour memo.docx"
    assert client.predict(api_name="/ingest")["state"] == "done"
    fake = tmp_path / "fake.docx"
    fake.write_bytes(b"not a zip at all")
    assert "not added" in client.predict([handle_file(str(fake))], api_name="/upload")
    client.predict("harbour memo.docx", api_name="/remove")
    client.predict(True, api_name="/empty_trash")


def test_served_app_notices_a_file_written_into_its_corpus(served_app, private_pipeline):
    import time

    from gradio_client import Client

    from rag.library import stop_watching, watch_corpus

    client = Client(served_app, verbose=False)
    path = private_pipeline.config.index.corpus_dir / "watched.txt"
    question = "What colour is the Quuxville signal tower?"
    watch_corpus(private_pipeline, every=0.3)
    try:
        path.write_text("The Quuxville signal tower is painted green and white.\n")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            cited = client.predict(question, None, api_name="/ask")["citations"]
            if cited and cited[0]["source"] == "watched.txt":
                break
            time.sleep(0.3)
        else:
            pytest.fail("the new file was never indexed")
        path.unlink()
        deadline = time.monotonic() + 90
        while "watched.txt" in [d.source for d in private_pipeline.index.documents]:
            assert time.monotonic() < deadline, "the removed file stayed in the index"
            time.sleep(0.3)
    finally:
        stop_watching(private_pipeline)
        path.unlink(missing_ok=True)


def test_build_app_can_watch_the_corpus(private_pipeline):
    from rag.library import stop_watching, watch_corpus
    from ui.app import build_app

    build_app(private_pipeline, watch_seconds=30)
    try:
        assert watch_corpus(private_pipeline, every=99).every == 30.0  # the app's watcher
    finally:
        stop_watching(private_pipeline)
