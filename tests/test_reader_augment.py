"""The reader's training negatives, without the model or SQuAD: each kind holds no answer.

python -m pytest tests/test_reader_augment.py -q
"""

from __future__ import annotations

import random

import pytest

from eval.train_reader import (
    STRONGER,
    Augment,
    _name_changed,
    _negatives,
    _number_changed,
    _without_answer,
)

CONTEXT = (
    "Warsaw lies on the Vistula River. It was rebuilt after 1945 by its citizens. "
    "The Royal Castle was finished in 1984. Many tourists visit it every year."
)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["1984"], "Warsaw lies on the Vistula River. It was rebuilt after 1945 by its "
         "citizens. Many tourists visit it every year."),
        (["Vistula", "Royal Castle"], "It was rebuilt after 1945 by its citizens. Many "
         "tourists visit it every year."),
        (["Paris"], None),  # nothing removed: not a negative
        (["Warsaw", "1945", "1984"], None),  # one sentence left: too little
    ],
)  # fmt: skip
def test_without_answer_drops_the_sentences_holding_it(answers, expected):
    assert _without_answer(CONTEXT, answers) == expected


@pytest.mark.parametrize("seed", range(20))
def test_number_changed_asks_for_a_number_the_paragraph_lacks(seed):
    changed = _number_changed("When was the Royal Castle finished in 1984?", CONTEXT,
                              random.Random(seed))  # fmt: skip
    assert changed is not None and "1984" not in changed
    number = changed.split("in ")[-1].rstrip("?")
    assert number.isdigit() and number not in CONTEXT


def test_number_changed_needs_a_number():
    assert _number_changed("Who rebuilt Warsaw?", CONTEXT, random.Random(0)) is None


def test_name_changed_swaps_a_shared_name_for_an_absent_one():
    changed = _name_changed("What river does Warsaw lie on?", CONTEXT, ["Krakow"],
                            random.Random(0))  # fmt: skip
    assert changed == "What river does Krakow lie on?"
    # A name the paragraph lacks, or only names the paragraph holds: nothing to swap.
    assert (
        _name_changed("What river does Lodz lie on?", CONTEXT, ["Krakow"], random.Random(0)) is None
    )
    assert (
        _name_changed("What river does Warsaw lie on?", CONTEXT, ["Vistula"], random.Random(0))
        is None
    )


def test_default_recipe_draws_other_paragraphs_only():
    qa = {"question": "When was the Royal Castle finished?", "answers": [{"text": "1984"}]}
    contexts = [CONTEXT, "The Royal Castle stands in the Old Town of Warsaw."]
    drawn = [
        _negatives(qa, contexts, 0, ["Krakow"], Augment(), random.Random(s)) for s in range(40)
    ]
    assert all(ex.context == contexts[1] for batch in drawn for ex in batch)
    assert any(drawn) and not all(drawn)  # about half the questions get one
    stronger = [
        _negatives(qa, contexts, 0, ["Krakow"], STRONGER, random.Random(s)) for s in range(40)
    ]
    assert any(ex.context != contexts[1] for batch in stronger for ex in batch)
    assert all(ex.answer_start is None for batch in stronger for ex in batch)
