"""The index on disk and in memory: chunks, documents, both stores, and the checks on load.

    python -m index.corpus_index data/index

Layout (one generation folder per build; CURRENT names the live one, swapped atomically):
    data/index/CURRENT                 "gen-<timestamp>-<pid>"
    data/index/gen-.../manifest.json   model, chunking, versions, documents, file checksums
    data/index/gen-.../chunks.jsonl    one passage per line, row i = vector i = BM25 doc i
    data/index/gen-.../dense.faiss     FAISS inner-product index of unit vectors
    data/index/gen-.../bm25/           bm25s arrays (.npy) and vocabulary (JSON)
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from index.config import IndexConfig
from index.stores import ANALYZER, BM25Store, FaissVectorStore, LexicalStore, VectorStore

logger = logging.getLogger(__name__)

# 2: chunks carry page, locator and ocr; documents' texts live in texts/ (index.document_store).
FORMAT_VERSION = 2
# Analyzers earlier versions wrote: an index built with one is rebuilt; any other name comes
# from a newer version and is left alone (IndexTooNew).
OLDER_ANALYZERS = ("snowball-en+stopwords",)
CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "manifest.json"
CHUNKS_FILE = "chunks.jsonl"


class IndexLoadError(RuntimeError):
    """The index cannot be used as it is; the message says why and what to run."""


class IndexNotFound(IndexLoadError):
    """No index has been built in this folder yet."""


class IndexMismatch(IndexLoadError):
    """The index was built with another embedding model or other chunking settings."""


class IndexTooNew(IndexLoadError):
    """The index was written by a newer version of this program; it is never rebuilt over."""


class IndexCorrupt(IndexLoadError):
    """A file of the index is missing, truncated or does not match its checksum."""


@dataclass(frozen=True)
class Chunk:
    """A passage: `text` is exactly the document text between start and end."""

    id: int
    source: str
    title: str
    date: str
    start: int
    end: int
    text: str
    search_text: str
    sentences: tuple[tuple[int, int], ...]
    n_tokens: int
    # Where the passage starts in its source: PDF page or slide (1-based, else None), a short
    # human locator ("p. 4", "slide 3", "sheet Budget, rows 12–18", "§ Audit", "lines 40–52"),
    # and whether its text was recognised by OCR.
    page: int | None = None
    locator: str = ""
    ocr: bool = False

    def to_json(self) -> str:
        """One line of chunks.jsonl."""
        # vars() not asdict(): asdict deep-copies every field (a tenth of indexing overhead).
        return json.dumps(vars(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Chunk:
        """Parse one line of chunks.jsonl."""
        data = json.loads(line)
        data["sentences"] = tuple(tuple(s) for s in data["sentences"])
        return cls(**data)


@dataclass(frozen=True)
class DocumentInfo:
    """What the manifest records of one document."""

    source: str
    sha256: str
    fingerprint: str
    title: str
    date: str
    kind: str
    chars: int
    chunks: int
    # The reader that extracted the text, its notes about parts left out, and the key of the
    # stored text (index.document_store).
    reader: str = ""
    notes: tuple[str, ...] = ()
    text_key: str = ""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def current_generation(index_dir: Path) -> Path | None:
    """Folder of the live generation, or None when no index was built."""
    pointer = Path(index_dir) / CURRENT_FILE
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(
            f"{pointer} is unreadable ({exc}); run: python -m rag index --rebuild"
        ) from exc
    if not name or "/" in name or name.startswith("."):
        raise IndexCorrupt(f"{pointer} does not name a generation folder: {name!r}")
    return Path(index_dir) / name


def manifest_checksum(manifest: dict) -> str:
    """SHA-256 of the manifest's canonical JSON, its own checksum field left out."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_manifest(manifest: object, path: Path) -> None:
    """Raise IndexCorrupt when the manifest is not an object or was edited after the build.

    Manifests written before the checksum existed have no `manifest_sha256` and are accepted.
    """
    if not isinstance(manifest, dict):
        raise IndexCorrupt(f"{path} is not a JSON object; run: python -m rag index --rebuild")
    recorded = manifest.get("manifest_sha256")
    if recorded is not None and recorded != manifest_checksum(manifest):
        raise IndexCorrupt(
            f"{path} does not match its checksum (edited or damaged); "
            "run: python -m rag index --rebuild"
        )


def check_compatible(manifest: dict, config: IndexConfig) -> None:
    """Raise IndexMismatch when the index was built with another model, backend or chunking."""
    version = manifest.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise IndexTooNew(
            f"the index was written by a newer version of this program (format {version}; "
            f"this version reads format {FORMAT_VERSION}); it was left untouched. Upgrade, "
            "or replace it (re-embedding everything) with: python -m rag index --rebuild"
        )
    if version != FORMAT_VERSION:
        raise IndexMismatch(
            f"index format {manifest.get('format_version')} is not {FORMAT_VERSION}; "
            "rebuild with: python -m rag index --rebuild"
        )
    built = manifest.get("embedding", {}).get("model")
    if built != config.embedding_model:
        raise IndexMismatch(
            f"index was built with embedding model {built!r}, config uses "
            f"{config.embedding_model!r}; rebuild with: python -m rag index --rebuild"
        )
    # Indexes from before the ONNX backends were embedded with torch.
    backend = manifest.get("embedding", {}).get("backend", "torch")
    if backend != config.embedding_backend:
        raise IndexMismatch(
            f"index was embedded with the {backend!r} backend, config uses "
            f"{config.embedding_backend!r} (vectors differ slightly); "
            "rebuild with: python -m rag index --rebuild"
        )
    analyzer = manifest.get("bm25", {}).get("tokenizer")
    if analyzer != ANALYZER and analyzer not in OLDER_ANALYZERS:
        raise IndexTooNew(
            f"the index was built with the lexical analyzer {analyzer!r}, unknown to this "
            "version (a newer one wrote it?); it was left untouched. Upgrade, or replace it "
            "with: python -m rag index --rebuild"
        )
    if analyzer != ANALYZER:
        raise IndexMismatch(
            f"index was built with the lexical analyzer {analyzer!r}, this version uses "
            f"{ANALYZER!r}; rebuild with: python -m rag index --rebuild"
        )
    if manifest.get("chunking") != config.chunking_params():
        raise IndexMismatch(
            f"index was built with chunking {manifest.get('chunking')}, config uses "
            f"{config.chunking_params()}; rebuild with: python -m rag index --rebuild"
        )


