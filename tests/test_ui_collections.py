"""Collections, the filter and forgetting in the chat: each collection answers from its own
documents, lists its own conversations, and a removed document is marked in saved ones.

python -m pytest -q tests/test_ui_collections.py
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest

from rag.collections import CollectionPipelines, config_for, create_or_update
from rag.conversations import REMOVED_KEY, REMOVED_NOTE, ConversationStore
from rag.library import library_view
from ui.app import (
    api_answer,
    ask_empty,
    ask_remove,
    build_app,
    chat_filter,
    collection_names,
    collection_panel,
    collection_steps,
    confirm_action,
    conversation_list,
    pick_pipeline,
    reopen_conversation,
    switch_collection,
)
from ui.render import escape_markdown

LIGHTHOUSE = (
    "The Zorblatt lighthouse on Kestrel Island was painted teal in 1987 by the harbor guild. "
    "Its keeper, Marta Quillon, logged every passing ship in a green ledger. "
    "The lamp was replaced with an electric beacon in 1994."
)
FERRY = (
    "The Kestrel Island ferry leaves the mainland pier at seven every morning. "
    "It carries forty passengers and two delivery vans across the strait. "
    "In winter storms the ferry waits in the harbor until the wind drops."
)
ASK_B = "What color was the Zorblatt lighthouse painted?"
ASK_DEFAULT = "How many cartel bosses did Mexico hand over to the United States?"
PASSAGE = "004_b24285a9b201835e.txt"  # the NORTHCOM article of the default corpus


@pytest.fixture(scope="module")
def collections(tmp_path_factory, pipeline, embedder):
    """The default pipeline plus collection "island" (two files of its own), indexed once."""
    from index import update_index

    base = tmp_path_factory.mktemp("collections")
    corpus = base / "island"
    corpus.mkdir()
    (corpus / "lighthouse.txt").write_text(LIGHTHOUSE, encoding="utf-8")
    (corpus / "ferry.txt").write_text(FERRY, encoding="utf-8")
    data = base / "data"
    island = create_or_update(data, "island", corpus_dir=corpus)
    update_index(config_for(island, pipeline.config).index, progress=False, embedder=embedder)
    return CollectionPipelines(data, pipeline)


@pytest.fixture
def store(tmp_path):
    """A fresh conversations file for one test."""
    with ConversationStore(tmp_path / "conversations.sqlite3") as s:
        yield s


def ask(pipeline, collections, store, message, *, collection, files=None, folders=""):
    """One saved chat turn through the selector's path; returns its last update."""
    *_, last = collection_steps(
        pipeline, collections, store, owner="", collection=collection, conversation_id=None,
        message=message, chat=[], questions=[], files=files, folders=folders,
    )  # fmt: skip
    return last


def test_the_selector_switches_pipelines_and_conversation_lists(pipeline, collections, store):
    assert collection_names(collections) == ["default", "island"]
    assert collection_names(None) == ["default"]
    assert pick_pipeline(pipeline, collections, "default") is pipeline
    island = pick_pipeline(pipeline, collections, "island")
    assert island is not pipeline and island is pick_pipeline(pipeline, collections, "island")
    with pytest.raises(ValueError, match="unknown collection"):
        pick_pipeline(pipeline, collections, "nowhere")
    *_, cid_b, _, _, _ = ask(pipeline, collections, store, ASK_B, collection="island")
    *_, cid_a, _, _, _ = ask(pipeline, collections, store, ASK_DEFAULT, collection="default")
    assert store.get(cid_b, "").conversation.collection == "island"
    assert store.get(cid_a, "").conversation.collection == "default"
    chat, cards, status, questions, cited, cid, listing, title, info = switch_collection(
        store, owner="", name="island"
    )
    assert (chat, questions, cited, cid, title) == ([], [], [], None, "")
    assert [c[1] for c in listing["choices"]] == [cid_b] and "island" in status
    assert [c[1] for c in conversation_list(store, "")[0]["choices"]] == [cid_a]
    # The Documents panel follows the selector.
    stats, table, *_, files, folders, box, pending = collection_panel(
        pipeline, collections, "island"
    )
    assert stats.startswith("2 documents") and {row[3] for row in table} == {
        "lighthouse.txt",
        "ferry.txt",
    }
    assert files["choices"] == ["ferry.txt", "lighthouse.txt"] and files["value"] == []
    assert (folders, pending) == ("", None)
    failed = collection_panel(pipeline, collections, "nowhere")[0]
    assert failed.startswith("⚠️") and "unknown collection" in failed


