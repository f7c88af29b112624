"""Table-driven tests of cleaning: normalisation, sentences, chrome, title and date. No model."""

from __future__ import annotations

import pytest

from index.cleaning import (
    extract_date,
    extract_title,
    find_boilerplate,
    normalize_text,
    segment,
    split_sentences,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("“Quoted” text", '"Quoted" text'),
        ("it’s — fine…", "it's - fine..."),
        ("a\u00a0b \n\t c", "a b c"),
        ("zero\u200bwidth", "zerowidth"),
        ("ﬁne ligature", "fine ligature"),
        ("", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("One. Two.", ["One.", "Two."]),
        (
            "U.S. Defense Secretary Pete Hegseth called. He warned.",
            ["U.S. Defense Secretary Pete Hegseth called.", "He warned."],
        ),
        (
            "On the Jan. 31 call he spoke. Gen. Guillot met them.",
            ["On the Jan. 31 call he spoke.", "Gen. Guillot met them."],
        ),
        ("“No. Next question.” Then he left.", ["“No.", "Next question.”", "Then he left."]),
        ("Is it? Yes! Fine.", ["Is it?", "Yes!", "Fine."]),
        ("no terminal punctuation", ["no terminal punctuation"]),
        ("decimal 3.5 stays. Next one", ["decimal 3.5 stays.", "Next one"]),
        ("   ", []),
    ],
)
def test_split_sentences(text, sentences):
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == sentences


def test_boilerplate_found_by_repetition_not_by_list():
    docs = [
        "User A\nRegistered Member\nPlease, Log in or Register to view URLs content!\nFirst post text here.",
        "User B\nRegistered Member\nPlease, Log in or Register to view URLs content!\nAnother post.",
        "Coming soon. The US Territory of Mexico instead of 53rd State.\n"
        "Coming soon. The US Territory of Mexico instead of 53rd State.",
    ]
    chrome = find_boilerplate(docs, min_repeats=2, max_words=12)
    assert "registered member" in chrome
    assert "please, log in or register to view urls content!" in chrome
    # A repeated two-sentence quote is content (left to de-duplication), not chrome.
    assert not any(key.startswith("coming soon") for key in chrome)
    assert "first post text here." not in chrome


def test_boilerplate_needs_repetition():
    assert find_boilerplate(["Leave a Reply\nText."], min_repeats=2, max_words=12) == set()
    with pytest.raises(ValueError, match="min_repeats"):
        find_boilerplate([], min_repeats=1, max_words=12)


def test_segment_flags_chrome_and_splits_dateline():
    text = " date 2025-03-09 Earlier this week, Vance spoke. He left.\nRegistered Member\n"
    sentences = segment(text, {"registered member"})
    pieces = [(text[s.start : s.end], s.boilerplate) for s in sentences]
    assert pieces == [
        ("date 2025-03-09", False),
        ("Earlier this week, Vance spoke.", False),
        ("He left.", False),
        ("Registered Member", True),
    ]


@pytest.mark.parametrize(
    ("text", "date"),
    [
        (" date 2025-03-09 Earlier this week", "2025-03-09"),
        ("Title\nPublished: March 9, 2025\nBody", "2025-03-09"),
        ("No date at all.", ""),
    ],
)
def test_extract_date(text, date):
    assert extract_date(text) == date


@pytest.mark.parametrize(
    ("text", "hint", "title"),
    [
        ("Hegseth Warns of Action\n\n1 min read\nBody text.", "", "Hegseth Warns of Action"),
        ("Registered Member\nReal Title Here\nBody.", "", "Real Title Here"),
        ("whatever", "HTML Title", "HTML Title"),
        (
            " date 2025-03-09 Earlier this week, Vice President JD Vance said no. More.",
            "",
            "Earlier this week, Vice President JD Vance said no.",
        ),
        ("", "", "fallback"),
    ],
)
def test_extract_title(text, hint, title):
    assert (
        extract_title(text, boilerplate={"registered member"}, fallback="fallback", hint=hint)
        == title
    )
