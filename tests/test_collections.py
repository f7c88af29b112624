"""Collections (one corpus and index each) and source filters applied inside retrieval.

python -m pytest -q tests/test_collections.py
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import index.segments as segments_module
import rag.__main__ as cli
from index import Chunk, IndexConfig, TermStats, analyzer, chunk_id
from index.segments import EmbeddedStore, Segment, write_segment
from rag import Config, Pipeline
from rag.collections import (
    DEFAULT_COLLECTION,
    UnknownCollection,
    check_name,
    config_for,
    create_or_update,
    document_count,
    get_collection,
    list_collections,
    settings_path,
)
from rag.retrieve import SourceFilter

ALPHA = {
    "harbour.txt": "The Quuxville harbour fund lost four million euros in 2024. The loss came "
    "from a failed dredging contract that the harbour board signed without a tender.",
    "notes/bridge.txt": "The Zorblatt bridge over the Minden river was closed in March 2023. "
    "Engineers found cracks in two of its steel cables and replaced them.",
    "notes/old/ferry.txt": "The Quuxville ferry stopped sailing in 2019. The ferry company "
    "went bankrupt after its only boat sank in a winter storm.",
    "notes-extra.txt": "The Minden rowing club won the regional regatta in 2022 with a crew "
    "of eight students from the technical college.",
}
BETA = {
    "orchard.txt": "The Vellmoor apple orchard harvested twelve tonnes of apples in 2022. "
    "A late frost in April destroyed half of the blossoms.",
    # Also about the Quuxville harbour fund: a question to alpha must still never see it.
    "press/harbour-news.txt": "A newspaper in Vellmoor reported that the Quuxville harbour fund "
    "lost money, and that its board resigned over the dredging contract.",
}
HARBOUR_Q = "How much money did the Quuxville harbour fund lose?"
ORCHARD_Q = "How many tonnes of apples did the Vellmoor orchard harvest?"


def write_corpus(folder: Path, files: dict[str, str]) -> Path:
    """folder with the given files (corpus-relative name -> text)."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    return folder


# --- the registry ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "default", "my-notes_2", "0", "x" * 40, "-"])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "Notes", "has space", "x" * 41, "../x", "a/b", "a.b", "é", None, 3, "a\n"]
)
def test_invalid_names_are_refused_with_the_rule(name):
    with pytest.raises(ValueError, match="invalid collection name .*lowercase letters, digits"):
        check_name(name)


def test_default_collection_exists_without_a_file(tmp_path):
    default = get_collection(tmp_path, DEFAULT_COLLECTION)
    assert default.corpus_dir == Path("corpus") and default.index_dir == tmp_path / "index"
    assert default.path is None and not (tmp_path / "collections").exists()
    assert [c.name for c in list_collections(tmp_path)] == [DEFAULT_COLLECTION]


def test_create_and_read_back(tmp_path):
    corpus = write_corpus(tmp_path / "docs", {"a.txt": "text"})
    made = create_or_update(tmp_path / "data", "notes", corpus_dir=corpus, settings={"top_k": 3})
    again = get_collection(tmp_path / "data", "notes")
    assert again == made
    assert again.corpus_dir == corpus.resolve() and again.settings == {"top_k": 3}
    assert again.index_dir == tmp_path / "data" / "collections" / "notes" / "index"
    assert again.trash_dir == tmp_path / "data" / "trash" and again.created.endswith("Z")
    stored = json.loads(settings_path(tmp_path / "data", "notes").read_text())
    assert stored["name"] == "notes" and stored["index_dir"] == "collections/notes/index"
    assert stored["corpus_dir"] == str(corpus.resolve())
    assert [p.name for p in (tmp_path / "data" / "collections").iterdir()] == ["notes.json"]
    assert [c.name for c in list_collections(tmp_path / "data")] == ["default", "notes"]


