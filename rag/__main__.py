"""Command line: build the index and ask questions.

    python -m rag index [--corpus DIR] [--index DIR] [--rebuild]
    python -m rag index --collection NAME [--corpus DIR]   # creates NAME when --corpus is new
    python -m rag ask "QUESTION" [--corpus DIR] [--index DIR] [--json] [--stream]
                     [--history Q ...] [--model FILE.gguf] [--n-ctx N] [--threads N]
                     [--collection NAME] [--file PATH ...] [--folder DIR ...]
    python -m rag collections                              # name, corpus folder, documents
    python -m rag milvus-lite --db data/milvus.db [--port 19530]  # serve Lite to several processes

Environment (read here only): RAG_CORPUS, RAG_INDEX, RAG_MODEL, RAG_STORE, RAG_MILVUS_URI,
RAG_MILVUS_TOKEN (rag/store_options.py), RAG_DATA (the folder holding
collections/, default data/). Without --model or RAG_MODEL the first *.gguf in models/ is used;
with none, answers are extractive. Without --collection the corpus and index are those of
--corpus/--index (or their defaults), as before collections existed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
from pathlib import Path

from index import IndexConfig, IndexLoadError, OnnxExportError, update_index
from index.config import DEFAULT_EMBEDDING_BACKEND, EMBEDDING_BACKENDS
from rag.collections import (
    Collection,
    config_for,
    create_or_update,
    document_count,
    find_collection,
    get_collection,
    list_collections,
)
from rag.config import Config
from rag.llm import find_model
from rag.logs import configure_logging, error_line
from rag.pipeline import Answer, Citation, Final, open_pipeline, prepare_question
from rag.retrieve import SourceFilter
from rag.store_options import add_store_options, store_settings

logger = logging.getLogger("rag")


def data_dir(args: argparse.Namespace) -> Path:
    """The data folder holding collections/: --data-dir, else RAG_DATA, else data/."""
    return Path(getattr(args, "data_dir", None) or os.environ.get("RAG_DATA") or "data")


def build_config(args: argparse.Namespace, collection: Collection | None = None) -> Config:
    """Config from CLI flags, falling back to environment variables, then defaults.

    With a collection, its folders and settings replace --corpus/--index and the defaults;
    flags still override its settings.
    """
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
    store = store_settings(args, os.environ)
    if collection is not None:
        base = Config(index=IndexConfig(embedding_backend=backend, **store))
        return dataclasses.replace(config_for(collection, base), **extra)
    index = IndexConfig(
        corpus_dir=Path(corpus), index_dir=Path(index_dir), embedding_backend=backend, **store
    )
    return Config(index=index, **extra)


def _check_collection_flags(args: argparse.Namespace, *, corpus_allowed: bool) -> None:
    """ValueError for flags that a collection's own folders replace."""
    if args.index:
        raise ValueError("--index cannot be used with --collection: a collection has its own index")
    if args.corpus and not corpus_allowed:
        raise ValueError(
            "--corpus cannot be used with --collection here; change a collection's corpus "
            "folder with: python -m rag index --collection NAME --corpus DIR"
        )


def _indexed_collection(args: argparse.Namespace) -> Collection:
    """The collection `rag index --collection` works on, created or changed by --corpus."""
    _check_collection_flags(args, corpus_allowed=True)
    data = data_dir(args)
    name = args.collection
    before = find_collection(data, name)
    if before is None and not args.corpus:
        known = ", ".join(c.name for c in list_collections(data))
        raise ValueError(
            f"unknown collection {name!r} (known: {known}); create it with: "
            f"python -m rag index --collection {name} --corpus DIR"
        )
    if not args.corpus:
        sys.stdout.write(f"collection {name}: corpus {before.corpus_dir}\n")
        return before
    new = Path(args.corpus).expanduser()
    if before is not None and new.resolve() == before.corpus_dir.expanduser().resolve():
        sys.stdout.write(f"collection {name}: corpus {before.corpus_dir} (unchanged)\n")
        return before
    after = create_or_update(data, name, corpus_dir=new)
    if before is None:
        sys.stdout.write(
            f"collection {name}: created (corpus {after.corpus_dir}, index {after.index_dir})\n"
        )
    else:
        sys.stdout.write(
            f"collection {name}: corpus changed from {before.corpus_dir} to {after.corpus_dir}; "
            "documents of the old folder leave its index\n"
        )
    return after


