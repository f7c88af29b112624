"""`python -m rag ask` output, from hand-built answers (no model, no index).

python -m pytest -q tests/test_cli.py
"""

from __future__ import annotations

import io
import json

import pytest

import rag.__main__ as cli
from rag import Answer, Citation, Final, Token
from rag.reading import ShortAnswer
from rag.verify import CheckedSentence

# A passage at document offset 1000: three sentences, the first and last cited.
PASSAGE = "Trucks   waited\nat Eagle Pass, Texas. Nobody moved. Traffic resumed on Monday."
START = 1000
FIRST = (START, START + PASSAGE.index(" Nobody"))
LAST = (START + PASSAGE.index("Traffic"), START + len(PASSAGE))
SHORT_AT = START + PASSAGE.index("Eagle")
SHORT = ShortAnswer("Eagle Pass, Texas", "a.txt", SHORT_AT, SHORT_AT + 17, 1)
REJECTED = "LLM answer rejected: most sentences are not supported by their citations"
NOT_CALLED = "LLM not called: the passages do not answer the question"


def cite(highlights=(FIRST, LAST), text=PASSAGE) -> Citation:
    """Citation 1 of a.txt over text at START."""
    return Citation(
        n=1, source="a.txt", title="Border", start=START, end=START + len(text), text=text,
        highlights=highlights, locator="lines 3–4",
    )  # fmt: skip


def answer(
    *, mode="extractive", detail="", short=SHORT, citations=None, sentences=(), llm_ran=False
) -> Answer:
    """An answer citing PASSAGE unless citations=[] (then it abstains)."""
    citations = [cite()] if citations is None else citations
    timings = {"retrieve": 3.2, "answer": 4.7} | ({"generate": 9.0} if llm_ran else {})
    text = "Trucks waited at Eagle Pass, Texas. [1]" if citations else "The documents do not say."
    return Answer(
        answer=text, abstained=not citations, mode=mode, citations=citations,
        timings_ms=timings, short_answer=short if citations else None,
        mode_detail=detail, sentences=list(sentences),
    )  # fmt: skip


def printed(a: Answer, *, llm_configured: bool = False) -> str:
    """What _print_answer writes for a."""
    out = io.StringIO()
    cli._print_answer(a, out, llm_configured=llm_configured)
    return out.getvalue()


def test_print_order_short_answer_then_sentences_then_sources_then_mode():
    lines = printed(answer()).splitlines()
    assert lines[0] == "Answer: Eagle Pass, Texas [1]"
    assert lines[2] == "Trucks waited at Eagle Pass, Texas. [1]"
    assert lines[4] == "[1] Border (a.txt, lines 3–4, chars 1000-1078)"
    assert lines[5] == "    Trucks waited at Eagle Pass, Texas. … Traffic resumed on Monday."
    assert lines[-1].startswith("mode: extractive (no LLM model in use); retrieve 3 ms")


def test_no_short_answer_line_without_one():
    assert printed(answer(short=None)).startswith("Trucks waited at Eagle Pass, Texas. [1]\n")


@pytest.mark.parametrize(
    ("highlights", "text", "preview"),
    [
        ((FIRST, LAST), PASSAGE, "Trucks waited at Eagle Pass, Texas. … Traffic resumed on Monday."),
        # Adjacent sentences (only white space between) are joined without an ellipsis.
        ((FIRST, (FIRST[1] + 1, LAST[0] - 1)), PASSAGE,
         "Trucks waited at Eagle Pass, Texas. Nobody moved."),
        # Overlapping and out-of-order spans, and one reaching past the passage.
        (((LAST[0], LAST[1] + 50), FIRST, (FIRST[0] + 3, FIRST[1])), PASSAGE,
         "Trucks waited at Eagle Pass, Texas. … Traffic resumed on Monday."),
        # No highlights: the first 300 characters of the passage.
        ((), "word " * 100, ("word " * 60).rstrip() + "…"),
        ((), PASSAGE, "Trucks waited at Eagle Pass, Texas. Nobody moved. Traffic resumed on Monday."),
    ],
)  # fmt: skip
def test_source_preview_shows_the_cited_sentences(highlights, text, preview):
    assert cite(highlights, text).preview() == preview


@pytest.mark.parametrize(
    ("mode", "detail", "llm_configured", "line"),
    [
        ("extractive", REJECTED, True, f"mode: extractive ({REJECTED});"),
        ("extractive", NOT_CALLED, True, f"mode: extractive ({NOT_CALLED});"),
        ("extractive", "", False, "mode: extractive (no LLM model in use);"),
        ("extractive", "", True, "mode: extractive;"),
        ("llm", "", True, "mode: llm;"),
    ],
)
def test_mode_line_says_why(mode, detail, llm_configured, line):
    out = printed(answer(mode=mode, detail=detail), llm_configured=llm_configured)
    assert out.splitlines()[-1].startswith(line)
    assert ("no LLM model in use" in out) is (not llm_configured)


@pytest.mark.parametrize(
    ("kwargs", "line"),
    [
        ({"detail": REJECTED, "llm_ran": True},
         "[verification rejected the model's answer (most sentences are not supported by their "
         "citations); extractive answer:]"),
        ({"detail": REJECTED, "llm_ran": True, "citations": []},
         "[verification rejected the model's answer (most sentences are not supported by their "
         "citations); extractive answer:]"),
        ({"mode": "llm", "llm_ran": True, "citations": []}, ""),
        ({"detail": NOT_CALLED, "citations": []}, f"[{NOT_CALLED}]"),
        ({"citations": []}, ""),
        ({"mode": "llm", "sentences": [CheckedSentence("x", (1,), False)]},
         "[verification: 1 unsupported sentence(s)]"),
        ({"mode": "llm", "sentences": [CheckedSentence("x", (1,), True)]},
         "[verification: every sentence is supported by its citation]"),
    ],
)  # fmt: skip
def test_stream_verification_line(kwargs, line):
    assert cli.verification_line(answer(**kwargs)) == line


class FakePipeline:
    """Streams a fixed answer; mode as configured."""

    def __init__(self, final: Answer, mode: str) -> None:
        self.final, self.mode, self.model_name = final, mode, "m.gguf"

    def stream(self, question, *, history=()):
        """The answer text word by word, then the answer."""
        yield Token("Model words.")
        yield Final(self.final)


def run_ask(monkeypatch, capsys, final: Answer, *flags: str, mode: str = "llm") -> str:
    """stdout of `rag ask` answered by a fake pipeline."""
    monkeypatch.setattr(cli, "open_pipeline", lambda *a, **k: FakePipeline(final, mode))
    assert cli.main(["ask", "-q", "Where", "did", "trucks", "wait?", *flags]) == 0
    return capsys.readouterr().out


def test_ask_stream_of_a_rejected_llm_answer(monkeypatch, capsys):
    out = run_ask(monkeypatch, capsys, answer(detail=REJECTED, llm_ran=True), "--stream")
    assert out.startswith("Model words.\n\n[verification rejected the model's answer (most ")
    assert out.index("Answer: Eagle Pass") < out.index("[1] Border") < out.index("mode: ")
    assert "no LLM model in use" not in out and f"mode: extractive ({REJECTED})" in out


def test_ask_json_is_answer_to_dict(monkeypatch, capsys):
    final = answer(detail=REJECTED)
    data = json.loads(run_ask(monkeypatch, capsys, final, "--json"))
    assert data == json.loads(json.dumps(final.to_dict()))
    assert data["short_answer"]["text"] == "Eagle Pass, Texas" and data["mode_detail"] == REJECTED
