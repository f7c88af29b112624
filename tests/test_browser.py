"""A real browser (Debian's chromium, driven by Playwright) asks a question and sees its source.

python -m pytest -q tests/test_browser.py     # screenshot in tests/artifacts/
"""

from __future__ import annotations

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
