"""Settings of the index layer: where documents and the index live, and how text is cut.

    python -c "from index.config import IndexConfig; print(IndexConfig())"

`rag.config.Config` embeds one of these; nothing in `index/` reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# torch: sentence-transformers; onnx / onnx-int8: the exported graph in ONNX Runtime.
EMBEDDING_BACKENDS = ("onnx-int8", "onnx", "torch")
# onnx-int8 embedded SQuAD 3.5-4.1x faster than torch, hit@5 within 0.2 points (BENCHMARKS.md).
DEFAULT_EMBEDDING_BACKEND = "onnx-int8"
STORE_ENGINES = ("faiss", "milvus")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
SUPPORTED_EXTENSIONS = (
    ".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".pptx", ".xlsx", ".csv", ".epub", ".eml",
    ".mbox", ".odt", ".rtf", *IMAGE_EXTENSIONS,
)  # fmt: skip
# Formats that are read in-process: cheap to parse, no library that could hang or crash.
INLINE_EXTENSIONS = (".txt", ".md", ".html", ".htm", ".csv", ".rtf")


@dataclass(frozen=True)
class IndexConfig:
    """Frozen settings for ingestion, chunking, embedding and storage."""

    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("data/index")
    # Removed and replaced documents are moved here (one subfolder per corpus), never unlinked.
    trash_dir: Path = Path("data/trash")
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedding_backend: str = DEFAULT_EMBEDDING_BACKEND
    # Where the ONNX export of the model is cached (built once, offline, from the same weights).
    embedding_cache_dir: Path = Path("data/embedder")
    # Model input limit in word pieces, [CLS] and [SEP] included.
    max_seq_length: int = 256
    # Chunks are packed up to this many word pieces; smaller chunks cite more precisely.
    chunk_tokens: int = 160
    overlap_sentences: int = 1
    embed_batch_size: int = 32
    # A short line repeated this often in the corpus is page chrome, not content. Three, not
    # two: forum user names and ranks ("coolgod", "Brigadier") repeat twice and are content.
    boilerplate_min_repeats: int = 3
    boilerplate_max_words: int = 12
    # Sentences shorter than this are never dropped as duplicates ("No.", "Top").
    dedup_min_words: int = 6
    # Exact FAISS search up to this many chunks (p50 4.5-9 ms at 100k on 2 cores, 81 ms at 1M),
    # HNSW beyond: at 1M, efSearch 512 gave recall@10 0.950 (no margin over the 0.95 target),
    # 768 gave 0.963 at p50 1.1 ms (bench/scale.py; BENCHMARKS.md).
    exact_search_max_chunks: int = 100_000
    hnsw_m: int = 32
    hnsw_ef_search: int = 768
    extensions: tuple[str, ...] = field(default=SUPPORTED_EXTENSIONS)
    max_file_bytes: int = 50 * 1024 * 1024
    # Mailboxes are read message by message, so they may be far larger than other files.
    max_mailbox_bytes: int = 4 * 1024**3
    # Spreadsheet rows read per sheet; the rest is cut and the cut reported.
    max_sheet_rows: int = 20_000
    # Wall seconds one file may take to parse (besides OCR, which has its own limit per page)
    # before its worker process is stopped and the file reported; the run goes on.
    parse_seconds: float = 60.0
    parse_workers: int = 2
    ocr_language: str = "eng"
    ocr_page_seconds: float = 120.0
    # Recognised text of scanned pages, keyed by the page image's hash: never OCR twice.
    ocr_cache_dir: Path = Path("data/ocr-cache")
    # The engine that stores chunks: "faiss" (embedded: FAISS + segmented BM25 + SQLite, no
    # server) or "milvus" (Milvus Lite at a local .db path, or a server at http(s)://host:port).
    store: str = "faiss"
    milvus_uri: str = ""
    milvus_token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "corpus_dir", Path(self.corpus_dir))
        object.__setattr__(self, "index_dir", Path(self.index_dir))
        object.__setattr__(self, "trash_dir", Path(self.trash_dir))
        object.__setattr__(self, "ocr_cache_dir", Path(self.ocr_cache_dir))
        if self.store not in STORE_ENGINES:
            raise ValueError(f"store must be one of {STORE_ENGINES}, got {self.store!r}")
        if self.store == "milvus" and not self.milvus_uri.strip():
            raise ValueError(
                "the milvus store needs milvus_uri (a .db path or http(s)://host:port)"
            )
        if self.parse_seconds <= 0 or self.ocr_page_seconds <= 0:
            raise ValueError("parse_seconds and ocr_page_seconds must be > 0")
        if self.parse_workers < 1:
            raise ValueError(f"parse_workers must be >= 1, got {self.parse_workers}")
        if self.max_sheet_rows < 1:
            raise ValueError(f"max_sheet_rows must be >= 1, got {self.max_sheet_rows}")
        object.__setattr__(self, "embedding_cache_dir", Path(self.embedding_cache_dir))
        if self.embedding_backend not in EMBEDDING_BACKENDS:
            raise ValueError(
                f"embedding_backend must be one of {EMBEDDING_BACKENDS}, "
                f"got {self.embedding_backend!r}"
            )
        if not 16 <= self.max_seq_length <= 8192:
            raise ValueError(f"max_seq_length must be in [16, 8192], got {self.max_seq_length}")
        if not 8 <= self.chunk_tokens <= self.max_seq_length - 2:
            raise ValueError(
                f"chunk_tokens must be in [8, max_seq_length-2={self.max_seq_length - 2}], "
                f"got {self.chunk_tokens}"
            )
        if self.overlap_sentences < 0:
            raise ValueError(f"overlap_sentences must be >= 0, got {self.overlap_sentences}")
        if self.embed_batch_size < 1:
            raise ValueError(f"embed_batch_size must be >= 1, got {self.embed_batch_size}")

    def read_limits(self):
        """The bounds format readers honour (index.extraction.ReadLimits)."""
        import os

        from index.extraction import ReadLimits

        return ReadLimits(
            max_sheet_rows=self.max_sheet_rows,
            max_mailbox_bytes=self.max_mailbox_bytes,
            ocr_language=self.ocr_language,
            ocr_page_seconds=self.ocr_page_seconds,
            # Each parser process runs this many Tesseracts: together they fill the cores.
            ocr_workers=max(1, (os.cpu_count() or 1) // self.parse_workers),
            ocr_cache_dir=str(self.ocr_cache_dir),
        )

    def chunking_params(self) -> dict:
        """The settings that change chunk boundaries; an index built with others is stale."""
        return {
            "max_seq_length": self.max_seq_length,
            "chunk_tokens": self.chunk_tokens,
            "overlap_sentences": self.overlap_sentences,
            "boilerplate_min_repeats": self.boilerplate_min_repeats,
            "boilerplate_max_words": self.boilerplate_max_words,
            "dedup_min_words": self.dedup_min_words,
        }
