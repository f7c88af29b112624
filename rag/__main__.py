"""Command line: build the index and ask questions.

    python -m rag index [--corpus DIR] [--index DIR] [--rebuild]
    python -m rag ask "QUESTION" [--corpus DIR] [--index DIR] [--json] [--stream]
                     [--history Q ...] [--model FILE.gguf] [--n-ctx N] [--threads N]

Environment (read here only): RAG_CORPUS, RAG_INDEX, RAG_MODEL. Without --model or RAG_MODEL
the first *.gguf in models/ is used; with none, answers are extractive.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from index import IndexConfig, IndexLoadError, OnnxExportError, update_index
from index.config import DEFAULT_EMBEDDING_BACKEND, EMBEDDING_BACKENDS
from rag.config import Config
from rag.llm import find_model
from rag.logs import configure_logging, error_line
from rag.pipeline import Answer, Final, open_pipeline, prepare_question

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
    if hasattr(args, "model"):
        extra["model_path"] = find_model(
            args.model, env_value=os.environ.get("RAG_MODEL"), models_dir=Path("models")
        )
        extra["n_ctx"] = args.n_ctx
        extra["n_threads"] = args.threads
        extra["max_answer_tokens"] = args.max_tokens
    backend = args.embedding_backend or os.environ.get("RAG_EMBEDDING_BACKEND")
    backend = backend or DEFAULT_EMBEDDING_BACKEND
    index = IndexConfig(
        corpus_dir=Path(corpus), index_dir=Path(index_dir), embedding_backend=backend
    )
    return Config(index=index, **extra)


def _print_answer(answer: Answer, out) -> None:
    out.write(answer.answer + "\n\n")
    for c in answer.citations:
        date = f", {c.date}" if c.date else ""
        where = f", {c.locator}" if c.locator else ""
        ocr = ", OCR" if c.ocr else ""
        out.write(f"[{c.n}] {c.title} ({c.source}{date}{where}{ocr}, chars {c.start}-{c.end})\n")
        out.write("    " + " ".join(c.text.split())[:400] + "\n")
    mode = answer.mode if answer.mode != "extractive" else "extractive (no LLM model in use)"
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
    for partial in report.partial:
        sys.stdout.write(f"partly   {partial.source}: {partial.reason}\n")
    sys.stdout.write(report.summary() + "\n")
    if report.wrote_generation:
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in report.stage_seconds.items())
        sys.stdout.write(f"stages: {stages} (embedding: {config.index.embedding_backend})\n")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    config = build_config(args)
    question = " ".join(args.question)
    prepare_question(question, max_chars=config.max_question_chars)  # fail fast, before loading
    pipeline = open_pipeline(config, progress=not args.quiet)
    if pipeline.mode == "llm":
        logger.info("mode: llm (%s)", pipeline.model_name)
    else:
        logger.info("mode: extractive (no LLM model: use --model, RAG_MODEL or models/*.gguf)")
    answer = None
    streamed = False
    for event in pipeline.stream(question, history=args.history or []):
        if isinstance(event, Final):
            answer = event.answer
        elif args.stream and not args.json:
            sys.stdout.write(event.text)
            sys.stdout.flush()
            streamed = True
    for warning in answer.warnings:
        logger.warning("%s", warning)
    if args.json:
        sys.stdout.write(json.dumps(answer.to_dict(), ensure_ascii=False) + "\n")
        return 0
    if streamed:
        sys.stdout.write("\n\n")
        unsupported = [s.text for s in answer.sentences if not s.supported]
        if answer.mode == "extractive" and pipeline.mode == "llm":
            sys.stdout.write("[verification rejected the model's answer; extractive answer:]\n")
        elif unsupported:
            sys.stdout.write(f"[verification: {len(unsupported)} unsupported sentence(s)]\n")
        else:
            sys.stdout.write("[verification: every sentence is supported by its citation]\n")
    _print_answer(answer, sys.stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m rag`."""
    parser = argparse.ArgumentParser(prog="python -m rag", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--corpus", help="folder of documents (default corpus/, env RAG_CORPUS)")
    common.add_argument("--index", help="index folder (default data/index/, env RAG_INDEX)")
    common.add_argument(
        "--embedding-backend",
        choices=EMBEDDING_BACKENDS,
        help="onnx-int8 (default, fastest), onnx or torch; env RAG_EMBEDDING_BACKEND",
    )
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
    p_ask.add_argument("--stream", action="store_true", help="print the answer as it is written")
    p_ask.add_argument("--model", help="GGUF model file (env RAG_MODEL, else models/*.gguf)")
    p_ask.add_argument("--n-ctx", type=int, default=4096, help="LLM context size in tokens")
    p_ask.add_argument("--threads", type=int, help="LLM threads (default: physical cores)")
    p_ask.add_argument("--max-tokens", type=int, default=384, help="LLM answer budget")
    p_ask.set_defaults(func=cmd_ask)
    args = parser.parse_args(argv)
    configure_logging(
        logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    )
    try:
        return args.func(args)
    except (ValueError, IndexLoadError, ImportError, OnnxExportError, OSError) as exc:
        sys.stderr.write(f"error: {error_line(exc)}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