def test_update_keeps_what_it_does_not_change(tmp_path):
    data = tmp_path / "data"
    first = write_corpus(tmp_path / "one", {"a.txt": "text"})
    second = write_corpus(tmp_path / "two", {"b.txt": "text"})
    made = create_or_update(data, "notes", corpus_dir=first, settings={"top_k": 3})
    moved = create_or_update(data, "notes", corpus_dir=second)
    assert moved.corpus_dir == second.resolve() and moved.settings == {"top_k": 3}
    assert (moved.created, moved.index_dir) == (made.created, made.index_dir)
    cleared = create_or_update(data, "notes", settings={"top_k": None, "retrieval": "bm25"})
    assert cleared.settings == {"retrieval": "bm25"} and cleared.corpus_dir == second.resolve()


def test_config_for_replaces_the_index_paths_and_applies_settings(tmp_path):
    corpus = write_corpus(tmp_path / "docs", {"a.txt": "text"})
    made = create_or_update(tmp_path, "notes", corpus_dir=corpus, settings={"top_k": 4})
    base = Config(index=IndexConfig(chunk_tokens=120), dense_weight=0.7)
    config = config_for(made, base)
    assert config.index.corpus_dir == made.corpus_dir
    assert config.index.index_dir == made.index_dir
    assert config.index.trash_dir == made.trash_dir
    assert (config.top_k, config.dense_weight, config.index.chunk_tokens) == (4, 0.7, 120)


def test_unknown_collection_names_the_known_ones(tmp_path):
    create_or_update(tmp_path, "notes", corpus_dir=write_corpus(tmp_path / "d", {"a.txt": "x"}))
    with pytest.raises(
        UnknownCollection, match=r"unknown collection 'nope' \(known: default, notes"
    ):
        get_collection(tmp_path, "nope")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "does not exist; give its corpus folder"),
        ({"corpus_dir": "MISSING"}, "does not exist or is not a folder"),
        ({"corpus_dir": "FILE"}, "does not exist or is not a folder"),
        ({"corpus_dir": "DOCS", "settings": {"colour": 1}}, "unknown collection setting 'colour'"),
        ({"corpus_dir": "DOCS", "settings": {"top_k": "5"}}, "top_k has the wrong type"),
        ({"corpus_dir": "DOCS", "settings": {"top_k": True}}, "top_k has the wrong type"),
        ({"corpus_dir": "DOCS", "settings": {"top_k": 0}}, "top_k must be >= 1"),
        ({"corpus_dir": "DOCS", "settings": {"retrieval": "x"}}, "retrieval must be hybrid"),
        ({"corpus_dir": "TAKEN"}, "already the corpus folder of collection 'first'"),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(tmp_path, kwargs, message):
    data = tmp_path / "data"
    docs = write_corpus(tmp_path / "docs", {"a.txt": "x"})
    taken = write_corpus(tmp_path / "taken", {"b.txt": "x"})
    (tmp_path / "file.txt").write_text("x")
    create_or_update(data, "first", corpus_dir=taken)
    paths = {"MISSING": tmp_path / "nope", "FILE": tmp_path / "file.txt", "DOCS": docs,
             "TAKEN": taken}  # fmt: skip
    if "corpus_dir" in kwargs:
        kwargs = {**kwargs, "corpus_dir": paths[kwargs["corpus_dir"]]}
    with pytest.raises(ValueError, match=message):
        create_or_update(data, "second", **kwargs)
    assert not settings_path(data, "second").exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "must hold a JSON object"),
        ('{"name": "other", "corpus_dir": "/x", "index_dir": "i"}', "names collection 'other'"),
        ('{"name": "notes", "index_dir": "i"}', "corpus_dir must be a non-empty path"),
        ('{"name": "notes", "corpus_dir": "/x", "index_dir": "i", "settings": {"k": 1}}',
         "unknown collection setting 'k'"),
    ],
)  # fmt: skip
def test_a_broken_settings_file_is_a_clear_error(tmp_path, body, message):
    path = settings_path(tmp_path, "notes")
    path.parent.mkdir(parents=True)
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        get_collection(tmp_path, "notes")


