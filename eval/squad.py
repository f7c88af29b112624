"""SQuAD v1.1 dev as a benchmark at size: a corpus of paragraphs, a query set, the runner.

    python -m eval.squad [PATH] [--compare] [--limit N --seed S] [--index DIR]
                         [--json OUT] [--report OUT.md] [--data DIR] [--articles WHICH]
    python -m eval.squad --reader-only [--limit N --seed S]    # the reader on gold paragraphs
    python -m eval.squad --abstention [--abstention-seed S]    # see eval/squad_abstention.py

PATH defaults to ../shared/data/squad-dev-v1.1.json beside the repository. The file becomes
  <data>/corpus/<nn>_<Article_Title>/<ppp>.txt   one document per paragraph (2,067 files)
  <data>/queries.jsonl                           all 10,570 questions in the eval format
(data defaults to data/squad, index to data/squad-index). A document holds the paragraph's
context exactly, with no title line: the reference figures rank paragraphs as units, and an
article title repeated on every paragraph of the article would be page chrome to the indexer
anyway (a short line repeated in the corpus is left out of the searchable text). Files are
rewritten only when their text changes, so a second run reuses the index as it is.

The runner then scores a seeded sample (`--limit N --seed S`, default all questions) and
this command adds SQuAD exact match and F1 of the answer text, computed as the official v1.1
script does (per question the best over the gold answers, averaged, as percentages), and the
reference pipeline's hit@1/5/20 beside ours.

Questions are those of the articles the reader was not trained on (`--articles held-out`,
the default; eval/reader_split.json); the index holds every paragraph of all 48 articles, so
the training articles' paragraphs are distractors. EM and F1 of the short answer (the
reader's span) are the figures to compare with SQuAD systems; EM and F1 of the answer text
(whole sentences) are reported beside them.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from eval.queries import Query, query_to_dict, select_queries
from eval.report import markdown_table, text_table
from rag.logs import error_line

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQUAD = ROOT.parent / "shared" / "data" / "squad-dev-v1.1.json"

# Plain pipeline measured on this machine: 3,000 seeded questions, paragraphs as units,
# bm25s with English stop words, all-MiniLM-L6-v2 exact FAISS, RRF k=60 (issue 3).
REFERENCE = {
    "ref BM25": {"hit@1": 0.741, "hit@5": 0.905, "hit@20": 0.961},
    "ref dense": {"hit@1": 0.631, "hit@5": 0.874, "hit@20": 0.950},
    "ref RRF": {"hit@1": 0.742, "hit@5": 0.931, "hit@20": 0.986},
}
# Which reference row each of our methods is compared with.
REFERENCE_FOR = {"bm25": "ref BM25", "dense": "ref dense", "hybrid": "ref RRF"}


@dataclass(frozen=True)
class Paragraph:
    """One SQuAD paragraph as a corpus document."""

    source: str
    text: str


def slug(title: str) -> str:
    """A file-system-safe form of an article title ("Fresno,_California" -> "Fresno_California")."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", title).strip("_")
    return re.sub(r"_+", "_", cleaned) or "article"


def parse_squad(data: Mapping) -> tuple[list[Paragraph], list[Query]]:
    """Paragraph documents and queries (gold source: the question's paragraph) of a SQuAD file."""
    if not isinstance(data.get("data"), list):
        raise ValueError("not a SQuAD v1.1 file: no 'data' list")
    paragraphs: list[Paragraph] = []
    queries: list[Query] = []
    for a_pos, article in enumerate(data["data"]):
        folder = f"{a_pos:02d}_{slug(str(article.get('title', 'article')))}"
        for p_pos, paragraph in enumerate(article["paragraphs"]):
            source = f"{folder}/{p_pos:03d}.txt"
            paragraphs.append(Paragraph(source=source, text=paragraph["context"]))
            for qa in paragraph["qas"]:
                answers = tuple(
                    dict.fromkeys(a["text"] for a in qa["answers"] if a["text"].strip())
                )
                queries.append(
                    Query(
                        id=qa["id"],
                        question=qa["question"],
                        answers=answers,
                        sources=(source,),
                        answerable=bool(answers),
                        history=(),
                    )
                )
    # A paragraph whose exact text appears twice answers its questions from either file.
    by_text: dict[str, list[str]] = {}
    for paragraph in paragraphs:
        by_text.setdefault(paragraph.text, []).append(paragraph.source)
    twins = {s: tuple(group) for group in by_text.values() if len(group) > 1 for s in group}
    if twins:
        queries = [
            Query(q.id, q.question, q.answers, twins.get(q.sources[0], q.sources), q.answerable)
            for q in queries
        ]
    return paragraphs, queries


