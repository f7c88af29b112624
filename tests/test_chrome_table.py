"""index.chrome.LineCounts: the incremental chrome table agrees with find_boilerplate. No model."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index.chrome import FILE_NAME, LineCounts, keys_in
from index.cleaning import find_boilerplate

PARAMS = {"min_repeats": 3, "max_words": 12}


def boilerplate(texts, **params):
    return find_boilerplate(list(texts), **{**PARAMS, **params})


def every_order(texts):
    """find_boilerplate's answer in each order of the texts."""
    return [boilerplate(order) for order in itertools.permutations(texts)]


CASES = {
    # name: (texts, expected chrome)
    "three times across documents": (
        ["Registered Member\nBody one.", "Registered Member\nBody two.", "Registered Member"],
        {"registered member"},
    ),
    "twice is not enough": (["Registered Member\nA.", "Registered Member\nB."], set()),
    "every occurrence counts, within one document": (
        ["Share this\nx\nShare this\ny\nShare this"],
        {"share this"},
    ),
    "case, spacing and typography count as one line": (
        ["Don\u2019t  miss", "DON'T MISS\r\n", "  don't miss  \nz"],
        {"don't miss"},
    ),
    "multi-sentence lines are content": (
        ["First point. Second point.\n"] * 3,
        set(),
    ),
    "ISO dates and datelines are not chrome": (
        ["2024-03-09\nPublished: 2024-03-09\nposted 2021-01-31"] * 3,
        set(),
    ),
    "twelve words yes, thirteen no": (
        [" ".join(["w"] * 12) + "\n" + " ".join(["v"] * 13)] * 3,
        {" ".join(["w"] * 12)},
    ),
    "lines with no key (zero-width only) are not chrome": (["\u200b\n\u200b\n\u200b"], set()),
    "abbreviations keep a line one sentence": (
        ["Dr. Smith replies\n"] * 3,
        {"dr. smith replies"},
    ),
    "every first example one sentence, a later one not": (
        # find_boilerplate only looks at the first example: chrome in every order.
        ["coming soon. the us\nComing soon. The US", "coming soon. the us", "coming soon. the us"],
        {"coming soon. the us"},
    ),
    "written both ways across documents: chrome in no order-free sense, so not chrome": (
        ["Coming soon. The US", "coming soon. the us", "coming soon. the us"],
        set(),
    ),
}


@pytest.mark.parametrize("texts, expected", CASES.values(), ids=CASES.keys())
def test_chrome_matches_find_boilerplate(texts, expected):
    table = LineCounts.from_texts(texts, **PARAMS)
    assert table.chrome() == expected
    orders = every_order(texts)
    assert table.chrome() == set.intersection(*orders)
    if all(order == orders[0] for order in orders):  # find_boilerplate is order-free here
        assert table.chrome() == boilerplate(texts)


def test_a_key_written_both_ways_is_why_order_matters():
    texts = ["Coming soon. The US", "coming soon. the us", "coming soon. the us"]
    assert boilerplate(texts) == set()  # first example: two sentences
    assert boilerplate(texts[::-1]) == {"coming soon. the us"}  # first example: one sentence
    assert LineCounts.from_texts(texts).chrome() == set()  # same as the answer in every order
    assert LineCounts.from_texts(texts[::-1]).chrome() == set()


def test_parameters_are_those_of_find_boilerplate():
    texts = ["Registered Member\nTwo words here"] * 2
    assert LineCounts.from_texts(texts, min_repeats=2, max_words=2).chrome() == boilerplate(
        texts, min_repeats=2, max_words=2
    ) == {"registered member"}  # fmt: skip
    with pytest.raises(ValueError, match="min_repeats"):
        LineCounts(min_repeats=1)
    with pytest.raises(ValueError, match="max_words"):
        LineCounts(max_words=-1)


def test_only_keys_that_could_be_chrome_are_kept():
    long_line = " ".join(["word"] * 13)
    table = LineCounts.from_texts([f"{long_line}\n\u200b\nShort line\n\n  \n"] * 2)
    assert table.counts == {"short line": 2} and table.documents == 2


def test_subtract_undoes_add_and_refuses_what_was_not_counted():
    table = LineCounts()
    for text in ("Registered Member\nA.", "Registered Member\nB.", "Registered Member\nC."):
        table.add(text)
    assert table.chrome() == {"registered member"}
    table.subtract("Registered Member\nB.")
    assert table.chrome() == set() and table.counts["registered member"] == 2
    before = table.to_json()
    with pytest.raises(ValueError, match="not counted"):
        table.subtract("Registered Member\nx\nRegistered Member\nRegistered Member")
    assert table.to_json() == before  # refused without a change
    table.subtract("Registered Member\nA.")
    table.subtract("Registered Member\nC.")
    assert table == LineCounts() and table.counts == {} and table.multi == {}
    with pytest.raises(ValueError, match="not counted"):
        table.subtract("")


def test_keys_in():
    text = "Registered Member\nbody text\n  REGISTERED  member \nPublished: 2024-01-01"
    assert keys_in(text, {"registered member", "absent"}) == {"registered member"}
    assert keys_in(text, set()) == set()


