"""Run a query set through the chat's own pipeline and score it, per retrieval method.

    python -m eval --queries eval/queries/corpus.jsonl --compare --json eval/reports/corpus.json

Each query's `history` questions are asked first, in order, each with the questions before it
as its history (the system answers them itself; their answers are not scored); then the
question itself is asked with the whole history and scored. `Pipeline.ask` is the code path
of the chat and of `python -m rag ask`, so the evaluation measures exactly what users get.

JSON written by `write_json` (one method):
    {"metrics": {"hit@1": ..., ...}, "config": {...}, "queries": [QUERY, ...]}
With several methods (`--compare`), metrics are keyed by method and the queries are those of
the primary method (hybrid), each with a short per-method summary:
    {"metrics": {"bm25": {...}, "dense": {...}, "hybrid": {...}}, "config": {...},
     "queries": [QUERY + {"methods": {"bm25": {"hit_rank", "passage_rank", "abstained",
                                               "answer_correct", "answerability"}, ...}},
                 ...]}
QUERY = {"id", "question", "answer", "abstained", "citations", "retrieved_sources",
         "hit_rank", "answer_correct", "latency_ms", plus "answerable", "kind", "history",
         "expected", "gold_sources", "passage_rank", "f1", "mode", "short_answer",
         "answerability"}.
"short_answer" is the reader's exact span ({"text", "source", "start", "end", "citation"})
or null; "answerability" the reader's best margin over "no answer here", null when nothing
was read (the cheap pre-gate abstained, or no reader).
`hit_rank` is the position of the first gold source in `retrieved_sources` (distinct sources
in rank order); `passage_rank` is the rank of the first retrieved passage from a gold source,
which is what hit@k and mrr count (the answerer reads passages, not files). A retrieval-only
query (sources, no answers) has "answer_correct" and "f1" null and is a failure only when no
passage of a gold source was retrieved.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from eval.metrics import Outcome, aggregate, answer_scores, distinct_in_order, first_rank
from eval.metrics import is_correct as outcome_correct
from eval.queries import Query
from rag.config import Config
from rag.pipeline import Citation, Pipeline
from rag.reading import NOT_READ, ShortAnswer

logger = logging.getLogger(__name__)

METHODS = ("bm25", "dense", "hybrid")
PRIMARY_METHOD = "hybrid"


def json_score(value: float) -> float | None:
    """A score for JSON: rounded to 4 places, None when not finite (nothing was read)."""
    return round(value, 4) if math.isfinite(value) else None


@dataclass
class QueryResult:
    """The scored final answer to one query under one retrieval method."""

    query: Query
    method: str
    answer: str
    abstained: bool
    mode: str
    citations: list[Citation]
    retrieved_sources: list[str]
    hit_rank: int | None
    passage_rank: int | None
    latency_ms: dict[str, float]
    short_answer: ShortAnswer | None = None
    # The reader's best margin over "no answer here" (-inf: nothing was read).
    answerability: float = NOT_READ

    def outcome(self) -> Outcome:
        """The metric-level view of this result."""
        return Outcome(
            answerable=self.query.answerable,
            abstained=self.abstained,
            answer=self.answer,
            golds=self.query.answers,
            gold_sources=self.query.sources,
            passage_rank=self.passage_rank,
            cited_sources=tuple(c.source for c in self.citations),
            cited_texts=tuple(c.text for c in self.citations),
            retrieve_ms=self.latency_ms["retrieve"],
            answer_ms=self.latency_ms["answer"],
            kind=self.query.kind,
            short_answer=self.short_answer.text if self.short_answer else None,
            answerability=self.answerability,
        )

    @property
    def answer_correct(self) -> bool | None:
        """Answerable: the answer contains a gold string. Unanswerable: it abstained.

        None for a retrieval-only query.
        """
        return outcome_correct(self.outcome())

    @property
    def failed(self) -> bool:
        """A wrong answer, or for a retrieval-only query no gold passage retrieved."""
        if self.query.retrieval_only:
            return self.passage_rank is None
        return not self.answer_correct

    def summary(self) -> dict:
        """The short per-method form used beside the primary method's queries."""
        return {
            "hit_rank": self.hit_rank,
            "passage_rank": self.passage_rank,
            "abstained": self.abstained,
            "answer_correct": self.answer_correct,
            "answerability": json_score(self.answerability),
        }

    def to_dict(self) -> dict:
        """One entry of the JSON "queries" list."""
        judged = self.query.answerable and not self.query.retrieval_only
        scores = answer_scores(self.outcome()) if judged else {"f1": None}
        return {
            "id": self.query.id,
            "question": self.query.question,
            "answer": self.answer,
            "abstained": self.abstained,
            "citations": [c.to_dict() for c in self.citations],
            "retrieved_sources": self.retrieved_sources,
            "hit_rank": self.hit_rank,
            "answer_correct": self.answer_correct,
            "latency_ms": {k: round(v, 2) for k, v in self.latency_ms.items()},
            "answerable": self.query.answerable,
            "history": list(self.query.history),
            "expected": list(self.query.answers),
            "gold_sources": list(self.query.sources),
            "passage_rank": self.passage_rank,
            "f1": None if scores["f1"] is None else round(scores["f1"], 4),
            "mode": self.mode,
            "kind": self.query.kind,
            "short_answer": self.short_answer.to_dict() if self.short_answer else None,
            "answerability": json_score(self.answerability),
        }


@dataclass
class MethodRun:
    """All results of one retrieval method and their aggregate metrics."""

    method: str
    results: list[QueryResult]
    metrics: dict
    seconds: float

    def failures(self) -> list[QueryResult]:
        """Wrong answers, answered unanswerable questions, retrieval-only queries missed."""
        return [r for r in self.results if r.failed]


