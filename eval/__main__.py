"""Command line of the evaluation harness.

    python -m eval --queries FILE [--corpus DIR] [--index DIR] [--json OUT] [--report OUT.md]
                   [--plots DIR] [--compare | --method hybrid|dense|bm25] [--limit N [--seed S]]

Validates the whole query set first (a bad line stops the run, exit code 2, before any index
work), updates the index incrementally (as `python -m rag index` does), runs every query
through the chat's pipeline, prints the summary table and the breakdown by kind of question,
and writes the JSON and Markdown report. --plots writes the abstention plots of the primary
method (eval/plots.py) into DIR as <queries stem>-answerability.png and
<queries stem>-abstention-pr.png, linked from the report. JSON shape: see eval/runner.py.
Environment (read here only): RAG_CORPUS, RAG_INDEX, RAG_MODEL, RAG_STORE, RAG_MILVUS_URI,
RAG_MILVUS_TOKEN.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from eval.queries import Query, check_sources, load_queries, select_queries
from eval.runner import METHODS, PRIMARY_METHOD, EvalRun
from index.config import DEFAULT_EMBEDDING_BACKEND, EMBEDDING_BACKENDS
from rag.logs import error_line
from rag.store_options import add_store_options, store_settings

logger = logging.getLogger("eval")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `python -m eval` and `python -m eval.squad`."""
    parser.add_argument("--index", help="index folder")
    add_store_options(parser)
    parser.add_argument("--json", type=Path, help="write per-query results and metrics as JSON")
    parser.add_argument("--report", type=Path, help="write a Markdown report (+ PNG plots)")
    parser.add_argument(
        "--compare", action="store_true", help="evaluate bm25, dense and hybrid side by side"
    )
    parser.add_argument(
        "--method", choices=METHODS, default=PRIMARY_METHOD, help="retrieval (no --compare)"
    )
    parser.add_argument("--limit", type=int, help="evaluate only N queries")
    parser.add_argument("--seed", type=int, help="with --limit: a seeded random sample")
    parser.add_argument("--model", type=Path, help="local GGUF model (env RAG_MODEL)")
    parser.add_argument(
        "--embedding-backend",
        choices=EMBEDDING_BACKENDS,
        default=os.environ.get("RAG_EMBEDDING_BACKEND") or DEFAULT_EMBEDDING_BACKEND,
        help="onnx-int8 (default), onnx or torch; env RAG_EMBEDDING_BACKEND",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def setup_logging(args: argparse.Namespace) -> None:
    """Log level from -q/-v; third-party chatter kept at warnings."""
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    from rag.logs import configure_logging

    configure_logging(level)


def methods_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The retrieval methods to evaluate."""
    return METHODS if args.compare else (args.method,)


def run_and_write(
    args: argparse.Namespace,
    queries: Sequence[Query],
    *,
    corpus_dir: Path,
    index_dir: Path,
    extra_config: dict,
    title: str,
    extra_markdown: Callable[[EvalRun], str] | None = None,
    reference: dict | None = None,
) -> EvalRun:
    """Open the pipeline, evaluate, print the summary, write JSON and report."""
    from eval.report import format_by_kind, format_summary, write_report
    from eval.runner import evaluate, open_for_eval, write_json
    from index import IndexConfig
    from rag.config import Config

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    queries = select_queries(queries, limit=args.limit, seed=args.seed)
    model = args.model or os.environ.get("RAG_MODEL") or None
    config = Config(
        index=IndexConfig(
            corpus_dir=corpus_dir,
            index_dir=index_dir,
            embedding_backend=args.embedding_backend,
            **store_settings(args, os.environ),
        ),  # fmt: skip
        model_path=Path(model) if model else None,
    )
    pipeline = open_for_eval(config, progress=not args.quiet)
    extra = {**extra_config, "limit": args.limit, "seed": args.seed}
    run = evaluate(
        pipeline, queries, methods=methods_of(args), progress=not args.quiet, extra_config=extra
    )
    sys.stdout.write(format_summary(run.metrics_by_method()))
    if by_kind := format_by_kind(run.primary.metrics):
        sys.stdout.write(f"\nby kind of question ({run.primary.method}):\n{by_kind}")
    markdown = extra_markdown(run) if extra_markdown else ""
    if args.json:
        logger.info("JSON written to %s", write_json(run, args.json))
    plots = write_run_plots(run, getattr(args, "plots", None))
    if args.report:
        write_report(
            run,
            args.report,
            title=title,
            extra_markdown=markdown,
            reference=reference,
            plots=plots,
        )
    return run


def write_run_plots(run: EvalRun, directory: Path | None) -> list[Path]:
    """The primary method's abstention plots in directory, named by the query set's stem."""
    if directory is None:
        return []
    from eval.plots import write_plots

    stem = Path(str(run.config.get("queries_file") or "queries")).stem
    threshold = float(run.config.get("min_answerability", 0.0))
    label = f"{stem} ({run.primary.method})"
    return write_plots(run.primary.results, directory, stem=stem, threshold=threshold, label=label)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m eval`."""
    from index import IndexLoadError

    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__.split("\n")[0])
    parser.add_argument("--queries", required=True, type=Path, help="JSONL query set")
    parser.add_argument("--corpus", help="folder of documents (default corpus/, env RAG_CORPUS)")
    parser.add_argument(
        "--plots", type=Path, help="write the abstention plots (PNG) into this folder"
    )
    add_run_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args)
    corpus_dir = Path(args.corpus or os.environ.get("RAG_CORPUS") or "corpus")
    index_dir = Path(args.index or os.environ.get("RAG_INDEX") or "data/index")
    try:
        queries = load_queries(args.queries)
        if not corpus_dir.is_dir():
            raise ValueError(f"corpus folder not found: {corpus_dir}")
        check_sources(queries, corpus_dir, path=str(args.queries))
        run_and_write(
            args,
            queries,
            corpus_dir=corpus_dir,
            index_dir=index_dir,
            extra_config={"queries_file": str(args.queries)},
            title=f"Evaluation of {args.queries.name}",
        )
    except (ValueError, IndexLoadError, ImportError, OSError) as exc:
        sys.stderr.write(f"error: {error_line(exc)}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
