"""Synthetic scale run: build time, memory and query latency at 10k, 100k and 1M chunks.

    python -m bench.scale --sizes 10000 100000 1000000 [--index data/bench/index]
    python -m bench.scale --real [--sizes 100000 1000000]   # the real system: bench/scale_real.py

Vectors: real MiniLM embeddings of the SQuAD index's chunks, each copy perturbed with Gaussian
noise and re-normalised (so the data keeps the clustered shape of real text, which random
vectors would not); queries are embeddings of SQuAD questions. Texts: SQuAD sentences sampled
at random. Exact FAISS search is the ground truth for HNSW recall@10. Writes a table, JSON and a
log-log PNG under bench/results/.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

from index import CorpusIndex, IndexConfig, TermStats, analyzer, embedder_for
from index.segments import Postings, bm25_norm, dense_index, top_k
from rag.retrieve import rrf_fuse

logger = logging.getLogger("bench.scale")
RESULTS = Path("bench/results")
EF_SWEEP = (64, 128, 256, 512, 768, 1024)


def rss_mb() -> float:
    """Resident memory of this process in MB (from /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile_ms(samples: list[float], q: float) -> float:
    """q-th percentile of samples given in seconds, in milliseconds."""
    return float(np.percentile(np.array(samples) * 1000, q))


def synthetic(
    base: np.ndarray, sentences: list[str], n: int, seed: int
) -> tuple[np.ndarray, list[str]]:
    """n unit vectors near random base vectors, and n texts of 1-3 random sentences."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(base), n)
    vectors = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = base[picks[start:stop]] + rng.normal(0, 0.04, (stop - start, base.shape[1])).astype(
            np.float32
        )
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    counts = rng.integers(1, 4, n)
    choice = rng.integers(0, len(sentences), int(counts.sum()))
    texts, cursor = [], 0
    for c in counts:
        texts.append(" ".join(sentences[i] for i in choice[cursor : cursor + c]))
        cursor += c
    return vectors, texts


class DenseEngine:
    """The embedded engine's FAISS index of one segment, searched as the store searches it."""

    def __init__(self, vectors: np.ndarray, kind: str) -> None:
        config = IndexConfig()
        settings = {"type": kind, "M": config.hnsw_m, "ef_search": config.hnsw_ef_search}
        self.index = dense_index(vectors, settings)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, scores)."""
        scores, rows = self.index.search(query.reshape(1, -1).astype(np.float32), k)
        return rows[0], scores[0]


class LexicalEngine:
    """The embedded engine's BM25 postings of one segment, with the index's term statistics."""

    def __init__(self, tokens: list[list[str]]) -> None:
        self.postings = Postings.build(tokens)
        self.stats = TermStats.of(tokens)
        self.norm = bm25_norm(self.postings.lengths, self.stats.average_length)

    @classmethod
    def of_texts(cls, texts: list[str]) -> LexicalEngine:
        """The engine over texts, tokenized by the index's analyzer."""
        return cls([analyzer().tokenize(t) for t in texts])

    def search_terms(self, terms: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, scores) for analyzed terms; empty when none matches."""
        scores = self.postings.scores(self.postings.query_terms(self.stats.idf(terms)), self.norm)
        if scores is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        rows = np.flatnonzero(scores > 0)
        return top_k(rows, scores[rows].astype(np.float32), k)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, scores) for a query string."""
        return self.search_terms(analyzer().tokenize(query), k)


def time_queries(fn, queries, repeat: int = 1) -> list[float]:
    """Wall time of fn(q) for each query."""
    out = []
    for _ in range(repeat):
        for q in queries:
            t = time.perf_counter()
            fn(q)
            out.append(time.perf_counter() - t)
    return out


