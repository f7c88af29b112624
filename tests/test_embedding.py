"""Embedding backends: ONNX exports agree with PyTorch, the export cache, backend mismatches.

python -m pytest -q tests/test_embedding.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from index import IndexConfig, IndexMismatch, embedder_for, update_index
from index.config import DEFAULT_EMBEDDING_MODEL
from index.embedding import check_embedder, get_embedder, packaged_model_path
from index.onnx_export import FP32_FILE, check_mean_pooling, ensure_onnx_export, mean_pool

ROOT = Path(__file__).resolve().parent.parent

TEXTS = [
    "Trump threatened tariffs of 25 percent on Mexican imports.",
    "Who leads the Sinaloa cartel?",
    "ok",
    "",
    "Sheinbaum said Mexico would not accept any U.S. military intervention on its soil. " * 30,
    "Émigrés in Ciudad Juárez — 北京 — emoji 🌮 and tabs\tand\nnewlines.",
]


@pytest.fixture(scope="module")
def torch_embedder():
    """The sentence-transformers reference."""
    return get_embedder(DEFAULT_EMBEDDING_MODEL, max_seq_length=256, backend="torch")


@pytest.fixture(scope="module")
def corpus_sentences() -> list[str]:
    """A few hundred real sentences of the default corpus."""
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").iterdir()))
    sentences = [s.strip() for s in text.replace("\n", " ").split(". ") if len(s.split()) > 3]
    return sentences[:300]


@pytest.mark.parametrize(
    ("backend", "mean_min", "worst_min"), [("onnx", 0.9999, 0.9999), ("onnx-int8", 0.99, 0.97)]
)
def test_onnx_backends_agree_with_torch(
    backend, mean_min, worst_min, torch_embedder, corpus_sentences
):
    embedder = embedder_for(IndexConfig(embedding_backend=backend))
    texts = corpus_sentences + TEXTS
    cosine = (embedder.encode(texts) * torch_embedder.encode(texts)).sum(axis=1)
    assert cosine.mean() >= mean_min, cosine.mean()
    assert cosine.min() >= worst_min, cosine.min()


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "torch"])
def test_vectors_are_unit_float32_in_input_order_whatever_the_batch(backend, corpus_sentences):
    embedder = get_embedder(DEFAULT_EMBEDDING_MODEL, max_seq_length=256, backend=backend)
    texts = corpus_sentences[:40] + TEXTS
    together = embedder.encode(texts, batch_size=7)
    alone = np.stack([embedder.encode([t])[0] for t in texts])
    assert together.dtype == np.float32 and together.shape == (len(texts), 384)
    assert together.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    # Padding must not leak into the mean: one text alone or in a padded batch, same vector.
    assert (together * alone).sum(axis=1).min() > 0.9999
    assert embedder.encode([]).shape == (0, 384)


def test_token_counts_are_untruncated_and_the_same_on_every_backend(torch_embedder):
    onnx = embedder_for(IndexConfig(embedding_backend="onnx-int8"))
    assert onnx.count_tokens(TEXTS) == torch_embedder.count_tokens(TEXTS)
    assert onnx.count_tokens(TEXTS)[4] > 256  # the long text is counted in full


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda e: {"embedding_backend": "torch" if e.backend != "torch" else "onnx"},
            "does not match",
        ),
        (lambda e: {"max_seq_length": 128, "chunk_tokens": 100}, "max_seq_length"),
    ],
)
def test_a_given_embedder_must_match_the_config(change, message, embedder):
    config = IndexConfig(**change(embedder))
    with pytest.raises(ValueError, match=message):
        check_embedder(embedder, config)


def test_bad_backend_names_are_refused():
    with pytest.raises(ValueError, match="embedding_backend must be one of"):
        IndexConfig(embedding_backend="openvino")
    with pytest.raises(ValueError, match="embedding backend must be one of"):
        get_embedder(DEFAULT_EMBEDDING_MODEL, max_seq_length=256, backend="cuda")


def test_export_is_cached_and_damage_or_leftovers_are_repaired(tmp_path, caplog):
    from index.onnx_export import open_onnx_session

    model_dir = packaged_model_path(DEFAULT_EMBEDDING_MODEL)
    first = ensure_onnx_export(model_dir, cache_dir=tmp_path)
    record = json.loads((first.folder / "export.json").read_text())
    assert record["min_probe_cosine_to_torch"][FP32_FILE] >= 0.9999
    assert first.int8.stat().st_size < first.fp32.stat().st_size
    stamp = first.int8.stat().st_mtime_ns
    assert ensure_onnx_export(model_dir, cache_dir=tmp_path).int8.stat().st_mtime_ns == stamp

    # What kill -9 mid-export leaves (staging folders), plus a model cut short on disk.
    for leftover in (".onnx-0123.partial", ".onnx-0123.partial-4242"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / FP32_FILE).write_bytes(b"half")
    with open(first.int8, "r+b") as handle:
        handle.truncate(1000)
    again = ensure_onnx_export(model_dir, cache_dir=tmp_path)
    assert again.int8.stat().st_size == record["files"]["model-int8.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", first.folder.name]

    # Same size, garbage inside: the session cannot load it, so it is exported once more.
    again.int8.write_bytes(b"\0" * again.int8.stat().st_size)
    session = open_onnx_session(model_dir, cache_dir=tmp_path, quantized=True)
    assert [i.name for i in session.get_inputs()][:2] == ["input_ids", "attention_mask"]
    assert "exporting again" in caplog.text


def _model_copy(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(packaged_model_path(DEFAULT_EMBEDDING_MODEL), target)
    return target


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: (d / "1_Pooling/config.json").write_text(
                json.dumps({"pooling_mode_cls_token": True})
            ),
            "mean pooling only",
        ),
        (
            lambda d: (d / "1_Pooling/config.json").write_text(
                json.dumps({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True})
            ),
            "mean pooling only",
        ),
        (
            lambda d: (d / "modules.json").write_text(
                json.dumps(
                    [
                        {"idx": 0, "path": "", "type": "x.Transformer"},
                        {"idx": 1, "path": "d", "type": "x.Dense"},
                    ]
                )
            ),
            "Transformer\\+Pooling",
        ),
        (lambda d: (d / "modules.json").unlink(), "not a sentence-transformers folder"),
    ],
)
def test_only_mean_pooled_models_are_exported(edit, message, tmp_path):
    model_dir = _model_copy(tmp_path)
    check_mean_pooling(model_dir)
    edit(model_dir)
    with pytest.raises(ValueError, match=message):
        check_mean_pooling(model_dir)


@pytest.mark.parametrize(
    ("hidden", "mask", "expected"),
    [
        ([[[3.0, 4.0], [100.0, 100.0]]], [[1, 0]], [[0.6, 0.8]]),  # padding ignored
        ([[[1.0, 0.0], [0.0, 1.0]]], [[1, 1]], [[0.7071, 0.7071]]),
        ([[[0.0, 0.0]]], [[0]], [[0.0, 0.0]]),  # nothing to average: zeros, not NaN
    ],
)
def test_mean_pool(hidden, mask, expected):
    pooled = mean_pool(np.array(hidden, np.float32), np.array(mask))
    np.testing.assert_allclose(pooled, expected, atol=1e-4)


def test_switching_backend_re_embeds_and_a_mismatched_index_is_refused(
    tmp_path, corpus_copy, embedder, torch_embedder
):
    from rag import Config, Pipeline

    onnx_config = IndexConfig(corpus_dir=corpus_copy, index_dir=tmp_path / "index")
    built = update_index(onnx_config, progress=False, embedder=embedder)
    manifest = json.loads(next((tmp_path / "index").glob("gen-*/manifest.json")).read_text())
    assert manifest["embedding"]["backend"] == embedder.backend
    torch_config = IndexConfig(
        corpus_dir=corpus_copy, index_dir=tmp_path / "index", embedding_backend="torch"
    )
    with pytest.raises(IndexMismatch, match="backend"):
        Pipeline(Config(index=torch_config), embedder=torch_embedder)
    report = update_index(torch_config, progress=False, embedder=torch_embedder)
    assert "backend" in (report.rebuilt_reason or "")
    assert report.chunks_embedded == built.chunks_total
    assert {"scan", "prepare", "chunk", "embed", "write"} <= set(report.stage_seconds)
    assert report.embed_seconds == report.stage_seconds["embed"] <= report.total_seconds
    answer = Pipeline(Config(index=torch_config), embedder=torch_embedder).ask(
        "What tariff did Trump threaten on Mexican imports?"
    )
    assert answer.citations


def test_summed_passage_sizes_equal_a_recount(embedder, corpus_sentences):
    from index.chunking import chunk_document
    from index.cleaning import segment

    assert embedder.counts_add_up  # BERT word pieces
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").iterdir())]
    texts.append(" ".join(TEXTS) + " " + ". ".join(corpus_sentences))
    for text in texts:
        settings = dict(
            count_tokens=embedder.count_tokens,
            chunk_tokens=160,
            max_tokens=254,
            overlap_sentences=1,
            dedup_min_words=6,
        )
        summed = chunk_document(text, segment(text, set()), counts_add_up=True, **settings)
        counted = chunk_document(text, segment(text, set()), counts_add_up=False, **settings)
        assert summed == counted
        assert [c.n_tokens for c in summed] == embedder.count_tokens(
            [c.search_text for c in summed]
        )


def test_a_failed_export_says_what_to_do_and_leaves_nothing(tmp_path, monkeypatch):
    from index import OnnxExportError, onnx_export

    def broken(model_dir, target, probe):
        target.write_bytes(b"partial")
        raise TypeError("forward() got an unexpected keyword argument")

    monkeypatch.setattr(onnx_export, "_export_fp32", broken)
    with pytest.raises(OnnxExportError, match="--embedding-backend torch"):
        ensure_onnx_export(packaged_model_path(DEFAULT_EMBEDDING_MODEL), cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_cli_refuses_an_unknown_backend(monkeypatch, capsys):
    from rag.__main__ import main

    monkeypatch.setenv("RAG_EMBEDDING_BACKEND", "openvino")
    assert main(["index", "-q"]) == 2
    assert "embedding_backend must be one of" in capsys.readouterr().err