# --- the source filter -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "source", "admitted"),
    [
        (SourceFilter(files=("a.txt",)), "a.txt", True),
        (SourceFilter(files=("a.txt",)), "b.txt", False),
        (SourceFilter(files=("./notes/a.txt",)), "notes/a.txt", True),
        (SourceFilter(files=("mail.eml",)), "mail.eml/attachment.pdf", True),  # its attachments
        (SourceFilter(files=("a.txt",)), "a.txt.bak", False),
        (SourceFilter(folders=("notes",)), "notes/a.txt", True),
        (SourceFilter(folders=("notes/",)), "notes/sub/a.txt", True),
        (SourceFilter(folders=("notes",)), "notes-extra.txt", False),
        (SourceFilter(folders=("notes",)), "notes", False),
        (SourceFilter(folders=("notes/sub",)), "notes/a.txt", False),
        (SourceFilter(files=("x.txt",), folders=("notes",)), "x.txt", True),
    ],
)
def test_filter_matches(where, source, admitted):
    assert where.matches(source) is admitted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "names no file and no folder"),
        ({"files": ("",)}, "is not a path inside the corpus"),
        ({"files": ("../secret.txt",)}, "is not a path inside the corpus"),
        ({"folders": ("a/../../b",)}, "is not a path inside the corpus"),
        ({"files": "a.txt"}, "must be a list of paths"),
        ({"files": (3,)}, "must be a string"),
    ],
)
def test_bad_filters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SourceFilter(**kwargs)


def test_filter_json_round_trip():
    where = SourceFilter.from_dict({"files": ["a.txt"], "folders": ["notes/"]})
    assert where == SourceFilter(files=("a.txt",), folders=("notes",))
    assert SourceFilter.from_dict(where.to_dict()) == where
    with pytest.raises(ValueError, match="unknown filter field"):
        SourceFilter.from_dict({"file": ["a.txt"]})


def embedded_store(root: Path, texts: list[str], vectors: np.ndarray, *, dense: dict, parts: int):
    """An embedded store of one chunk per text (row i = texts[i]) in `parts` segments.

    Returns the store and the chunk id of each row.
    """
    chunks = [
        Chunk(
            id=chunk_id(f"doc{i}.txt", 0, len(t), t, t), source=f"doc{i}.txt", title="", date="",
            start=0, end=len(t), text=t, search_text=t, sentences=((0, len(t)),),
            n_tokens=len(t.split()),
        )
        for i, t in enumerate(texts)
    ]  # fmt: skip
    segments = []
    for rows in np.array_split(np.arange(len(chunks)), parts):
        item = write_segment(root, [chunks[i] for i in rows], vectors[rows], dense=dense)
        segments.append(Segment(root / "segments" / item["name"]))
    stats = TermStats.of(analyzer().tokenize(c.search_text) for c in chunks)
    return EmbeddedStore(segments, stats), np.array([c.id for c in chunks], dtype=np.int64)


FLAT = {"type": "flat", "metric": "inner_product"}


@pytest.mark.parametrize("parts", [1, 2])
def test_bm25_search_ranks_only_the_allowed_rows(tmp_path, parts):
    # Every row has "apple"; the rows saying it once rank last overall.
    texts = [("apple " * 5 + f"filler{i}").strip() for i in range(40)]
    texts += [f"apple pear plum cherry grape lemon row{i}" for i in range(5)]
    vectors = np.eye(len(texts), 8, dtype=np.float32) + 0.01
    store, row_ids = embedded_store(tmp_path, texts, vectors, dense=FLAT, parts=parts)
    row_of = {int(i): r for r, i in enumerate(row_ids)}
    everything = store.search(text="apple", vector=None, k=5).lexical_ids
    assert not {row_of[int(i)] for i in everything} & set(range(40, 45))
    allowed = np.sort(row_ids[[44, 3, 40, 41]])
    found = store.search(text="apple", vector=None, k=3, allowed=allowed)
    full = store.lexical_scores("apple", row_ids.tolist())
    score = {int(i): s for i, s in zip(row_ids, full, strict=True)}
    # Best first; equal scores go by chunk id (index.segments.top_k).
    best = sorted(allowed.tolist(), key=lambda i: (-score[i], i))[:3]
    assert found.lexical_ids.tolist() == best and np.all(np.diff(found.lexical_scores) <= 0)
    assert np.allclose(found.lexical_scores, [score[i] for i in best])
    assert found.dense_ids.size == 0  # no vector asked for
    missing = store.search(text="nothing-like-it", vector=None, k=3, allowed=allowed)
    assert missing.lexical_ids.size == 0


