"""A BEIR-format folder as a retrieval benchmark: nDCG@10, recall@100 and MRR@10 per method.

    python -m eval.beir DIR [--compare | --method hybrid|dense|bm25] [--index WORK]
                        [--limit N [--seed S]] [--json OUT] [--report OUT.md]

DIR holds `corpus.jsonl` ({"_id", "title", "text"} per line), `queries.jsonl` ({"_id",
"text"}) and `qrels/test.tsv` (header `query-id corpus-id score`, tab-separated, graded).
Each document becomes WORK/corpus/<safe name>.txt (title, blank line, text; the name is the
`_id` when that is a safe file name, else its safe form plus a hash of the `_id`), indexed
into WORK/index by the normal `update_index` (WORK defaults to data/beir/<DIR name>). Queries
with a positive qrel are asked through the chat's pipeline as retrieval-only queries; the hits
are collapsed to documents (a document ranks where its first passage does), retrieving
passages enough for at least 100 documents where the corpus allows. Metrics are trec_eval's
(BEIR's): gain = grade, discount log2(rank + 1), ideal ranking from the qrels. The JSON adds
to each query its "ranked_ids" (first 100) and per-query "beir" metrics.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from eval.metrics import mean, mrr_at_k, ndcg_at_k, recall_at_k
from eval.queries import Query
from eval.runner import EvalRun
from rag.logs import error_line

logger = logging.getLogger(__name__)

DOCUMENT_DEPTH = 100
# Passages retrieved at most, however many passages the longest document has.
MAX_PASSAGE_DEPTH = 2000
QRELS = Path("qrels") / "test.tsv"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Benchmark:
    """A parsed BEIR folder: documents by id, judged queries and their graded qrels."""

    documents: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def file_name(doc_id: str) -> str:
    """A safe .txt name for a document id: the id itself when safe, else a slug plus a hash."""
    safe = _UNSAFE.sub("_", doc_id).strip("_")[:80]
    if safe == doc_id:
        return f"{doc_id}.txt"
    digest = hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:12]
    return f"{safe or 'doc'}-{digest}.txt"


def _read_jsonl(path: Path, *, fields: Sequence[str]) -> list[dict]:
    """Objects of a JSONL file, each with the given string fields; ValueError otherwise."""
    if not path.is_file():
        raise ValueError(f"{path.name} not found in {path.parent}")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict) or not isinstance(data.get("_id"), str):
            raise ValueError(f"{path}:{number}: expected an object with a string '_id'")
        for name in fields:
            if not isinstance(data.get(name, ""), str):
                raise ValueError(f"{path}:{number}: '{name}' must be a string")
        rows.append(data)
    if not rows:
        raise ValueError(f"{path} holds no entries")
    return rows


def _by_id(rows: Sequence[dict], *, path: Path) -> dict[str, dict]:
    """Rows keyed by '_id'; a repeated id is a ValueError."""
    keyed: dict[str, dict] = {}
    for row in rows:
        if row["_id"] in keyed:
            raise ValueError(f"{path}: duplicate _id {row['_id']!r}")
        keyed[row["_id"]] = row
    return keyed


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Graded judgements {query id: {document id: grade}} of a BEIR qrels TSV file."""
    if not path.is_file():
        raise ValueError(f"qrels not found: {path}")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines or lines[0].split("\t")[:3] != ["query-id", "corpus-id", "score"]:
        raise ValueError(f"{path}:1: expected the header 'query-id<TAB>corpus-id<TAB>score'")
    qrels: dict[str, dict[str, int]] = {}
    for number, row in enumerate(csv.reader(lines[1:], delimiter="\t"), 2):
        if not row:
            continue
        try:
            query_id, doc_id, grade = row[0], row[1], int(row[2])
        except (IndexError, ValueError):
            raise ValueError(
                f"{path}:{number}: expected query-id, corpus-id, integer score"
            ) from None
        qrels.setdefault(query_id, {})[doc_id] = grade
    if not qrels:
        raise ValueError(f"{path} holds no judgements")
    return qrels


