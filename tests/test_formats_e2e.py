"""One file of each supported type, one question each, through `rag ask --json`.

python -m pytest -q tests/test_formats_e2e.py

Every answer must cite the right file with its page/locator, and every citation's span must be
exact: `text == document_text[start:end]` in the stored text of the document.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from bench.mixed_corpus import WRITERS, scan_image
from index import CorpusIndex, IndexConfig, update_index
from index.document_store import get_document
from index.readers import ocr_engine
from tests.conftest import ROOT

FILLER = [
    "The committee reviewed the regional transport budget for the coming year.",
    "Several speakers asked for more frequent buses on the northern routes.",
    "The harbour authority published its annual report on shipping volumes.",
]
FACTS = {
    # type: (fact sentence, question, expected locator prefix, expected page)
    "txt": ("The Zorvath lighthouse keeper is named Elspeth Marrow.",
            "Who is the Zorvath lighthouse keeper?", "line", None),
    "md": ("The Quellbrook orchard grows eleven kinds of pears.",
           "How many kinds of pears does the Quellbrook orchard grow?", "§", None),
    "html": ("The Tarnwick museum opens its glass gallery on Sundays.",
             "When does the Tarnwick museum open its glass gallery?", "line", None),
    "pdf": ("The Brennholt ferry carries ninety bicycles per crossing.",
            "How many bicycles does the Brennholt ferry carry?", "p.", 2),
    "docx": ("The Ostrava choir rehearses in the Velmar chapel every Tuesday.",
             "Where does the Ostrava choir rehearse?", "§", None),
    "pptx": ("The Kestrelfield wind farm produced forty gigawatt hours.",
             "How much did the Kestrelfield wind farm produce?", "slide", 2),
    "xlsx": ("The Dunmere bakery sold three thousand rye loaves",
             "How many rye loaves did the Dunmere bakery sell?", "sheet Facts", None),
    "csv": ("The Hollinsby library lent nine hundred atlases",
            "How many atlases did the Hollinsby library lend?", "row", None),
    "epub": ("Captain Orlaith Vance sailed the Merrow Sea in a copper boat.",
             "Who sailed the Merrow Sea in a copper boat?", "chapter 2", None),
    "eml": ("The Fennick warehouse inventory closes on the ninth of June.",
            "When does the Fennick warehouse inventory close?", "Note 1", None),
    "mbox": ("The Glasswick bridge repairs will cost four million crowns.",
             "How much will the Glasswick bridge repairs cost?", "Note 2", None),
    "odt": ("The Ravensholm school garden grows purple carrots for the canteen.",
            "What does the Ravensholm school garden grow?", "§", None),
    "rtf": ("The Wendmoor observatory catalogued seven new comets.",
            "How many comets did the Wendmoor observatory catalogue?", "line", None),
}  # fmt: skip
SCAN_FACT = "The Pellinore quarry ships granite blocks to Harlow by rail."
SCAN_QUESTION = "Where does the Pellinore quarry ship granite blocks?"


def paragraphs_for(kind: str, fact: str) -> list[str]:
    """Filler with the fact where the expected locator says it is (page 2, slide 2...)."""
    paras = list(FILLER)
    at = 2 if kind == "pdf" else 1  # two paragraphs a PDF page: index 2 is on page 2
    paras.insert(at, fact + " " + fact.split()[1] + " records confirm it.")
    return paras


@pytest.fixture(scope="module")
def mixed_index(tmp_path_factory, embedder):
    """An index of one file per supported type plus a scanned PDF and a scanned PNG."""
    base = tmp_path_factory.mktemp("mixed")
    corpus = base / "corpus"
    corpus.mkdir()
    for kind, (fact, *_rest) in FACTS.items():
        writer = WRITERS[kind]
        writer(corpus / f"file.{kind}", paragraphs_for(kind, fact))
    if ocr_engine("eng") is not None:
        pages = [scan_image(FILLER[0]), scan_image(SCAN_FACT)]
        pages[0].save(corpus / "scan.pdf", save_all=True, append_images=pages[1:])
    config = IndexConfig(
        corpus_dir=corpus, index_dir=base / "index", ocr_cache_dir=base / "ocr",
        trash_dir=base / "trash",
    )  # fmt: skip
    report = update_index(config, progress=False, embedder=embedder)
    assert not report.skipped, report.skipped
    return config


def ask(config: IndexConfig, question: str) -> dict:
    """`python -m rag ask --json` on the mixed index."""
    result = subprocess.run(
        [sys.executable, "-m", "rag", "ask", question, "--json", "-q",
         "--corpus", str(config.corpus_dir), "--index", str(config.index_dir)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAG_MODEL": "",
             "PATH": "/usr/bin:/bin", "HOME": str(config.corpus_dir.parent)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def check_spans(config: IndexConfig, answer: dict) -> None:
    """Every citation's text is exactly its span of the stored document text."""
    documents = {d.source: d for d in CorpusIndex.load(config).documents}
    for citation in answer["citations"]:
        stored = get_document(config.index_dir, documents[citation["source"]].text_key).text
        assert stored[citation["start"] : citation["end"]] == citation["text"]