def run_size(n: int, base, sentences, query_vectors, query_texts, *, seed: int) -> dict:
    """All measurements at one size."""
    vectors, texts = synthetic(base, sentences, n, seed)
    gc.collect()
    row: dict = {"chunks": n}
    rss0 = rss_mb()
    t = time.perf_counter()
    flat = DenseEngine(vectors, "flat")
    row["flat_build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    hnsw = DenseEngine(vectors, "hnsw")
    row["hnsw_build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    bm25 = LexicalEngine.of_texts(texts)
    row["bm25_build_s"] = time.perf_counter() - t
    row["rss_mb"] = rss_mb()
    row["rss_added_mb"] = row["rss_mb"] - rss0
    flat_times = time_queries(lambda q: flat.search(q, 50), query_vectors)
    hnsw_times = time_queries(lambda q: hnsw.search(q, 50), query_vectors)
    bm25_times = time_queries(lambda q: bm25.search(q, 50), query_texts)
    exact_top = [set(flat.search(q, 10)[0].tolist()) for q in query_vectors]
    for ef in EF_SWEEP:
        hnsw.index.hnsw.efSearch = ef
        times = time_queries(lambda q: hnsw.search(q, 50), query_vectors)
        recall = np.mean(
            [
                len(e & set(hnsw.search(q, 10)[0].tolist())) / 10
                for q, e in zip(query_vectors, exact_top, strict=True)
            ]
        )
        row[f"hnsw_ef{ef}_recall_at_10"] = float(recall)
        row[f"hnsw_ef{ef}_p50_ms"] = percentile_ms(times, 50)
    hnsw.index.hnsw.efSearch = IndexConfig().hnsw_ef_search
    recalls = [
        len(e & set(hnsw.search(q, 10)[0].tolist())) / 10
        for q, e in zip(query_vectors, exact_top, strict=True)
    ]
    rankings = [
        (hnsw.search(v, 50)[0].tolist(), bm25.search(t, 50)[0].tolist())
        for v, t in zip(query_vectors, query_texts, strict=True)
    ]
    fusion_times = time_queries(lambda r: rrf_fuse(list(r), k=60), rankings)
    for name, samples in (("flat", flat_times), ("hnsw", hnsw_times), ("bm25", bm25_times),
                          ("fusion", fusion_times)):  # fmt: skip
        row[f"{name}_p50_ms"] = percentile_ms(samples, 50)
        row[f"{name}_p95_ms"] = percentile_ms(samples, 95)
    row["hnsw_recall_at_10"] = float(np.mean(recalls))
    return row


def plot(rows: list[dict], path: Path) -> None:
    """Log-log plot of query latency and build time against size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["chunks"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("flat_p50_ms", "dense exact"), ("hnsw_p50_ms", "dense HNSW"),
                       ("bm25_p50_ms", "BM25"), ("fusion_p50_ms", "RRF fusion")):  # fmt: skip
        left.loglog(sizes, [max(r[key], 1e-3) for r in rows], marker="o", label=label)
    left.set(xlabel="chunks", ylabel="query p50 (ms)", title="Query latency")
    left.legend()
    for key, label in (("flat_build_s", "dense exact"), ("hnsw_build_s", "dense HNSW"),
                       ("bm25_build_s", "BM25")):  # fmt: skip
        right.loglog(sizes, [max(r[key], 1e-3) for r in rows], marker="o", label=label)
    right.set(xlabel="chunks", ylabel="build time (s)", title="Index build")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench.scale` (`--real`: bench/scale_real.py takes over)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--real" in argv:
        from bench import scale_real

        return scale_real.main([a for a in argv if a != "--real"])
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument(
        "--real", action="store_true",
        help="measure the real system (update_index, Pipeline) instead: see bench/scale_real.py",
    )  # fmt: skip
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--index", default="data/bench/index", help="a built SQuAD index")
    parser.add_argument("--queries", default="data/bench/squad/queries.jsonl")
    parser.add_argument("--n-queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = IndexConfig(index_dir=Path(args.index))
        source = CorpusIndex.load(config, verify=False)
        lines = Path(args.queries).read_text(encoding="utf-8").splitlines()
    except Exception as exc:
        sys.stderr.write(f"error: {exc}\nbuild the SQuAD index first: python -m bench.run\n")
        return 2
    chunks = source.chunks_of()
    base = source.store.vectors([c.id for c in chunks])
    sentences = [s for c in chunks for s in re.split(r"(?<=[.!?])\s+", c.search_text) if s]
    rng = np.random.default_rng(args.seed)
    picked = [
        json.loads(lines[i])["question"]
        for i in rng.choice(len(lines), args.n_queries, replace=False)
    ]
    embedder = embedder_for(config)
    query_vectors = embedder.encode(picked)
    rows = []
    for n in args.sizes:
        logger.info("size %d ...", n)
        rows.append(run_size(n, base, sentences, query_vectors, picked, seed=args.seed))
        logger.info(
            "%s", {k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(rows, indent=2))
    plot(rows, RESULTS / "scale.png")
    cols = [
        "chunks", "flat_build_s", "hnsw_build_s", "bm25_build_s", "rss_mb", "flat_p50_ms",
        "hnsw_p50_ms", "hnsw_recall_at_10", "bm25_p50_ms", "bm25_p95_ms", "fusion_p50_ms",
    ]  # fmt: skip
    sys.stdout.write(" | ".join(cols) + "\n")
    for r in rows:
        sys.stdout.write(
            " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
