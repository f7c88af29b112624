"""Shared fixtures: the real embedding model and an index of the real corpus, built once.

python -m pytest -q
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"


@pytest.fixture(scope="session")
def embedder():
    """The packaged all-MiniLM-L6-v2 on the default backend, loaded once for the whole run."""
    from index import IndexConfig, embedder_for

    return embedder_for(IndexConfig())


@pytest.fixture(scope="session")
def corpus_copy(tmp_path_factory) -> Path:
    """A private copy of corpus/ that tests may read but not change."""
    target = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(CORPUS, target)
    return target


@pytest.fixture(scope="session")
def config(corpus_copy, tmp_path_factory):
    """Config pointing at the corpus copy and a session index folder."""
    from index import IndexConfig
    from rag import Config

    index_dir = tmp_path_factory.mktemp("index")
    return Config(index=IndexConfig(corpus_dir=corpus_copy, index_dir=index_dir))


@pytest.fixture(scope="session")
def pipeline(config, embedder):
    """A Pipeline over the real corpus, index built once per session."""
    from index import update_index
    from rag import Pipeline

    update_index(config.index, progress=False, embedder=embedder)
    return Pipeline(config, embedder=embedder)


@pytest.fixture(scope="module")
def private_pipeline(tmp_path_factory, embedder):
    """A Pipeline over its own corpus copy and trash, for tests that upload or remove documents."""
    from index import IndexConfig, update_index
    from rag import Config, Pipeline

    base = tmp_path_factory.mktemp("private")
    shutil.copytree(CORPUS, base / "corpus")
    config = Config(
        index=IndexConfig(
            corpus_dir=base / "corpus", index_dir=base / "index", trash_dir=base / "trash"
        )
    )
    update_index(config.index, progress=False, embedder=embedder)
    return Pipeline(config, embedder=embedder)


@pytest.fixture(scope="module")
def served_app(private_pipeline):
    """The chat app launched on a free loopback port; yields its URL."""
    import socket

    from ui.app import build_app, launch_kwargs

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    limit = 200_000
    app = build_app(private_pipeline, upload_limit_bytes=limit)
    app.queue(default_concurrency_limit=8)
    app.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **launch_kwargs(upload_limit_bytes=limit),
    )
    yield f"http://127.0.0.1:{port}/"
    app.close()
