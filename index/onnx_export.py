"""Export the packaged sentence-transformers model to ONNX, int8-quantise it, cache both on disk.

    python -m index.onnx_export [--cache data/embedder]     # builds the cache once (~10 s)

The export is offline and uses only the weights already on disk: `torch.onnx` (TorchScript
exporter, eager attention, dynamic batch and sequence axes) writes the transformer, and
`onnxruntime.quantization.quantize_dynamic` turns its MatMul weights into per-channel int8.
Quantising every op instead cost too much accuracy (cosine 0.95 to PyTorch); MatMul weights
only, with the first layer left in float32, keep it above 0.99. Both files are checked
against PyTorch on probe sentences before they enter the cache, in a folder named by a hash
of the weights and the export settings, so a new model or a new onnxruntime gets a fresh
export and an old one is never rebuilt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from index.durable import folder_lock, fsync_tree

logger = logging.getLogger(__name__)

# Bump when the export recipe changes, so caches made by the old recipe are not reused.
EXPORT_VERSION = 1
OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
# An export that drifts further than this from PyTorch on the probes is broken, not rounded:
# int8 scores 0.977 on the one-word probe and >= 0.99 on sentences; a bad graph scores < 0.8.
MIN_PROBE_COSINE = {FP32_FILE: 0.9999, INT8_FILE: 0.95}
PROBES = (
    "What did the president threaten to do about the cartels?",
    "Tariffs of 25 percent on imports from Mexico and Canada were announced in February 2025, "
    "and the peso fell sharply on the news while markets waited for a response.",
    "ok",
)


class OnnxExportError(RuntimeError):
    """The ONNX export could not be built or failed its check against PyTorch."""


@dataclass(frozen=True)
class OnnxExport:
    """A cached export: its folder and the two model files in it."""

    folder: Path
    fp32: Path
    int8: Path


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "the ONNX embedding backend needs onnxruntime and onnx: "
            "pip install onnxruntime==1.31.1 onnx==1.23.2 (or set embedding_backend='torch')"
        ) from exc


def check_mean_pooling(model_dir: Path) -> None:
    """Raise ValueError unless the model is Transformer -> mean pooling (-> Normalize)."""
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        raise ValueError(f"{model_dir} is not a sentence-transformers folder (no modules.json)")
    kinds = [m["type"].rsplit(".", 1)[-1] for m in json.loads(modules_file.read_text())]
    if kinds[:2] != ["Transformer", "Pooling"] or not set(kinds[2:]) <= {"Normalize"}:
        raise ValueError(
            f"the ONNX backend supports Transformer+Pooling(+Normalize) models, {model_dir} has "
            f"{kinds}; use embedding_backend='torch'"
        )
    pooling_dir = next(m["path"] for m in json.loads(modules_file.read_text()) if m["idx"] == 1)
    pooling = json.loads((model_dir / pooling_dir / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens") or any(
        v for k, v in pooling.items() if k.startswith("pooling_mode_") and "mean_tokens" not in k
    ):
        raise ValueError(
            f"the ONNX backend supports mean pooling only; {model_dir} pools with {pooling}; "
            "use embedding_backend='torch'"
        )


def export_key(model_dir: Path) -> str:
    """Hash of the weights, tokenizer and export settings: the cache folder's name."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(model_dir)):
        path = model_dir / name
        if path.is_file() and name.endswith((".safetensors", ".bin", ".json", ".txt")):
            digest.update(name.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
    settings = {"recipe": EXPORT_VERSION, "opset": OPSET, "onnxruntime": _version("onnxruntime")}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Unit-length mean of the token states where the mask is 1, as sentence-transformers does."""
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def _export_fp32(model_dir: Path, target: Path, probe: dict[str, np.ndarray]) -> np.ndarray:
    """Write the transformer as ONNX; return PyTorch's pooled probe vectors for checking."""
    import torch
    from transformers import AutoModel

    # Eager attention traces into plain MatMul/Softmax ops with no shape-specialised branches.
    model = AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, attn_implementation="eager"
    ).eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    outputs = trace_to_onnx(LastHiddenState(model), probe, target, outputs=("last_hidden_state",))
    return mean_pool(outputs[0], probe["attention_mask"])


