"""SQuAD as an abstention test: questions about articles that are not in the index.

    python -m eval.squad --abstention [--abstention-seed S] [--limit N --seed S]
                         [--json OUT] [--report OUT.md]

Only the held-out articles (never read by the reader's training, eval/reader_split.json)
take part. Half of them are indexed (their paragraphs become the corpus); the questions
about the other half must abstain, and the questions about the indexed half must not. The
split is fixed in eval/reader_split.json ("abstention_indexed"); --abstention-seed draws
another half. Reported: abstain recall and false abstention with Wilson 95% intervals,
hit@5 of the indexed questions (a miss of retrieval is the usual cause of a false
abstention), and the plots of the answerability score and the abstention PR curve.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.queries import Query

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AbstentionCase:
    """One question of the test: whether its article is indexed, and what the system did."""

    id: str
    question: str
    indexed: bool
    abstained: bool
    answerability: float
    hit_at_5: bool | None


def split_articles(held_out: Sequence[str], *, fixed: Sequence[str], seed: int | None) -> set[str]:
    """The held-out article folders to index: the fixed half, or a seeded random half."""
    if seed is None:
        unknown = set(fixed) - set(held_out)
        if unknown:
            raise ValueError(f"abstention_indexed names articles not held out: {sorted(unknown)}")
        return set(fixed)
    order = sorted(held_out)
    random.Random(seed).shuffle(order)
    return set(order[: len(order) // 2])


def _folder(query: Query) -> str:
    return query.sources[0].split("/")[0]


def run_cases(pipeline, queries: Sequence[Query], indexed: set[str], *, progress: bool):
    """Ask every question; record abstention, answerability and (indexed) hit@5."""
    from tqdm import tqdm

    cases = []
    for query in tqdm(queries, desc="abstention", unit="q", disable=not progress):
        answer = pipeline.ask(query.question)
        is_indexed = _folder(query) in indexed
        hit = None
        if is_indexed:
            top = [h.chunk.source for h in answer.hits[:5]]
            hit = any(s in top for s in query.sources)
        cases.append(
            AbstentionCase(
                query.id, query.question, is_indexed, answer.abstained, answer.answerability, hit
            )
        )
    return cases


def summarize(cases: Sequence[AbstentionCase]) -> dict:
    """Abstain recall, false abstention (Wilson 95% intervals) and hit@5 of the indexed half."""
    from eval.metrics import wilson_interval

    absent = [c for c in cases if not c.indexed]
    present = [c for c in cases if c.indexed]
    recall_k = sum(c.abstained for c in absent)
    false_k = sum(c.abstained for c in present)
    hits = [c.hit_at_5 for c in present]
    missed = [c for c in present if not c.hit_at_5]
    return {
        "questions_absent": len(absent),
        "questions_indexed": len(present),
        "abstain_recall": recall_k / max(1, len(absent)),
        "abstain_recall_ci95": wilson_interval(recall_k, len(absent)),
        "false_abstention": false_k / max(1, len(present)),
        "false_abstention_ci95": wilson_interval(false_k, len(present)),
        "indexed_hit@5": sum(hits) / max(1, len(hits)),
        "false_abstention_when_hit@5": (
            sum(c.abstained for c in present if c.hit_at_5) / max(1, len(present) - len(missed))
        ),
    }


def report_markdown(summary: dict, *, title: str, settings: dict) -> str:
    """The Markdown report of one abstention run."""
    lo_r, hi_r = summary["abstain_recall_ci95"]
    lo_f, hi_f = summary["false_abstention_ci95"]
    lines = [
        f"# {title}",
        "",
        "Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()),
        "",
        "| figure | value | 95% interval | questions |",
        "|---|---|---|---|",
        f"| abstain recall (article not indexed) | {summary['abstain_recall']:.3f} "
        f"| {lo_r:.3f}–{hi_r:.3f} | {summary['questions_absent']} |",
        f"| false abstention (article indexed) | {summary['false_abstention']:.3f} "
        f"| {lo_f:.3f}–{hi_f:.3f} | {summary['questions_indexed']} |",
        f"| hit@5 of indexed questions | {summary['indexed_hit@5']:.3f} | | |",
        f"| false abstention when the gold paragraph is in the top 5 "
        f"| {summary['false_abstention_when_hit@5']:.3f} | | |",
        "",
    ]
    return "\n".join(lines)


def write_outputs(cases, summary: dict, settings: dict, *, json_path, report_path) -> None:
    """JSON (per question), Markdown and the two PNG plots beside the report."""
    from eval.plots import plot_abstention_pr, plot_answerability

    if json_path:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "settings": settings,
            "summary": summary,
            "questions": [{**c.__dict__, "answerability": _finite(c.answerability)} for c in cases],
        }
        json_path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        logger.info("JSON written to %s", json_path)
    if report_path:
        report_path = Path(report_path)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        stem = report_path.with_suffix("")
        answerable = [c.answerability for c in cases if c.indexed]
        unanswerable = [c.answerability for c in cases if not c.indexed]
        threshold = settings["min_answerability"]
        title = f"SQuAD abstention ({settings['split']})"
        plot_answerability(
            answerable, unanswerable, threshold=threshold,
            path=Path(f"{stem}-answerability.png"), title=title,
        )  # fmt: skip
        plot_abstention_pr(
            answerable, unanswerable, threshold=threshold,
            path=Path(f"{stem}-abstention-pr.png"), title=title,
        )  # fmt: skip
        report_path.write_text(
            report_markdown(summary, title=title, settings=settings)
            + f"\n![answerability]({stem.name}-answerability.png)\n"
            + f"![abstention PR]({stem.name}-abstention-pr.png)\n",
            encoding="utf-8",
        )
        logger.info("report written to %s", report_path)


def _finite(value: float) -> float | None:
    return None if value == float("-inf") else round(value, 4)


def run_abstention(
    paragraphs, queries: Sequence[Query], *, held_out: set[str], fixed: Sequence[str],
    seed: int | None, data_dir: Path, embedding_backend: str, progress: bool,
) -> tuple[list[AbstentionCase], dict, dict]:  # fmt: skip
    """Index the chosen half of the held-out articles and ask all their questions."""
    from eval.squad import write_corpus
    from index import IndexConfig
    from rag.config import Config
    from rag.pipeline import open_pipeline

    indexed = split_articles(sorted(held_out), fixed=fixed, seed=seed)
    name = "fixed" if seed is None else f"seed-{seed}"
    root = data_dir / f"abstention-{name}"
    write_corpus([p for p in paragraphs if p.source.split("/")[0] in indexed], root / "corpus")
    config = Config(
        index=IndexConfig(
            corpus_dir=root / "corpus",
            index_dir=root / "index",
            embedding_backend=embedding_backend,
        )
    )
    pipeline = open_pipeline(config, progress=progress)
    started = time.perf_counter()
    asked = [q for q in queries if _folder(q) in held_out]
    cases = run_cases(pipeline, asked, indexed, progress=progress)
    settings = {
        "split": name,
        "indexed_articles": len(indexed),
        "absent_articles": len(held_out) - len(indexed),
        "min_answerability": config.min_answerability,
        "unsure_margin": config.unsure_margin,
        "min_unsure_evidence": config.min_unsure_evidence,
        "min_evidence": config.min_evidence,
        "reader_passages": config.reader_passages,
        "reader_max_margin": config.reader_max_margin,
        "reader_dense_weight": config.reader_dense_weight,
        "reader_bm25_weight": config.reader_bm25_weight,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return cases, summarize(cases), settings