def load_benchmark(folder: Path) -> Benchmark:
    """Read and cross-check a BEIR folder; ValueError naming the first problem."""
    if not folder.is_dir():
        raise ValueError(f"BEIR folder not found: {folder}")
    corpus = _by_id(_read_jsonl(folder / "corpus.jsonl", fields=("title", "text")),
                    path=folder / "corpus.jsonl")  # fmt: skip
    queries = _by_id(_read_jsonl(folder / "queries.jsonl", fields=("text",)),
                     path=folder / "queries.jsonl")  # fmt: skip
    qrels = read_qrels(folder / QRELS)
    for query_id, judged in qrels.items():
        if query_id not in queries:
            raise ValueError(f"{folder / QRELS}: query-id {query_id!r} is not in queries.jsonl")
        for doc_id in judged:
            if doc_id not in corpus:
                raise ValueError(f"{folder / QRELS}: corpus-id {doc_id!r} is not in corpus.jsonl")
    documents = {
        doc_id: "\n\n".join(p for p in (row.get("title", "").strip(), row.get("text", "")) if p)
        for doc_id, row in corpus.items()
    }
    return Benchmark(
        documents=documents,
        queries={q: queries[q]["text"] for q in qrels},
        qrels=qrels,
    )


def write_documents(benchmark: Benchmark, corpus_dir: Path) -> dict[str, str]:
    """Write one .txt per document (unchanged files kept); return {file name: document id}."""
    from eval.squad import Paragraph, write_corpus

    names = {file_name(doc_id): doc_id for doc_id in benchmark.documents}
    paragraphs = [Paragraph(source=n, text=benchmark.documents[d]) for n, d in names.items()]
    counts = write_corpus(paragraphs, corpus_dir)
    logger.info("BEIR corpus: %d documents (%d written) -> %s", len(names), counts["written"],
                corpus_dir)  # fmt: skip
    return names


def to_queries(benchmark: Benchmark) -> list[Query]:
    """Retrieval-only queries (gold sources: positively graded documents), in qrels order."""
    queries = []
    for query_id, judged in benchmark.qrels.items():
        sources = tuple(file_name(d) for d, grade in judged.items() if grade > 0)
        if not sources:
            logger.warning("query %r has no positive qrel; left out", query_id)
            continue
        text = benchmark.queries[query_id]
        queries.append(Query(id=query_id, question=text, answers=(), sources=sources))
    if not queries:
        raise ValueError("no query has a positively graded document")
    return queries


def passage_depth(index_dir: Path) -> int:
    """Passages to retrieve so that DOCUMENT_DEPTH documents are reachable (capped)."""
    from index import current_generation

    generation = current_generation(index_dir)
    if generation is None:
        raise ValueError(f"no index was built in {index_dir}")
    manifest = json.loads((generation / "manifest.json").read_text(encoding="utf-8"))
    counts = [int(d.get("chunks", 1)) for d in manifest.get("documents", {}).values()]
    total = sum(counts) or 1
    return max(1, min(total, DOCUMENT_DEPTH * max(counts, default=1), MAX_PASSAGE_DEPTH))


def query_scores(*, ranked: Sequence[str], qrels: Mapping[str, int]) -> dict[str, float | None]:
    """nDCG@10, recall@100 and MRR@10 of one document ranking."""
    return {
        "ndcg@10": ndcg_at_k(ranked=ranked, qrels=qrels, k=10),
        "recall@100": recall_at_k(ranked=ranked, qrels=qrels, k=DOCUMENT_DEPTH),
        "mrr@10": mrr_at_k(ranked=ranked, qrels=qrels, k=10),
    }