def write_corpus(paragraphs: list[Paragraph], corpus_dir: Path) -> dict[str, int]:
    """Write one .txt per paragraph; unchanged files are left alone, stale .txt files removed."""
    corpus_dir.mkdir(parents=True, exist_ok=True)
    counts = {"written": 0, "unchanged": 0, "removed": 0}
    wanted = set()
    for paragraph in paragraphs:
        path = corpus_dir / paragraph.source
        wanted.add(path)
        content = paragraph.text.rstrip("\n") + "\n"
        if path.is_file() and path.read_text(encoding="utf-8") == content:
            counts["unchanged"] += 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        counts["written"] += 1
    for path in corpus_dir.rglob("*.txt"):
        if path not in wanted:
            path.unlink()
            counts["removed"] += 1
    return counts


def write_query_set(queries: list[Query], path: Path) -> None:
    """Write queries as a JSONL query set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for query in queries:
            handle.write(json.dumps(query_to_dict(query), ensure_ascii=False) + "\n")


def load_squad(path: Path) -> dict:
    """The decoded SQuAD file; ValueError when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"SQuAD file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def prepare(squad_path: Path, data_dir: Path) -> tuple[Path, Path, list[Query]]:
    """Convert a SQuAD file into data_dir/corpus and data_dir/queries.jsonl."""
    corpus_dir, queries_path, queries, _ = prepare_data(load_squad(squad_path), data_dir)
    return corpus_dir, queries_path, queries


def prepare_data(data: Mapping, data_dir: Path) -> tuple[Path, Path, list[Query], list[Paragraph]]:
    """Write decoded SQuAD data as the corpus and query set; also return its paragraphs."""
    paragraphs, queries = parse_squad(data)
    corpus_dir = data_dir / "corpus"
    counts = write_corpus(paragraphs, corpus_dir)
    queries_path = data_dir / "queries.jsonl"
    write_query_set(queries, queries_path)
    logger.info(
        "SQuAD: %d paragraphs (%d written, %d unchanged, %d removed), %d questions -> %s",
        len(paragraphs), counts["written"], counts["unchanged"], counts["removed"],
        len(queries), data_dir,
    )  # fmt: skip
    return corpus_dir, queries_path, queries, paragraphs


def article_folders(data: Mapping, titles: set[str]) -> set[str]:
    """Corpus folder names ("24_Title") of the titled articles."""
    return {
        f"{pos:02d}_{slug(str(article.get('title', 'article')))}"
        for pos, article in enumerate(data["data"])
        if article.get("title") in titles
    }


def select_articles(
    data: Mapping, queries: list[Query], which: str
) -> tuple[list[Query], set[str]]:
    """The questions of the held-out, training or all articles, and those articles' folders."""
    from eval.train_reader import load_split

    if which == "all":
        titles = {str(a.get("title")) for a in data["data"]}
    else:
        titles = set(load_split()["held_out" if which == "held-out" else "train"])
    folders = article_folders(data, titles)
    return [q for q in queries if q.sources[0].split("/")[0] in folders], folders


def read_gold(queries: list[Query], paragraphs: list[Paragraph], *, progress: bool) -> dict:
    """The reader alone on each question's gold paragraph: EM, F1 and its no-answer rate."""
    from tqdm import tqdm

    from eval.metrics import best_over_golds, exact_match, token_f1
    from index.cleaning import split_sentences
    from rag.config import Config
    from rag.pipeline import shared_reader

    reader = shared_reader()
    threshold = Config().min_answerability
    text_of = {p.source: p.text for p in paragraphs}
    em = f1 = no_answer = 0.0
    for query in tqdm(queries, desc="reading", unit="q", disable=not progress):
        text = text_of[query.sources[0]]
        reading = reader.read_one(query.question, text, sentences=split_sentences(text))
        em += best_over_golds(exact_match, reading.text, query.answers)
        f1 += best_over_golds(token_f1, reading.text, query.answers)
        no_answer += reading.margin < threshold
    n = max(1, len(queries))
    return {
        "questions": len(queries),
        "exact_match": round(100 * em / n, 2),
        "f1": round(100 * f1 / n, 2),
        "no_answer_rate": round(no_answer / n, 4),
    }


def squad_scores(metrics: Mapping) -> dict[str, float | None]:
    """Official-style SQuAD figures (percent) from a run's exact_match and f1."""
    return {
        name: None if metrics.get(key) is None else round(100 * metrics[key], 2)
        for name, key in (("exact_match", "exact_match"), ("f1", "f1"))
    }


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def comparison_rows(metrics_by_method: Mapping[str, Mapping]) -> list[list[str]]:
    """Rows method | hit@1 | hit@5 | hit@20 | EM | F1 for ours and the reference."""
    rows = []
    for method, metrics in metrics_by_method.items():
        squad = squad_scores(metrics)
        rows.append(
            [method]
            + [_rate(metrics.get(f"hit@{k}")) for k in (1, 5, 20)]
            + ["-" if squad[k] is None else f"{squad[k]:.1f}" for k in ("exact_match", "f1")]
        )
        reference = REFERENCE_FOR.get(method)
        if reference:
            rows.append(
                [reference]
                + [f"{REFERENCE[reference][f'hit@{k}']:.3f}" for k in (1, 5, 20)]
                + ["", ""]
            )
    return rows


