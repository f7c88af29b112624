"""The chat without a server, then a launched app driven with gradio_client."""

from __future__ import annotations

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

    before = len(private_pipeline.index.chunks)
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
    assert len(private_pipeline.index.chunks) == before
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
