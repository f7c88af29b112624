"""A real browser (Debian's chromium, driven by Playwright) asks a question and sees its source.

It also reopens a saved conversation from the list and sees its source cards again.

python -m pytest -q tests/test_browser.py     # screenshot in tests/artifacts/
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "chromium is missing: `make test` installs it with apt-get (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield chromium
        chromium.close()


def test_question_streams_answer_with_source_card(browser, served_app):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(served_app)
    box = page.locator("#cqa-question textarea")
    box.fill("<i>markup</i> How many National Guard troops did Sheinbaum send to the border?")
    box.press("Enter")
    card = page.locator(".cqa-card").first
    card.wait_for(timeout=60_000)
    sources = page.locator(".cqa-card").evaluate_all("cards => cards.map(c => c.dataset.source)")
    assert set(sources) & {
        "001_8519b1fb3011066c.txt",
        "002_113a1a336eb66b34.txt",
        "003_8bd5a12c37d93380.txt",
    }
    bot = page.locator("#cqa-chat [data-testid='bot']").first
    assert "10,000" in bot.inner_text()
    assert "[1]" in bot.inner_text()
    user = page.locator("#cqa-chat [data-testid='user']").first
    assert "<i>markup</i>" in user.inner_text()  # shown as text, not rendered
    assert page.locator("#cqa-chat [data-testid='user'] i").count() == 0
    assert "extractive" in page.locator("#cqa-status").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)
    page.close()


# --- the Documents panel ---------------------------------------------------------------------


def corpus_files(pipeline) -> dict[str, bytes]:
    """Every file of the served corpus with its bytes."""
    folder = pipeline.config.index.corpus_dir
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def open_documents(page, url: str) -> str:
    """Load the page, open the Documents panel, wait for the counts; returns the stats line."""
    page.goto(url)
    page.get_by_text("Documents", exact=True).click()
    page.locator("#cqa-stats").get_by_text(re.compile(r"\d+ documents")).wait_for(timeout=30_000)
    return stats_line(page)


def stats_line(page, *, timeout_s: float = 30.0) -> str:
    """The Documents panel's stats line once no update is pending.

    While an update of it is pending Gradio overlays a timer ("0.1s") whose text comes first.
    """
    stats = page.locator("#cqa-stats")
    deadline = time.monotonic() + timeout_s
    while True:
        text = stats.inner_text().strip()
        if re.match(r"\d+ documents", text) or time.monotonic() > deadline:
            return text
        page.wait_for_timeout(100)


def choose(page, dropdown: str, text: str) -> None:
    """Pick the option of a Gradio dropdown whose label starts with text."""
    page.locator(f"{dropdown} input").click()
    page.locator(f"{dropdown} [role=option][aria-label^={json.dumps(text)}]").first.click()


def library_message(page, text: str) -> str:
    """Wait until the panel's message contains text; returns the message."""
    message = page.locator("#cqa-library-msg")
    message.get_by_text(text).wait_for(timeout=60_000)
    return message.inner_text()


def test_remove_on_a_fresh_page_deletes_nothing(browser, served_app, private_pipeline):
    """Item 1: nothing is preselected; removal names the file, asks, and goes to the trash."""
    before = corpus_files(private_pipeline)
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    stats = open_documents(page, served_app)
    assert page.locator("#cqa-remove-choice input").input_value() == ""
    page.locator("#cqa-remove").click()
    library_message(page, "Choose a document to remove.")
    assert corpus_files(private_pipeline) == before
    assert stats_line(page) == stats

    target = "003_8bd5a12c37d93380.txt"
    choose(page, "#cqa-remove-choice", target)
    page.locator("#cqa-remove").click()
    question = page.locator("#cqa-confirm-text")
    question.get_by_text("to the trash?").wait_for(timeout=30_000)
    assert target in question.inner_text()
    page.locator("#cqa-confirm-no").click()
    library_message(page, "Nothing was changed.")
    assert corpus_files(private_pipeline) == before

    page.locator("#cqa-remove").click()  # the choice is still made: ask again, and confirm
    question.get_by_text("to the trash?").wait_for(timeout=30_000)
    page.locator("#cqa-confirm-yes").click()
    library_message(page, "to the trash")
    assert target not in corpus_files(private_pipeline)
    page.locator("#cqa-trash").get_by_text(target).wait_for(timeout=30_000)
    choose(page, "#cqa-trash-choice", target)
    page.locator("#cqa-restore").click()
    library_message(page, "Restored")
    assert corpus_files(private_pipeline) == before
    page.locator("#cqa-trash").get_by_text("The trash is empty.").wait_for(timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "documents.png"), full_page=True)
    page.close()