def test_a_question_in_one_collection_never_cites_another(pipeline, collections, store):
    island = {"lighthouse.txt", "ferry.txt"}
    chat, cards, status, *_ = ask(pipeline, collections, store, ASK_B, collection="island")
    cited = ask(pipeline, collections, store, ASK_B, collection="island")[4]
    assert cited and {c.source for c in cited} <= island and "teal" in chat[1]["content"]
    # A question about the default corpus, asked in the island collection: never its files.
    cited = ask(pipeline, collections, store, ASK_DEFAULT, collection="island")[4]
    assert {c.source for c in cited} <= island
    cited = ask(pipeline, collections, store, ASK_DEFAULT, collection="default")[4]
    assert cited and not {c.source for c in cited} & island
    chat, _, status, _, _, cid, *_ = ask(pipeline, collections, store, ASK_B, collection="gone")
    assert "unknown collection" in chat[-1]["content"] and status == "not answered"
    assert not isinstance(cid, str)  # nothing was saved


def test_the_file_filter_restricts_citations(pipeline, collections, store):
    question = "Who commands NORTHCOM?"
    cited = ask(pipeline, collections, store, question, collection="default", files=[PASSAGE])[4]
    assert cited and {c.source for c in cited} == {PASSAGE}
    status = ask(pipeline, collections, store, question, collection="default", files=[PASSAGE])[2]
    assert "only " + escape_markdown("files " + PASSAGE) in status
    island = ask(pipeline, collections, store, ASK_B, collection="island", files=["ferry.txt"])
    assert {c.source for c in island[4]} <= {"ferry.txt"}
    before = len(store.list(""))
    chat, cards, status, *_ = ask(
        pipeline, collections, store, question, collection="default", folders="../outside"
    )
    assert chat[-1]["content"].startswith("⚠️") and "not a path inside" in chat[-1]["content"]
    assert status == "not answered" and "cqa-card" not in cards
    assert len(store.list("")) == before  # a refused question is not saved
    assert chat_filter(None, "") is None and chat_filter([], " , ") is None
    assert chat_filter(["a.txt"], "notes/, mail").to_dict() == {
        "files": ["a.txt"],
        "folders": ["notes", "mail"],
    }


def test_the_ask_endpoint_takes_a_collection(pipeline, collections):
    island = {"lighthouse.txt", "ferry.txt"}
    data = api_answer(pipeline, ASK_B, None, collections=collections, name="island")
    assert data["citations"] and {c["source"] for c in data["citations"]} <= island
    default = api_answer(pipeline, ASK_DEFAULT, None, collections=collections, name=None)
    assert not {c["source"] for c in default["citations"]} & island
    with pytest.raises(gr.Error, match="unknown collection"):
        api_answer(pipeline, ASK_B, None, collections=collections, name="gone")


def test_reopening_a_conversation_of_another_collection_switches_the_selector(
    pipeline, collections, store
):
    *_, cid_b, _, _, _ = ask(pipeline, collections, store, ASK_B, collection="island")
    shown = reopen_conversation(
        pipeline, store, owner="", conversation_id=cid_b, collections=collections,
        current="default",
    )  # fmt: skip
    chat, cards, status, questions, cited, opened, title, message, listing, info, selector = shown
    assert (opened, message, questions) == (cid_b, "", [ASK_B])
    assert selector["value"] == "island" and [c[1] for c in listing["choices"]] == [cid_b]
    assert "cqa-stale" not in cards  # checked against the island index, where it still is
    same = reopen_conversation(
        pipeline, store, owner="", conversation_id=cid_b, collections=collections,
        current="island",
    )  # fmt: skip
    assert same[5] == cid_b and "value" not in same[10]  # already there: left as it is


def test_forgetting_a_removed_document_marks_saved_citations(private_pipeline, store):
    *_, cited, cid, _, _, _ = ask(
        private_pipeline, None, store, "Who commands NORTHCOM?", collection="default"
    )
    source = cited[0].source
    box, text, _, pending, _, *_ = ask_remove(private_pipeline, source=source, forget=True)
    assert box["visible"] and "document removed" in text and pending["forget"] is True
    _, _, message, *_ = confirm_action(private_pipeline, pending=pending, store=store)
    assert "Moved" in message and "now show “document removed”" in message
    assert "Deleted from the trash too" in message
    assert source not in {e.source for e in library_view(private_pipeline).trash}
    stored = store.get(cid, "").turns[0].answer["citations"]
    assert all(REMOVED_KEY in c for c in stored if c["source"] == source)
    shown = reopen_conversation(private_pipeline, store, owner="", conversation_id=cid)
    assert REMOVED_NOTE in shown[1]
    # Removed without forget, then the trash is emptied: forgotten then.
    *_, cited, cid2, _, _, _ = ask(private_pipeline, None, store, ASK_DEFAULT, collection="default")
    other = cited[0].source
    _, _, _, pending, _, *_ = ask_remove(private_pipeline, source=other)
    confirm_action(private_pipeline, pending=pending, store=store)
    assert not any(REMOVED_KEY in c for c in store.get(cid2, "").turns[0].answer["citations"])
    _, _, _, pending, _ = ask_empty(private_pipeline)
    _, _, message, *_ = confirm_action(private_pipeline, pending=pending, store=store)
    assert "for good" in message
    stored = store.get(cid2, "").turns[0].answer["citations"]
    assert all(REMOVED_KEY in c for c in stored if c["source"] == other)


