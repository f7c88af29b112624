"""Follow-up questions rewritten into standalone retrieval queries, without an LLM.

    python -m rag ask "When did he say that?" --history "What did Vance say about invading Mexico?"

Heuristic: a question that leans on the conversation (a pronoun or "that/there/then", an opening
"and"/"what about", or fewer than three content words) gets the content words of the previous
standalone query appended. The previous query is itself rewritten first, so chains of
follow-ups keep the topic ("Who is he?" -> "Where?" -> "When?"). The chat and the evaluation
harness both call this function, so they retrieve alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-.]*")
_REFERRING = {
    "he", "him", "his", "she", "her", "hers", "they", "them", "their", "theirs", "it", "its",
    "that", "this", "those", "these", "there", "then", "such", "same", "former", "latter",
}  # fmt: skip
_FUNCTION = _REFERRING | {
    "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "by", "for", "with",
    "from", "about", "as", "is", "are", "was", "were", "be", "been", "do", "does", "did", "has",
    "have", "had", "what", "who", "whom", "whose", "which", "when", "where", "why", "how",
    "say", "said", "says", "tell", "told", "can", "could", "would", "should", "will", "also",
    "any", "some", "more", "much", "many", "else", "other", "else?", "i", "you", "we",
    "me", "my", "your", "our", "us", "not", "no", "yes", "so", "if", "than", "into", "over",
}  # fmt: skip
_OPENERS = (
    "and ",
    "what about",
    "how about",
    "and what",
    "but ",
    "also ",
    "why?",
    "when?",
    "where?",
)


def content_words(text: str) -> list[str]:
    """Words of text that carry its topic, in order, without repeats."""
    words: list[str] = []
    for word in _WORD.findall(text):
        bare = word.strip(".'-")
        if (
            bare
            and bare.lower() not in _FUNCTION
            and bare.lower() not in {w.lower() for w in words}
        ):
            words.append(bare)
    return words


def needs_context(question: str) -> bool:
    """True when the question cannot be understood without the conversation."""
    lowered = question.strip().lower()
    if lowered.startswith(_OPENERS):
        return True
    words = {w.lower().strip(".'-") for w in _WORD.findall(lowered)}
    return bool(words & _REFERRING) or len(content_words(question)) < 3


def standalone_query(question: str, history: Sequence[str]) -> str:
    """The retrieval query for question given the earlier user questions of the chat."""
    previous = ""
    for earlier in history:
        if earlier.strip():
            previous = _rewrite(earlier, previous)
    return _rewrite(question, previous)


def _rewrite(question: str, previous: str) -> str:
    if not previous or not needs_context(question):
        return question.strip()
    own = {w.lower() for w in content_words(question)}
    carried = [w for w in content_words(previous) if w.lower() not in own]
    return f"{question.strip()} {' '.join(carried)}".strip()
