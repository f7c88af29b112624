"""The local LLM: finding a GGUF file, loading it once (lazily), and streaming chat completions.

    python -m rag ask "What did Hegseth threaten?" --model models/some-instruct.Q4_K_M.gguf --stream

`ChatModel` is the interface the answerer uses; `LlamaCppModel` implements it with
llama-cpp-python and the chat template embedded in the GGUF. Tests drive the same answerer
with a scripted stand-in.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Piece:
    """A streamed piece of model output; the last one carries the finish reason."""

    text: str
    finish_reason: str | None = None


class ChatModel(Protocol):
    """What the answerer needs from a chat model."""

    name: str
    n_ctx: int

    def count_tokens(self, text: str) -> int:
        """Tokens of text as this model tokenizes it (no special-token parsing)."""
        ...

    def special_tokens(self) -> list[str]:
        """Control-token strings of the model's vocabulary (to keep out of prompts)."""
        ...

    def stream_chat(self, messages: list[dict], *, max_tokens: int) -> Iterator[Piece]:
        """Stream the assistant reply to messages, formatted with the model's own template."""
        ...


def physical_cores() -> int:
    """Physical CPU cores (not hyper-threads) available to this process."""
    try:
        cores = set()
        physical = core = None
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("physical id"):
                    physical = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                elif not line.strip() and core is not None:
                    cores.add((physical, core))
                    physical = core = None
        if core is not None:
            cores.add((physical, core))
        if cores:
            return max(1, min(len(cores), len(os.sched_getaffinity(0))))
    except (OSError, AttributeError):
        pass
    return max(1, os.cpu_count() or 1)


def find_model(explicit: str | None, *, env_value: str | None, models_dir: Path) -> Path | None:
    """The GGUF to use: --model, else RAG_MODEL, else the first *.gguf in models_dir."""
    for candidate in (explicit, env_value):
        if candidate:
            return Path(candidate)
    if models_dir.is_dir():
        found = sorted(models_dir.glob("*.gguf"))
        if found:
            return found[0]
    return None


class LlamaCppModel:
    """A GGUF model in llama-cpp-python; generation is serialised (one context, one model)."""

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int | None) -> None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"model file not found: {path}")
        with open(path, "rb") as handle:
            if handle.read(4) != b"GGUF":
                raise ValueError(f"{path} is not a GGUF model file")
        try:
            import llama_cpp
        except ImportError as exc:
            raise ImportError(
                "the LLM needs llama-cpp-python: pip install llama-cpp-python"
            ) from exc
        threads = n_threads or physical_cores()
        started = time.perf_counter()
        try:
            # Explicit thread counts: default OpenMP spinning stalls decoding on busy cores.
            self.llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                verbose=False, logits_all=False,
            )  # fmt: skip
        except (ValueError, RuntimeError, OSError) as exc:
            raise ValueError(
                f"could not load {path.name} (not a supported GGUF, or too large for memory): {exc}"
            ) from exc
        self.name = path.name
        self.n_ctx = int(self.llm.n_ctx())
        self._lock = threading.Lock()
        self._specials = self._control_tokens()
        logger.info("loaded %s in %.1fs (n_ctx=%d, threads=%d)", path.name,
                    time.perf_counter() - started, self.n_ctx, threads)  # fmt: skip

    def _control_tokens(self) -> list[str]:
        import llama_cpp

        special = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
        model = self.llm._model  # llama-cpp-python exposes vocab attributes only here
        found = []
        for token in range(self.llm.n_vocab()):
            if model.token_get_attr(token) & special:
                text = self.llm.detokenize([token], special=True).decode("utf-8", "ignore")
                if len(text) > 1:
                    found.append(text)
        return found

    def count_tokens(self, text: str) -> int:
        """Tokens of text as this model tokenizes it (no special-token parsing)."""
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def special_tokens(self) -> list[str]:
        """Control-token strings of the model's vocabulary."""
        return list(self._specials)

    def stream_chat(self, messages: list[dict], *, max_tokens: int) -> Iterator[Piece]:
        """Stream the reply with the GGUF's embedded chat template (applied by llama-cpp)."""
        with self._lock:
            stream = self.llm.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=0.1, top_p=0.9,
                repeat_penalty=1.1, stream=True,
            )  # fmt: skip
            for chunk in stream:
                choice = chunk["choices"][0]
                # Streamed deltas may be empty (role-only first chunk, split UTF-8 characters).
                text = (choice.get("delta") or {}).get("content") or ""
                finish = choice.get("finish_reason")
                if text or finish:
                    yield Piece(text, finish)


class ModelSlot:
    """Loads the configured model on first use, once per process; remembers a failure."""

    _shared: dict[tuple, LlamaCppModel] = {}
    _shared_lock = threading.Lock()

    def __init__(self, path: Path | None, *, n_ctx: int, n_threads: int | None) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.error: str | None = None

    @property
    def configured(self) -> bool:
        """True when a model file was given."""
        return self.path is not None

    def get(self) -> LlamaCppModel | None:
        """The loaded model, or None (with self.error set) when it cannot be loaded."""
        if self.path is None or self.error:
            return None
        key = (str(Path(self.path).resolve()), self.n_ctx, self.n_threads)
        with self._shared_lock:
            if key not in self._shared:
                try:
                    self._shared[key] = LlamaCppModel(
                        Path(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads
                    )
                except (ValueError, ImportError, MemoryError) as exc:
                    self.error = str(exc)
                    logger.error("LLM unavailable, answering extractively: %s", exc)
                    return None
            return self._shared[key]
