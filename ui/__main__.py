"""Launch the chat in the browser.

    python -m ui [--host 127.0.0.1] [--port 7860] [--corpus DIR] [--index DIR] [--watch-seconds 5]

Environment (read here only): RAG_HOST, RAG_PORT, RAG_CORPUS, RAG_INDEX, RAG_UPLOAD_MB,
RAG_STORE, RAG_MILVUS_URI, RAG_MILVUS_TOKEN, RAG_WATCH_SECONDS, RAG_USERNAME and RAG_PASSWORD
(required when binding to anything but loopback), RAG_API_KEY (bearer key of /v1 and /api; also
required off loopback). The chat, the OpenAI-compatible /v1 and /api/ask share one port
(`ui/openai_api.py`). The index is built first only if it is missing or was built with other
settings; while serving, the corpus folder is looked at every few seconds and what changed is
indexed in the background (--watch-seconds 0 turns that off). Chat turns (and /v1 requests with
"store": true) are saved in conversations.sqlite3 beside the index folder (data/ by default),
each user's apart. Other collections (`python -m rag collections`; settings under
<data>/collections, data being RAG_DATA or the folder holding --index) are served too: the chat
has a collection selector and /v1 a model per collection.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

from index import IndexConfig, IndexLoadError, OnnxExportError
from index.config import DEFAULT_EMBEDDING_BACKEND, EMBEDDING_BACKENDS
from index.milvus_serve import is_loopback
from rag import Config
from rag.llm import find_model
from rag.logs import configure_logging, error_line
from rag.pipeline import open_pipeline
from rag.store_options import add_store_options, remote_store_notice, store_settings

logger = logging.getLogger("ui")


def resolve_auth(host: str, env: dict) -> tuple[str, str] | None:
    """Credentials for Gradio auth; raises ValueError when a public bind has none."""
    user, password = env.get("RAG_USERNAME", ""), env.get("RAG_PASSWORD", "")
    if user and password:
        return (user, password)
    if not is_loopback(host):
        raise ValueError(
            f"refusing to serve on {host} without a login: set RAG_USERNAME and RAG_PASSWORD "
            "(or bind to 127.0.0.1)"
        )
    return None


def resolve_api_key(host: str, env: dict) -> str | None:
    """The API key of /v1 and /api; raises ValueError when a public bind has none."""
    key = env.get("RAG_API_KEY", "").strip()
    if key:
        return key
    if not is_loopback(host):
        raise ValueError(
            f"refusing to serve on {host} without an API key: set RAG_API_KEY "
            "(or bind to 127.0.0.1)"
        )
    return None


def data_folder(index: str, env: dict) -> Path:
    """The data folder of the collections: RAG_DATA, else the folder holding the index."""
    return Path(env.get("RAG_DATA") or Path(index).parent)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m ui`."""
    env = os.environ
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # private and offline
    parser = argparse.ArgumentParser(prog="python -m ui", description="Chat with your documents.")
    parser.add_argument("--host", default=env.get("RAG_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("RAG_PORT", "7860")))
    parser.add_argument("--corpus", default=env.get("RAG_CORPUS", "corpus"))
    parser.add_argument("--index", default=env.get("RAG_INDEX", "data/index"))
    parser.add_argument(
        "--embedding-backend",
        choices=EMBEDDING_BACKENDS,
        default=env.get("RAG_EMBEDDING_BACKEND", DEFAULT_EMBEDDING_BACKEND),
        help="onnx-int8 (default, fastest), onnx or torch",
    )
    parser.add_argument("--upload-mb", type=float, default=float(env.get("RAG_UPLOAD_MB", "20")))
    parser.add_argument(
        "--watch-seconds",
        type=float,
        default=float(env.get("RAG_WATCH_SECONDS", "5")),
        help="look at the corpus folder this often and index what changed (0: never)",
    )
    add_store_options(parser)
    parser.add_argument("--model", help="GGUF model file (env RAG_MODEL, else models/*.gguf)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="LLM context size")
    parser.add_argument("--threads", type=int, help="LLM threads (default: physical cores)")
    args = parser.parse_args(argv)
    configure_logging(logging.INFO)
    try:
        auth = resolve_auth(args.host, env)
        api_key = resolve_api_key(args.host, env)
        model = find_model(args.model, env_value=env.get("RAG_MODEL"), models_dir=Path("models"))
        store = store_settings(args, env)
        notice = remote_store_notice(store)
        if notice:
            logger.warning("%s", notice)
        config = Config(
            index=IndexConfig(
                corpus_dir=Path(args.corpus),
                index_dir=Path(args.index),
                embedding_backend=args.embedding_backend,
                **store,
            ),
            model_path=model,
            n_ctx=args.n_ctx,
            n_threads=args.threads,
        )
        pipeline = open_pipeline(config)
    except (ValueError, IndexLoadError, ImportError, OnnxExportError, OSError) as exc:
        sys.stderr.write(f"error: {error_line(exc)}\n")
        return 2
    import uvicorn

    from rag.collections import CollectionPipelines
    from rag.library import stop_watching, watch_corpus
    from ui.openai_api import serve_app

    limit = int(args.upload_mb * 1024 * 1024)
    collections = CollectionPipelines(
        data_folder(args.index, env), pipeline, watch_every=max(0.0, args.watch_seconds)
    )
    app = serve_app(
        pipeline, api_key=api_key, auth=auth, upload_limit_bytes=limit, collections=collections
    )
    if pipeline.mode == "llm":
        # Load the model in the background: the page is served at once, the first answer waits.
        threading.Thread(target=pipeline.chat_model, daemon=True).start()
    if args.watch_seconds > 0:
        watch_corpus(pipeline, every=args.watch_seconds)
        logger.info("indexing changes of %s every %.0f s", args.corpus, args.watch_seconds)
    logger.info(
        "serving on http://%s:%d (mode: %s; OpenAI-compatible API at /v1, docs at /docs)",
        args.host, args.port, pipeline.mode,
    )  # fmt: skip
    try:
        uvicorn.run(
            app, host=args.host.strip("[]"), port=args.port, log_config=None, access_log=False
        )
    finally:
        stop_watching(pipeline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
