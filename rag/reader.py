"""The reader: the exact answer span inside retrieved passages, or "no answer here".

    python -m rag ask "What does TCO stand for?" --json     # "short_answer" in the output

A MiniLM (the embedder's base model) fine-tuned on SQuAD for span extraction with a
no-answer output ([CLS]), run in ONNX Runtime with int8 weights (rag/reader_model, its
MODEL_CARD.md says how it was trained). For each passage it gives the best span and the
margin of that span's score over the no-answer score: the margin is how sure the reader is
that the passage answers the question, and the pipeline's answerability signal.

Passages are read one per run: dynamic int8 quantises activations by their maximum over the
whole batch, so a passage's scores would depend on its batch-mates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.answer_type import AnswerType, fits

MODEL_DIR = Path(__file__).resolve().parent / "reader_model"
MODEL_FILE = "model-int8.onnx"
# Longest answer in word pieces: SQuAD answers are short phrases (99% under 30 pieces).
MAX_ANSWER_TOKENS = 30
_TRIM = " \t\n,;:.!?"
# Questions whose answer is an explanation, not a span: "why ...", "explain ...".
_EXPLANATION_Q = re.compile(r"^\s*(why|explain|describe)\b", re.I)
# "How ..." asking for a manner ("how did they react?"), not a quantity ("how many").
_HOW_Q = re.compile(
    r"^\s*how\b(?!\s+(many|much|long|far|old|big|large|tall|high|often|soon|fast)\b)", re.I
)


@dataclass(frozen=True)
class Reading:
    """The reader's best span in one passage (offsets into that passage's text)."""

    start: int
    end: int
    text: str
    span_score: float
    null_score: float

    @property
    def margin(self) -> float:
        """How far the best span beats "no answer here" (positive: the passage answers)."""
        return self.span_score - self.null_score


def asks_for_explanation(question: str) -> bool:
    """True for questions answered by an explanation (why, explain), not by a phrase."""
    return bool(_EXPLANATION_Q.search(question))


def asks_how(question: str) -> bool:
    """True for "how" questions about a manner or process, which a phrase may or may not answer."""
    return bool(_HOW_Q.search(question))


class ReaderUnavailable(RuntimeError):
    """The reader's model files are missing or unreadable."""