@pytest.mark.parametrize("parts", [1, 3])
@pytest.mark.parametrize(("kind", "exact_rows"), [("flat", 20_000), ("flat", 2), ("hnsw", 2)])
def test_dense_search_ranks_only_the_allowed_rows(monkeypatch, tmp_path, kind, exact_rows, parts):
    # exact_rows=2 makes a 30-row filter go through FAISS's ID selector instead of numpy.
    monkeypatch.setattr(segments_module, "EXACT_SUBSET_ROWS", exact_rows)
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    dense = FLAT if kind == "flat" else {**FLAT, "type": "hnsw", "M": 16, "ef_search": 64}
    texts = [f"row {i}" for i in range(500)]
    store, row_ids = embedded_store(tmp_path, texts, vectors, dense=dense, parts=parts)
    assert all(s.meta["dense"]["type"] == kind for s in store.segments)
    query = vectors[0]
    allowed_rows = np.sort(rng.choice(np.arange(1, 500), size=30, replace=False))
    allowed = np.sort(row_ids[allowed_rows])
    found = store.search(text=None, vector=query, k=5, allowed=allowed)
    expected = allowed_rows[np.argsort(-(vectors[allowed_rows] @ query), kind="stable")][:5]
    assert set(found.dense_ids.tolist()) <= set(allowed.tolist())
    assert int(row_ids[0]) not in found.dense_ids.tolist()
    assert found.dense_ids.tolist() == row_ids[expected].tolist()
    assert np.allclose(found.dense_scores, store.vectors(found.dense_ids) @ query, atol=1e-5)
    assert np.allclose(store.vectors(found.dense_ids), vectors[expected])
    empty = store.search(text=None, vector=query, k=5, allowed=np.zeros(0, dtype=np.int64))
    assert empty.dense_ids.size == 0


# --- two collections, built and asked through the CLI and through Pipeline ----------------------


@pytest.fixture(scope="module")
def two_collections(tmp_path_factory, embedder):
    """Collections alpha and beta (distinct documents) indexed by `rag index --collection`."""
    base = tmp_path_factory.mktemp("collections")
    write_corpus(base / "alpha", ALPHA)
    write_corpus(base / "beta", BETA)
    data = base / "data"
    outputs = {}
    for name in ("alpha", "beta"):
        args = ["index", "--collection", name, "--corpus", str(base / name)]
        outputs[name] = run_cli(args + ["--data-dir", str(data), "-q"])
    return data, outputs


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `python -m rag ARGV` run in this process."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def collection_pipeline(data: Path, name: str, embedder) -> Pipeline:
    """A Pipeline on the collection (no reader: these tests are about retrieval)."""
    config = dataclasses.replace(config_for(get_collection(data, name), Config()), reader=False)
    return Pipeline(config, embedder=embedder)


@pytest.fixture(scope="module")
def pipelines(two_collections, embedder):
    """name -> Pipeline of each collection."""
    data, _ = two_collections
    return {name: collection_pipeline(data, name, embedder) for name in ("alpha", "beta")}


@pytest.fixture
def cli_without_reader(monkeypatch):
    """`rag ask` with the reader off (someone else's model; retrieval is what is tested)."""
    real = cli.open_pipeline
    monkeypatch.setattr(
        cli,
        "open_pipeline",
        lambda config, **kw: real(dataclasses.replace(config, reader=False), **kw),
    )


