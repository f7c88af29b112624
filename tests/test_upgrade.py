"""An index of format 2 (chunks.jsonl + dense.faiss per generation) is upgraded, not re-embedded.

python -m pytest tests/test_upgrade.py -q
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import faiss
import numpy as np
import pytest

from index import CorpusIndex, IndexConfig, update_index
from index.build import swap_current
from index.corpus_index import manifest_checksum
from index.durable import file_sha256


def _write_format_2(config: IndexConfig, index: CorpusIndex) -> str:
    """The live index rewritten in the old layout: row i of chunks.jsonl = vector i."""
    chunks = index.chunks_of()
    vectors = index.store.vectors([c.id for c in chunks])
    folder = config.index_dir / "gen-20250101T000000000000-1"
    folder.mkdir()
    with open(folder / "chunks.jsonl", "w", encoding="utf-8") as handle:
        for row, chunk in enumerate(chunks):
            handle.write(json.dumps({**asdict(chunk), "id": row}, ensure_ascii=False) + "\n")
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    faiss.write_index(flat, str(folder / "dense.faiss"))
    manifest = {k: v for k, v in index.manifest.items() if k not in ("store", "files")}
    manifest |= {"format_version": 2, "bm25": {"tokenizer": "unicode-v2+snowball-en+stopwords"}}
    manifest["files"] = {
        n: {"bytes": (folder / n).stat().st_size, "sha256": file_sha256(folder / n)}
        for n in ("chunks.jsonl", "dense.faiss")
    }
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    for path in config.index_dir.iterdir():
        if path.name.startswith(("gen-2026", "segments")):
            shutil.rmtree(path)
    swap_current(config.index_dir, folder.name)
    return folder.name


@pytest.fixture
def old_index(tmp_path, corpus_copy, embedder):
    config = IndexConfig(corpus_dir=corpus_copy, index_dir=tmp_path / "index")
    update_index(config, progress=False, embedder=embedder)
    built = CorpusIndex.load(config)
    expected = {
        "chunks": built.chunks_of(),
        "vectors": built.store.vectors([c.id for c in built.chunks_of()]),
        "terms": built.stats.df,
    }
    _write_format_2(config, built)
    return config, expected


def test_format_2_is_upgraded_reusing_vectors_and_texts(old_index, embedder):
    config, expected = old_index
    texts_before = sorted(p.name for p in (config.index_dir / "texts").iterdir())
    report = update_index(config, progress=False, embedder=embedder)
    assert report.upgraded.startswith("upgraded index format 2 to 3")
    assert report.chunks_embedded == 0 and report.upgraded in report.summary()
    index = CorpusIndex.load(config)
    assert index.manifest["format_version"] == 3 and index.manifest["upgraded_from"] == 2
    assert index.chunks_of() == expected["chunks"]  # stable ids given to the old rows
    ids = [c.id for c in index.chunks_of()]
    assert np.array_equal(index.store.vectors(ids), expected["vectors"])
    assert index.stats.df == expected["terms"]
    assert sorted(p.name for p in (config.index_dir / "texts").iterdir()) == texts_before
    # The next update reads the files once (no line table yet), then stat first.
    assert update_index(config, progress=False, embedder=embedder).chunks_embedded == 0


def test_a_pipeline_opening_a_format_2_index_upgrades_it(old_index, embedder):
    from rag import Config
    from rag.pipeline import open_pipeline

    config, expected = old_index
    pipeline = open_pipeline(Config(index=config), progress=False)
    assert pipeline.index.manifest["format_version"] == 3
    answer = pipeline.ask("Who did Hegseth call on Jan. 31?")
    assert not answer.abstained and answer.citations
