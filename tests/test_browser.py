"""A real browser (Debian's chromium, driven by Playwright) asks a question and sees its source.

python -m pytest -q tests/test_browser.py     # screenshot in tests/artifacts/
"""

from __future__ import annotations

import json
import re
import shutil
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
    stats = page.locator("#cqa-stats")
    stats.get_by_text(re.compile(r"\d+ documents")).wait_for(timeout=30_000)
    return stats.inner_text()


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
    assert page.locator("#cqa-stats").inner_text() == stats

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
    assert stats.startswith(f"{count + 2} documents · {len(on_disk.chunks)} passages")
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