def _asked_collection(args: argparse.Namespace) -> Collection | None:
    """The collection `rag ask --collection` asks (None without the flag)."""
    if not args.collection:
        return None
    _check_collection_flags(args, corpus_allowed=False)
    return get_collection(data_dir(args), args.collection)


def source_filter(args: argparse.Namespace) -> SourceFilter | None:
    """The --file/--folder limits of `rag ask`, or None when there are none."""
    files, folders = tuple(args.file or ()), tuple(args.folder or ())
    return SourceFilter(files=files, folders=folders) if files or folders else None


def mode_text(answer: Answer, *, llm_configured: bool) -> str:
    """The mode and why it is what it is: 'extractive (LLM answer rejected: ...)'."""
    if answer.mode_detail:
        return f"{answer.mode} ({answer.mode_detail})"
    if answer.mode == "extractive" and not llm_configured:
        return "extractive (no LLM model in use)"
    return answer.mode


def verification_line(answer: Answer) -> str:
    """What verification made of the streamed text ('' when there is nothing to say)."""
    if answer.mode == "extractive" and "generate" in answer.timings_ms:  # the model's text
        why = answer.mode_detail.removeprefix("LLM answer rejected: ")
        because = f" ({why})" if why else ""
        return f"[verification rejected the model's answer{because}; extractive answer:]"
    if answer.mode_detail:
        return f"[{answer.mode_detail}]"
    if answer.abstained:
        return ""
    unsupported = sum(not s.supported for s in answer.sentences)
    if unsupported:
        return f"[verification: {unsupported} unsupported sentence(s)]"
    return "[verification: every sentence is supported by its citation]"


def _source_line(c: Citation) -> str:
    """'[1] Title (file, date, p. 4, OCR, chars 10-90)'."""
    date = f", {c.date}" if c.date else ""
    where = f", {c.locator}" if c.locator else ""
    ocr = ", OCR" if c.ocr else ""
    return f"[{c.n}] {c.title} ({c.source}{date}{where}{ocr}, chars {c.start}-{c.end})"


def _print_answer(answer: Answer, out, *, llm_configured: bool) -> None:
    """Short answer, cited sentences, sources with what they were cited for, then the mode."""
    short = answer.short_answer
    if short is not None:
        out.write(f"Answer: {' '.join(short.text.split())} [{short.citation}]\n\n")
    out.write(answer.answer + "\n\n")
    for c in answer.citations:
        out.write(_source_line(c) + "\n    " + c.preview() + "\n")
    mode = mode_text(answer, llm_configured=llm_configured)
    t = answer.timings_ms
    out.write(f"\nmode: {mode}; retrieve {t['retrieve']:.0f} ms, answer {t['answer']:.0f} ms\n")


# A build of 15,000 new files would print 15,000 lines: each kind shows this many (-v: all).
LISTED_PER_KIND = 10


def _listed(kind: str, items: list[str], limit: int | None) -> list[str]:
    """Lines "kind     item" for the first limit items, then how many more there are."""
    lines = [f"{kind:8s} {item}" for item in items[:limit]]
    if limit is not None and len(items) > limit:
        lines.append(f"{kind:8s} ... and {len(items) - limit} more (-v lists them all)")
    return lines


def cmd_index(args: argparse.Namespace) -> int:
    """`rag index`: build or update the index and say what changed."""
    collection = _indexed_collection(args) if args.collection else None
    config = build_config(args, collection)
    report = update_index(config.index, rebuild=args.rebuild, progress=not args.quiet)
    shown = None if args.verbose else LISTED_PER_KIND
    lines = [
        *_listed("added", report.added, shown),
        *_listed("changed", report.changed, shown),
        *_listed("removed", report.removed, shown),
        *_listed("skipped", [f"{s.source}: {s.reason}" for s in report.skipped], shown),
        *_listed("partly", [f"{p.source}: {p.reason}" for p in report.partial], shown),
    ]
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.write(report.summary() + "\n")
    if report.wrote_generation:
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in report.stage_seconds.items())
        sys.stdout.write(f"stages: {stages} (embedding: {config.index.embedding_backend})\n")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    """`rag ask`: answer one question, as text (optionally streamed) or as JSON."""
    config = build_config(args, _asked_collection(args))
    question = " ".join(args.question)
    prepare_question(question, max_chars=config.max_question_chars)  # fail fast, before loading
    where = source_filter(args)
    limits = {"where": where} if where is not None else {}
    pipeline = open_pipeline(config, progress=not args.quiet)
    if pipeline.mode == "llm":
        logger.info("mode: llm (%s)", pipeline.model_name)
    else:
        logger.info("mode: extractive (no LLM model: use --model, RAG_MODEL or models/*.gguf)")
    answer = None
    streamed = False
    for event in pipeline.stream(question, history=args.history or [], **limits):
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
        line = verification_line(answer)
        sys.stdout.write("\n\n" + (line + "\n\n" if line else ""))
    _print_answer(answer, sys.stdout, llm_configured=pipeline.mode == "llm")
    return 0


