"""Command line: build the index and ask questions.

    python -m rag index [--corpus DIR] [--index DIR] [--rebuild]
    python -m rag ask "QUESTION" [--corpus DIR] [--index DIR] [--json] [--history Q ...]

Environment (read here only): RAG_CORPUS, RAG_INDEX, RAG_MODEL.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from index import IndexConfig, IndexLoadError, update_index
from rag.config import Config
from rag.pipeline import Answer, open_pipeline, prepare_question

logger = logging.getLogger("rag")


def build_config(args: argparse.Namespace) -> Config:
    """Config from CLI flags, falling back to environment variables, then defaults."""
    corpus = args.corpus or os.environ.get("RAG_CORPUS") or "corpus"
    index_dir = args.index or os.environ.get("RAG_INDEX") or "data/index"
    extra = {}
    if getattr(args, "top_k", None):
        extra["top_k"] = args.top_k
    if getattr(args, "method", None):
        extra["retrieval"] = args.method
    return Config(index=IndexConfig(corpus_dir=Path(corpus), index_dir=Path(index_dir)), **extra)


def _print_answer(answer: Answer, out) -> None:
    out.write(answer.answer + "\n\n")
    for c in answer.citations:
        date = f", {c.date}" if c.date else ""
        out.write(f"[{c.n}] {c.title} ({c.source}{date}, chars {c.start}-{c.end})\n")
        out.write("    " + " ".join(c.text.split())[:400] + "\n")
    mode = answer.mode if answer.mode != "extractive" else "extractive (no LLM model configured)"
    t = answer.timings_ms
    out.write(f"\nmode: {mode}; retrieve {t['retrieve']:.0f} ms, answer {t['answer']:.0f} ms\n")


def cmd_index(args: argparse.Namespace) -> int:
    config = build_config(args)
    report = update_index(config.index, rebuild=args.rebuild, progress=not args.quiet)
    for name, items in (
        ("added", report.added),
        ("changed", report.changed),
        ("removed", report.removed),
    ):
        for source in items:
            sys.stdout.write(f"{name:8s} {source}\n")
    for skipped in report.skipped:
        sys.stdout.write(f"skipped  {skipped.source}: {skipped.reason}\n")
    sys.stdout.write(report.summary() + "\n")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    config = build_config(args)
    question = " ".join(args.question)
    prepare_question(question, max_chars=config.max_question_chars)  # fail fast, before loading
    pipeline = open_pipeline(config, progress=not args.quiet)
    answer = pipeline.ask(question, history=args.history or [])
    for warning in answer.warnings:
        logger.warning("%s", warning)
    if args.json:
        sys.stdout.write(json.dumps(answer.to_dict(), ensure_ascii=False) + "\n")
    else:
        _print_answer(answer, sys.stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m rag`."""
    parser = argparse.ArgumentParser(prog="python -m rag", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--corpus", help="folder of documents (default corpus/, env RAG_CORPUS)")
    common.add_argument("--index", help="index folder (default data/index/, env RAG_INDEX)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p_index = sub.add_parser("index", parents=[common], help="build or update the index")
    p_index.add_argument("--rebuild", action="store_true", help="re-embed everything")
    p_index.set_defaults(func=cmd_index)
    p_ask = sub.add_parser("ask", parents=[common], help="answer a question with citations")
    p_ask.add_argument("question", nargs="+")
    p_ask.add_argument("--json", action="store_true", help="print the answer as JSON")
    p_ask.add_argument("--history", action="append", help="an earlier question of the chat")
    p_ask.add_argument("--top-k", type=int, help="passages given to the answerer")
    p_ask.add_argument("--method", choices=["hybrid", "dense", "bm25"])
    p_ask.set_defaults(func=cmd_ask)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose
        else logging.INFO
        if not args.quiet
        else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("faiss", "bm25s", "sentence_transformers", "httpx", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (ValueError, IndexLoadError, ImportError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
