"""LLM answers: prompt, stream, verify, renumber citations; reject what cannot be trusted.

    python -m rag ask "What did Hegseth threaten?" --model models/x.gguf --stream

`stream_llm_answer` yields text pieces as the model produces them and, last, an `LlmOutcome`:
either a verified answer (sentences with renumbered citations) or the reason it was rejected,
in which case the pipeline answers extractively and says why.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from index import ChunkStore, Embedder, Lexicon
from rag.followup import content_words, standalone_query
from rag.injection import strip_injections
from rag.llm import ChatModel
from rag.prompt import build_prompt, condense_messages
from rag.retrieve import Hit
from rag.verify import CheckedSentence, verify_answer

logger = logging.getLogger(__name__)
CONDENSE_MAX_TOKENS = 48


@dataclass
class LlmOutcome:
    """What the model produced, once verified."""

    text: str
    sentences: list[CheckedSentence]
    hits: list[Hit]  # the passages numbered 1..n in the prompt
    abstained: bool
    problem: str | None
    invalid_markers: int
    timings_ms: dict[str, float] = field(default_factory=dict)


def condense_question(model: ChatModel, question: str, history: Sequence[str]) -> str:
    """A standalone query from the model; the heuristic rewrite when its output is unusable."""
    fallback = standalone_query(question, history)
    if not history:
        return question
    pieces = []
    for piece in model.stream_chat(
        condense_messages(question, history, special_tokens=model.special_tokens()),
        max_tokens=CONDENSE_MAX_TOKENS,
    ):
        pieces.append(piece.text)
    text = "".join(pieces).strip().splitlines()[0] if "".join(pieces).strip() else ""
    text = text.strip().strip('"').strip()
    # Guard against noise: the query must reuse words of the conversation and stay short.
    known = {w.lower() for w in content_words(" ".join([*history, question]))}
    if not text or len(text) > 300 or not known & {w.lower() for w in content_words(text)}:
        logger.info("condensed query unusable (%r); using the heuristic rewrite", text[:80])
        return fallback
    return text


def stream_llm_answer(
    *,
    model: ChatModel,
    question: str,
    hits: Sequence[Hit],
    max_answer_tokens: int,
    lexical: Lexicon,
    vectors: ChunkStore,
    embedder: Embedder,
) -> Iterator[str | LlmOutcome]:
    """Yield the model's answer as it streams, then the verified LlmOutcome."""
    t0 = time.perf_counter()
    prompt = build_prompt(
        question,
        hits,
        count_tokens=model.count_tokens,
        n_ctx=model.n_ctx,
        answer_tokens=max_answer_tokens,
        special_tokens=model.special_tokens(),
    )
    t1 = time.perf_counter()
    pieces: list[str] = []
    finish = None
    first_token_ms = None
    failure = None
    try:
        for piece in model.stream_chat(prompt.messages, max_tokens=max_answer_tokens):
            if piece.text:
                if first_token_ms is None:
                    first_token_ms = (time.perf_counter() - t1) * 1000
                pieces.append(piece.text)
                yield piece.text
            finish = piece.finish_reason or finish
    except (RuntimeError, ValueError, OSError) as exc:
        # llama.cpp can fail mid-generation (context overflow, decode errors): answer anyway.
        logger.error("generation failed: %s", exc)
        failure = f"the model failed while generating ({exc})"
    t2 = time.perf_counter()
    text = "".join(pieces)
    # Checked against what the model was shown: a cut injection sentence supports nothing.
    passages = [strip_injections(h.chunk.text) for h in prompt.hits]
    verification = verify_answer(
        text,
        passages,
        finish_reason=finish,
        tokenize=lexical.tokenize,
        similarities=_similarity_fn(embedder, vectors, prompt.hits),
    )
    t3 = time.perf_counter()
    yield LlmOutcome(
        text=text,
        sentences=verification.sentences,
        hits=prompt.hits,
        abstained=verification.abstained and failure is None,
        problem=failure or verification.problem,
        invalid_markers=verification.invalid_markers,
        timings_ms={
            "prompt_tokens": float(prompt.prompt_tokens),
            "first_token": first_token_ms if first_token_ms is not None else (t2 - t1) * 1000,
            "generate": (t2 - t1) * 1000,
            "prompt_build": (t1 - t0) * 1000,
            "verify": (t3 - t2) * 1000,
        },
    )


def _similarity_fn(
    embedder: Embedder, vectors: ChunkStore, hits: Sequence[Hit]
) -> Callable[[list[str], list[tuple[int, ...]]], list[float]]:
    """Best cosine between each sentence and the stored vectors of the passages it cites."""

    def similarities(sentences: list[str], citations: list[tuple[int, ...]]) -> list[float]:
        if not sentences:
            return []
        embedded = embedder.encode(sentences)
        out = []
        for vector, cited in zip(embedded, citations, strict=True):
            ids = np.array([hits[n - 1].chunk.id for n in cited], dtype=np.int64)
            out.append(float((vectors.vectors(ids) @ vector).max()) if len(ids) else 0.0)
        return out

    return similarities


def renumber(
    sentences: Sequence[CheckedSentence], hits: Sequence[Hit]
) -> tuple[str, list[CheckedSentence], list[Hit]]:
    """Answer text with citations renumbered by first use, the sentences, and the cited hits."""
    order: dict[int, int] = {}
    for sentence in sentences:
        for n in sentence.citations:
            order.setdefault(n, len(order) + 1)
    new_sentences = [
        CheckedSentence(s.text, tuple(order[n] for n in s.citations), s.supported)
        for s in sentences
    ]
    parts = []
    for sentence in new_sentences:
        markers = "".join(f"[{n}]" for n in sentence.citations)
        body = re.sub(r"\s+", " ", sentence.text).strip()
        parts.append(f"{body} {markers}".strip())
    cited_hits = [hits[n - 1] for n in sorted(order, key=order.get)]
    return " ".join(parts), new_sentences, cited_hits