def test_cli_index_creates_each_collection(two_collections):
    data, outputs = two_collections
    for name, files in (("alpha", ALPHA), ("beta", BETA)):
        code, out, _ = outputs[name]
        assert code == 0 and f"collection {name}: created (corpus " in out
        assert all(f"added    {source}" in out for source in files)
        assert document_count(get_collection(data, name)) == len(files)


def test_cli_index_again_keeps_the_corpus_and_says_so(two_collections):
    data, _ = two_collections
    corpus = get_collection(data, "alpha").corpus_dir
    code, out, _ = run_cli(["index", "--collection", "alpha", "--data-dir", str(data), "-q"])
    assert code == 0 and out.startswith(f"collection alpha: corpus {corpus}\n")
    assert "added    " not in out and "added 0, changed 0, removed 0, kept 4" in out
    args = ["index", "--collection", "alpha", "--corpus", str(corpus), "--data-dir", str(data)]
    code, out, _ = run_cli(args + ["-q"])
    assert code == 0 and "(unchanged)" in out
    assert get_collection(data, "alpha").corpus_dir == corpus


def test_cli_lists_the_collections(two_collections):
    data, _ = two_collections
    code, out, _ = run_cli(["collections", "--data-dir", str(data)])
    lines = out.splitlines()
    assert code == 0 and [line.split()[0] for line in lines] == ["default", "alpha", "beta"]
    assert lines[0].endswith("not indexed")
    assert lines[1].endswith(f"{len(ALPHA)} documents") and "alpha" in lines[1].split()[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["index", "--collection", "nope"], "unknown collection 'nope' (known: default, alpha, "),
        (["ask", "--collection", "nope", "q?"], "unknown collection 'nope' (known: default"),
        (["ask", "--collection", "Bad Name", "q?"], "invalid collection name"),
        (["ask", "--collection", "alpha", "--index", "x", "q?"], "--index cannot be used"),
        (["ask", "--collection", "alpha", "--corpus", "x", "q?"], "--corpus cannot be used"),
    ],
)
def test_cli_refuses_bad_collection_requests(two_collections, argv, message):
    data, _ = two_collections
    code, _, err = run_cli([*argv, "--data-dir", str(data), "-q"])
    assert code == 2 and message in err


def test_questions_to_one_collection_never_see_the_other(pipelines):
    for name, own, other in (("alpha", ALPHA, BETA), ("beta", BETA, ALPHA)):
        for question in (HARBOUR_Q, ORCHARD_Q):
            answer = pipelines[name].ask(question)
            sources = {h.chunk.source for h in answer.hits} | {c.source for c in answer.citations}
            assert sources and sources <= set(own), (name, question, sources)
            assert not sources & set(other)
    # Each collection answers its own question from its own document.
    assert pipelines["alpha"].ask(HARBOUR_Q).hits[0].chunk.source == "harbour.txt"
    assert pipelines["beta"].ask(ORCHARD_Q).citations[0].source == "orchard.txt"


def test_cli_questions_to_one_collection_never_see_the_other(two_collections, cli_without_reader):
    data, _ = two_collections
    for name, own in (("alpha", ALPHA), ("beta", BETA)):
        for question in (HARBOUR_Q, ORCHARD_Q):
            argv = ["ask", "--collection", name, "--json", "--data-dir", str(data), "-q"]
            code, out, _ = run_cli([*argv, question])
            assert code == 0
            cited = {c["source"] for c in json.loads(out)["citations"]}
            assert cited <= set(own), (name, question, cited)
    argv = ["ask", "--collection", "beta", "--json", "--data-dir", str(data), "-q", ORCHARD_Q]
    assert [c["source"] for c in json.loads(run_cli(argv)[1])["citations"]][:1] == ["orchard.txt"]