def cmd_collections(args: argparse.Namespace) -> int:
    """`rag collections`: each collection's name, corpus folder and documents indexed."""
    rows = []
    for c in list_collections(data_dir(args)):
        count = document_count(c)
        documents = "not indexed" if count is None else f"{count} document{'s' * (count != 1)}"
        missing = "" if Path(c.corpus_dir).is_dir() else " (corpus folder missing)"
        rows.append((c.name, f"{c.corpus_dir}{missing}", documents))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for name, corpus, documents in rows:
        sys.stdout.write(f"{name:{widths[0]}}  {corpus:{widths[1]}}  {documents}\n")
    return 0


def cmd_milvus_lite(args: argparse.Namespace) -> int:
    """`rag milvus-lite`: serve a Milvus Lite file on a port until interrupted."""
    from index.milvus_serve import LiteServer

    server = LiteServer(Path(args.db), host=args.host, port=args.port)

    def stop(signum, frame):  # SIGTERM and SIGHUP end the server as Ctrl-C does
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        server.start()
    except RuntimeError as exc:  # the binary exited or never listened
        sys.stderr.write(f"error: {exc}\n")
        return 2
    with server:
        sys.stdout.write(
            f"Milvus Lite serving {server.db} at {server.uri}\n"
            f"use: --store milvus --milvus-uri {server.uri} (rag index, rag ask, python -m ui, "
            "python -m eval); Ctrl-C stops it\n"
        )
        sys.stdout.flush()
        try:
            code = server.wait()
        except KeyboardInterrupt:
            return 0
    sys.stderr.write(f"error: Milvus Lite exited with status {code}\n")
    return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m rag`."""
    parser = argparse.ArgumentParser(prog="python -m rag", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--corpus", help="folder of documents (default corpus/, env RAG_CORPUS)")
    common.add_argument("--index", help="index folder (default data/index/, env RAG_INDEX)")
    add_store_options(common)
    common.add_argument(
        "--embedding-backend",
        choices=EMBEDDING_BACKENDS,
        help="onnx-int8 (default, fastest), onnx or torch; env RAG_EMBEDDING_BACKEND",
    )
    common.add_argument(
        "--collection", help="a named collection (see `collections`): its corpus and index"
    )
    common.add_argument(
        "--data-dir", help="folder holding collections/ (default data/, env RAG_DATA)"
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
    p_ask.add_argument(
        "--file", action="append", help="use only this document (corpus-relative; repeatable)"
    )
    p_ask.add_argument(
        "--folder", action="append", help="use only documents below this corpus folder"
    )
    p_ask.set_defaults(func=cmd_ask)
    p_list = sub.add_parser("collections", help="list the collections")
    p_list.add_argument(
        "--data-dir", help="folder holding collections/ (default data/, env RAG_DATA)"
    )
    p_list.add_argument("-q", "--quiet", action="store_true", help="no log lines")
    p_list.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p_list.set_defaults(func=cmd_collections)
    p_lite = sub.add_parser(
        "milvus-lite", help="serve a Milvus Lite file on a port, for several processes at once"
    )
    p_lite.add_argument("--db", required=True, help="the Milvus Lite file (.db)")
    p_lite.add_argument("--host", default="127.0.0.1", help="address to listen on (no auth!)")
    p_lite.add_argument("--port", type=int, default=19530)
    p_lite.add_argument("-q", "--quiet", action="store_true", help="no log lines")
    p_lite.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p_lite.set_defaults(func=cmd_milvus_lite)
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
