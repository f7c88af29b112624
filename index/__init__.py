"""Ingestion and storage: load, clean, chunk, embed, store. Knows nothing of rag/, ui/, eval/.

python -m rag index        # builds data/index from corpus/
"""

from index.build import UpdateReport, update_index
from index.config import IndexConfig
from index.corpus_index import (
    Chunk,
    CorpusIndex,
    DocumentInfo,
    IndexCorrupt,
    IndexLoadError,
    IndexMismatch,
    IndexNotFound,
    IndexTooNew,
    current_generation,
)
from index.embedding import Embedder, check_embedder, embedder_for, get_embedder
from index.onnx_export import OnnxExportError
from index.progress import BuildControl, IndexCancelled
from index.stores import LexicalStore, VectorStore

__all__ = [
    "BuildControl",
    "Chunk",
    "CorpusIndex",
    "DocumentInfo",
    "Embedder",
    "IndexCancelled",
    "IndexConfig",
    "IndexCorrupt",
    "IndexLoadError",
    "IndexMismatch",
    "IndexNotFound",
    "IndexTooNew",
    "LexicalStore",
    "OnnxExportError",
    "UpdateReport",
    "VectorStore",
    "check_embedder",
    "current_generation",
    "embedder_for",
    "get_embedder",
    "update_index",
]
