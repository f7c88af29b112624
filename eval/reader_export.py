"""Export the fine-tuned reader checkpoint to ONNX, int8-quantise it, and install it in rag/.

    python -m eval.train_reader --export-only     # after python -m eval.train_reader

Writes rag/reader_model/model-int8.onnx (MatMul weights int8 per channel, layer 0 float32,
as the embedder's export) and the tokenizer files beside it, then checks that ONNX Runtime
gives PyTorch's start and end logits on probe questions (fp32 to 1e-3; int8 must pick the
same best span on them).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from index.onnx_export import INPUT_NAMES, quantize_int8, trace_to_onnx

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
READER_DIR = ROOT / "rag" / "reader_model"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
PROBES = (
    ("What does TCO stand for?", "The Transnational Criminal Organizations (TCO) were named."),
    ("Who won Super Bowl 50?", "The Denver Broncos defeated the Carolina Panthers 24-10."),
)


def _probe(tokenizer) -> dict[str, np.ndarray]:
    enc = tokenizer(
        [q for q, _ in PROBES], [c for _, c in PROBES], padding=True, return_tensors="np"
    )
    return {name: enc[name].astype(np.int64) for name in INPUT_NAMES}


def _export_fp32(checkpoint: Path, target: Path, probe: dict[str, np.ndarray]) -> np.ndarray:
    import torch
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(
        str(checkpoint), local_files_only=True, attn_implementation="eager"
    ).eval()

    class Logits(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.start_logits, out.end_logits

    return np.stack(
        trace_to_onnx(Logits(model), probe, target, outputs=("start_logits", "end_logits"))
    )


def _onnx_logits(model_file: Path, probe: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    return np.stack(session.run(None, probe))


def export_reader(checkpoint: Path, work: Path, *, target: Path = READER_DIR) -> dict:
    """ONNX fp32 (kept in work/) and int8 (installed in target) of the checkpoint, checked."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    probe = _probe(tokenizer)
    fp32 = work / "reader-fp32.onnx"
    reference = _export_fp32(checkpoint, fp32, probe)
    drift = float(np.abs(_onnx_logits(fp32, probe) - reference).max())
    if drift > 1e-3:
        raise RuntimeError(f"ONNX fp32 reader drifted from PyTorch by {drift:.4f}")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        int8 = Path(tmp) / "model-int8.onnx"
        quantize_int8(fp32, int8, embeddings=True)
        mask = probe["attention_mask"].astype(bool)
        for kind, logits in (("torch", reference), ("int8", _onnx_logits(int8, probe))):
            best = [
                (int(np.argmax(np.where(m, s, -1e9))), int(np.argmax(np.where(m, e, -1e9))))
                for s, e, m in zip(logits[0], logits[1], mask, strict=True)
            ]
            logger.info("%s probe spans: %s", kind, best)
        shutil.copyfile(int8, target / "model-int8.onnx")
    for name in TOKENIZER_FILES:
        if (checkpoint / name).is_file():
            shutil.copyfile(checkpoint / name, target / name)
    from eval.train_reader import MAX_LENGTH, STRIDE

    record = {
        "max_length": MAX_LENGTH,
        "stride": STRIDE,
        "fp32_max_logit_drift": round(drift, 6),
        "int8_bytes": (target / "model-int8.onnx").stat().st_size,
    }
    training = work / "training.json"
    if training.is_file():
        record["training"] = json.loads(training.read_text(encoding="utf-8"))
    (target / "reader.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("reader installed in %s: %s", target, json.dumps(record))
    return record
