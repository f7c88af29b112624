"""Faults: kill -9 of index builds, corrupt index files, a corpus changing under a running app.

    .venv/bin/python -m pytest -q tests/test_reliability_faults.py            # quick variant
    .venv/bin/python -m pytest -q -m slow tests/test_reliability_faults.py    # long variant

`python -m rag index --rebuild` subprocesses are killed with SIGKILL at seeded random moments
(while loading, while writing the new generation, around the CURRENT swap): the last complete
index must load with its checksums and answer, and the next run must complete. Damaged index
files must be detected on load with a message naming the file, and `rag index` (plain or with
--rebuild) must restore service. Corpus files deleted or changed while a Pipeline serves must
not break a question, and `rag.library.refresh` must pick the change up.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from index import CorpusIndex, IndexConfig, IndexCorrupt, IndexLoadError, update_index
from index.corpus_index import CURRENT_FILE, current_generation
from rag import Config, Pipeline
from tests.conftest import CORPUS, ROOT

NORTHCOM = "004_b24285a9b201835e.txt"  # "Who commands NORTHCOM?" -> Guillot


def small_corpus(root: Path, names: list[str]) -> IndexConfig:
    """A corpus folder with copies of some real documents, and its index config."""
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    for name in names:
        shutil.copy(CORPUS / name, corpus / name)
    return IndexConfig(corpus_dir=corpus, index_dir=root / "index")


def assert_answers(config: IndexConfig, embedder) -> None:
    """The live index loads with every checksum verified and answers with a citation."""
    CorpusIndex.load(config, verify=True)
    answer = Pipeline(Config(index=config), embedder=embedder).ask("Who commands NORTHCOM?")
    assert not answer.abstained and answer.citations[0].source == NORTHCOM
    assert "Guillot" in answer.answer


def rag_command(config: IndexConfig, *args: str) -> list[str]:
    """Argument vector of `python -m rag ARGS` on this corpus and index."""
    return [
        sys.executable, "-m", "rag", *args, "-q",
        "--corpus", str(config.corpus_dir), "--index", str(config.index_dir),
    ]  # fmt: skip


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAG_MODEL": ""}


def index_state(index_dir: Path, before: str) -> str:
    """Where a build was when it died: before writing, writing, renamed, or swapped."""
    current = current_generation(index_dir)
    if current is not None and current.name != before:
        return "after the CURRENT swap"
    names = [p.name for p in index_dir.iterdir()]
    if any(n.startswith(".gen-") for n in names):
        return "while writing the new generation"
    if any(n.startswith("gen-") and n != before for n in names):
        return "after rename, before the swap"
    return "before writing"


def wait_for(anchor: str, proc: subprocess.Popen, index_dir: Path, before: str, rng) -> None:
    """Sleep until the moment this trial kills the build (bounded by the build's own end)."""
    if anchor == "start":
        time.sleep(rng.uniform(0.05, 3.0))
        return
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        names = os.listdir(index_dir)
        staging = any(n.startswith(".gen-") for n in names)
        renamed = any(n.startswith("gen-") and n != before for n in names)
        if (anchor == "staging" and (staging or renamed)) or (anchor == "swap" and renamed):
            break
        time.sleep(0.001)
    if anchor == "staging":
        time.sleep(rng.choice([0.0, rng.uniform(0, 0.03)]))  # at once, or a little later
    else:
        time.sleep(rng.uniform(0, 0.003))


def run_kill_trials(
    root: Path, embedder, *, kills: int, seed: int, final_subprocess: bool = False
) -> Counter:
    """Kill `rag index --rebuild` at random moments until `kills` builds died; returns phases."""
    config = small_corpus(root, [NORTHCOM])
    update_index(config, progress=False, embedder=embedder)
    rng = random.Random(seed)
    phases: Counter = Counter()
    anchors = ["start", "staging", "start", "swap"]
    trial = 0
    while sum(phases.values()) - phases["completed before the kill"] < kills and trial < kills * 2:
        note = config.corpus_dir / f"trial-{trial}.txt"
        note.write_text(f"Trial {trial}: the harbor codeword is kiwi{trial}.", encoding="utf-8")
        before = current_generation(config.index_dir).name
        with open(root / f"build-{trial}.log", "w") as log:
            proc = subprocess.Popen(
                rag_command(config, "index", "--rebuild"), stdout=log, stderr=log, env=ENV, cwd=ROOT
            )
            try:
                wait_for(anchors[trial % len(anchors)], proc, config.index_dir, before, rng)
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if proc.returncode == -signal.SIGKILL:
            phases[index_state(config.index_dir, before)] += 1
        else:
            assert proc.returncode == 0, (root / f"build-{trial}.log").read_text()
            phases["completed before the kill"] += 1
        # The last complete index is live, verified and answering ...
        live = CorpusIndex.load(config)
        has_note = note.name in live.manifest["documents"]
        assert has_note == (current_generation(config.index_dir).name != before)
        assert_answers(config, embedder)
        # ... and the next run completes the update.
        report = update_index(config, progress=False, embedder=embedder)
        assert has_note or report.added == [note.name]
        assert note.name in CorpusIndex.load(config).manifest["documents"]
        trial += 1
    if final_subprocess:
        final = subprocess.run(
            rag_command(config, "index", "--rebuild"), capture_output=True, text=True, env=ENV,
            cwd=ROOT,
        )  # fmt: skip
        assert final.returncode == 0, final.stderr
    else:
        update_index(config, rebuild=True, progress=False, embedder=embedder)
    live = current_generation(config.index_dir).name
    left = sorted(p.name for p in config.index_dir.iterdir())
    # Leftovers of the killed builds are gone; the generation the last build replaced is kept
    # (a reader may have been opening it), older ones are deleted.
    generations = [n for n in left if n.startswith("gen-")]
    assert live in generations and len(generations) == 2
    # texts/: the documents' extracted texts, segments/: the chunks, shared by the generations.
    assert sorted(set(left) - set(generations)) == sorted(
        [CURRENT_FILE, ".lock", "segments", "texts"]
    )
    # Segments a killed build staged or wrote but never made live are deleted too.
    listed = {
        item["name"]
        for name in generations
        for item in json.loads((config.index_dir / name / "manifest.json").read_text())["store"][
            "segments"
        ]
    }
    assert sorted(p.name for p in (config.index_dir / "segments").iterdir()) == sorted(listed)
    assert_answers(config, embedder)
    return phases


def test_kill9_during_rebuild_keeps_a_working_index(tmp_path, embedder):
    phases = run_kill_trials(tmp_path, embedder, kills=10, seed=20250309)
    print(f"\nkill -9 of rag index --rebuild: {dict(phases)}")
    assert sum(phases.values()) - phases["completed before the kill"] >= 10
    # Some kills land once the new generation is being written (seen: 3-5 of 10 while writing).
    assert sum(phases.values()) - phases["before writing"] - phases["completed before the kill"]


@pytest.mark.slow
def test_kill9_during_rebuild_long(tmp_path, embedder):
    seed = int(os.environ.get("FUZZ_SEED", random.randrange(1 << 30)))
    phases = run_kill_trials(tmp_path, embedder, kills=40, seed=seed, final_subprocess=True)
    print(f"\nkill -9 (long, FUZZ_SEED={seed}): {dict(phases)}")


# --- corrupt index files --------------------------------------------------------------------------


def _edit_manifest(folder: Path) -> None:
    """Change one document title in manifest.json, keeping it valid JSON."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    first = next(iter(manifest["documents"].values()))
    first["title"] = "An edited title"
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def _segment(generation: Path) -> Path:
    """The folder of the generation's first chunk segment (index.segments)."""
    manifest = json.loads((generation / "manifest.json").read_text(encoding="utf-8"))
    return generation.parent / "segments" / manifest["store"]["segments"][0]["name"]


def _edit_chunks(generation: Path) -> None:
    """Change one word of one chunk in the segment's chunks.sqlite3 (still a valid database)."""
    import sqlite3

    connection = sqlite3.connect(_segment(generation) / "chunks.sqlite3")
    try:
        row = connection.execute("SELECT id FROM chunks WHERE text LIKE '%Guillot%'").fetchone()
        connection.execute(
            "UPDATE chunks SET text = replace(text, 'Guillot', 'Gullible') WHERE id = ?", row
        )
        connection.commit()
    finally:
        connection.close()


def _edit_terms(generation: Path) -> None:
    """Change one document frequency in terms.json, keeping it valid JSON."""
    path = generation / "terms.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    term = next(iter(data["df"]))
    data["df"][term] += 1
    path.write_text(json.dumps(data), encoding="utf-8")


def _truncate(path: Path, keep: float) -> None:
    """Cut a file to a fraction of its length."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


CORRUPTIONS = {
    # name: (damage done to the live generation folder, words the load error must contain)
    "truncated FAISS file": (
        lambda g: _truncate(_segment(g) / "dense.faiss", 0.5),
        ["dense.faiss", "checksum"],
    ),
    "edited manifest": (_edit_manifest, ["manifest.json", "checksum"]),
    "manifest not JSON": (lambda g: _truncate(g / "manifest.json", 0.6), ["manifest.json", "JSON"]),
    "manifest deleted": (lambda g: (g / "manifest.json").unlink(), ["manifest.json", "missing"]),
    "missing chunk store": (
        lambda g: (_segment(g) / "chunks.sqlite3").unlink(),
        ["chunks.sqlite3", "missing"],
    ),
    "chunk store edited": (_edit_chunks, ["chunks.sqlite3", "checksum"]),
    "BM25 file missing": (
        lambda g: (_segment(g) / "postings" / "rows.npy").unlink(),
        ["postings", "rows.npy", "missing"],
    ),
    "chunk ids truncated": (lambda g: _truncate(_segment(g) / "ids.npy", 0.5), ["ids.npy"]),
    "term table missing": (lambda g: (g / "terms.json").unlink(), ["terms.json", "missing"]),
    "term table edited": (_edit_terms, ["terms.json", "checksum"]),
    "segment deleted": (
        lambda g: shutil.rmtree(_segment(g)),
        ["segments", "missing"],
    ),
    "CURRENT garbage": (
        lambda g: (g.parent / CURRENT_FILE).write_bytes(b"\xff\xfe../../etc\x00"),
        ["CURRENT", "unreadable"],
    ),
    "CURRENT names nothing": (
        lambda g: (g.parent / CURRENT_FILE).write_text("gen-19700101T000000000000-1\n"),
        ["manifest.json", "missing"],
    ),
}


@pytest.fixture(scope="module")
def built_index(tmp_path_factory, embedder) -> Path:
    """A small index built once; each corruption test works on a copy of it."""
    root = tmp_path_factory.mktemp("pristine")
    config = small_corpus(root, [NORTHCOM, "001_8519b1fb3011066c.txt"])
    update_index(config, progress=False, embedder=embedder)
    return root


def damaged_copy(built_index: Path, tmp_path: Path, corruption: str) -> IndexConfig:
    """A copy of the pristine corpus and index with one kind of damage applied."""
    shutil.copytree(built_index, tmp_path / "copy")
    config = IndexConfig(corpus_dir=tmp_path / "copy/corpus", index_dir=tmp_path / "copy/index")
    damage, _ = CORRUPTIONS[corruption]
    damage(current_generation(config.index_dir))
    return config


def in_process_cli(*argv: str) -> tuple[int, str]:
    """Run rag.__main__.main (the code of `python -m rag`) here, with the cached embedder."""
    import contextlib
    import io

    from rag.__main__ import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


QUICK_CASES = [  # each damage once; the recovering command alternates (the long variant does both)
    (name, ["index", "--rebuild"] if i % 2 else ["index"]) for i, name in enumerate(CORRUPTIONS)
]


@pytest.mark.parametrize(
    ("corruption", "command"), QUICK_CASES, ids=[f"{n}: rag {' '.join(c)}" for n, c in QUICK_CASES]
)
def test_corrupt_index_is_detected_and_restored(
    built_index, tmp_path, embedder, corruption, command
):
    config = damaged_copy(built_index, tmp_path, corruption)
    _, words = CORRUPTIONS[corruption]
    with pytest.raises(IndexCorrupt) as info:
        CorpusIndex.load(config)
    message = str(info.value)
    assert all(w in message for w in words), message
    assert "python -m rag index --rebuild" in message
    with pytest.raises(IndexLoadError):  # the app's start-up path reports the same
        Pipeline(Config(index=config), embedder=embedder)
    code, err = in_process_cli(
        *command, "-q", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir)
    )
    assert code == 0, err
    assert_answers(config, embedder)
    # The damaged generation is useless to readers: it is deleted with its segments.
    live = current_generation(config.index_dir)
    assert [p.name for p in config.index_dir.iterdir() if p.name.startswith("gen-")] == [live.name]
    segments = json.loads((live / "manifest.json").read_text())["store"]["segments"]
    assert sorted(p.name for p in (config.index_dir / "segments").iterdir()) == sorted(
        item["name"] for item in segments
    )


def test_rag_index_subprocess_restores_service(built_index, tmp_path, embedder):
    """The real `python -m rag index` (no --rebuild) notices the damage and rebuilds."""
    config = damaged_copy(built_index, tmp_path, "chunk store edited")
    result = subprocess.run(
        rag_command(config, "index"), capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "full rebuild" in result.stdout and "Traceback" not in result.stderr
    assert_answers(config, embedder)


@pytest.mark.slow
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
@pytest.mark.parametrize("command", [["index"], ["index", "--rebuild"]], ids=["index", "rebuild"])
def test_rag_index_subprocess_restores_service_long(
    built_index, tmp_path, embedder, corruption, command
):
    config = damaged_copy(built_index, tmp_path, corruption)
    result = subprocess.run(
        rag_command(config, *command), capture_output=True, text=True, env=ENV, cwd=ROOT,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_answers(config, embedder)


@pytest.mark.parametrize(
    "corruption", ["chunk store edited", "truncated FAISS file", "edited manifest"]
)
def test_rag_ask_on_a_corrupt_index(built_index, tmp_path, embedder, corruption):
    """`rag ask` either rebuilds by itself and answers, or stops with the clear message."""
    config = damaged_copy(built_index, tmp_path, corruption)
    code, err = in_process_cli(
        "ask", "Who commands NORTHCOM?", "--corpus", str(config.corpus_dir),
        "--index", str(config.index_dir),
    )  # fmt: skip
    if code == 0:
        assert_answers(config, embedder)
    else:
        assert code == 2 and "python -m rag index --rebuild" in err and "Traceback" not in err


# --- the corpus changes while the app runs --------------------------------------------------------


def test_corpus_changes_while_serving(tmp_path, embedder):
    from rag.library import refresh

    config = small_corpus(
        tmp_path, [NORTHCOM, "001_8519b1fb3011066c.txt", "003_8bd5a12c37d93380.txt"]
    )
    update_index(config, progress=False, embedder=embedder)
    pipeline = Pipeline(Config(index=config), embedder=embedder)
    assert pipeline.ask("Who commands NORTHCOM?").citations[0].source == NORTHCOM

    (config.corpus_dir / NORTHCOM).unlink()
    changed = config.corpus_dir / "003_8bd5a12c37d93380.txt"
    changed.write_text(
        changed.read_text(encoding="utf-8") + "\nThe Zorblatt treaty was signed in Quuxville.\n",
        encoding="utf-8",
    )
    (config.corpus_dir / "new.md").write_text(
        "# Quuxville ferry\n\nThe Quuxville ferry leaves the north pier at noon every day.\n"
    )
    # A question between the change and the refresh is answered from the loaded index.
    stale = pipeline.ask("Who commands NORTHCOM?")
    assert stale.citations[0].source == NORTHCOM and "Guillot" in stale.answer

    outcome: dict = {}

    def do_refresh():
        """Refresh the index in the background, keeping the report."""
        outcome["report"] = refresh(pipeline)

    worker = threading.Thread(target=do_refresh)
    worker.start()
    asked = 0
    while worker.is_alive() and asked < 500:  # questions keep working during the refresh
        answer = pipeline.ask("How many cartel bosses did Mexico hand over?")
        assert answer.citations and "29" in answer.answer
        asked += 1
    worker.join(timeout=120)
    report = outcome["report"]
    assert report.removed == [NORTHCOM] and report.changed == ["003_8bd5a12c37d93380.txt"]
    assert report.added == ["new.md"]
    gone = pipeline.ask("Who commands NORTHCOM?")
    assert all(c.source != NORTHCOM for c in gone.citations)
    treaty = pipeline.ask("Where was the Zorblatt treaty signed?")
    assert treaty.citations[0].source == "003_8bd5a12c37d93380.txt" and "Quuxville" in treaty.answer
    ferry = pipeline.ask("Which pier does the Quuxville ferry leave from?")
    assert any(c.source == "new.md" for c in ferry.citations) and "north pier" in ferry.answer


def test_file_deleted_during_a_build_is_skipped(tmp_path, embedder, monkeypatch):
    """A file removed between the folder listing and its reading is skipped, not fatal."""
    import index.loaders as loaders

    config = small_corpus(tmp_path, [NORTHCOM, "001_8519b1fb3011066c.txt"])
    original = loaders.read_document

    def vanishing(path, *, source, max_bytes, limits=None):
        """read_document, after deleting one file first (as a user might, mid-build)."""
        if source == "001_8519b1fb3011066c.txt":
            path.unlink()
        return original(path, source=source, max_bytes=max_bytes, limits=limits)

    monkeypatch.setattr(loaders, "read_document", vanishing)
    report = update_index(config, progress=False, embedder=embedder)
    assert report.added == [NORTHCOM]
    assert [s.source for s in report.skipped] == ["001_8519b1fb3011066c.txt"]
    assert "unreadable" in report.skipped[0].reason
    assert_answers(config, embedder)