def test_a_file_filter_returns_only_that_file_even_when_another_matches_better(pipelines):
    retriever = pipelines["alpha"].retriever
    best = retriever.retrieve(HARBOUR_Q, top_k=5).hits
    assert best[0].chunk.source == "harbour.txt"  # the question's own document wins unfiltered
    where = SourceFilter(files=("notes/old/ferry.txt",))
    for method in ("hybrid", "dense", "bm25"):
        hits = retriever.retrieve(HARBOUR_Q, top_k=5, method=method, where=where).hits
        assert hits and {h.chunk.source for h in hits} == {"notes/old/ferry.txt"}, method
    answer = pipelines["alpha"].ask(HARBOUR_Q, where=where)
    assert {h.chunk.source for h in answer.hits} == {"notes/old/ferry.txt"}
    assert {c.source for c in answer.citations} <= {"notes/old/ferry.txt"}


def test_a_folder_filter_keeps_the_documents_below_it(pipelines):
    retriever = pipelines["alpha"].retriever
    hits = retriever.retrieve(HARBOUR_Q, top_k=10, where=SourceFilter(folders=("notes",))).hits
    assert {h.chunk.source for h in hits} == {"notes/bridge.txt", "notes/old/ferry.txt"}
    hits = retriever.retrieve(HARBOUR_Q, top_k=10, where=SourceFilter(folders=("notes/old",)))
    assert {h.chunk.source for h in hits.hits} == {"notes/old/ferry.txt"}


def test_a_filter_matching_nothing_raises(pipelines):
    where = SourceFilter(files=("orchard.txt",), folders=("press",))  # beta's, not alpha's
    with pytest.raises(ValueError, match=r"no document matches the filter \(files orchard.txt"):
        pipelines["alpha"].retriever.retrieve(HARBOUR_Q, top_k=5, where=where)
    with pytest.raises(ValueError, match="no document matches the filter"):
        pipelines["alpha"].ask(HARBOUR_Q, where=where)


def test_cli_ask_with_a_file_filter(two_collections, cli_without_reader):
    data, _ = two_collections
    argv = ["ask", "--collection", "alpha", "--json", "--data-dir", str(data), "-q"]
    code, out, _ = run_cli([*argv, "--file", "notes/old/ferry.txt", HARBOUR_Q])
    assert code == 0 and {c["source"] for c in json.loads(out)["citations"]} <= {
        "notes/old/ferry.txt"
    }
    code, _, err = run_cli([*argv, "--folder", "nowhere", HARBOUR_Q])
    assert code == 2 and "no document matches the filter (folders nowhere/)" in err


def test_a_filter_admitting_everything_ranks_as_no_filter(pipelines):
    retriever = pipelines["alpha"].retriever
    plain = retriever.retrieve(HARBOUR_Q, top_k=5).hits
    everything = SourceFilter(folders=("notes",), files=("harbour.txt", "notes-extra.txt"))
    filtered = retriever.retrieve(HARBOUR_Q, top_k=5, where=everything).hits
    assert [h.chunk.id for h in plain] == [h.chunk.id for h in filtered]


# --- the API: /v1 `model` picks a collection, /api/ask takes collection and filter --------------


@pytest.fixture(scope="module")
def api(two_collections, pipelines):
    """build_api over alpha as the default collection, with the registry's others."""
    from fastapi.testclient import TestClient

    from rag.collections import CollectionPipelines
    from ui.openai_api import build_api

    data, _ = two_collections
    collections = CollectionPipelines(data, pipelines["alpha"])
    with TestClient(build_api(pipelines["alpha"], api_key=None, collections=collections)) as http:
        yield http


def chat(http, model: str, question: str, **extra):
    """POST /v1/chat/completions with one user message."""
    body = {"model": model, "messages": [{"role": "user", "content": question}], **extra}
    return http.post("/v1/chat/completions", json=body)


def test_api_lists_one_model_per_collection(api):
    ids = [m["id"] for m in api.get("/v1/models").json()["data"]]
    assert ids == ["corpusqa", "corpusqa/alpha", "corpusqa/beta"]