def remove_in_page(page, name: str) -> None:
    """Choose name, press Remove, confirm, and wait for the panel to say it is in the trash."""
    choose(page, "#cqa-remove-choice", name)
    page.locator("#cqa-remove").click()
    page.locator("#cqa-confirm-text").get_by_text(name).wait_for(timeout=30_000)
    page.locator("#cqa-confirm-yes").click()
    library_message(page, f"Moved {name} to the trash")


def test_a_reloaded_page_shows_what_others_changed(
    browser, served_app, private_pipeline, embedder, tmp_path
):
    """Item 2: counts and choices come from the index on disk at every page load."""
    from gradio_client import Client, handle_file

    from index import CorpusIndex, update_index

    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    count = int(open_documents(page, served_app).split()[0])
    doc = tmp_path / "dup.txt"
    doc.write_text("The dup file says the Quuxville lighthouse was painted red in 2024.\n")
    Client(served_app, verbose=False).predict([handle_file(str(doc))], api_name="/upload")
    corpus = private_pipeline.config.index.corpus_dir
    (corpus / "ferry.txt").write_text("The Quuxville ferry leaves the north pier at noon.\n")
    update_index(private_pipeline.config.index, progress=False, embedder=embedder)  # `rag index`
    on_disk = CorpusIndex.load(private_pipeline.config.index)

    stats = open_documents(page, served_app)  # the same page, reloaded
    assert stats.startswith(f"{count + 2} documents · {on_disk.size} passages")
    stale = browser.new_page(viewport={"width": 1400, "height": 1200})
    open_documents(stale, served_app)  # a second tab, loaded while dup.txt is there
    remove_in_page(page, "dup.txt")
    remove_in_page(page, "ferry.txt")
    page.locator("#cqa-stats").get_by_text(f"{count} documents").wait_for(timeout=30_000)

    choose(stale, "#cqa-remove-choice", "dup.txt")  # still offered there: told, not an error
    stale.locator("#cqa-remove").click()
    assert "dup.txt is no longer in the corpus" in library_message(stale, "no longer")
    stale.close()

    page.locator("#cqa-empty-trash").click()
    page.locator("#cqa-confirm-text").get_by_text("for good").wait_for(timeout=30_000)
    page.locator("#cqa-confirm-yes").click()
    library_message(page, "Deleted 2 file(s) from the trash")
    assert not {"dup.txt", "ferry.txt"} & set(corpus_files(private_pipeline))
    page.close()


# --- the document view a citation opens ------------------------------------------------------

MARKER_BOX_JS = """() => {
  const bot = document.querySelector('#cqa-chat [data-testid="bot"]');
  const walker = document.createTreeWalker(bot, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, at = node.textContent.indexOf('[1]');
    if (at >= 0) {
      const range = document.createRange();
      range.setStart(node, at + 1);
      range.setEnd(node, at + 2);
      const box = range.getBoundingClientRect();
      return {x: box.x + box.width / 2, y: box.y + box.height / 2};
    }
  }
  return null;
}"""


def ask(page, url: str, question: str):
    """Load the chat, ask question, wait for the first source card; returns the card locator."""
    page.goto(url)
    box = page.locator("#cqa-question textarea")
    box.fill(question)
    box.press("Enter")
    card = page.locator(".cqa-card").first
    card.wait_for(timeout=60_000)
    return card


