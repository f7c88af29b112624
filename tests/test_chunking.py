"""Table-driven tests of chunking and de-duplication, with a word-count tokenizer. No model."""

from __future__ import annotations

import pytest

from index.chunking import chunk_document, drop_duplicates
from index.cleaning import find_boilerplate, segment


def words(texts):
    return [len(t.split()) for t in texts]


def chunks_of(text, *, chunk_tokens=12, max_tokens=20, overlap=1, chrome=frozenset()):
    return chunk_document(
        text,
        segment(text, set(chrome)),
        count_tokens=words,
        chunk_tokens=chunk_tokens,
        max_tokens=max_tokens,
        overlap_sentences=overlap,
        dedup_min_words=6,
    )


DOCS = [
    "One two three four five. Six seven eight nine ten. Eleven twelve thirteen fourteen fifteen.",
    "Short.\n\nA paragraph with “quotes” and U.S. names. Another one here?\nLast line without stop",
    "word " * 100,  # one sentence far over the limit: cut at word boundaries
    "Alpha beta gamma delta epsilon zeta. " * 3 + "Unique closing sentence here.",
]


@pytest.mark.parametrize("text", DOCS)
def test_spans_are_exact_and_within_limit(text):
    chunks = chunks_of(text)
    assert chunks
    for chunk in chunks:
        assert chunk.n_tokens <= 20
        assert text[chunk.start : chunk.end].strip() == text[chunk.start : chunk.end]
        for s, e in chunk.sentences:
            assert chunk.start <= s < e <= chunk.end


def test_one_sentence_overlap():
    text = " ".join(f"Sentence number {i} has six words." for i in range(6))
    chunks = chunks_of(text, chunk_tokens=12)
    assert len(chunks) > 2
    for left, right in zip(chunks, chunks[1:], strict=False):
        assert left.sentences[-1] == right.sentences[0]


def test_no_overlap_when_disabled():
    text = " ".join(f"Sentence number {i} has six words." for i in range(6))
    chunks = chunks_of(text, chunk_tokens=12, overlap=0)
    for left, right in zip(chunks, chunks[1:], strict=False):
        assert left.end <= right.start


def test_over_long_sentence_is_cut_not_truncated():
    text = "word " * 100
    chunks = chunks_of(text.strip(), chunk_tokens=12)
    covered = sum(c.search_text.count("word") for c in chunks)
    assert covered >= 100  # overlap may repeat a piece, nothing is lost
    assert all(c.n_tokens <= 12 for c in chunks)


def cjk_like(texts):
    """Each non-space character is a token, as BERT counts Chinese."""
    return [len("".join(t.split())) for t in texts]


@pytest.mark.parametrize(
    "text",
    [
        "中华人民共和国" * 20,  # 140 characters, no space: one "word"
        "短句。" + "长" * 45 + " tail words",
        "a" * 33 + " " + "b" * 7,
    ],
)
def test_unspaced_runs_are_cut_by_characters_not_truncated(text):
    chunks = chunk_document(
        text, segment(text, set()), count_tokens=cjk_like, chunk_tokens=12, max_tokens=20,
        overlap_sentences=0, dedup_min_words=6,
    )  # fmt: skip
    assert all(c.n_tokens <= 12 for c in chunks)
    assert "".join(c.search_text.replace(" ", "") for c in chunks) == "".join(text.split())


def test_repeated_paragraph_indexed_once():
    quote = "Hegseth told the officials that the military was prepared to act."
    text = f"{quote}\nA reply with new words in it.\n{quote}\nAnother reply entirely different."
    chunks = chunks_of(text, chunk_tokens=50, max_tokens=60)
    joined = " ".join(c.search_text for c in chunks)
    assert joined.count("Hegseth told") == 1
    assert "Another reply entirely different." in joined


def test_short_repeat_dropped_only_inside_quoted_block():
    block = "The long quoted sentence is repeated here now. They are targeting firms.\n"
    text = "No. A first reply stands here.\n" + block + "No. A second reply stands here.\n" + block
    kept = drop_duplicates(text, segment(text, set()), min_words=6)
    kept_text = [text[s.start : s.end] for s, _ in kept]
    assert kept_text.count("They are targeting firms.") == 1
    assert kept_text.count("No.") == 2  # a short repeat alone is an ordinary phrase
    gaps = [gap for _, gap in kept]
    assert gaps == [False, False, False, False, False, False]


def test_chrome_kept_in_span_but_not_searchable():
    text = "First post words here.\nRegistered Member\nSecond post words here."
    chrome = find_boilerplate([text, "Registered Member"], min_repeats=2, max_words=12)
    chunks = chunks_of(text, chunk_tokens=50, max_tokens=60, chrome=chrome)
    assert len(chunks) == 1
    assert "Registered Member" in text[chunks[0].start : chunks[0].end]
    assert "Registered" not in chunks[0].search_text


def test_chunk_tokens_above_max_is_an_error():
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunks_of("Text.", chunk_tokens=30, max_tokens=20)
