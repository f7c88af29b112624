"""What kind of answer a question asks for, and whether a span is of that kind.

    python -m rag.answer_type "How many troops did Canada send?" "10,000"

"How many ..." wants a quantity, "In what year ..." a year, "On what date ..." a date. The
reader's best span does not always respect that ("How many drone flights ...?" read against
a passage with no figure gives "fentanyl labs"), so a span of the wrong kind is no answer,
and a question no passage gives a span of its kind for is not answered. Only these explicit
forms are typed; "when", "how often" and "how much X" are left alone, since their answers
are as often events, adverbs or phrases ("when they improve society", "rarely",
"voluminous") as dates or figures (measured on held-out SQuAD questions: typing them
withheld right answers).
"""

from __future__ import annotations

import re
import sys
from enum import Enum


class AnswerType(Enum):
    """The kinds of answer a question can be typed with."""

    QUANTITY = "quantity"
    YEAR = "year"
    DATE = "date"


_QUESTION_TYPES = (
    (
        AnswerType.QUANTITY,
        re.compile(
            r"\bhow many\b|\bby how much\b"
            r"|\bhow much (money|did|does|do|is|was|were|are|will|would|has|have|had)\b"
            r"|\b(what|which) (percentage|percent|proportion|share|fraction)\b"
            r"|\bhow (long|old|far|tall|high)\b",
            re.I,
        ),
    ),
    (AnswerType.YEAR, re.compile(r"\b(what|which) year\b", re.I)),
    (AnswerType.DATE, re.compile(r"\b(what|which) (date|day|month|decade|century)\b", re.I)),
)

_NUMBER_WORDS = (
    "zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    "fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    "eighty|ninety|hundreds?|thousands?|millions?|billions?|trillions?|dozens?|half|couple|"
    "several|few|many|single|double|triple|once|twice|thrice|first|second|third|fourth|fifth|"
    "sixth|seventh|eighth|ninth|tenth|scores?|no|none|all|both|every"
)
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_TIME_WORDS = (
    "monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|yesterday|tomorrow|"
    "weeks?|months?|years?|decades?|century|centuries|spring|summer|autumn|fall|winter|"
    "morning|evening|night|noon|midnight|ago|later|earlier|before|after|during|since|until|"
    "recently|now|then|soon|era|age|period|reign|war|dynasty"
)
_FITS = {
    AnswerType.QUANTITY: re.compile(rf"\d|\b({_NUMBER_WORDS})\b", re.I),
    AnswerType.YEAR: re.compile(r"\d|\b(century|centuries|decades?)\b", re.I),
    AnswerType.DATE: re.compile(rf"\d|\b({_MONTHS}|{_TIME_WORDS})\b", re.I),
}


def expected_type(question: str) -> AnswerType | None:
    """The kind of answer the question explicitly asks for, or None (any span will do)."""
    for kind, pattern in _QUESTION_TYPES:
        if pattern.search(question):
            return kind
    return None


def fits(kind: AnswerType | None, span: str) -> bool:
    """True when the span can be an answer of that kind (always, for an untyped question)."""
    return kind is None or bool(_FITS[kind].search(span))


if __name__ == "__main__":
    asked = expected_type(sys.argv[1])
    sys.stdout.write(f"{asked.value if asked else 'untyped'}: fits={fits(asked, sys.argv[2])}\n")