def card_sources(page) -> list[str]:
    """The data-source of every source card shown, in order."""
    return page.locator(".cqa-card").evaluate_all("cards => cards.map(c => c.dataset.source)")


def test_a_saved_conversation_reopens_with_its_source_cards(browser, served_app):
    question = "How many cartel bosses did Mexico hand over to the United States?"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    ask(page, served_app, question)
    sources = card_sources(page)
    answer = page.locator("#cqa-chat [data-testid='bot']").first.inner_text()
    saved = page.locator("#cqa-conv-list label").filter(has_text=question)
    saved.first.wait_for(timeout=30_000)  # listed once the answer is final
    assert page.locator("#cqa-conv-title input").input_value() == question

    page.locator("#cqa-new").click()  # a new conversation: the chat and the cards are cleared
    page.locator("#cqa-sources .cqa-empty").wait_for(timeout=30_000)
    assert page.locator("#cqa-chat [data-testid='user']").count() == 0

    page.goto(served_app)  # and after a reload, from the list
    assert page.locator(".cqa-card").count() == 0
    saved.first.wait_for(timeout=30_000)
    assert page.locator("#cqa-conv-list label").first.inner_text().startswith(question)
    saved.first.click()
    page.locator(".cqa-card").first.wait_for(timeout=30_000)
    assert card_sources(page) == sources and page.locator(".cqa-card mark").count() > 0
    assert question in page.locator("#cqa-chat [data-testid='user']").first.inner_text()
    assert page.locator("#cqa-chat [data-testid='bot']").first.inner_text() == answer
    assert "Reopened" in page.locator("#cqa-status").inner_text()
    assert page.locator("#cqa-conv-title input").input_value() == question
    page.locator(".cqa-card").first.click()  # the reopened cards open the document as before
    page.locator(f"#cqa-view-body .cqa-view[data-source='{sources[0]}']").wait_for(timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "conversations.png"), full_page=True)
    page.close()


@pytest.fixture(scope="module")
def served_with_logins(private_pipeline, tmp_path_factory):
    """The chat with two accounts (alice, bob) on a free port, its own conversations file."""
    import socket

    from ui.app import build_app, launch_kwargs

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    saved = tmp_path_factory.mktemp("logins") / "conversations.sqlite3"
    app = build_app(private_pipeline, upload_limit_bytes=200_000, conversations_file=saved)
    app.queue(default_concurrency_limit=8)
    app.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
        auth=[("alice", "alice-pw"), ("bob", "bob-pw")], **launch_kwargs(upload_limit_bytes=200_000),
    )  # fmt: skip
    yield f"http://127.0.0.1:{port}/"
    app.close()


