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


@pytest.fixture(scope="session")
def multipage_pdf():
    """A builder of PDFs with one text page per string (Helvetica, one line per sentence)."""
    from tests.pdf_fixture import pdf_from_objects

    def build(pages: list[str]) -> bytes:
        count = len(pages)
        font = 3 + 2 * count
        kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
        objects = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        ]
        for i, text in enumerate(pages):
            lines = [s.strip() for s in text.split("\n") if s.strip()]
            body = " ".join(
                f"({line.replace('(', '[').replace(')', ']')}) Tj 0 -16 Td" for line in lines
            )
            stream = f"BT /F1 12 Tf 72 720 Td {body} ET".encode("latin-1")
            objects.append(
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} "
                f"0 R /Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
            )
            objects.append(
                b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream
                + b"\nendstream"
            )  # fmt: skip
        objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
        return pdf_from_objects(objects)

    return build


@pytest.fixture
def page_view_stub(monkeypatch):
    """index.page_view as a stand-in when the real one is missing: records its calls.

    The stand-in draws a white page with one yellow box per highlight, so a test can check
    what a browser shows. Yields the list of calls (empty when the real module is used).
    """
    import importlib
    import io
    import sys
    import types

    calls: list[dict] = []
    try:
        importlib.import_module("index.page_view")
        yield calls
        return
    except ImportError:
        pass
    from PIL import Image, ImageDraw

    def render_page(path, *, page, highlights, page_start, scale=1.5, **_kwargs):
        calls.append({"path": path, "page": page, "highlights": highlights, "start": page_start})
        if not Path(path).is_file() or page < 1:
            raise ValueError(f"no page {page} in {path}")
        image = Image.new("RGB", (int(200 * scale), int(260 * scale)), "white")
        draw = ImageDraw.Draw(image)
        for i, _ in enumerate(highlights):
            draw.rectangle([20, 20 + 30 * i, 180, 40 + 30 * i], fill=(255, 230, 0))
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    stub = types.ModuleType("index.page_view")
    stub.render_page = render_page
    stub.page_count = lambda path: 1
    monkeypatch.setitem(sys.modules, "index.page_view", stub)
    yield calls


AUDIT_PAGES = [
    "The annual audit of the Quuxville port authority covers the year 2024.\n"
    "It was carried out by an outside firm over six weeks.",
    "The audit found that the Quuxville harbour fund lost 4 million euros.\n"
    "Most of the loss came from a failed dredging contract.",
    "The last page lists the people who were interviewed for the audit.\n"
    "Nobody from the harbour board declined an interview.",
]


@pytest.fixture(scope="module")
def served_pdf(private_pipeline, embedder, multipage_pdf):
    """audit.pdf (three pages; the harbour fund's loss is on page 2) in the served corpus."""
    from index import update_index

    path = private_pipeline.config.index.corpus_dir / "audit.pdf"
    path.write_bytes(multipage_pdf(AUDIT_PAGES))
    update_index(private_pipeline.config.index, progress=False, embedder=embedder)
    private_pipeline.reload()
    yield path
    path.unlink(missing_ok=True)
    update_index(private_pipeline.config.index, progress=False, embedder=embedder)
    private_pipeline.reload()
