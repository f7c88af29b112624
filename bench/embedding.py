"""Embedding backends on SQuAD: speed of a full index and retrieval quality, in the same run.

    python -m bench.embedding [--backends torch,onnx-int8,onnx] [--limit 3000 --seed 0]

For each backend: load the model (and build the cached ONNX export if it is missing; timed
apart), re-embed all 2,067 SQuAD paragraphs into their own index, time one query at a time,
then score the same seeded questions with dense and hybrid retrieval. A backend may be the
default only if it embeds at least 2x faster than torch AND its hit@5 (dense and hybrid)
stays within 0.5 points of torch's. Writes bench/results/embedding.json. ~10 minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from eval.queries import select_queries
from eval.runner import evaluate
from eval.squad import prepare
from index import IndexConfig, embedder_for, update_index
from index.config import DEFAULT_EMBEDDING_BACKEND, EMBEDDING_BACKENDS
from rag import Config, Pipeline
from rag.logs import configure_logging

logger = logging.getLogger("bench.embedding")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench/results"
MIN_SPEEDUP = 2.0
MAX_HIT5_DROP_POINTS = 0.5


def bench_backend(backend: str, corpus: Path, data: Path, queries: list, probes: list[str]) -> dict:
    """Load, full re-embed, query-embedding latency, and SQuAD hit@k for one backend."""
    config = IndexConfig(
        corpus_dir=corpus, index_dir=data / f"index-{backend}", embedding_backend=backend
    )
    started = time.perf_counter()
    embedder = embedder_for(config)
    load_s = time.perf_counter() - started
    report = update_index(config, rebuild=True, progress=True, embedder=embedder)
    embedder.encode(probes[:5])
    latencies = []
    for text in probes:
        t = time.perf_counter()
        embedder.encode([text])
        latencies.append((time.perf_counter() - t) * 1000)
    pipeline = Pipeline(Config(index=config), embedder=embedder)
    run = evaluate(pipeline, queries, methods=("dense", "hybrid"), progress=True)
    metrics = run.metrics_by_method()
    return {
        "load_s": load_s,
        "chunks": report.chunks_embedded,
        "embed_s": report.embed_seconds,
        "chunks_per_s": report.chunks_embedded / report.embed_seconds,
        "paragraphs_per_s": len(report.added) / report.embed_seconds,
        "query_embed_p50_ms": float(np.percentile(latencies, 50)),
        **{
            f"{method}_{k}": metrics[method][k]
            for method in ("dense", "hybrid")
            for k in ("hit@1", "hit@5", "hit@20")
        },
    }


def verdicts(results: dict[str, dict]) -> dict[str, dict]:
    """Per backend: speed-up over torch, hit@5 change in points, and whether it may be default."""
    base = results["torch"]
    out = {}
    for backend, r in results.items():
        if backend == "torch":
            continue
        speedup = r["chunks_per_s"] / base["chunks_per_s"]
        drops = {m: 100 * (base[f"{m}_hit@5"] - r[f"{m}_hit@5"]) for m in ("dense", "hybrid")}
        out[backend] = {
            "speedup": speedup,
            "dense_hit@5_drop_points": drops["dense"],
            "hybrid_hit@5_drop_points": drops["hybrid"],
            "may_be_default": speedup >= MIN_SPEEDUP
            and max(drops.values()) <= MAX_HIT5_DROP_POINTS,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench.embedding`."""
    parser = argparse.ArgumentParser(prog="python -m bench.embedding")
    parser.add_argument("--squad", default=str(ROOT.parent / "shared/data/squad-dev-v1.1.json"))
    parser.add_argument("--backends", default="torch,onnx-int8,onnx")
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    configure_logging(logging.INFO, fmt="%(message)s")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "torch" not in backends or not set(backends) <= set(EMBEDDING_BACKENDS):
        sys.stderr.write(f"--backends must include torch and be among {EMBEDDING_BACKENDS}\n")
        return 2
    data = ROOT / "data/bench"
    corpus, _, all_queries = prepare(Path(args.squad), data / "squad")
    queries = select_queries(all_queries, limit=args.limit, seed=args.seed)
    probes = [q.question for q in queries[:200]]
    results = {b: bench_backend(b, corpus, data, queries, probes) for b in backends}
    checks = verdicts(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"questions": len(queries), "seed": args.seed, "results": results, "checks": checks}
    (RESULTS / "embedding.json").write_text(json.dumps(payload, indent=2))
    keys = list(next(iter(results.values())))
    sys.stdout.write(f"\n{'':24s}" + "".join(f"{b:>12s}" for b in backends) + "\n")
    for key in keys:
        cells = "".join(f"{results[b][key]:12.3f}" for b in backends)
        sys.stdout.write(f"{key:24s}{cells}\n")
    sys.stdout.write("\n[targets: >= 2x torch's speed, hit@5 within 0.5 points]\n")
    for backend, v in checks.items():
        sys.stdout.write(
            f"  {'PASS' if v['may_be_default'] else 'FAIL'}  {backend}: {v['speedup']:.2f}x, "
            f"hit@5 drop dense {v['dense_hit@5_drop_points']:+.2f} / hybrid "
            f"{v['hybrid_hit@5_drop_points']:+.2f} points\n"
        )
    default = checks.get(DEFAULT_EMBEDDING_BACKEND, {"may_be_default": True})
    sys.stdout.write(f"  default backend: {DEFAULT_EMBEDDING_BACKEND}\n")
    return 0 if default["may_be_default"] else 1


if __name__ == "__main__":
    sys.exit(main())