class Reader:
    """The ONNX reader; `read` scores passages for a question. Safe to share between threads."""

    def __init__(self, model_dir: Path = MODEL_DIR) -> None:
        model_file = Path(model_dir) / MODEL_FILE
        if not model_file.is_file():
            raise ReaderUnavailable(
                f"reader model {model_file} is missing; reinstall the package (the file is part "
                "of the repository) or set reader=False in the Config (--no-reader)"
            )
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ImportError("the reader needs onnxruntime: pip install onnxruntime") from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(model_file), options, providers=["CPUExecutionProvider"]
            )
            self.tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        except Exception as exc:  # onnxruntime and tokenizers raise their own types
            raise ReaderUnavailable(f"cannot load the reader from {model_dir}: {exc}") from exc
        settings = json.loads((Path(model_dir) / "reader.json").read_text(encoding="utf-8"))
        self.max_length = int(settings["max_length"])
        self.stride = int(settings["stride"])
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.cls, self.sep = (self.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]"))

    def _windows(self, question: str, text: str):
        """Token windows of (question, text): (ids, type ids, offsets into text, context range)."""
        q = self.tokenizer.encode(question, add_special_tokens=False)
        q_ids = q.ids[: self.max_length // 4]
        t = self.tokenizer.encode(text, add_special_tokens=False)
        room = self.max_length - len(q_ids) - 3
        starts = range(0, max(1, len(t.ids) - self.stride), max(1, room - self.stride))
        for first in starts:
            piece = slice(first, first + room)
            ids = [self.cls, *q_ids, self.sep, *t.ids[piece], self.sep]
            types = [0] * (len(q_ids) + 2) + [1] * (len(ids) - len(q_ids) - 2)
            context = (len(q_ids) + 2, len(ids) - 1)
            yield ids, types, t.offsets[piece], context
            if first + room >= len(t.ids):
                break

    def _best_span(self, start_logits, end_logits, context: tuple[int, int], sentence_of=None):
        """(score, first token, last token) of the best span inside the context.

        sentence_of gives each context token's sentence: a span may not cross from one
        sentence into the next (SQuAD answers never do, and the reader's best span sometimes
        ran on past a full stop: "8 November 2010. In February 2011").
        """
        lo, hi = context
        s, e = start_logits[lo:hi], end_logits[lo:hi]
        n = len(s)
        if n == 0:
            return -np.inf, 0, 0
        width = min(MAX_ANSWER_TOKENS, n)
        # scores[i, k] = s[i] + e[i + k] for spans of k + 1 tokens (past the end: -inf).
        padded = np.concatenate([e, np.full(width, -np.inf, dtype=e.dtype)])
        ends = np.lib.stride_tricks.sliding_window_view(padded, width)[:n]
        scores = s[:, None] + ends
        if sentence_of is not None:
            seg = np.concatenate([sentence_of, np.full(width, -1, dtype=sentence_of.dtype)])
            same = np.lib.stride_tricks.sliding_window_view(seg, width)[:n] == sentence_of[:, None]
            scores = np.where(same, scores, -np.inf)
        i, k = np.unravel_index(int(np.argmax(scores)), scores.shape)
        return float(scores[i, k]), int(i), int(i + k)

    def read_one(
        self,
        question: str,
        text: str,
        *,
        sentences: Sequence[tuple[int, int]] = (),
        kind: AnswerType | None = None,
    ) -> Reading:
        """The best span of text for the question, against its no-answer score.

        sentences: the text's sentences as (start, end) offsets; the span stays inside one.
        kind: the answer type the question asks for (rag/answer_type.py); a best span of
        another type is no answer. (Taking the best span of the right type among the 20
        best instead gave the same SQuAD F1 and abstained less on unanswerable questions.)
        """
        best: tuple[float, int, int] | None = None
        null = np.inf
        starts = np.array(sorted(s for s, _ in sentences), dtype=np.int64)
        for ids, types, offsets, context in self._windows(question, text):
            feeds = {
                "input_ids": np.array([ids], np.int64),
                "attention_mask": np.ones((1, len(ids)), np.int64),
                "token_type_ids": np.array([types], np.int64),
            }
            start_logits, end_logits = (out[0] for out in self.session.run(None, feeds))
            null = min(null, float(start_logits[0] + end_logits[0]))
            sentence_of = (
                np.searchsorted(starts, [a for a, _ in offsets], side="right")
                if len(starts) else None
            )  # fmt: skip
            score, i, j = self._best_span(start_logits, end_logits, context, sentence_of)
            if best is None or score > best[0]:
                best = (score, offsets[i][0], offsets[j][1])
        null = null if np.isfinite(null) else 0.0
        if best is None or not np.isfinite(best[0]):
            return Reading(0, 0, "", -np.inf, null)
        start, end = widen_to_words(text, best[1], best[2])
        if not fits(kind, text[start:end]):
            return Reading(0, 0, "", -np.inf, null)
        return Reading(start, end, text[start:end], best[0], null)

    def read(self, question: str, texts: Sequence[str]) -> list[Reading]:
        """One Reading per text, in order (spans may cross sentences: no boundaries given)."""
        return [self.read_one(question, text) for text in texts]


def widen_to_words(text: str, start: int, end: int) -> tuple[int, int]:
    """The span grown to whole words and trimmed of surrounding spaces and punctuation."""
    while start > 0 and text[start - 1].isalnum() and text[start].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum() and text[end - 1].isalnum():
        end += 1
    while start < end and text[start] in _TRIM:
        start += 1
    while end > start and text[end - 1] in _TRIM:
        end -= 1
    # A closing bracket or quote without its opening one inside the span is not the answer's.
    span = text[start:end]
    for opening, closing in ("()", "[]", '""'):
        if span.endswith(closing) and span.count(opening if opening != closing else closing) < (
            2 if opening == closing else 1
        ):
            end -= 1
            span = text[start:end]
    return start, end