COMPARISON_HEADER = ("method", "hit@1", "hit@5", "hit@20", "EM", "F1")


def comparison_markdown(metrics_by_method: Mapping[str, Mapping]) -> str:
    """Markdown section: our hit@1/5/20 beside the reference rows, and SQuAD EM/F1."""
    return (
        "## SQuAD v1.1: against the reference pipeline\n\n"
        "Reference: 3,000 seeded questions, paragraphs as units, bm25s with English stop words, "
        "all-MiniLM-L6-v2 with exact FAISS, RRF k=60. hit@k here counts passages, as above. "
        "EM and F1 are the official v1.1 formulas on the answer text (citation markers "
        "removed; an abstention scores 0), in percent.\n\n"
        + markdown_table(COMPARISON_HEADER, comparison_rows(metrics_by_method))
    )


def comparison_text(metrics_by_method: Mapping[str, Mapping]) -> str:
    """Plain-text form of the comparison table, for the terminal."""
    return text_table(COMPARISON_HEADER, comparison_rows(metrics_by_method))


def _abstention(args, data: dict, paragraphs, queries, held_out: set[str]) -> None:
    from eval.squad_abstention import run_abstention, write_outputs
    from eval.train_reader import load_split

    queries = select_queries(queries, limit=args.limit, seed=args.seed)
    cases, summary, settings = run_abstention(
        paragraphs, queries, held_out=held_out,
        fixed=sorted(article_folders(data, set(load_split()["abstention_indexed"]))),
        seed=args.abstention_seed, data_dir=args.data,
        embedding_backend=args.embedding_backend, progress=not args.quiet,
    )  # fmt: skip
    write_outputs(cases, summary, settings, json_path=args.json, report_path=args.report)
    lo_r, hi_r = summary["abstain_recall_ci95"]
    lo_f, hi_f = summary["false_abstention_ci95"]
    sys.stdout.write(
        f"split {settings['split']}: abstain recall {summary['abstain_recall']:.3f} "
        f"[{lo_r:.3f}, {hi_r:.3f}] on {summary['questions_absent']} questions; "
        f"false abstention {summary['false_abstention']:.3f} [{lo_f:.3f}, {hi_f:.3f}] on "
        f"{summary['questions_indexed']}; indexed hit@5 {summary['indexed_hit@5']:.3f}\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m eval.squad`."""
    from eval.__main__ import add_run_options, run_and_write, setup_logging
    from index import IndexLoadError

    parser = argparse.ArgumentParser(
        prog="python -m eval.squad", description=__doc__.split("\n")[0]
    )
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_SQUAD, help="SQuAD v1.1 JSON")
    parser.add_argument(
        "--data", type=Path, default=Path("data/squad"), help="corpus + queries folder"
    )
    parser.add_argument(
        "--articles", choices=("held-out", "train", "all"), default="held-out",
        help="whose questions: the articles the reader was not trained on (default)",
    )  # fmt: skip
    parser.add_argument("--reader-only", action="store_true", help="the reader on gold paragraphs")
    parser.add_argument(
        "--abstention", action="store_true", help="questions about articles left out of the index"
    )
    parser.add_argument("--abstention-seed", type=int, help="another split than the fixed one")
    add_run_options(parser)
    parser.set_defaults(index="data/squad-index")
    args = parser.parse_args(argv)
    setup_logging(args)
    try:
        data = load_squad(args.path)
        corpus_dir, queries_path, queries, paragraphs = prepare_data(data, args.data)
        chosen, folders = select_articles(data, queries, args.articles)
        if args.abstention:
            _abstention(args, data, paragraphs, queries, folders)
            return 0
        if args.reader_only:
            result = read_gold(
                select_queries(chosen, limit=args.limit, seed=args.seed), paragraphs,
                progress=not args.quiet,
            )  # fmt: skip
            sys.stdout.write(json.dumps({"articles": args.articles, **result}) + "\n")
            return 0
        run = run_and_write(
            args,
            chosen,
            corpus_dir=corpus_dir,
            index_dir=Path(args.index),
            extra_config={
                "queries_file": str(queries_path), "squad_file": str(args.path),
                "articles": args.articles,
            },
            title="SQuAD v1.1 dev benchmark",
            extra_markdown=lambda r: comparison_markdown(r.metrics_by_method()),
            reference=REFERENCE,
        )  # fmt: skip
    except (ValueError, IndexLoadError, ImportError, OSError) as exc:
        sys.stderr.write(f"error: {error_line(exc)}\n")
        return 2
    sys.stdout.write("\n" + comparison_text(run.metrics_by_method()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
