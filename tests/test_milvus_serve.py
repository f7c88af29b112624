"""Milvus Lite served on a port: several processes share one .db, collections stay loaded.

python -m pytest tests/test_milvus_serve.py -q
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.store_options import remote_store_notice

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("uri", "remote"),
    [
        ("http://127.0.0.1:19530", False),
        ("http://localhost:19530", False),
        ("http://[::1]:19530", False),
        ("http://milvus.example.org:19530", True),
        ("https://10.0.0.5:443", True),
        ("data/milvus.db", False),
    ],
)
def test_only_a_server_elsewhere_gets_the_off_machine_notice(uri, remote):
    notice = remote_store_notice({"store": "milvus", "milvus_uri": uri})
    assert bool(notice) is remote
    assert remote_store_notice({"store": "faiss"}) == ""


pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from index import IndexConfig, update_index  # noqa: E402
from index.milvus_serve import LiteServer  # noqa: E402
from index.milvus_store import (  # noqa: E402
    MilvusLiteBusy,
    MilvusStore,
    MilvusWriter,
    _acquire,
    _release,
    is_lite,
)
from rag import Config, Pipeline  # noqa: E402


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("db", "port", "message"),
    [
        ("x.db", 0, "port must be between"),
        ("x.db", 70_000, "port must be between"),
        ("x.txt", 19530, "neither a local path"),
        ("no/such/folder/x.db", 19530, "does not exist"),
        ("a" * 40 + ".db", 19530, "at most 36"),
    ],
)
def test_bad_settings_are_refused_with_a_message(tmp_path, db, port, message):
    with pytest.raises(ValueError, match=message):
        LiteServer(tmp_path / db, port=port)


@pytest.fixture
def served(tmp_path):
    """A Lite file served on a free port, stopped after the test."""
    server = LiteServer(tmp_path / "served.db", port=free_port()).start()
    yield server
    server.stop()


def test_a_served_file_is_lite_and_gets_flat_at_any_size(served):
    key, _ = _acquire(served.uri, "")
    try:
        assert is_lite(key)  # Lite answers GetVersion with UNIMPLEMENTED
    finally:
        _release(key)
    writer = MilvusWriter.create(
        uri=served.uri, collection="corpusqa_big", dimension=8, expected_chunks=500_000
    )
    state = writer.finish(served.db.parent)  # gives the connection back
    assert state.manifest["dense_index"] == "FLAT"  # a real server would get HNSW here


def test_the_served_file_cannot_be_opened_directly(served):
    with pytest.raises(MilvusLiteBusy):
        MilvusStore.open(uri=str(served.db), collection="corpusqa_x")
    with pytest.raises(ValueError, match="already in use"):
        LiteServer(served.db.parent / "other.db", port=served.port).start()


def test_another_process_updates_while_the_chat_holds_the_file(
    served, tmp_path, corpus_copy, embedder
):
    """`rag index` in its own process while this one (the chat) has the served file open:
    opened as a file, Lite refuses the second process."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in corpus_copy.iterdir():
        (corpus / path.name).write_bytes(path.read_bytes())
    config = IndexConfig(
        corpus_dir=corpus, index_dir=tmp_path / "index", store="milvus", milvus_uri=served.uri
    )
    update_index(config, progress=False, embedder=embedder)
    chat = Pipeline(Config(index=config), embedder=embedder)
    assert chat.ask("Who did Hegseth call?").citations
    size = chat.index.size
    (corpus / "extra.txt").write_text(
        "The lighthouse keeper of Port Vell painted the tower green in 1911.\n", encoding="utf-8"
    )
    out = subprocess.run(
        [sys.executable, "-m", "rag", "index", "-q", "--corpus", str(corpus),
         "--index", str(tmp_path / "index"), "--store", "milvus", "--milvus-uri", served.uri],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "added 1," in out.stdout
    fresh = Pipeline(Config(index=config), embedder=embedder)
    assert fresh.index.size == size + 1
    answer = fresh.ask("What colour did the lighthouse keeper paint the tower?")
    assert answer.citations and answer.citations[0].source == "extra.txt"
    assert chat.ask("Who did Hegseth call?").citations  # the chat's client still reads


def test_the_data_survive_a_stop_and_open_as_a_file(tmp_path, corpus_copy, embedder):
    db = tmp_path / "kept.db"
    with LiteServer(db, port=free_port()) as server:
        config = IndexConfig(
            corpus_dir=corpus_copy, index_dir=tmp_path / "index", store="milvus",
            milvus_uri=server.uri,
        )  # fmt: skip
        update_index(config, progress=False, embedder=embedder)
        served_size = Pipeline(Config(index=config), embedder=embedder).index.size
    direct = IndexConfig(
        corpus_dir=corpus_copy, index_dir=tmp_path / "index", store="milvus", milvus_uri=str(db)
    )
    pipeline = Pipeline(Config(index=direct), embedder=embedder)
    try:
        assert pipeline.index.size == served_size > 0
    finally:
        pipeline.index.store.close()


def _wait_for_line(process: subprocess.Popen, text: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen += line
        if text in line:
            return seen
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"no {text!r} in the output: {seen!r}")


def test_the_command_serves_until_interrupted(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "rag", "milvus-lite", "--db", str(tmp_path / "cli.db"),
               "--port", str(port), "-q"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    try:
        out = _wait_for_line(process, "--milvus-uri")
        assert f"http://127.0.0.1:{port}" in out
        busy = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert busy.returncode == 2 and "already in use" in busy.stderr
        assert "Traceback" not in busy.stderr
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # the server went with it
