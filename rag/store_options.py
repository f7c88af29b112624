"""The options that choose the store engine, shared by every command line.

    python -m rag index --store milvus --milvus-uri data/milvus.db

`--store faiss|milvus` (env RAG_STORE), `--milvus-uri URI` (env RAG_MILVUS_URI: a `.db` path for
Milvus Lite, or `http(s)://host:port` for a Milvus server) and the token from RAG_MILVUS_TOKEN
(never a flag: command lines are visible to other users). Read only by the edges' `__main__`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

from index.config import STORE_ENGINES
from index.milvus_serve import is_loopback

logger = logging.getLogger(__name__)


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """Add --store and --milvus-uri to a parser."""
    parser.add_argument(
        "--store", choices=STORE_ENGINES, help="chunk store engine (default faiss, env RAG_STORE)"
    )
    parser.add_argument(
        "--milvus-uri",
        help="Milvus Lite file (.db) or server http(s)://host:port (env RAG_MILVUS_URI)",
    )


def store_settings(args: argparse.Namespace, env: Mapping[str, str]) -> dict:
    """IndexConfig fields for the chosen engine: flags first, then the environment."""
    store = getattr(args, "store", None) or env.get("RAG_STORE") or "faiss"
    uri = getattr(args, "milvus_uri", None) or env.get("RAG_MILVUS_URI") or ""
    if store not in STORE_ENGINES:
        raise ValueError(f"RAG_STORE must be one of {', '.join(STORE_ENGINES)}, got {store!r}")
    if store != "milvus":
        return {"store": store}
    return {"store": store, "milvus_uri": uri, "milvus_token": env.get("RAG_MILVUS_TOKEN", "")}


def remote_store_notice(settings: dict) -> str:
    """A line to show at start when the documents' text is kept off this machine, else ''."""
    uri = settings.get("milvus_uri", "")
    if settings.get("store") != "milvus" or not uri.startswith(("http://", "https://")):
        return ""
    if is_loopback(urlsplit(uri).hostname or ""):
        return ""  # a server on this machine (rag milvus-lite, or a local Docker Milvus)
    return (
        f"the index (documents' text included) is kept by the Milvus server at {uri}, "
        "not on this machine"
    )