def test_every_type_is_indexed_with_locators(mixed_index):
    loaded = CorpusIndex.load(mixed_index)
    sources = {d.source for d in loaded.documents}
    assert {f"file.{k}" for k in FACTS} <= sources
    assert "file.eml/a.txt" in sources  # the mail's attachment is a document of its own
    chunks = loaded.chunks_of()
    # The store holds each document's chunks as the manifest counts them.
    counts = {d.source: d.chunks for d in loaded.documents if d.chunks}
    assert dict(Counter(c.source for c in chunks)) == counts and len(chunks) == loaded.size
    assert all(c.locator for c in chunks)


@pytest.mark.parametrize("kind", sorted(FACTS))
def test_one_question_per_type(mixed_index, kind):
    fact, question, locator, page = FACTS[kind]
    answer = ask(mixed_index, question)
    assert not answer["abstained"], answer
    top = answer["citations"][0]
    assert top["source"] == f"file.{kind}", answer["citations"]
    assert top["locator"].startswith(locator), top
    assert top["page"] == page and top["ocr"] is False
    assert fact.split()[1] in top["text"]
    check_spans(mixed_index, answer)


def test_scanned_pdf_answers_from_page_two(mixed_index):
    if ocr_engine("eng") is None:
        pytest.fail("Tesseract is missing: `make test` installs tesseract-ocr with apt-get")
    answer = ask(mixed_index, SCAN_QUESTION)
    top = answer["citations"][0]
    assert top["source"] == "scan.pdf" and top["page"] == 2 and top["ocr"] is True
    assert top["locator"] == "p. 2" and "Harlow" in top["text"]
    check_spans(mixed_index, answer)


def test_removing_a_message_removes_its_attachments(mixed_index, embedder, tmp_path):
    config = IndexConfig(
        corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index",
        ocr_cache_dir=mixed_index.ocr_cache_dir,
    )  # fmt: skip
    shutil.copytree(mixed_index.corpus_dir, config.corpus_dir)
    update_index(config, progress=False, embedder=embedder)
    (config.corpus_dir / "file.eml").unlink()
    report = update_index(config, progress=False, embedder=embedder)
    assert sorted(report.removed) == ["file.eml", "file.eml/a.txt"]


def test_broken_files_of_every_type_are_skipped_with_reasons(mixed_index, tmp_path):
    """Truncated, emptied and mislabelled copies of each type next to a good file: each is
    listed with a reason, the good one is still read, and the scan never raises."""
    from index.loaders import scan_corpus

    corpus = tmp_path / "broken"
    corpus.mkdir()
    (corpus / "good.txt").write_text("The Yarrowby mill grinds barley every autumn.")
    made = []
    for path in sorted(mixed_index.corpus_dir.iterdir()):
        data = path.read_bytes()
        if path.suffix in (".txt", ".md", ".html", ".rtf", ".csv", ".eml", ".mbox"):
            continue  # text formats: any bytes are some text (covered by the ingest fuzz)
        for label, bad in (("cut", data[: len(data) // 3]), ("empty", b""), ("junk", b"\x00" * 64)):
            target = corpus / f"{label}-{path.name}"
            target.write_bytes(bad)
            made.append(target.name)
    config = mixed_index
    scan = scan_corpus(
        corpus, extensions=config.extensions, max_bytes=config.max_file_bytes,
        limits=config.read_limits(),
    )  # fmt: skip
    assert [d.source for d in scan.documents] == ["good.txt"]
    reasons = {s.source: s.reason for s in scan.skipped}
    assert sorted(reasons) == sorted(made)
    assert all(r.strip() and "Traceback" not in r for r in reasons.values())
