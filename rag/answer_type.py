"""What kind of answer a question asks for, and whether a span is of that kind.

    python -m rag.answer_type "How many troops did Canada send?" "10,000"

"How many ..." wants a quantity, "How long ..." a duration or a length, "In what year ..." a
year, "On what date ..." a date, "Where ..." a place (not a bare number or date), "In which
city ..." a named place (a capitalised word). The reader's best span does not always respect
that ("How many drone flights ...?" read against a passage with no figure gives "fentanyl
labs", "In which city was Camarena killed?" gives "1985"), so a span of the wrong kind is no
answer, and a question no passage gives a span of its kind for is not answered. Only these
explicit forms are typed; "when", "how often" and "how much X" are left alone, since their
answers are as often events, adverbs or phrases ("when they improve society", "rarely",
"voluminous") as dates or figures (measured on held-out SQuAD questions: typing them
withheld right answers), and so are "who" and "what state": 8% of the gold answers to "who"
questions of the reader's training articles have no capital ("city council", "a doctor"),
and a "state" is as often one of matter ("liquid"). The place, named-place and duration types
reject no gold answer of those articles (222, 70 and 41 questions) nor of the held-out ones
(211, 37 and 29).
"""

from __future__ import annotations

import re
import sys
from enum import Enum


class AnswerType(Enum):
    """The kinds of answer a question can be typed with."""

    QUANTITY = "quantity"
    DURATION = "duration"
    YEAR = "year"
    DATE = "date"
    PLACE = "place"
    NAMED_PLACE = "named place"


_QUESTION_TYPES = (
    (
        AnswerType.QUANTITY,
        re.compile(
            r"\bhow many\b|\bby how much\b"
            r"|\bhow much (money|did|does|do|is|was|were|are|will|would|has|have|had)\b"
            r"|\b(what|which) (percentage|percent|proportion|share|fraction)\b"
            r"|\bhow (old|far|tall|high)\b",
            re.I,
        ),
    ),
    (AnswerType.DURATION, re.compile(r"\bhow long\b", re.I)),
    (AnswerType.YEAR, re.compile(r"\b(what|which) year\b", re.I)),
    (AnswerType.DATE, re.compile(r"\b(what|which) (date|day|month|decade|century)\b", re.I)),
    # "What state" is left out: its answer is as often a state of matter ("liquid").
    (
        AnswerType.NAMED_PLACE,
        re.compile(r"\b(what|which) (city|country|town|village|continent|nation|island)\b", re.I),
    ),
    (
        AnswerType.PLACE,
        re.compile(
            r"^\W*where\b|\b(in|at|to|from|near) (what|which) (state|province|region|county"
            r"|district|area|place|location|neighbou?rhood)\b",
            re.I,
        ),
    ),
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
    "(mon|tues|wednes|thurs|fri|satur|sun)days?|today|yesterday|tomorrow|"
    "weeks?|months?|years?|decades?|century|centuries|spring|summer|autumn|fall|winter|"
    "morning|evening|night|noon|midnight|ago|later|earlier|before|after|during|since|until|"
    "recently|now|then|soon|era|age|period|reign|war|dynasty"
)
_UNITS = (
    "seconds?|minutes?|hours?|days?|nights?|weeks?|months?|years?|decades?|century|centuries|"
    "miles?|kilomet(er|re)s?|met(er|re)s?|feet|foot|inch(es)?|km|mi|ft|yards?|lifetime|life|"
    "forever|moments?|while|overnight|period|era|age|until|since|through"
)
# A bare figure or calendar date: the answer to "when" or "how many", never to "where".
_DATE_LIKE = re.compile(
    rf"^((in|on|by) )?(\d[\d,.\s]*s?|({_MONTHS})\.? \d{{1,2}}(, \d{{4}})?|\d{{1,2}} ({_MONTHS})\.?"
    rf"( \d{{4}})?|({_MONTHS})\.?( \d{{4}})?)$",
    re.I,
)
_CAPITAL = re.compile(r"[A-Z]")


def _matches(pattern: re.Pattern):
    return lambda span: bool(pattern.search(span))


def _is_place(span: str) -> bool:
    return not _DATE_LIKE.match(span.strip())


def _is_named_place(span: str) -> bool:
    return _is_place(span) and bool(_CAPITAL.search(span))


_FITS = {
    AnswerType.QUANTITY: _matches(re.compile(rf"\d|\b({_NUMBER_WORDS})\b", re.I)),
    AnswerType.DURATION: _matches(re.compile(rf"\d|\b({_UNITS})\b", re.I)),
    AnswerType.YEAR: _matches(re.compile(r"\d|\b(century|centuries|decades?)\b", re.I)),
    AnswerType.DATE: _matches(re.compile(rf"\d|\b({_MONTHS}|{_TIME_WORDS})\b", re.I)),
    AnswerType.PLACE: _is_place,
    AnswerType.NAMED_PLACE: _is_named_place,
}


def expected_type(question: str) -> AnswerType | None:
    """The kind of answer the question explicitly asks for, or None (any span will do)."""
    for kind, pattern in _QUESTION_TYPES:
        if pattern.search(question):
            return kind
    return None


def fits(kind: AnswerType | None, span: str) -> bool:
    """True when the span can be an answer of that kind (always, for an untyped question)."""
    return kind is None or _FITS[kind](span)


if __name__ == "__main__":
    asked = expected_type(sys.argv[1])
    sys.stdout.write(f"{asked.value if asked else 'untyped'}: fits={fits(asked, sys.argv[2])}\n")