def log_in(browser, url: str, user: str):
    """A fresh browser context signed in as user; returns its page at the chat."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(url)
    page.locator("input[type='text']").first.fill(user)
    page.locator("input[type='password']").fill(f"{user}-pw")
    page.locator("button[type='submit'], button:has-text('Login')").first.click()
    page.locator("#cqa-question textarea").wait_for(timeout=30_000)
    return page


def test_with_logins_each_user_sees_only_their_conversations(browser, served_with_logins):
    question = "Who commands NORTHCOM?"
    alice = log_in(browser, served_with_logins, "alice")
    ask(alice, served_with_logins, question)
    alice.locator("#cqa-conv-list label").filter(has_text=question).first.wait_for(timeout=30_000)
    bob = log_in(browser, served_with_logins, "bob")
    bob.locator("#cqa-conv-info").get_by_text("No saved conversations yet").wait_for(timeout=30_000)
    assert bob.locator("#cqa-conv-list label").count() == 0
    alice.goto(served_with_logins)  # alice's list, after a reload, still has it
    alice.locator("#cqa-conv-list label").filter(has_text=question).first.wait_for(timeout=30_000)
    alice.context.close()
    bob.context.close()


def test_a_citation_marker_opens_the_text_at_the_cited_sentence(browser, served_app):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    card = ask(page, served_app, "Who commands NORTHCOM?")
    source = card.get_attribute("data-source")
    marker = page.evaluate(MARKER_BOX_JS)
    assert marker is not None, "no [1] marker in the answer"
    page.mouse.click(marker["x"], marker["y"])  # the [1] in the chat, not the card
    view = page.locator(f"#cqa-view-body .cqa-view[data-source='{source}']")
    view.wait_for(timeout=30_000)
    hit = view.locator("mark.cqa-hit").first
    assert hit.is_visible() and hit.inner_text().strip() in card.inner_text()
    text_box = view.locator(".cqa-view-text")
    page.wait_for_function(
        "box => box.scrollTop > 0", arg=text_box.element_handle(), timeout=10_000
    )  # scrolled to the sentence: it lies below the first screen of the text
    outer, inner = text_box.bounding_box(), hit.bounding_box()
    assert outer["y"] <= inner["y"] and inner["y"] + inner["height"] <= outer["y"] + outer["height"]
    assert "line" in view.locator(".cqa-view-label").inner_text()
    download = page.locator("#cqa-view-download")
    assert download.is_visible() and source in download.inner_text()
    page.close()


def test_a_pdf_card_opens_its_page_with_the_sentence_highlighted(
    browser, served_app, served_pdf, private_pipeline
):
    import base64
    import io

    from PIL import Image

    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    ask(page, served_app, "How much did the Quuxville harbour fund lose?")
    card = page.locator(".cqa-card[data-source='audit.pdf']").first
    card.wait_for(timeout=30_000)
    card.click()
    image = page.locator("#cqa-view-body img.cqa-page")
    image.wait_for(timeout=30_000)
    view = page.locator("#cqa-view-body .cqa-view")
    assert view.get_attribute("data-page") == "2" and int(view.get_attribute("data-boxes")) >= 1
    assert "audit.pdf · p. 2" in view.locator(".cqa-view-label").inner_text()
    assert "harbour fund lost 4 million" in view.locator("mark.cqa-hit").first.inner_text()
    src = image.get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
    # A page of black text on white is grey everywhere; the highlight is the only colour.
    coloured = sum(1 for r, g, b in picture.getdata() if max(r, g, b) - min(r, g, b) > 40)
    assert coloured > 200, coloured
    assert "Document · audit.pdf" in page.locator("#cqa-view").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "document-view.png"), full_page=True)
    page.close()


def test_background_indexing_shows_progress_and_can_be_cancelled(
    browser, served_app, private_pipeline, embedder, monkeypatch
):
    import threading

    from rag.library import start_refresh

    entered, release = threading.Event(), threading.Event()
    real = embedder.encode

    def held(*args, **kwargs):
        entered.set()
        release.wait(60)
        return real(*args, **kwargs)

    corpus = private_pipeline.config.index.corpus_dir
    generation = private_pipeline.index.folder
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_documents(page, served_app)
    status = page.locator("#cqa-ingest")
    monkeypatch.setattr(embedder, "encode", held)
    (corpus / "beacon.txt").write_text("The Quuxville beacon flashes every nine seconds.\n")
    try:
        job = start_refresh(private_pipeline)
        assert entered.wait(60)
        status.get_by_text(re.compile(r"Folder: reading \d+/\d+ files")).wait_for(timeout=30_000)
        page.locator("#cqa-ingest-cancel").click()
        release.set()
        status.get_by_text("cancelled; the index is unchanged").wait_for(timeout=30_000)
        assert job.wait(60).state == "cancelled" and private_pipeline.index.folder == generation
        assert not page.locator("#cqa-ingest-cancel").is_visible()
        monkeypatch.undo()
        count = int(stats_line(page).split()[0])
        start_refresh(private_pipeline).wait(120)  # uncancelled: the panel follows by itself
        status.get_by_text("Folder indexed").wait_for(timeout=30_000)
        page.locator("#cqa-stats").get_by_text(f"{count + 1} documents").wait_for(timeout=30_000)
    finally:
        release.set()
        (corpus / "beacon.txt").unlink(missing_ok=True)
        start_refresh(private_pipeline).wait(120)
    page.close()