def test_the_app_builds_with_collections(pipeline, collections, tmp_path):
    assert build_app(pipeline, collections=collections, conversations_file=tmp_path / "c.sqlite3")


@pytest.mark.browser
def test_the_selector_in_a_browser(collections, pipeline, tmp_path_factory):
    """Switching the selector asks the other collection, lists its conversations, and the
    file filter limits the cards; a bad folder is a message in the chat."""
    import shutil
    import socket
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    from ui.app import launch_kwargs

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("chromium is missing: `make test` installs it with apt-get")
    saved = tmp_path_factory.mktemp("served") / "conversations.sqlite3"
    app = build_app(pipeline, collections=collections, conversations_file=saved)
    app.queue(default_concurrency_limit=8)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
        **launch_kwargs(upload_limit_bytes=200_000),
    )  # fmt: skip
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/")

            def ask_page(question: str, *, status: str = "cited") -> list[str]:
                page.locator("#cqa-question textarea").fill(question)
                page.locator("#cqa-send").click()
                page.locator("#cqa-status").get_by_text(status).wait_for(timeout=60_000)
                return page.locator(".cqa-card").evaluate_all(
                    "cards => cards.map(c => c.dataset.source)"
                )

            page.locator("#cqa-collection input").click()
            page.get_by_role("option", name="island").click()
            page.locator("#cqa-status").get_by_text("island").wait_for(timeout=30_000)
            assert set(ask_page(ASK_B)) <= {"lighthouse.txt", "ferry.txt"}
            listed = page.locator("#cqa-conv-list label")
            listed.filter(has_text=ASK_B).wait_for(timeout=30_000)
            assert listed.count() == 1
            page.locator("#cqa-filter").get_by_text("Filter").click()
            page.locator("#cqa-filter-files input").click()
            page.get_by_role("option", name="ferry.txt").click()
            page.keyboard.press("Escape")
            filtered = ask_page("When does the ferry leave?", status="only files ferry")
            assert set(filtered) == {"ferry.txt"}
            page.locator("#cqa-filter-folders input").fill("../outside")
            page.locator("#cqa-question textarea").fill("When does the ferry leave?")
            page.locator("#cqa-send").click()
            page.locator("#cqa-chat").get_by_text("not a path inside").wait_for(timeout=30_000)
            assert errors == []
            browser.close()
    finally:
        app.close()


def test_the_served_json_endpoints_take_a_collection(pipeline, collections, tmp_path):
    import socket

    from gradio_client import Client

    from ui.app import launch_kwargs

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = build_app(pipeline, collections=collections, conversations_file=tmp_path / "c.sqlite3")
    app.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
        **launch_kwargs(upload_limit_bytes=200_000),
    )  # fmt: skip
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        island = client.predict("island", api_name="/documents")
        assert {d["source"] for d in island["documents"]} == {"lighthouse.txt", "ferry.txt"}
        default = client.predict(api_name="/documents")
        assert "lighthouse.txt" not in {d["source"] for d in default["documents"]}
        answer = client.predict(ASK_B, None, "island", api_name="/ask")
        assert {c["source"] for c in answer["citations"]} <= {"lighthouse.txt", "ferry.txt"}
        with pytest.raises(Exception, match="unknown collection"):
            client.predict("gone", api_name="/documents")
    finally:
        app.close()


def test_forgetting_a_scan_clears_the_ocr_cache_and_the_trash(tmp_path, embedder):
    import io
    import shutil

    from index import IndexConfig, update_index
    from index.ocr import find_ocr
    from rag import Config, Pipeline
    from rag.library import ocr_pages
    from tests.scan_fixture import text_image

    if find_ocr(language="eng") is None:
        pytest.skip("tesseract-ocr / tesseract-ocr-eng missing")
    corpus = tmp_path / "corpus"
    shutil.copytree(Path(__file__).resolve().parent.parent / "corpus", corpus)
    picture = io.BytesIO()
    text_image(["The lighthouse keeper logged", "nineteen storms in March."]).save(picture, "PNG")
    (corpus / "log.png").write_bytes(picture.getvalue())
    cache = tmp_path / "ocr-cache"
    config = Config(
        index=IndexConfig(
            corpus_dir=corpus, index_dir=tmp_path / "index", trash_dir=tmp_path / "trash",
            ocr_cache_dir=cache,
        )
    )  # fmt: skip
    update_index(config.index, progress=False, embedder=embedder)
    pipeline = Pipeline(config, embedder=embedder)
    assert ocr_pages(pipeline, "log.png") == [1] and list(cache.rglob("*.json"))
    _, _, _, pending, _, *_ = ask_remove(pipeline, source="log.png", forget=True)
    _, _, message, *_ = confirm_action(pipeline, pending=pending, store=None)
    assert "1 page(s) from the OCR cache" in message, message
    assert not list(cache.rglob("*.json"))
    assert "log.png" not in {e.source for e in library_view(pipeline).trash}
