"""Ingestion benchmark: a generated mixed corpus of every supported type, scanned pages included.

    python -m bench.ingest [--files 1000] [--scans 8] [--keep DIR]

Prints and writes to bench/results/ingest.json: files/s and MB/s per format (each file read
alone, in this process), OCR pages/s, and for a full `update_index` of the corpus the share of
the time spent reading (parsing + OCR, in worker processes) against embedding; then the
re-index, which must OCR nothing (the page cache) and re-embed nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.mixed_corpus import DEFAULT_SQUAD, generate
from index import IndexConfig, embedder_for, update_index
from index.loaders import read_document
from rag.logs import configure_logging

logger = logging.getLogger("bench.ingest")
RESULTS = Path("bench/results")


def per_format(corpus: Path, config: IndexConfig) -> dict[str, dict]:
    """Read every file alone, timed, grouped by suffix (OCR included for scans and images)."""
    limits = config.read_limits()
    seconds: dict[str, float] = defaultdict(float)
    sizes: dict[str, int] = defaultdict(int)
    files: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    for path in sorted(corpus.iterdir()):
        kind = path.suffix.lower()
        if path.name.startswith(("scan-", "photo-")):
            kind += " (scanned, OCR)"
        started = time.perf_counter()
        result = read_document(
            path, source=path.name, max_bytes=config.max_file_bytes, limits=limits
        )
        seconds[kind] += time.perf_counter() - started
        sizes[kind] += path.stat().st_size
        files[kind] += 1
        failed[kind] += not isinstance(result, list)
    return {
        kind: {
            "files": files[kind], "failed": failed[kind], "seconds": round(seconds[kind], 3),
            "files_per_s": round(files[kind] / seconds[kind], 1),
            "mb_per_s": round(sizes[kind] / 1e6 / seconds[kind], 2),
        }
        for kind in sorted(files)
    }  # fmt: skip


def full_build(corpus: Path, config: IndexConfig) -> dict:
    """A full update_index (cold OCR cache), then an unchanged re-index."""
    embedder_for(config)  # the model load is start-up, not ingestion
    report = update_index(config, progress=True)
    stages = report.stage_seconds
    reading, embedding = stages.get("scan", 0.0), stages.get("embed", 0.0)
    again = update_index(config, progress=False)
    return {
        "documents": len(report.added),
        "skipped": len(report.skipped),
        "partial": len(report.partial),
        "chunks": report.chunks_total,
        "total_s": round(report.total_seconds, 2),
        "stages_s": {k: round(v, 2) for k, v in stages.items()},
        "reading_share": round(reading / report.total_seconds, 3),
        "embedding_share": round(embedding / report.total_seconds, 3),
        "reindex_s": round(again.total_seconds, 2),
        "reindex_embedded": again.chunks_embedded,
        "skipped_reasons": sorted({s.reason[:80] for s in report.skipped})[:10],
    }


def table(results: dict) -> str:
    """The figures as a readable table."""
    lines = ["format                files  failed  files/s   MB/s"]
    for kind, row in results["formats"].items():
        lines.append(
            f"{kind:21s} {row['files']:5d} {row['failed']:7d} {row['files_per_s']:8.1f} "
            f"{row['mb_per_s']:6.2f}"
        )
    build = results["build"]
    lines += [
        f"OCR: {results['ocr_pages']} pages, {results['ocr_pages_per_s']:.2f} pages/s",
        f"full build: {build['documents']} documents, {build['chunks']} chunks in "
        f"{build['total_s']} s; reading {build['reading_share']:.0%}, embedding "
        f"{build['embedding_share']:.0%} (stages {build['stages_s']})",
        f"re-index unchanged: {build['reindex_s']} s, {build['reindex_embedded']} chunks embedded",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench.ingest`."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--scans", type=int, default=8)
    parser.add_argument("--squad", type=Path, default=DEFAULT_SQUAD)
    parser.add_argument("--keep", type=Path, help="generate into DIR and keep it")
    args = parser.parse_args(argv)
    configure_logging(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="cqa-ingest-"))
    corpus = args.keep or work / "corpus"
    try:
        counts = generate(corpus, squad=args.squad, files=args.files, scans=args.scans, seed=7)
        config = IndexConfig(
            corpus_dir=corpus, index_dir=work / "index", ocr_cache_dir=work / "ocr-build"
        )
        results = {"machine": {"cpus": os.cpu_count()}, "generated": counts}
        results["build"] = full_build(corpus, config)
        alone = IndexConfig(corpus_dir=corpus, ocr_cache_dir=work / "ocr-alone")
        results["formats"] = per_format(corpus, alone)
        scans = per_format_scans(corpus, work)
        results["ocr_pages"] = counts["ocr_pages"]
        results["ocr_pages_per_s"] = round(counts["ocr_pages"] / scans, 2) if scans else 0.0
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "ingest.json").write_text(json.dumps(results, indent=2))
        sys.stdout.write(table(results) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def per_format_scans(corpus: Path, work: Path) -> float:
    """Seconds to read the scanned PDFs and PNG scans alone, with a cold OCR cache."""
    config = IndexConfig(corpus_dir=corpus, ocr_cache_dir=work / "ocr-scans")
    limits = config.read_limits()
    started = time.perf_counter()
    for path in sorted(corpus.glob("scan-*.pdf")) + sorted(corpus.glob("photo-*.png")):
        read_document(path, source=path.name, max_bytes=config.max_file_bytes, limits=limits)
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
