"""The SQuAD abstention test's split and summary, and the held-out article selection."""

from __future__ import annotations

import pytest

from eval.squad import article_folders, parse_squad, select_articles
from eval.squad_abstention import AbstentionCase, split_articles, summarize
from eval.train_reader import load_split

TINY = {
    "data": [
        {
            "title": title,
            "paragraphs": [
                {
                    "context": f"{title} was founded in 1900.",
                    "qas": [{"id": f"{title}-q", "question": f"When was {title} founded?",
                             "answers": [{"text": "1900", "answer_start": 0}]}],
                }
            ],
        }
        for title in ("Super_Bowl_50", "Warsaw", "Pharmacy", "Doctor_Who")
    ]
}  # fmt: skip


def test_split_file_keeps_training_and_reported_articles_apart():
    split = load_split()
    assert len(split["train"]) == len(split["held_out"]) == 24
    assert not set(split["train"]) & set(split["held_out"])
    assert set(split["abstention_indexed"]) <= set(split["held_out"])
    assert len(split["abstention_indexed"]) == 12


def test_questions_of_held_out_articles_only():
    _, queries = parse_squad(TINY)
    held, folders = select_articles(TINY, queries, "held-out")
    assert {q.id for q in held} == {"Pharmacy-q", "Doctor_Who-q"}
    assert folders == {"02_Pharmacy", "03_Doctor_Who"}
    train, _ = select_articles(TINY, queries, "train")
    assert {q.id for q in train} == {"Super_Bowl_50-q", "Warsaw-q"}
    assert article_folders(TINY, {"Warsaw"}) == {"01_Warsaw"}


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_split_articles_takes_half(seed):
    held = [f"{i:02d}_a" for i in range(24, 48)]
    indexed = split_articles(held, fixed=held[::2], seed=seed)
    assert len(indexed) == 12 and indexed <= set(held)
    if seed is None:
        assert indexed == set(held[::2])
    assert split_articles(held, fixed=held[::2], seed=seed) == indexed  # reproducible


def test_fixed_split_must_name_held_out_articles():
    with pytest.raises(ValueError, match="not held out"):
        split_articles(["24_a"], fixed=["00_train"], seed=None)


def test_summary_counts_recall_and_false_abstention():
    cases = [
        AbstentionCase("1", "q", False, True, -9.0, None),
        AbstentionCase("2", "q", False, True, -8.0, None),
        AbstentionCase("3", "q", False, False, 3.0, None),
        AbstentionCase("4", "q", True, False, 9.0, True),
        AbstentionCase("5", "q", True, True, -8.0, False),
        AbstentionCase("6", "q", True, False, 5.0, True),
        AbstentionCase("7", "q", True, False, 5.0, True),
    ]
    s = summarize(cases)
    assert s["abstain_recall"] == pytest.approx(2 / 3)
    assert s["false_abstention"] == pytest.approx(1 / 4)
    assert s["indexed_hit@5"] == pytest.approx(3 / 4)
    assert s["false_abstention_when_hit@5"] == 0.0
    lo, hi = s["abstain_recall_ci95"]
    assert lo < 2 / 3 < hi
