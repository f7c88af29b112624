"""The chat's answer text and source cards, from hand-built answers (no model, no index).

python -m pytest -q tests/test_render.py
"""

from __future__ import annotations

import re

import pytest

from rag import Answer, Citation
from rag.reading import ShortAnswer
from rag.verify import CheckedSentence
from ui.render import answer_markdown, short_answer_markdown, source_cards

START = 500
PASSAGE = "Intro. Trucks <b>waited</b> at Eagle Pass & Co. Later text."
SENTENCE = (START + PASSAGE.index("Trucks"), START + PASSAGE.index(" Later"))


def at(word: str, length: int | None = None) -> tuple[int, int]:
    """Document span of word (or of `length` characters from it) in PASSAGE."""
    s = START + PASSAGE.index(word)
    return s, s + (length if length is not None else len(word))


def short(span: tuple[int, int], *, n: int = 1, source: str = "a.txt") -> ShortAnswer:
    """A short answer over span of PASSAGE, in citation n."""
    s, e = span
    return ShortAnswer(PASSAGE[s - START : e - START], source, s, e, n)


def answer(sa: ShortAnswer | None, *, highlights=(SENTENCE,), mode="extractive", sentences=()):
    """An answer with one citation of PASSAGE (and a second, plain one)."""
    cited = Citation(
        n=1, source="a.txt", title="t", start=START, end=START + len(PASSAGE), text=PASSAGE,
        highlights=highlights,
    )  # fmt: skip
    other = Citation(n=2, source="b.txt", title="u", start=0, end=5, text="Other", highlights=())
    return Answer(
        answer="Trucks waited at Eagle Pass [1].", abstained=False, mode=mode,
        citations=[cited, other], timings_ms={"retrieve": 1, "answer": 1}, short_answer=sa,
        sentences=list(sentences),
    )  # fmt: skip


def card_text(html: str, n: int = 0) -> str:
    """The inner HTML of the n-th card's passage."""
    return re.findall(r"<div class='cqa-text'>(.*?)</div></div>", html)[n]


SA = "<mark class='short-answer'>"


@pytest.mark.parametrize(
    ("sa", "expected"),
    [
        # Inside the cited sentence: nested in its <mark>.
        (short(at("Eagle Pass & Co", 15)),
         f"Intro. <mark>Trucks &lt;b&gt;waited&lt;/b&gt; at {SA}Eagle Pass &amp; Co</mark>."
         "</mark> Later text."),
        # Crossing the sentence's end (an LLM's span need not lie in a highlight).
        (short(at("Co. Later")),
         f"Intro. <mark>Trucks &lt;b&gt;waited&lt;/b&gt; at Eagle Pass &amp; {SA}Co.</mark>"
         f"</mark>{SA} Later</mark> text."),
        # Outside every highlight: marked alone.
        (short(at("Intro")),
         f"{SA}Intro</mark>. <mark>Trucks &lt;b&gt;waited&lt;/b&gt; at Eagle Pass &amp; Co."
         "</mark> Later text."),
        # The whole sentence.
        (short(SENTENCE),
         f"Intro. <mark>{SA}Trucks &lt;b&gt;waited&lt;/b&gt; at Eagle Pass &amp; Co.</mark>"
         "</mark> Later text."),
        # Another citation's, or another file's, short answer is not marked on this card.
        (short(at("Eagle"), n=2),
         "Intro. <mark>Trucks &lt;b&gt;waited&lt;/b&gt; at Eagle Pass &amp; Co.</mark> Later text."),
        (short(at("Eagle"), source="b.txt"),
         "Intro. <mark>Trucks &lt;b&gt;waited&lt;/b&gt; at Eagle Pass &amp; Co.</mark> Later text."),
        (None,
         "Intro. <mark>Trucks &lt;b&gt;waited&lt;/b&gt; at Eagle Pass &amp; Co.</mark> Later text."),
    ],
)  # fmt: skip
def test_short_answer_is_marked_inside_the_card(sa, expected):
    html = source_cards(answer(sa))
    assert card_text(html) == expected
    assert card_text(html, 1) == "Other" and "<b>" not in card_text(html)


def test_overlapping_highlights_and_newlines_stay_well_formed():
    sa = short(at("waited"))
    html = card_text(source_cards(answer(sa, highlights=(SENTENCE, at("Trucks"), at("Later")))))
    assert html.count("<mark") == html.count("</mark>") == 3
    assert f"&lt;b&gt;{SA}waited</mark>&lt;/b&gt;" in html
    passage = Citation(n=1, source="a.txt", title="t", start=0, end=7, text="a\nb <i>",
                       highlights=((0, 3),))  # fmt: skip
    timings = {"retrieve": 1, "answer": 1}
    sa = ShortAnswer("b", "a.txt", 2, 3, 1)
    shown = source_cards(Answer("a", False, "extractive", [passage], timings, short_answer=sa))
    assert card_text(shown) == f"<mark>a<br>{SA}b</mark></mark> &lt;i&gt;"


@pytest.mark.parametrize(
    ("sa", "mode", "sentences", "expected"),
    [
        (short(at("Eagle Pass & Co", 15)), "extractive", (),
         "**Eagle Pass \\& Co** \\[1\\]\n\nTrucks waited at Eagle Pass \\[1\\]\\."),
        (None, "extractive", (), "Trucks waited at Eagle Pass \\[1\\]\\."),
        (short(at("<b>waited</b>")), "llm", (CheckedSentence("They *waited*.", (1,), False),),
         "**\\<b\\>waited\\</b\\>** \\[1\\]\n\n~~They \\*waited\\*\\. \\[1\\]~~ ⚠️ "
         "_not supported by its sources_"),
    ],
)  # fmt: skip
def test_short_answer_comes_first_in_bold(sa, mode, sentences, expected):
    assert answer_markdown(answer(sa, mode=mode, sentences=sentences)) == expected


def test_short_answer_white_space_is_collapsed():
    sa = ShortAnswer("Eagle\n  Pass", "a.txt", 0, 11, 3)
    assert short_answer_markdown(answer(sa)) == "**Eagle Pass** \\[3\\]"
    assert short_answer_markdown(answer(None)) == ""
