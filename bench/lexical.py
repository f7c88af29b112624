"""Which lexical engine for the embedded store: the segments' postings, bm25s, or SQLite FTS5.

    python -m bench.lexical [--sizes 100000 1000000] [--squad ../shared/data/squad-dev-v1.1.json]

Texts are SQuAD sentences recombined into chunk-sized texts (seeded); queries are SQuAD
questions. Each engine is given the same analyzer's terms (FTS5 gets them as a space-joined
column), so only the engine differs. Measured: build seconds, query p50/p95, the cost of
adding one 10-chunk document (postings: a new segment and the term table; bm25s: a whole
rebuild, it cannot update in place; FTS5: an insert), and top-10 agreement with bm25s.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

from bench.scale import LexicalEngine
from index.analyzer import analyzer
from index.segments import Postings, top_k

K = 10


def texts_and_questions(squad: Path, n: int, seed: int) -> tuple[list[str], list[str]]:
    """n texts of 4-8 SQuAD sentences, and 200 SQuAD questions."""
    data = json.loads(squad.read_text(encoding="utf-8"))["data"]
    sentences, questions = [], []
    for article in data:
        for paragraph in article["paragraphs"]:
            sentences += [s for s in paragraph["context"].split(". ") if len(s) > 20]
            questions += [q["question"] for q in paragraph["qas"]]
    rng = np.random.default_rng(seed)
    counts = rng.integers(4, 9, n)
    picks = rng.integers(0, len(sentences), int(counts.sum()))
    texts, cursor = [], 0
    for c in counts:
        texts.append(". ".join(sentences[i] for i in picks[cursor : cursor + c]))
        cursor += c
    chosen = rng.choice(len(questions), 200, replace=False)
    return texts, [questions[i] for i in chosen]


class PostingsEngine(LexicalEngine):
    """The segments' engine: raw term frequencies, BM25 scored at query time."""

    def search(self, terms: list[str]) -> list[int]:
        """Top-K rows."""
        return self.search_terms(terms, K)[0].tolist()

    def add_document(self, tokens: list[list[str]]) -> None:
        """What one new document costs: its own small segment and the term table update."""
        Postings.build(tokens)
        self.stats.add(tokens)


class Bm25sEngine:
    """bm25s (Lucene variant): scores precomputed, so any change rebuilds it."""

    def __init__(self, tokens: list[list[str]]) -> None:
        import bm25s

        self.tokens = tokens
        self.index = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
        self.index.index([t or ["\x00"] for t in tokens], show_progress=False)

    def search(self, terms: list[str]) -> list[int]:
        """Top-K rows."""
        vocab = self.index.vocab_dict
        ids = sorted({vocab[t] for t in terms if t in vocab})
        if not ids:
            return []
        scores = self.index.get_scores_from_ids(ids)
        rows = np.flatnonzero(scores)
        return top_k(rows, scores[rows].astype(np.float32), K)[0].tolist()

    def add_document(self, tokens: list[list[str]]) -> None:
        """bm25s cannot add rows: the whole index is built again."""
        Bm25sEngine(self.tokens + tokens)


class Fts5Engine:
    """SQLite FTS5 over the analyzer's terms (its own BM25: Okapi, idf clamped)."""

    def __init__(self, tokens: list[list[str]], path: Path) -> None:
        path.unlink(missing_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE VIRTUAL TABLE t USING fts5(terms, tokenize='unicode61')")
        self.db.executemany("INSERT INTO t(rowid, terms) VALUES (?, ?)", _rows(tokens, 0))
        self.db.commit()
        self.size = len(tokens)

    def search(self, terms: list[str]) -> list[int]:
        """Top-K rows (FTS5's bm25() is smaller for better matches)."""
        words = sorted({t for t in terms if t.isalnum() and t.isascii()})
        if not words:
            return []
        query = " OR ".join(f'"{w}"' for w in words)
        sql = "SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?"
        return [r[0] for r in self.db.execute(sql, (query, K))]

    def add_document(self, tokens: list[list[str]]) -> None:
        """An insert in one transaction."""
        self.db.executemany("INSERT INTO t(rowid, terms) VALUES (?, ?)", _rows(tokens, self.size))
        self.db.commit()
        self.size += len(tokens)


def _rows(tokens: list[list[str]], start: int):
    return ((start + i, " ".join(t)) for i, t in enumerate(tokens))


def measure(name: str, make, queries: list[list[str]], extra: list[list[str]]) -> dict:
    """Build, query and one-document figures of one engine."""
    started = time.perf_counter()
    engine = make()
    build = time.perf_counter() - started
    times, results = [], []
    for terms in queries:
        t = time.perf_counter()
        results.append(engine.search(terms))
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    engine.add_document(extra)
    add = time.perf_counter() - t
    ms = np.array(times) * 1000
    row = {"engine": name, "build_s": build, "add_document_s": add}
    row |= {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}
    return row | {"results": results}


def main(argv: list[str] | None = None) -> int:
    """Entry point: a table per size on stdout, JSON in bench/results/lexical.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.lexical")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--squad", type=Path, default=Path("../shared/data/squad-dev-v1.1.json"))
    parser.add_argument("--work", type=Path, default=Path("data/bench/lexical"))
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        texts, questions = texts_and_questions(args.squad, n + 10, seed=0)
        tokens = [analyzer().tokenize(t) for t in texts]
        base, extra = tokens[:n], tokens[n:]
        queries = [analyzer().tokenize(q) for q in questions]
        fts = args.work / "fts.db"
        makers = {
            "postings (segments)": lambda base=base: PostingsEngine(base),
            "bm25s": lambda base=base: Bm25sEngine(base),
            "sqlite fts5": lambda base=base, fts=fts: Fts5Engine(base, fts),
        }
        found = [measure(name, make, queries, extra) for name, make in makers.items()]
        reference = found[1]["results"]
        for row in found:
            overlap = [
                len(set(a) & set(b)) / max(len(b), 1)
                for a, b in zip(row.pop("results"), reference, strict=True)
            ]
            rows.append(row | {"chunks": n, "top10_overlap_with_bm25s": float(np.mean(overlap))})
    header = (
        "| chunks | engine | build s | add one document s | query p50 / p95 ms | top-10 = bm25s |"
    )
    lines = [header, "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['chunks']:,} | {r['engine']} | {r['build_s']:.1f} | {r['add_document_s']:.3f} "
            f"| {r['p50_ms']:.2f} / {r['p95_ms']:.2f} | {r['top10_overlap_with_bm25s']:.3f} |"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "lexical.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