@dataclass
class EvalRun:
    """One evaluation: a MethodRun per method (in the order run) and the settings used."""

    runs: dict[str, MethodRun]
    config: dict = field(default_factory=dict)

    @property
    def primary(self) -> MethodRun:
        """The hybrid run when there is one, else the first."""
        return self.runs.get(PRIMARY_METHOD) or next(iter(self.runs.values()))

    @property
    def compare(self) -> bool:
        """True when several methods were evaluated side by side."""
        return len(self.runs) > 1

    def metrics_by_method(self) -> dict[str, dict]:
        """Metrics keyed by method, in the order run."""
        return {name: run.metrics for name, run in self.runs.items()}

    def to_dict(self) -> dict:
        """The JSON document described in the module docstring."""
        primary = self.primary
        queries = [r.to_dict() for r in primary.results]
        if self.compare:
            for position, entry in enumerate(queries):
                entry["methods"] = {
                    name: run.results[position].summary() for name, run in self.runs.items()
                }
        metrics = self.metrics_by_method() if self.compare else primary.metrics
        return {"metrics": metrics, "config": self.config, "queries": queries}


def ask_query(pipeline: Pipeline, query: Query, *, method: str) -> QueryResult:
    """Ask the history questions, then the query itself; score retrieval of the last answer."""
    history: list[str] = []
    for earlier in query.history:
        pipeline.ask(earlier, history=list(history), method=method)
        history.append(earlier)
    answer = pipeline.ask(query.question, history=history, method=method)
    hit_sources = [hit.chunk.source for hit in answer.hits]
    retrieved = distinct_in_order(hit_sources)
    return QueryResult(
        query=query,
        method=method,
        answer=answer.answer,
        abstained=answer.abstained,
        mode=answer.mode,
        citations=list(answer.citations),
        retrieved_sources=retrieved,
        hit_rank=first_rank(retrieved, query.sources),
        passage_rank=first_rank(hit_sources, query.sources),
        latency_ms={
            "retrieve": float(answer.timings_ms["retrieve"]),
            "answer": float(answer.timings_ms["answer"]),
        },
        short_answer=answer.short_answer,
        answerability=answer.answerability,
    )


def run_method(
    pipeline: Pipeline, queries: Sequence[Query], *, method: str, progress: bool = False
) -> MethodRun:
    """Every query through the pipeline with one retrieval method, and its metrics."""
    from tqdm import tqdm

    if method not in METHODS:
        raise ValueError(f"unknown retrieval method {method!r}; use one of {', '.join(METHODS)}")
    started = time.perf_counter()
    results = [
        ask_query(pipeline, query, method=method)
        for query in tqdm(queries, desc=method, unit="q", disable=not progress, leave=False)
    ]
    metrics = aggregate([r.outcome() for r in results])
    seconds = time.perf_counter() - started
    logger.info("%s: %d queries in %.1fs", method, len(results), seconds)
    return MethodRun(method=method, results=results, metrics=metrics, seconds=seconds)


def describe_config(config: Config, pipeline: Pipeline, *, methods: Sequence[str]) -> dict:
    """The settings an evaluation ran with, for the JSON "config" block."""
    index = pipeline.index
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "methods": list(methods),
        "corpus": str(config.index.corpus_dir),
        "index": str(config.index.index_dir),
        "documents": len(index.manifest.get("documents", {})),
        "chunks": index.size,
        "embedding_model": config.index.embedding_model,
        "embedding_backend": config.index.embedding_backend,
        "chunk_tokens": config.index.chunk_tokens,
        "overlap_sentences": config.index.overlap_sentences,
        "top_k": config.top_k,
        "report_depth": config.report_depth,
        "candidates": config.candidates,
        "rrf_k": config.rrf_k,
        "min_evidence": config.min_evidence,
        "answer_sentences": config.answer_sentences,
        "reader": config.reader,
        "reader_passages": config.reader_passages,
        "reader_max_margin": config.reader_max_margin,
        "reader_dense_weight": config.reader_dense_weight,
        "reader_bm25_weight": config.reader_bm25_weight,
        "min_answerability": config.min_answerability,
        "unsure_margin": config.unsure_margin,
        "min_unsure_evidence": config.min_unsure_evidence,
        "mode": pipeline.mode,
    }


def evaluate(
    pipeline: Pipeline,
    queries: Sequence[Query],
    *,
    methods: Sequence[str] = (PRIMARY_METHOD,),
    progress: bool = False,
    warm_up: bool = True,
    extra_config: dict | None = None,
) -> EvalRun:
    """Run the queries once per method on the same index and collect the results."""
    if not queries:
        raise ValueError("no queries to evaluate")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown retrieval methods {unknown}; use {', '.join(METHODS)}")
    if warm_up:
        # The first question pays for lazy initialisation; keep it out of the latencies.
        pipeline.ask(queries[0].question, method=PRIMARY_METHOD)
    runs = {m: run_method(pipeline, queries, method=m, progress=progress) for m in methods}
    config = describe_config(pipeline.config, pipeline, methods=methods)
    config.update(extra_config or {})
    return EvalRun(runs=runs, config=config)


def open_for_eval(config: Config, *, progress: bool = False) -> Pipeline:
    """Bring the index up to date with the corpus (incrementally), then open a Pipeline."""
    from index import update_index

    report = update_index(config.index, progress=progress)
    logger.info("index: %s", report.summary())
    return Pipeline(config)


def write_json(run: EvalRun, path: str | Path) -> Path:
    """Write the run's JSON document (see the module docstring) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(run.to_dict(), ensure_ascii=False, indent=1) + "\n", "utf-8")
    tmp.replace(path)
    return path