def trace_to_onnx(wrapper, probe: dict[str, np.ndarray], target: Path, *, outputs: tuple[str, ...]):
    """Export a module of (input_ids, attention_mask, token_type_ids) with dynamic axes.

    Returns the module's eager outputs on the probe (as NumPy), computed before the export:
    the traced module does not give the eager results afterwards.
    """
    import torch

    inputs = tuple(torch.from_numpy(probe[name]) for name in INPUT_NAMES)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, *outputs)}
    with torch.no_grad():
        result = wrapper(*inputs)
    result = result if isinstance(result, tuple) else (result,)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python booleans in HF code
        torch.onnx.export(
            wrapper,
            inputs,
            str(target),
            input_names=list(INPUT_NAMES),
            output_names=list(outputs),
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    return [t.numpy() for t in result]


def quantize_int8(source: Path, target: Path, *, embeddings: bool = False) -> int:
    """Per-channel int8 weights for the MatMuls after the first layer; return how many.

    Activations stay float32. With embeddings, the word-embedding table (a Gather) is int8
    too, which shrinks a MiniLM file from 64 to 28 MB (the reader's). The first layer stays
    float32: on 600 SQuAD questions its int8 weights lowered the worst cosine to PyTorch from
    0.993 to 0.985 for 10% of the speed.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    first_layer = [n.name for n in matmuls if "/layer.0/" in n.name]
    if not first_layer or len(first_layer) == len(matmuls):
        raise OnnxExportError(
            f"unexpected graph: {len(first_layer)} of {len(matmuls)} weight MatMuls in layer 0"
        )
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a pre-processing hint on the root logger
    try:
        quantize_dynamic(
            str(source),
            str(target),
            op_types_to_quantize=["MatMul", "Gather"] if embeddings else ["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=first_layer,
            extra_options={
                "DefaultTensorType": onnx.TensorProto.FLOAT,
                "MatMulConstBOnly": True,
            },
        )
    finally:
        root.setLevel(level)
    return len(matmuls) - len(first_layer)


def probe_inputs(model_dir: Path) -> dict[str, np.ndarray]:
    """The probe sentences tokenised and padded as int64 model inputs."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    probe = tokenizer(list(PROBES), padding=True, return_tensors="np")
    return {name: probe[name].astype(np.int64) for name in INPUT_NAMES}


def probe_vectors(model_file: Path, probe: dict[str, np.ndarray]) -> np.ndarray:
    """Pooled ONNX Runtime vectors of the probe sentences."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    hidden = session.run(None, probe)[0]
    return mean_pool(hidden, probe["attention_mask"])


def _complete(folder: Path) -> bool:
    """The folder holds a finished export: its record, and every file at its recorded size."""
    try:
        record = json.loads((folder / "export.json").read_text())
        return all((folder / n).stat().st_size == size for n, size in record["files"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def ensure_onnx_export(model_dir: Path, *, cache_dir: Path) -> OnnxExport:
    """The cached fp32 and int8 ONNX files for model_dir, exporting them on first use."""
    _require_onnx()
    check_mean_pooling(model_dir)
    key = export_key(model_dir)
    folder = cache_dir / f"onnx-{key}"
    export = OnnxExport(folder=folder, fp32=folder / FP32_FILE, int8=folder / INT8_FILE)
    if _complete(folder):
        return export
    with folder_lock(cache_dir):
        if _complete(folder):  # another process finished it meanwhile
            return export
        # Under the lock no other export runs: any staging folder is a killed run's leftover.
        for leftover in cache_dir.glob(".onnx-*.partial*"):
            shutil.rmtree(leftover, ignore_errors=True)
        started = time.perf_counter()
        logger.info("exporting the embedding model to ONNX in %s (once; ~10 s)", folder)
        staging = cache_dir / f".{folder.name}.partial"
        staging.mkdir(parents=True)
        try:
            record = _export_into(staging, model_dir)
            record.update(key=key, seconds=round(time.perf_counter() - started, 2))
            (staging / "export.json").write_text(json.dumps(record, indent=2) + "\n")
            fsync_tree(staging)
            shutil.rmtree(folder, ignore_errors=True)  # an incomplete or damaged export
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info(
            "ONNX export ready in %.1f s (probe cosine %s)",
            record["seconds"],
            record["min_probe_cosine_to_torch"],
        )
    return export


def _export_into(staging: Path, model_dir: Path) -> dict:
    """Export, quantise and check against PyTorch; return the export record."""
    try:
        probe = probe_inputs(model_dir)
        reference = _export_fp32(model_dir, staging / FP32_FILE, probe)
        quantized = quantize_int8(staging / FP32_FILE, staging / INT8_FILE)
        cosines = {}
        for name in (FP32_FILE, INT8_FILE):
            cosine = float((probe_vectors(staging / name, probe) * reference).sum(1).min())
            if cosine < MIN_PROBE_COSINE[name]:
                raise OnnxExportError(
                    f"ONNX export {name} drifted from PyTorch: probe cosine {cosine:.4f} < "
                    f"{MIN_PROBE_COSINE[name]}; use embedding_backend='torch' "
                    "(--embedding-backend torch)"
                )
            cosines[name] = round(cosine, 5)
    except OnnxExportError:
        raise
    except Exception as exc:  # torch.onnx, the quantiser and onnxruntime raise many kinds
        raise OnnxExportError(
            f"could not export {model_dir} to ONNX ({type(exc).__name__}: {exc}); "
            "use embedding_backend='torch' (--embedding-backend torch)"
        ) from exc
    return {
        "model_dir": str(model_dir),
        "recipe": EXPORT_VERSION,
        "opset": OPSET,
        "int8": f"dynamic QInt8 per channel, {quantized} MatMul weights (layer 0 fp32)",
        "min_probe_cosine_to_torch": cosines,
        "files": {n: (staging / n).stat().st_size for n in (FP32_FILE, INT8_FILE)},
        "versions": {p: _version(p) for p in ("torch", "onnx", "onnxruntime")},
    }


def open_onnx_session(model_dir: Path, *, cache_dir: Path, quantized: bool):
    """An ONNX Runtime session on the cached export; a damaged cache is exported again once."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for attempt in (1, 2):
        export = ensure_onnx_export(model_dir, cache_dir=cache_dir)
        path = export.int8 if quantized else export.fp32
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Exception subclasses
            if attempt == 2:
                raise OnnxExportError(
                    f"ONNX Runtime cannot load {path} ({exc}); "
                    "use embedding_backend='torch' (--embedding-backend torch)"
                ) from exc
            logger.warning("cached ONNX model %s is unreadable (%s); exporting again", path, exc)
            with folder_lock(cache_dir):
                shutil.rmtree(export.folder, ignore_errors=True)
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    """Build (or find) the cached export of the packaged model and print where it is."""
    from index.config import DEFAULT_EMBEDDING_MODEL
    from index.embedding import packaged_model_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_EMBEDDING_MODEL)
    parser.add_argument("--cache", type=Path, default=Path("data/embedder"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    export = ensure_onnx_export(packaged_model_path(args.model), cache_dir=args.cache)
    sys.stdout.write((export.folder / "export.json").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
