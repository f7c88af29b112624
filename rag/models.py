"""Download the recommended local LLM (needs a network connection; everything else is offline).

    python -m rag.models download      # or: make model

Recommended: Qwen2.5-1.5B-Instruct, Q4_K_M GGUF (about 1.1 GB, Apache-2.0 licence), from the
Hugging Face repository Qwen/Qwen2.5-1.5B-Instruct-GGUF. Any chat-tuned GGUF works: put it in
models/ or pass --model / RAG_MODEL.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    """A downloadable GGUF."""

    repo: str
    filename: str
    size: str
    licence: str


RECOMMENDED = ModelChoice(
    repo="Qwen/Qwen2.5-1.5B-Instruct-GGUF",
    filename="qwen2.5-1.5b-instruct-q4_k_m.gguf",
    size="about 1.1 GB",
    licence="Apache-2.0",
)


def download(choice: ModelChoice, *, models_dir: Path) -> Path:
    """Fetch the GGUF into models_dir atomically; raises RuntimeError when offline."""
    target = models_dir / choice.filename
    if target.is_file():
        logger.info("%s is already in %s", choice.filename, models_dir)
        return target
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ImportError("downloading needs huggingface_hub: pip install huggingface_hub") from exc
    created = not models_dir.exists()
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".download-") as tmp:
        try:
            path = hf_hub_download(choice.repo, choice.filename, local_dir=tmp)
        except Exception as exc:  # network errors come in many types; all mean "not now"
            if created:
                shutil.rmtree(models_dir, ignore_errors=True)
            raise RuntimeError(
                f"could not download {choice.repo}/{choice.filename} ({type(exc).__name__}); "
                "this machine seems to be offline. Nothing was changed. Copy any chat-tuned "
                "GGUF into models/ instead, or pass --model."
            ) from exc
        shutil.move(path, target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m rag.models`."""
    parser = argparse.ArgumentParser(prog="python -m rag.models")
    parser.add_argument("command", choices=["download"])
    parser.add_argument("--models-dir", default=os.environ.get("RAG_MODELS_DIR", "models"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    c = RECOMMENDED
    logger.info("downloading %s/%s (%s, %s)", c.repo, c.filename, c.size, c.licence)
    try:
        path = download(c, models_dir=Path(args.models_dir))
    except (RuntimeError, ImportError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    logger.info("saved %s; `make run` will use it", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
