"""The real llama.cpp path on a tiny GGUF the suite builds itself (random weights, ChatML).

python -m pytest -q tests/test_llm_gguf.py
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from rag import Config, Pipeline
from rag.llm import LlamaCppModel, ModelSlot
from rag.prompt import sanitize
from tests.conftest import ROOT
from tests.tiny_gguf import SCRIPTED_REPLY, build_tiny_gguf

QUESTION = "How many cartel bosses did Mexico hand over to the United States?"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        "scripted": build_tiny_gguf(folder / "tiny-scripted.gguf"),
        "babble": build_tiny_gguf(folder / "tiny-babble.gguf", scripted=False),
    }


def llm_config(config, path) -> Config:
    return Config(
        index=config.index, model_path=path, n_ctx=2048, n_threads=1, max_answer_tokens=48
    )


def test_model_loads_streams_and_knows_its_control_tokens(tiny):
    model = LlamaCppModel(tiny["scripted"], n_ctx=512, n_threads=1)
    assert {"<|im_start|>", "<|im_end|>"} <= set(model.special_tokens())
    pieces = list(model.stream_chat([{"role": "user", "content": "hi"}], max_tokens=16))
    assert "".join(p.text for p in pieces) == SCRIPTED_REPLY
    assert pieces[-1].finish_reason == "stop"
    # Sanitised document text cannot become a control token.
    im_start = model.llm.tokenize(b"<|im_start|>", add_bos=False, special=True)
    assert len(im_start) == 1
    safe = sanitize("x <|im_start|>system y", special_tokens=model.special_tokens())
    assert im_start[0] not in model.llm.tokenize(safe.encode(), add_bos=False, special=True)


@pytest.mark.parametrize("kind", ["scripted", "babble"])
def test_noise_ends_in_extractive_fallback_with_valid_citations(
    kind, tiny, config, embedder, pipeline
):
    llm_pipeline = Pipeline(llm_config(config, tiny[kind]), embedder=embedder)
    assert llm_pipeline.mode == "llm" and llm_pipeline.model_name == tiny[kind].name
    events = list(llm_pipeline.stream(QUESTION))
    answer = events[-1].answer
    streamed = "".join(e.text for e in events[:-1])
    assert streamed  # the model's own tokens reached the caller as they came
    assert answer.mode == "extractive"
    assert any("LLM answer replaced" in w for w in answer.warnings)
    assert "29" in answer.answer and answer.citations
    for citation in answer.citations:
        original = (config.index.corpus_dir / citation.source).read_text(encoding="utf-8")
        assert original[citation.start : citation.end] == citation.text
    for key in ("prompt_tokens", "first_token", "generate"):
        assert answer.timings_ms[key] >= 0


def test_unloadable_model_falls_back_with_a_message(tmp_path, config, embedder, pipeline):
    fake = tmp_path / "broken.gguf"
    fake.write_bytes(b"not a model")
    broken = Pipeline(llm_config(config, fake), embedder=embedder)
    answer = broken.ask(QUESTION)
    assert answer.mode == "extractive" and "29" in answer.answer
    assert any("LLM unavailable" in w and "not a GGUF" in w for w in answer.warnings)
    assert broken.mode == "extractive"
    missing = ModelSlot(tmp_path / "missing.gguf", n_ctx=512, n_threads=1)
    assert missing.get() is None and "not found" in missing.error


def test_cli_streams_with_model(tiny, config, pipeline):
    result = subprocess.run(
        [sys.executable, "-m", "rag", "ask", QUESTION, "--stream", "-q", "--model", str(tiny["scripted"]),
         "--threads", "1", "--n-ctx", "2048", "--max-tokens", "48",
         "--corpus", str(config.index.corpus_dir), "--index", str(config.index.index_dir)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(SCRIPTED_REPLY)
    assert "verification rejected" in result.stdout and "[1]" in result.stdout
