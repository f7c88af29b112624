"""The question-to-cited-answer path shared by the CLI, the chat UI and the evaluation.

    python -m rag ask "What did Hegseth threaten?" --json

`Pipeline.stream` yields answer text as it is produced and, last, the complete `Answer`;
`Pipeline.ask` returns just the `Answer`. Citations are numbered [1], [2] in the order the
answer first uses them, and each points to an exact span of a document.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from index import (
    CorpusIndex,
    Embedder,
    IndexLoadError,
    Lexicon,
    check_embedder,
    embedder_for,
)
from rag.config import ABSTAIN_SENTENCE, NO_CONTENT_WARNING, NON_LATIN_WARNING, Config
from rag.extractive import (
    Evidence,
    PickedSentence,
    has_content_words,
    is_non_latin,
    is_weak,
    measure_evidence,
    pick_sentences,
)
from rag.followup import needs_context, standalone_query
from rag.generate import LlmOutcome, condense_question, renumber, stream_llm_answer
from rag.injection import passage_flag
from rag.llm import ChatModel, ModelSlot
from rag.reader import Reader
from rag.reading import (
    NOT_READ,
    PassageReading,
    ShortAnswer,
    answerability,
    answers,
    best_reading,
    lead_with_span,
    read_passages,
    retrieval_priors,
    short_answer_for,
    span_sentence,
)
from rag.retrieve import Hit, Retriever, SourceFilter
from rag.verify import CheckedSentence

logger = logging.getLogger(__name__)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-empty spans with overlapping ones joined."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(sp for sp in spans if sp[1] > sp[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


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
    # Why the passage is suspect ("text addressed to an AI assistant (...)"), or "".
    flagged: str = ""
    # PDF page or slide where the passage starts (1-based; None for formats without pages),
    # a short human locator ("p. 4", "slide 3", "§ Audit", "lines 40–52"), and OCR origin.
    page: int | None = None
    locator: str = ""
    ocr: bool = False

    def to_dict(self) -> dict:
        """The JSON form of `python -m rag ask --json` ("flagged" only when set)."""
        data = {
            "n": self.n,
            "source": self.source,
            "title": self.title,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "page": self.page,
            "locator": self.locator,
            "ocr": self.ocr,
        }
        if self.flagged:
            data["flagged"] = self.flagged
        return data

    def preview(self, *, limit: int = 300) -> str:
        """The sentences cited from this passage (" … " between gaps); else its first chars."""
        spans = _merged([(max(s, self.start), min(e, self.end)) for s, e in self.highlights])
        parts, last = [], None
        for s, e in spans:
            text = " ".join(self.text[s - self.start : e - self.start].split())
            if not text:
                continue
            if parts:
                gap = self.text[last - self.start : s - self.start]
                parts.append(" " if not gap.strip() else " … ")
            parts.append(text)
            last = e
        if parts:
            return "".join(parts)
        text = " ".join(self.text.split())
        return text if len(text) <= limit else text[:limit].rstrip() + "…"


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
    sentences: list[CheckedSentence] = field(default_factory=list)
    # The exact span that answers (None: abstained, a why question, or an unsure "how").
    short_answer: ShortAnswer | None = None
    # The reader's best margin over "no answer here" (-inf: nothing was read).
    answerability: float = NOT_READ
    # Why the mode is what it is when an LLM is configured ("LLM answer rejected: ...").
    mode_detail: str = ""

    def to_dict(self) -> dict:
        """The JSON form of `python -m rag ask --json`."""
        return {
            "answer": self.answer,
            "abstained": self.abstained,
            "mode": self.mode,
            "mode_detail": self.mode_detail,
            "short_answer": self.short_answer.to_dict() if self.short_answer else None,
            "answerability": (
                round(self.answerability, 3) if self.answerability != NOT_READ else None
            ),
            "citations": [c.to_dict() for c in self.citations],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "sentences": [
                {"text": s.text, "citations": list(s.citations), "supported": s.supported}
                for s in self.sentences
            ],
            # Why an answer was withheld or changed ("ask a real question", "LLM answer
            # replaced ..."): scripts see what the chat shows.
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Token:
    """A piece of answer text, as it is produced."""

    text: str


@dataclass(frozen=True)
class Final:
    """The finished answer: the last event of every stream."""

    answer: Answer


StreamEvent = Token | Final


_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def prepare_question(question: str, *, max_chars: int) -> tuple[str, list[str]]:
    """Validate and trim a question; over-long ones are cut with a warning."""
    if not isinstance(question, str):
        raise ValueError("the question must be text")
    # Control characters carry no meaning for retrieval and can upset terminals; a terminal
    # escape sequence ("\x1b[31m") goes whole, or its "[31m" would read as a number.
    question = _TERMINAL_ESCAPE.sub(lambda m: " " * len(m.group()), question)
    cleaned = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in question).strip()
    if not cleaned:
        raise ValueError("the question is empty")
    warnings = []
    if len(cleaned) > max_chars:
        warnings.append(f"question cut from {len(cleaned)} to {max_chars} characters")
        cleaned = cleaned[:max_chars]
    return cleaned, warnings


def make_citation(n: int, hit: Hit, highlights: Sequence[tuple[int, int]]) -> Citation:
    """Citation n for a retrieved passage, with the sentence spans to highlight."""
    chunk = hit.chunk
    return Citation(
        n=n, source=chunk.source, title=chunk.title, start=chunk.start, end=chunk.end,
        text=chunk.text, date=chunk.date, highlights=tuple(highlights),
        flagged=passage_flag(chunk.text), page=chunk.page, locator=chunk.locator, ocr=chunk.ocr,
    )  # fmt: skip


def number_citations(
    picked: Sequence[PickedSentence],
) -> tuple[str, list[Citation], list[CheckedSentence]]:
    """Compose 'sentence [n]' text, the citations (numbered by first use) and the sentences."""
    numbers: dict[int, int] = {}
    grouped: dict[int, list[PickedSentence]] = {}
    parts, sentences = [], []
    for sentence in picked:
        chunk = sentence.hit.chunk
        n = numbers.setdefault(chunk.id, len(numbers) + 1)
        grouped.setdefault(chunk.id, []).append(sentence)
        parts.append(f"{sentence.text} [{n}]")
        sentences.append(CheckedSentence(sentence.text, (n,), True))
    citations = [
        make_citation(n, grouped[chunk_id][0].hit, [(s.start, s.end) for s in grouped[chunk_id]])
        for chunk_id, n in numbers.items()
    ]
    return " ".join(parts), citations, sentences


def closest_sentence(hit: Hit, text: str, lexical: Lexicon) -> tuple[int, int] | None:
    """Span of the passage sentence sharing the most terms with text (what to highlight)."""
    words = set(lexical.tokenize(text))
    chunk = hit.chunk
    best, best_overlap = None, 0
    for start, end in chunk.sentences:
        overlap = len(
            words & set(lexical.tokenize(chunk.text[start - chunk.start : end - chunk.start]))
        )
        if overlap > best_overlap:
            best, best_overlap = (start, end), overlap
    return best


def llm_citations(
    outcome: LlmOutcome, lexical: Lexicon, warnings: list[str]
) -> tuple[str, list[CheckedSentence], list[Citation]]:
    """The verified LLM answer renumbered by first use, its citations and their highlights."""
    text, sentences, cited = renumber(outcome.sentences, outcome.hits)
    citations = []
    for n, hit in enumerate(cited, start=1):
        spans = [closest_sentence(hit, s.text, lexical) for s in sentences if n in s.citations]
        citations.append(make_citation(n, hit, [sp for sp in spans if sp]))
    if outcome.invalid_markers:
        warnings.append(
            f"{outcome.invalid_markers} citation marker(s) pointed to no passage and were removed"
        )
    if any(not s.supported for s in sentences):
        warnings.append("some sentences are not supported by the passages they cite")
    return text, sentences, citations


@functools.cache
def shared_reader() -> Reader:
    """The reader, loaded once per process (every Pipeline shares its ONNX session)."""
    return Reader()


class Pipeline:
    """A loaded index, the embedder and the answerer; safe to share between threads."""

    def __init__(
        self, config: Config, *, embedder: Embedder | None = None, model: ChatModel | None = None
    ) -> None:
        self.config = config
        if embedder is not None:
            check_embedder(embedder, config.index)
        self.embedder = embedder or embedder_for(config.index)
        self._lock = threading.Lock()
        self._reload_lock = threading.RLock()
        self._failed_generation: str | None = None
        self._model = model
        # The GGUF is loaded on the first question, so the UI starts without waiting for it.
        self.model_slot = ModelSlot(
            config.model_path, n_ctx=config.n_ctx, n_threads=config.n_threads
        )
        self.reader = shared_reader() if config.reader else None
        self.retriever = self._load()

    def _load(self) -> Retriever:
        index = CorpusIndex.load(self.config.index)
        return Retriever(
            index,
            self.embedder,
            candidates=self.config.candidates,
            rrf_k=self.config.rrf_k,
            dense_weight=self.config.dense_weight,
        )

    @property
    def index(self) -> CorpusIndex:
        """The index currently answering questions."""
        return self.retriever.index

    @property
    def mode(self) -> str:
        """'llm' when a local model writes the answers (or will, once loaded), else 'extractive'."""
        if self._model is not None or (self.model_slot.configured and not self.model_slot.error):
            return "llm"
        return "extractive"

    @property
    def model_name(self) -> str | None:
        """File name of the local LLM, or None in extractive mode."""
        if self._model is not None:
            return self._model.name
        return self.model_slot.path.name if self.mode == "llm" else None

    def chat_model(self) -> ChatModel | None:
        """The LLM, loading it on first use; None in extractive mode or when loading failed."""
        return self._model if self._model is not None else self.model_slot.get()

    def reload(self) -> None:
        """Switch to the index generation on disk (after an update); questions keep working."""
        with self._reload_lock:
            retriever = self._load()
            # Two reloads may race; generation names sort by build time: never go back.
            unused = retriever
            if retriever.index.folder.name >= self.index.folder.name:
                with self._lock:
                    unused, self.retriever = self.retriever, retriever
            # A Milvus connection is shared and counted: questions in flight keep working.
            unused.index.store.close()

    def is_stale(self) -> bool:
        """True when CURRENT names another generation than the one answering questions.

        Another process (`rag index`, a second chat server) may have switched the index.
        A generation that failed to load is not retried until CURRENT names another.
        """
        from index import current_generation

        try:
            live = current_generation(self.config.index.index_dir)
        except IndexLoadError:
            return False
        if live is None or live.name == self._failed_generation:
            return False
        return live.resolve() != self.index.folder.resolve()

    def refresh_if_stale(self) -> bool:
        """Reload when the index on disk changed since it was loaded; True when it did.

        Raises IndexLoadError (once per generation) when the new generation cannot be loaded;
        the loaded index keeps answering.
        """
        if not self.is_stale():
            return False
        from index import current_generation

        try:
            self.reload()
        except IndexLoadError:
            live = current_generation(self.config.index.index_dir)
            self._failed_generation = live.name if live is not None else None
            raise
        return True

    def ask(
        self,
        question: str,
        *,
        history: Sequence[str] = (),
        method: str | None = None,
        where: SourceFilter | None = None,
    ) -> Answer:
        """Answer a question (with earlier questions of the chat) from the corpus."""
        for event in self.stream(question, history=history, method=method, where=where):
            if isinstance(event, Final):
                return event.answer
        raise RuntimeError("the answer stream ended without a final answer")

    def _too_weak(
        self, query: str, passages: Sequence[Hit], lexical: Lexicon, warnings: list[str]
    ) -> tuple[bool, Evidence]:
        """(True when the passages cannot answer, their evidence); warnings say why when it is
        the question's fault."""
        stuffing = self.config.stuffing_limit
        evidence = measure_evidence(query, passages, lexical, stuffing_limit=stuffing)
        if not has_content_words(query, lexical):
            warnings.append(NO_CONTENT_WARNING)
            return True, evidence
        if is_weak(evidence, min_evidence=self.config.min_evidence):
            return True, evidence
        if is_non_latin(query) and evidence.coverage < self.config.min_coverage_non_latin:
            # MiniLM knows English only: in another script its similarity is no evidence.
            warnings.append(NON_LATIN_WARNING)
            return True, evidence
        return False, evidence

    def _read(self, query: str, passages: Sequence[Hit]) -> list[PassageReading]:
        """The reader's spans in the best passages (none without a reader)."""
        if self.reader is None or not passages:
            return []
        chosen = passages[: self.config.reader_passages]
        priors = retrieval_priors(
            chosen,
            dense_weight=self.config.reader_dense_weight,
            bm25_weight=self.config.reader_bm25_weight,
        )
        return read_passages(
            self.reader, query, chosen, priors=priors, max_margin=self.config.reader_max_margin
        )

    def _check_llm_support(
        self,
        query: str,
        readings: list[PassageReading],
        citations: Sequence[Citation],
        sentences: list[CheckedSentence],
        passages: Sequence[Hit],
        warnings: list[str],
    ) -> list[CheckedSentence]:
        """Mark unsupported the LLM sentences whose cited passages hold no answer span."""
        if self.reader is None:
            return sentences
        read = {(r.hit.chunk.source, r.hit.chunk.start) for r in readings}
        unread = [
            h for h in passages if (h.chunk.source, h.chunk.start) not in read
            and any((c.source, c.start) == (h.chunk.source, h.chunk.start) for c in citations)
        ]  # fmt: skip
        readings += read_passages(self.reader, query, unread)
        margins = {(r.hit.chunk.source, r.hit.chunk.start): r.margin for r in readings}
        holds = {
            c.n for c in citations
            if margins.get((c.source, c.start), NOT_READ) >= self.config.min_answerability
        }  # fmt: skip
        checked = [
            replace(s, supported=s.supported and any(n in holds for n in s.citations))
            for s in sentences
        ]
        if any(not s.supported for s in checked) and all(s.supported for s in sentences):
            warnings.append("some sentences are not supported by the passages they cite")
        return checked

    def _extractive(
        self, query: str, passages: Sequence[Hit], readings: Sequence[PassageReading]
    ) -> tuple[str, list[Citation], list[CheckedSentence]]:
        """The sentences that answer, the one holding the reader's span first."""
        lexical = self.retriever.index.lexicon
        picked = pick_sentences(
            query,
            passages,
            lexical,
            max_sentences=self.config.answer_sentences,
            stuffing_limit=self.config.stuffing_limit,
        )
        best = best_reading(readings)
        lead = (
            span_sentence(best) if best and best.margin >= self.config.min_answerability else None
        )
        if lead is not None:
            picked = lead_with_span(picked, lead, max_sentences=self.config.answer_sentences)
        if not picked:
            return ABSTAIN_SENTENCE, [], []
        return number_citations(picked)

    def stream(
        self,
        question: str,
        *,
        history: Sequence[str] = (),
        method: str | None = None,
        where: SourceFilter | None = None,
    ) -> Iterator[StreamEvent]:
        """Yield Token events (answer text as produced), then one Final with the Answer.

        In LLM mode the pieces are the model's raw tokens; when verification rejects them, the
        final Answer carries the extractive answer instead (and a warning saying why).
        """
        question, warnings = prepare_question(question, max_chars=self.config.max_question_chars)
        history = [
            h[: self.config.max_question_chars] for h in history if isinstance(h, str) and h.strip()
        ]
        model = self.chat_model()
        if self.model_slot.error:
            warnings.append(f"LLM unavailable ({self.model_slot.error}); answering extractively")
        if model is not None and history and needs_context(question):
            query = condense_question(model, question, history)
        else:
            query = standalone_query(question, history)
        retriever = self.retriever
        lexical = retriever.index.lexicon
        t0 = time.perf_counter()
        result = retriever.retrieve(
            query,
            top_k=self.config.report_depth,
            method=method or self.config.retrieval,
            stuffing_limit=self.config.stuffing_limit,
            where=where,
        )
        passages = result.hits[: self.config.top_k]
        t1 = time.perf_counter()
        weak, evidence = self._too_weak(query, passages, lexical, warnings)
        # MiniLM reads English only: a question in another script is judged by the checks above.
        read = self.reader is not None and not weak and not is_non_latin(query)
        readings = self._read(query, passages) if read else []
        score = answerability(readings)
        if read and not answers(score, evidence, config=self.config):
            weak = True
        t_read = time.perf_counter()
        timings: dict[str, float] = {}
        stages = {**result.timings_ms, "read": (t_read - t1) * 1000}
        mode, text, citations, sentences = "extractive", ABSTAIN_SENTENCE, [], []
        detail = ""
        outcome: LlmOutcome | None = None
        if model is not None and weak:
            detail = "LLM not called: the passages do not answer the question"
        if model is not None and not weak:
            for item in stream_llm_answer(
                model=model, question=query, hits=passages,
                max_answer_tokens=self.config.max_answer_tokens, lexical=lexical,
                vectors=retriever.index.store, embedder=self.embedder,
            ):  # fmt: skip
                if isinstance(item, LlmOutcome):
                    outcome = item
                else:
                    yield Token(item)
            timings.update(
                {k: outcome.timings_ms[k] for k in ("prompt_tokens", "first_token", "generate")}
            )
            stages.update({k: outcome.timings_ms[k] for k in ("prompt_build", "verify")})
            if outcome.problem:
                warnings.append(f"LLM answer replaced by the extractive answer: {outcome.problem}")
                detail = f"LLM answer rejected: {outcome.problem}"
            else:
                mode = "llm"
                if not outcome.abstained:
                    text, sentences, citations = llm_citations(outcome, lexical, warnings)
                    sentences = self._check_llm_support(
                        query, readings, citations, sentences, passages, warnings
                    )
        if mode == "extractive" and not weak:
            text, citations, sentences = self._extractive(query, passages, readings)
        short = None
        if citations and readings:
            short = short_answer_for(
                query, readings, citations,
                min_margin=self.config.min_answerability, within_highlights=mode == "extractive",
                min_how_margin=self.config.min_how_margin,
            )  # fmt: skip
        t2 = time.perf_counter()
        if outcome is None:
            for i, word in enumerate(text.split(" ")):
                yield Token(word if i == 0 else " " + word)
        timings = {"retrieve": (t1 - t0) * 1000, "answer": (t2 - t1) * 1000, **timings}
        yield Final(
            Answer(
                answer=text,
                abstained=not citations,
                mode=mode,
                citations=citations,
                timings_ms=timings,
                query=query,
                hits=result.hits,
                warnings=warnings,
                stages_ms=stages,
                sentences=sentences,
                short_answer=short,
                answerability=score,
                mode_detail=detail,
            )
        )


def open_pipeline(config: Config, *, refresh: bool = False, progress: bool = True) -> Pipeline:
    """A Pipeline on config's index, building or updating the index first when needed.

    With refresh=False an existing compatible index is used as it is; a missing, mismatched
    or corrupt one is (re)built from the corpus folder.
    """
    from index import IndexProtected, update_index

    if not refresh:
        try:
            return Pipeline(config)  # loads (and verifies) the index once
        except IndexProtected:
            raise  # newer version or other engine: only an explicit --rebuild replaces it
        except IndexLoadError as exc:
            logger.warning("%s", str(exc).split(";")[0])
    # The index could not be loaded (or refresh was asked): check every checksum while updating.
    report = update_index(config.index, progress=progress, full_check=True)
    logger.info("index: %s", report.summary())
    return Pipeline(config)