class CorpusIndex:
    """A loaded generation: manifest, chunks, and the two stores."""

    def __init__(
        self,
        *,
        folder: Path,
        manifest: dict,
        chunks: list[Chunk],
        vectors: VectorStore,
        lexical: LexicalStore,
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.chunks = chunks
        self.vectors = vectors
        self.lexical = lexical

    @property
    def documents(self) -> list[DocumentInfo]:
        """Indexed documents in source order."""
        fields = set(DocumentInfo.__dataclass_fields__)
        return [
            DocumentInfo(
                **{k: tuple(v) if k == "notes" else v for k, v in d.items() if k in fields}
            )
            for d in self.manifest["documents"].values()
        ]

    @property
    def dimension(self) -> int:
        """Embedding dimension of the dense vectors."""
        return int(self.manifest["embedding"]["dimension"])

    @classmethod
    def load(
        cls,
        config: IndexConfig,
        *,
        verify: bool = True,
        on_pointer_read: Callable[[Path], None] | None = None,
    ) -> CorpusIndex:
        """Load the live generation; raise IndexLoadError subclasses with a clear message.

        A build keeps the generation it replaced, but two builds in a row delete it: a reader
        whose folder vanished after it read CURRENT reads CURRENT once more.
        on_pointer_read (tests) runs between reading CURRENT and opening the folder.
        """
        folder = cls._live_folder(config)
        if on_pointer_read is not None:
            on_pointer_read(folder)
        try:
            return cls._load_folder(folder, config, verify=verify)
        except IndexCorrupt:
            again = cls._live_folder(config)
            if again == folder and folder.is_dir():
                raise
            logger.info("generation %s was replaced while loading; loading %s", folder, again)
            return cls._load_folder(again, config, verify=verify)

    @staticmethod
    def _live_folder(config: IndexConfig) -> Path:
        folder = current_generation(config.index_dir)
        if folder is None:
            raise IndexNotFound(
                f"no index in {config.index_dir}; build one with: python -m rag index"
            )
        return folder

    @classmethod
    def _load_folder(cls, folder: Path, config: IndexConfig, *, verify: bool) -> CorpusIndex:
        manifest = read_manifest(folder)
        check_compatible(manifest, config)
        if verify:
            verify_files(folder, manifest)
        try:
            with open(folder / CHUNKS_FILE, encoding="utf-8") as handle:
                chunks = [Chunk.from_json(line) for line in handle if line.strip()]
            vectors = FaissVectorStore.load(
                folder,
                dimension=int(manifest["embedding"]["dimension"]),
                ef_search=manifest.get("dense", {}).get("ef_search"),
            )
            lexical = BM25Store.load(folder)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise IndexCorrupt(
                f"cannot read index in {folder}: {exc}; run: python -m rag index --rebuild"
            ) from exc
        if not (len(chunks) == vectors.size == lexical.size == manifest.get("chunk_count")):
            raise IndexCorrupt(
                f"index parts disagree: {len(chunks)} chunks, {vectors.size} vectors, "
                f"{lexical.size} BM25 rows, manifest {manifest.get('chunk_count')}; "
                "run: python -m rag index --rebuild"
            )
        return cls(
            folder=folder, manifest=manifest, chunks=chunks, vectors=vectors, lexical=lexical
        )


def read_manifest(folder: Path) -> dict:
    """The generation's manifest, checked against its own checksum."""
    manifest_path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IndexCorrupt(
            f"{manifest_path} is missing; run: python -m rag index --rebuild"
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(
            f"{manifest_path} is not valid JSON ({exc}); run: python -m rag index --rebuild"
        ) from exc
    check_manifest(manifest, manifest_path)
    return manifest


def verify_files(folder: Path, manifest: dict) -> None:
    """Compare every file of the generation with the checksum the manifest recorded."""
    for name, expected in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise IndexCorrupt(f"index file {path} is missing; run: python -m rag index --rebuild")
        if path.stat().st_size != expected["bytes"] or file_sha256(path) != expected["sha256"]:
            raise IndexCorrupt(
                f"index file {path} does not match its checksum (truncated or edited); "
                "run: python -m rag index --rebuild"
            )


if __name__ == "__main__":
    loaded = CorpusIndex.load(
        IndexConfig(index_dir=Path(sys.argv[1] if len(sys.argv) > 1 else "data/index"))
    )
    for doc in loaded.documents:
        sys.stdout.write(f"{doc.source}\t{doc.chunks} chunks\t{doc.date}\t{doc.title}\n")
