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
    """The packaged all-MiniLM-L6-v2, loaded once for the whole run."""
    from index import get_embedder

    return get_embedder("all-MiniLM-L6-v2", max_seq_length=256)


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