@pytest.mark.parametrize(
    ("model", "own"),
    [("corpusqa", ALPHA), ("corpusqa/alpha", ALPHA), ("corpusqa/beta", BETA)],
)
def test_api_model_picks_the_collection(api, model, own):
    for question in (HARBOUR_Q, ORCHARD_Q):
        reply = chat(api, model, question)
        assert reply.status_code == 200 and reply.json()["model"] == model
        cited = {c["source"] for c in reply.json()["choices"][0]["message"]["citations"]}
        assert cited <= set(own), (model, question, cited)
    cited = chat(api, model, HARBOUR_Q).json()["choices"][0]["message"]["citations"]
    assert cited, model  # both collections hold a passage on the harbour fund


@pytest.mark.parametrize("model", ["corpusqa/nope", "nope", "corpusqa/", "corpusqa/Bad"])
def test_api_unknown_model_is_404(api, model):
    reply = chat(api, model, HARBOUR_Q)
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"


def test_api_ask_takes_collection_and_filter(api):
    served = api.post("/api/ask", json={"question": ORCHARD_Q, "collection": "beta"}).json()
    assert served["citations"][0]["source"] == "orchard.txt"
    served = api.post("/api/ask", json={"question": ORCHARD_Q}).json()  # alpha: no orchard
    assert {c["source"] for c in served["citations"]} <= set(ALPHA)
    where = {"files": ["notes/old/ferry.txt"]}
    served = api.post("/api/ask", json={"question": HARBOUR_Q, "filter": where}).json()
    assert {c["source"] for c in served["citations"]} <= {"notes/old/ferry.txt"}
    question = "Which newspaper reported that the Quuxville harbour board resigned?"
    reply = chat(api, "corpusqa/beta", question, filter={"folders": ["press"]})
    cited = reply.json()["choices"][0]["message"]["citations"]
    assert cited and {c["source"] for c in cited} == {"press/harbour-news.txt"}


@pytest.mark.parametrize(
    ("body", "status", "param", "message"),
    [
        ({"collection": "nope"}, 404, "collection", "unknown collection 'nope'"),
        ({"collection": "Bad Name"}, 404, "collection", "invalid collection name"),
        ({"filter": {"files": ["harbour.txt"], "colour": 1}}, 400, "filter.colour", "Extra"),
        ({"filter": {"files": ["../x.txt"]}}, 400, "filter", "not a path inside the corpus"),
        ({"filter": {"files": ["orchard.txt"]}}, 400, "filter", "no document matches the filter"),
    ],
)
def test_api_ask_refuses_bad_collections_and_filters(api, body, status, param, message):
    reply = api.post("/api/ask", json={"question": HARBOUR_Q, **body})
    error = reply.json()["error"]
    assert reply.status_code == status and error["param"] == param and message in error["message"]


def test_api_without_collections_serves_the_default_only(pipelines):
    from fastapi.testclient import TestClient

    from ui.openai_api import build_api

    with TestClient(build_api(pipelines["beta"], api_key=None)) as http:
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["corpusqa"]
        assert chat(http, "corpusqa/alpha", HARBOUR_Q).status_code == 404
        reply = http.post("/api/ask", json={"question": HARBOUR_Q, "collection": "alpha"})
        assert reply.status_code == 404
        reply = http.post("/api/ask", json={"question": HARBOUR_Q, "collection": "default"})
        assert {c["source"] for c in reply.json()["citations"]} <= set(BETA)


def test_each_opened_collection_is_watched_when_asked(two_collections, pipelines):
    from rag.collections import CollectionPipelines
    from rag.library import _state, stop_watching

    data, _ = two_collections
    watched = CollectionPipelines(data, pipelines["alpha"], watch_every=60.0)
    beta = watched.get("beta")
    try:
        assert _state(beta).watcher is not None and _state(beta).watcher.running
    finally:
        stop_watching(beta)
    unwatched = CollectionPipelines(data, pipelines["alpha"]).get("beta")
    assert _state(unwatched).watcher is None
