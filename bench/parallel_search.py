"""The embedded store's search with its dense side on a second thread, against inline.

    python -m bench.parallel_search [--chunks 200000] [--rounds 3]

One segment of SQuAD sentences recombined (`bench.lexical.texts_and_questions`) with random unit
vectors, written by the production `EmbeddedWriter` (HNSW past `exact_search_max_chunks`, as a
build would choose), then 200 SQuAD questions with random query vectors through
`EmbeddedStore.search`, alternating the threaded and the inline path each round. Random
vectors make HNSW work harder than real ones; only the ratio between the two paths matters.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import index.segments as segments
from bench.lexical import texts_and_questions
from index import IndexConfig
from index.analyzer import TermStats, analyzer
from index.build import dense_settings
from index.segments import EmbeddedStore, EmbeddedWriter
from index.store import Chunk, chunk_id

DIMENSION = 384
ROOT = Path(__file__).resolve().parent.parent


def chunks_of(texts: list[str]) -> list[Chunk]:
    """One chunk per text, ten chunks to a document."""
    chunks = []
    for i, text in enumerate(texts):
        source, start = f"doc{i // 10}.txt", (i % 10) * 100_000
        end = start + len(text)
        chunks.append(
            Chunk(
                id=chunk_id(source, start, end, text, text),
                source=source,
                title=source,
                date="",
                start=start,
                end=end,
                text=text,
                search_text=text,
                sentences=((start, end),),
                n_tokens=len(text.split()),
            )  # fmt: skip
        )
    return chunks


def unit_vectors(n: int, seed: int) -> np.ndarray:
    """n random unit vectors of the embedder's dimension."""
    vectors = np.random.default_rng(seed).normal(size=(n, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_store(folder: Path, chunks: list[Chunk]) -> EmbeddedStore:
    """The chunks written as one segment by the production writer, then opened."""
    config = IndexConfig()
    generation = folder / "gen0"
    generation.mkdir()
    writer = EmbeddedWriter(
        folder, None, entry={}, dense_for=lambda rows: dense_settings(config, rows)
    )
    writer.upsert(chunks, unit_vectors(len(chunks), seed=0))
    state = writer.finish(generation)
    stats = TermStats.of(analyzer().tokenize(c.search_text) for c in chunks)
    return EmbeddedStore.open(folder, generation, state.manifest, stats)


def time_searches(store: EmbeddedStore, questions: list[str], *, threaded: bool) -> list[float]:
    """Milliseconds per search (top 100 of each engine) on one path."""
    segments.PARALLEL_SEARCH_ROWS = 0 if threaded else sys.maxsize
    vectors = unit_vectors(len(questions), seed=1)
    wall = []
    for question, vector in zip(questions, vectors, strict=True):
        started = time.perf_counter()
        store.search(text=question, vector=vector, k=100)
        wall.append((time.perf_counter() - started) * 1000)
    return wall


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench.parallel_search`."""
    parser = argparse.ArgumentParser(prog="python -m bench.parallel_search", description=__doc__)
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--squad", type=Path, default=ROOT.parent / "shared/data/squad-dev-v1.1.json"
    )
    args = parser.parse_args(argv)
    if args.chunks < 1 or args.rounds < 1:
        sys.stderr.write("error: --chunks and --rounds must be at least 1\n")
        return 2
    texts, questions = texts_and_questions(args.squad, args.chunks, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        store = build_store(Path(folder), chunks_of(texts))
        sys.stdout.write(
            f"{args.chunks:,} chunks written in {time.perf_counter() - started:.0f} s\n"
        )
        time_searches(store, questions[:20], threaded=True)  # warm-up
        for _ in range(args.rounds):
            for threaded in (True, False):
                wall = time_searches(store, questions, threaded=threaded)
                sys.stdout.write(
                    f"{'thread' if threaded else 'inline'}: search p50 "
                    f"{np.percentile(wall, 50):.2f} ms, p95 {np.percentile(wall, 95):.2f} ms\n"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