def test_save_load_round_trip(tmp_path):
    texts = ["Registered Member\nCaf\u00e9 ouvert\nComing soon. The US"] * 3 + ["\u4e0b\u8f7d"]
    table = LineCounts.from_texts(texts, min_repeats=3, max_words=10)
    path = table.save(tmp_path)
    assert path == FILE_NAME and (tmp_path / FILE_NAME).is_file()
    data = json.loads((tmp_path / FILE_NAME).read_text(encoding="utf-8"))
    assert data["min_repeats"] == 3 and data["max_words"] == 10 and data["documents"] == 4
    assert data["counts"]["caf\u00e9 ouvert"] == 3  # readable, not \\u-escaped
    assert "caf\u00e9 ouvert" in (tmp_path / FILE_NAME).read_text(encoding="utf-8")
    loaded = LineCounts.load(tmp_path, min_repeats=3, max_words=10)
    assert loaded == table and loaded.chrome() == table.chrome()
    assert not [p for p in tmp_path.iterdir() if p.name != FILE_NAME]  # no temporary left
    loaded.add(texts[0])  # and it goes on counting
    table.add(texts[0])
    assert loaded == table
    table.save(tmp_path)  # overwrites
    assert LineCounts.load(tmp_path, min_repeats=3, max_words=10) == table


def test_save_a_lone_surrogate(tmp_path):
    table = LineCounts.from_texts(["odd \ud800 line"])
    table.save(tmp_path)
    assert LineCounts.load(tmp_path) == table


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"{not json", "not a JSON"),
        (b"\xff\xfe\x00", "not a JSON"),
        (b"[]", "format"),
        (json.dumps({"format": "other"}).encode(), "format"),
        ("version", "version"),
        ("documents", "documents"),
        ("counts", "counts"),
        ("negative", "counts"),
        ("boolean", "counts"),
        ("multi", "multi_sentence"),
        ("multi over", "multi_sentence"),
    ],
)
def test_malformed_file_raises_value_error(tmp_path, payload, message):
    data = LineCounts.from_texts(["Registered Member\nA. B."] * 3).to_json()
    edits = {
        "version": {"version": 99},
        "documents": {"documents": "3"},
        "counts": {"counts": ["registered member"]},
        "negative": {"counts": {"registered member": -1}},
        "boolean": {"counts": {"registered member": True}},
        "multi": {"multi_sentence_documents": {"registered member": 0}},
        "multi over": {"multi_sentence_documents": {"registered member": 9}},
    }
    if isinstance(payload, str):
        payload = json.dumps({**data, **edits[payload]}).encode()
    (tmp_path / FILE_NAME).write_bytes(payload)
    with pytest.raises(ValueError, match=message) as caught:
        LineCounts.load(tmp_path)
    assert FILE_NAME in str(caught.value)


def test_other_parameters_or_no_file(tmp_path):
    LineCounts.from_texts(["Registered Member"]).save(tmp_path)
    with pytest.raises(ValueError, match=r"min_repeats=3, max_words=12.*min_repeats=4"):
        LineCounts.load(tmp_path, min_repeats=4, max_words=12)
    with pytest.raises(ValueError, match="max_words=20 were asked"):
        LineCounts.load(tmp_path, max_words=20)
    with pytest.raises(FileNotFoundError):
        LineCounts.load(tmp_path / "missing")


# --- property: any history of adds and subtracts -----------------------------------------------

POOL = [
    "Registered Member",
    "REGISTERED  MEMBER",
    "registered member",
    "Please, Log in or Register to view URLs content!",
    "Share this",
    "Don\u2019t miss",
    "Don't miss",
    "Coming soon. The US",
    "coming soon. the us",
    "First point. Second point.",
    "Dr. Smith replies",
    "2024-03-09",
    "Published: 2024-03-09",
    "",
    "   ",
    "\u200b",
    " ".join(["long"] * 13),
    "A unique sentence about avocados.",
    "\u4e0b\u8f7d\u3002\u5b8c\u6210\u3002",
]

documents = st.builds(
    lambda lines, newline: newline.join(lines),
    st.lists(st.sampled_from(POOL), max_size=8),
    st.sampled_from(["\n", "\r\n", "\n\n"]),
)


@settings(max_examples=300, deadline=None)
@given(
    docs=st.lists(documents, min_size=1, max_size=4),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=14),
)
def test_any_history_gives_find_boilerplates_answer(docs, ops, tmp_path_factory):
    table = LineCounts(**PARAMS)
    counted: list[str] = []
    for add, pick in ops:
        if add or not counted:
            text = docs[pick % len(docs)]
            table.add(text)
            counted.append(text)
        else:
            text = counted.pop(pick % len(counted))
            table.subtract(text)
        if len(counted) > 4:  # keep the permutations cheap
            table.subtract(counted.pop(0))
        orders = every_order(counted)
        chrome = table.chrome()
        assert chrome == set.intersection(*orders)
        if all(order == orders[0] for order in orders):
            assert chrome == boilerplate(counted)
    # The table depends on the texts counted, not on the history that led there.
    assert table == LineCounts.from_texts(counted, **PARAMS)
    folder = tmp_path_factory.mktemp("lines")
    table.save(folder)
    assert LineCounts.load(folder, **PARAMS) == table
