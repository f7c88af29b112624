"""Ingestion and storage: load, clean, chunk, embed, store. Knows nothing of rag/, ui/, eval/.

python -m rag index        # builds data/index from corpus/
"""

from index.analyzer import Analyzer, TermStats, analyzer
from index.build import UpdateReport, update_index
from index.config import IndexConfig
from index.corpus_index import (
    CorpusIndex,
    DocumentInfo,
    IndexCorrupt,
    IndexEngineMismatch,
    IndexLoadError,
    IndexMismatch,
    IndexNeedsUpgrade,
    IndexNotFound,
    IndexProtected,
    IndexTooNew,
    Lexicon,
    current_generation,
)
from index.embedding import Embedder, check_embedder, embedder_for, get_embedder
from index.onnx_export import OnnxExportError
from index.progress import BuildControl, IndexCancelled
from index.store import Candidates, Chunk, ChunkStore, StoreWriter, chunk_id

__all__ = [
    "Analyzer",
    "BuildControl",
    "Candidates",
    "Chunk",
    "ChunkStore",
    "CorpusIndex",
    "DocumentInfo",
    "Embedder",
    "IndexCancelled",
    "IndexConfig",
    "IndexCorrupt",
    "IndexLoadError",
    "IndexMismatch",
    "IndexEngineMismatch",
    "IndexNeedsUpgrade",
    "IndexProtected",
    "IndexNotFound",
    "IndexTooNew",
    "Lexicon",
    "OnnxExportError",
    "StoreWriter",
    "TermStats",
    "UpdateReport",
    "analyzer",
    "check_embedder",
    "chunk_id",
    "current_generation",
    "embedder_for",
    "get_embedder",
    "update_index",
]