def score_run(run: EvalRun, *, benchmark: Benchmark, names: Mapping[str, str]) -> dict:
    """Add the BEIR metrics to each method's metrics; return per-query scores by method."""
    per_query: dict[str, dict[str, dict]] = {}
    for method, method_run in run.runs.items():
        entries = {}
        for result in method_run.results:
            ranked = [names[s] for s in result.retrieved_sources if s in names]
            scores = query_scores(ranked=ranked, qrels=benchmark.qrels[result.query.id])
            entries[result.query.id] = {"ranked_ids": ranked[:DOCUMENT_DEPTH], "beir": scores}
        for key in ("ndcg@10", "recall@100", "mrr@10"):
            value = mean([e["beir"][key] for e in entries.values() if e["beir"][key] is not None])
            method_run.metrics[key] = None if value is None else round(value, 4)
        per_query[method] = entries
    return per_query


def run_document(run: EvalRun, per_query: Mapping[str, Mapping[str, dict]]) -> dict:
    """The run's JSON document, each query with its primary-method document ranking."""
    document = run.to_dict()
    primary = per_query[run.primary.method]
    for entry in document["queries"]:
        entry.update(primary[entry["id"]])
        if run.compare:
            for method, summary in entry["methods"].items():
                summary["beir"] = per_query[method][entry["id"]]["beir"]
    return document


def write_document(document: Mapping, path: Path) -> Path:
    """Write a JSON document atomically (staged beside, then renamed); return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", "utf-8")
    tmp.replace(path)
    return path


def evaluate_folder(args: argparse.Namespace, *, embedder: object | None = None) -> EvalRun:
    """Prepare, index, evaluate and score a BEIR folder; print and write the results."""
    from eval.__main__ import methods_of
    from eval.queries import select_queries
    from eval.report import format_summary, write_report
    from eval.runner import evaluate
    from index import IndexConfig, update_index
    from rag.config import Config
    from rag.pipeline import Pipeline

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    benchmark = load_benchmark(args.folder)
    queries = select_queries(to_queries(benchmark), limit=args.limit, seed=args.seed)
    work = Path(args.index or Path("data/beir") / args.folder.resolve().name)
    names = write_documents(benchmark, work / "corpus")
    index_config = IndexConfig(corpus_dir=work / "corpus", index_dir=work / "index",
                               embedding_backend=args.embedding_backend)  # fmt: skip
    logger.info("index: %s", update_index(index_config, progress=not args.quiet,
                                          embedder=embedder).summary())  # fmt: skip
    depth = passage_depth(index_config.index_dir)
    defaults = Config(index=index_config)
    config = replace(defaults, report_depth=max(depth, defaults.top_k),
                     candidates=max(depth, defaults.candidates))  # fmt: skip
    pipeline = Pipeline(config, embedder=embedder)
    extra = {"beir_folder": str(args.folder), "queries_file": str(args.folder / "queries.jsonl"),
             "limit": args.limit, "seed": args.seed}  # fmt: skip
    run = evaluate(pipeline, queries, methods=methods_of(args), progress=not args.quiet,
                   extra_config=extra)  # fmt: skip
    per_query = score_run(run, benchmark=benchmark, names=names)
    sys.stdout.write(format_summary(run.metrics_by_method()))
    if args.json:
        logger.info("JSON written to %s", write_document(run_document(run, per_query), args.json))
    if args.report:
        write_report(run, args.report, title=f"BEIR evaluation of {args.folder.name}")
    return run


def main(argv: list[str] | None = None, *, embedder: object | None = None) -> int:
    """Entry point of `python -m eval.beir` (embedder: reuse a loaded model, for tests)."""
    from eval.__main__ import add_run_options, setup_logging
    from index import IndexLoadError

    parser = argparse.ArgumentParser(prog="python -m eval.beir", description=__doc__.split("\n")[0])
    parser.add_argument(
        "folder", type=Path, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)"
    )
    add_run_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args)
    try:
        evaluate_folder(args, embedder=embedder)
    except (ValueError, IndexLoadError, ImportError, OSError) as exc:
        sys.stderr.write(f"error: {error_line(exc)}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
