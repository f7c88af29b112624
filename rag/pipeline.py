"""The question-to-cited-answer path shared by the CLI, the chat UI and the evaluation.

    python -m rag ask "What did Hegseth threaten?" --json

`Pipeline.stream` yields answer text as it is produced and, last, the complete `Answer`;
`Pipeline.ask` returns just the `Answer`. Citations are numbered [1], [2] in the order the
answer first uses them, and each points to an exact span of a document.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from index import CorpusIndex, Embedder, get_embedder
from rag.config import ABSTAIN_SENTENCE, Config
from rag.extractive import PickedSentence, is_weak, measure_evidence, pick_sentences
from rag.followup import standalone_query
from rag.retrieve import Hit, Retriever

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Citation:
    """A numbered source: `text` is exactly the document text between start and end."""

    n: int
    source: str
    title: str
    start: int
    end: int
    text: str
    date: str = ""
    # Spans (document offsets) of the sentences the answer took from this passage.
    highlights: tuple[tuple[int, int], ...] = ()

    def to_dict(self) -> dict:
        """The JSON form of `python -m rag ask --json`."""
        return {
            "n": self.n,
            "source": self.source,
            "title": self.title,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }


@dataclass
class Answer:
    """A finished answer with its citations, mode and timings."""

    answer: str
    abstained: bool
    mode: str
    citations: list[Citation]
    timings_ms: dict[str, float]
    query: str = ""
    hits: list[Hit] = field(default_factory=list)
    # Finer timings (query embedding, dense search, BM25, fusion) for benchmarks.
    stages_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The JSON form of `python -m rag ask --json`."""
        return {
            "answer": self.answer,
            "abstained": self.abstained,
            "mode": self.mode,
            "citations": [c.to_dict() for c in self.citations],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


def prepare_question(question: str, *, max_chars: int) -> tuple[str, list[str]]:
    """Validate and trim a question; over-long ones are cut with a warning."""
    if not isinstance(question, str):
        raise ValueError("the question must be text")
    # Control characters carry no meaning for retrieval and can upset terminals.
    cleaned = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in question).strip()
    if not cleaned:
        raise ValueError("the question is empty")
    warnings = []
    if len(cleaned) > max_chars:
        warnings.append(f"question cut from {len(cleaned)} to {max_chars} characters")
        cleaned = cleaned[:max_chars]
    return cleaned, warnings


def number_citations(picked: Sequence[PickedSentence]) -> tuple[str, list[Citation]]:
    """Compose 'sentence [n]' text and the citation list, numbered by first use."""
    numbers: dict[int, int] = {}
    grouped: dict[int, list[PickedSentence]] = {}
    parts = []
    for sentence in picked:
        chunk = sentence.hit.chunk
        n = numbers.setdefault(chunk.id, len(numbers) + 1)
        grouped.setdefault(chunk.id, []).append(sentence)
        parts.append(f"{sentence.text} [{n}]")
    citations = []
    for chunk_id, n in numbers.items():
        chunk = grouped[chunk_id][0].hit.chunk
        citations.append(
            Citation(
                n=n, source=chunk.source, title=chunk.title, start=chunk.start, end=chunk.end,
                text=chunk.text, date=chunk.date,
                highlights=tuple((s.start, s.end) for s in grouped[chunk_id]),
            )
        )  # fmt: skip
    return " ".join(parts), citations


class Pipeline:
    """A loaded index, the embedder and the answerer; safe to share between threads."""

    def __init__(self, config: Config, *, embedder: Embedder | None = None) -> None:
        self.config = config
        self.embedder = embedder or get_embedder(
            config.index.embedding_model, max_seq_length=config.index.max_seq_length
        )
        self._lock = threading.Lock()
        self.retriever = self._load()

    def _load(self) -> Retriever:
        index = CorpusIndex.load(self.config.index)
        return Retriever(
            index, self.embedder, candidates=self.config.candidates, rrf_k=self.config.rrf_k
        )

    @property
    def index(self) -> CorpusIndex:
        """The index currently answering questions."""
        return self.retriever.index

    @property
    def mode(self) -> str:
        """'extractive', or 'llm' when a local model writes the answers."""
        return "extractive"

    @property
    def model_name(self) -> str | None:
        """File name of the local LLM, or None in extractive mode."""
        return None

    def reload(self) -> None:
        """Switch to the index generation on disk (after an update); questions keep working."""
        retriever = self._load()
        with self._lock:
            self.retriever = retriever

    def ask(
        self, question: str, *, history: Sequence[str] = (), method: str | None = None
    ) -> Answer:
        """Answer a question (with earlier questions of the chat) from the corpus."""
        final = None
        for item in self.stream(question, history=history, method=method):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        return final

    def stream(
        self, question: str, *, history: Sequence[str] = (), method: str | None = None
    ) -> Iterator[str | Answer]:
        """Yield pieces of answer text as produced, then the complete Answer."""
        question, warnings = prepare_question(question, max_chars=self.config.max_question_chars)
        history = [h for h in history if isinstance(h, str) and h.strip()]
        query = standalone_query(question, [h[: self.config.max_question_chars] for h in history])
        retriever = self.retriever
        t0 = time.perf_counter()
        result = retriever.retrieve(
            query, top_k=self.config.report_depth, method=method or self.config.retrieval
        )
        passages = result.hits[: self.config.top_k]
        t1 = time.perf_counter()
        lexical = retriever.index.lexical
        evidence = measure_evidence(query, passages, lexical)
        weak = is_weak(evidence, min_evidence=self.config.min_evidence)
        picked = (
            []
            if weak
            else pick_sentences(
                query, passages, lexical, max_sentences=self.config.answer_sentences
            )
        )
        if picked:
            text, citations = number_citations(picked)
        else:
            text, citations = ABSTAIN_SENTENCE, []
        t2 = time.perf_counter()
        for i, word in enumerate(text.split(" ")):
            yield word if i == 0 else " " + word
        timings = {"retrieve": (t1 - t0) * 1000, "answer": (t2 - t1) * 1000}
        yield Answer(
            answer=text,
            abstained=not picked,
            mode=self.mode,
            citations=citations,
            timings_ms=timings,
            query=query,
            hits=result.hits,
            warnings=warnings,
            stages_ms=result.timings_ms,
        )


def open_pipeline(config: Config, *, refresh: bool = False, progress: bool = True) -> Pipeline:
    """A Pipeline on config's index, building or updating the index first when needed.

    With refresh=False an existing compatible index is used as it is; a missing, mismatched
    or corrupt one is (re)built from the corpus folder.
    """
    from index import IndexLoadError, update_index

    needs_build = refresh
    if not needs_build:
        try:
            CorpusIndex.load(config.index, verify=False)
        except IndexLoadError as exc:
            logger.warning("%s", str(exc).split(";")[0])
            needs_build = True
    if needs_build:
        report = update_index(config.index, progress=progress)
        logger.info("index: %s", report.summary())
    return Pipeline(config)
