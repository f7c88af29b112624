"""The index on disk and in memory: manifest, documents, term statistics, the chunk store.

    python -m index.corpus_index data/index

Layout (one small generation folder per build; CURRENT names the live one, swapped atomically):
    data/index/CURRENT                 "gen-<timestamp>-<pid>"
    data/index/gen-.../manifest.json   model, chunking, engine, documents, file checksums
    data/index/gen-.../terms.json      the analyzer's document frequencies (index.analyzer)
    data/index/gen-.../deleted/*.npy   rows of live segments that this generation deleted
    data/index/segments/seg-.../       immutable chunk segments (index.segments; faiss engine)
A milvus index keeps its chunks in a Milvus collection instead of segments/.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from index.analyzer import ANALYZER, TermStats, analyzer
from index.chrome import LineCounts
from index.config import IndexConfig
from index.durable import file_sha256
from index.store import Chunk, ChunkStore

logger = logging.getLogger(__name__)

# 2: chunks carry page, locator and ocr; documents' texts live in texts/ (index.document_store).
# 3: stable chunk ids, chunks in a store engine (segments or Milvus), terms.json per generation.
FORMAT_VERSION = 3
# Formats this version upgrades in place (reusing vectors and texts) instead of re-embedding.
UPGRADABLE_FORMATS = (2,)
# Analyzers earlier versions wrote: an index built with one is rebuilt; any other name comes
# from a newer version and is left alone (IndexTooNew).
OLDER_ANALYZERS = ("snowball-en+stopwords",)
CURRENT_FILE = "CURRENT"
# Written by a build before its first store write, removed once it is live (index/build.py).
PENDING_FILE = "pending.json"
MANIFEST_FILE = "manifest.json"
CHUNKS_FILE = "chunks.jsonl"


class IndexLoadError(RuntimeError):
    """The index cannot be used as it is; the message says why and what to run."""


class IndexNotFound(IndexLoadError):
    """No index has been built in this folder yet."""


class IndexMismatch(IndexLoadError):
    """The index was built with another embedding model or other chunking settings."""


class IndexProtected(IndexLoadError):
    """The index must not be rebuilt over without being asked (`rag index --rebuild`)."""


class IndexTooNew(IndexProtected):
    """The index was written by a newer version of this program; it is never rebuilt over."""


class IndexNeedsUpgrade(IndexLoadError):
    """The index has an older format that `rag index` upgrades, reusing its vectors."""


class IndexEngineMismatch(IndexProtected, IndexMismatch):
    """The index lives in another store engine than the config names (never rebuilt over)."""


class IndexCorrupt(IndexLoadError):
    """A file of the index is missing, truncated or does not match its checksum."""


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


# A manifest's last line records the SHA-256 of its text before that line. Hashing the text
# as written is cheap, where encoding the parsed manifest again as canonical JSON cost about
# 0.2 s on every read and every write for the 11,853 documents of a 100k-chunk index.
_SEAL = re.compile(r',\n "manifest_sha256": "([0-9a-f]{64})"\n\}\n\Z')


def seal_manifest_text(text: str) -> tuple[str, str]:
    """The manifest text (a JSON object ending in a line "}") with its checksum line added,
    and that checksum."""
    if not text.endswith("\n}\n") or text[:-3].strip() in ("", "{"):
        raise ValueError("a manifest text is a JSON object with at least one key, ending '}\\n'")
    checksum = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f'{text[:-3]},\n "manifest_sha256": "{checksum}"\n}}\n', checksum


def sealed_text_holds(text: str) -> bool:
    """True when the text ends with the checksum of the text before that line."""
    match = _SEAL.search(text)
    if match is None:
        return False
    body = text[: match.start()] + "\n}\n"
    return match.group(1) == hashlib.sha256(body.encode("utf-8")).hexdigest()


def manifest_checksum(manifest: dict) -> str:
    """SHA-256 of the manifest's canonical JSON, its own checksum field left out (the checksum
    of manifests written before the sealed text, still accepted)."""
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
    if version in UPGRADABLE_FORMATS:
        raise IndexNeedsUpgrade(
            f"index format {version} is older than {FORMAT_VERSION}; "
            "upgrade it (vectors and texts are reused) with: python -m rag index"
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
    engine = manifest.get("store", {}).get("engine", "faiss")
    if engine != config.store:
        raise IndexEngineMismatch(
            f"index was built with the {engine!r} store, config uses {config.store!r}; build "
            f"it again with --store {config.store} --rebuild, or open it with --store {engine}"
        )
    if manifest.get("chunking") != config.chunking_params():
        raise IndexMismatch(
            f"index was built with chunking {manifest.get('chunking')}, config uses "
            f"{config.chunking_params()}; rebuild with: python -m rag index --rebuild"
        )


class Lexicon:
    """The index's terms: its analyzer's tokenize and its statistics' idf, for rag/'s checks."""

    def __init__(self, stats: TermStats) -> None:
        self.stats = stats
        self.tokenize = analyzer().tokenize

    def idf(self, terms: list[str]) -> dict[str, float]:
        """Lucene BM25 idf of the known terms (unknown terms are left out)."""
        return self.stats.idf(terms)


class CorpusIndex:
    """A loaded generation: manifest, term statistics and the chunk store it names."""

    def __init__(
        self,
        *,
        folder: Path,
        manifest: dict,
        store: ChunkStore,
        stats: TermStats,
        lines: LineCounts | None = None,
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.store = store
        self.stats = stats
        self.lexicon = Lexicon(stats)
        # The corpus's line-count table (page chrome); None for an upgraded index until rebuilt.
        self.lines = lines

    @property
    def size(self) -> int:
        """Chunks in the index."""
        return self.store.size

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

    def chunks_of(self, sources: list[str] | None = None) -> list[Chunk]:
        """The chunks of these documents (all when None), by document then position."""
        wanted = list(self.manifest["documents"]) if sources is None else list(sources)
        chunks = self.store.fetch(self.store.ids_of(wanted).tolist())
        order = {source: n for n, source in enumerate(wanted)}
        return sorted(chunks, key=lambda c: (order.get(c.source, len(order)), c.start, c.end))

    def disk_bytes(self) -> int:
        """Bytes of the files this generation uses: its own and its segments' (not texts/)."""
        files = list(self.manifest.get("files", {}).values())
        for item in self.manifest.get("store", {}).get("segments", []):
            files += item.get("files", {}).values()
        return sum(int(f["bytes"]) for f in files)

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
        for_update: bool = False,
        interrupted: str | None = None,
    ) -> CorpusIndex:
        """Load the live generation; raise IndexLoadError subclasses with a clear message.

        A build keeps the generation it replaced, but two builds in a row delete it: a reader
        whose folder vanished after it read CURRENT reads CURRENT once more.
        on_pointer_read (tests) runs between reading CURRENT and opening the folder.
        for_update (a build): large segment files are checked by size only and the vectors
        are memory-mapped, since a build reads a few rows of them.
        interrupted (a build): the generation an interrupted build wrote on top of; a Milvus
        store may hold part of that build's writes, so its size is not checked (the build
        rewrites those documents).
        """
        folder = cls._live_folder(config)
        if on_pointer_read is not None:
            on_pointer_read(folder)
        try:
            return cls._load_folder(
                folder, config, verify=verify, for_update=for_update, interrupted=interrupted
            )
        except IndexCorrupt:
            again = cls._live_folder(config)
            if again == folder and folder.is_dir():
                raise
            logger.info("generation %s was replaced while loading; loading %s", folder, again)
            return cls._load_folder(
                again, config, verify=verify, for_update=for_update, interrupted=interrupted
            )

    @staticmethod
    def _live_folder(config: IndexConfig) -> Path:
        folder = current_generation(config.index_dir)
        if folder is None:
            raise IndexNotFound(
                f"no index in {config.index_dir}; build one with: python -m rag index"
            )
        return folder

    @classmethod
    def _load_folder(
        cls,
        folder: Path,
        config: IndexConfig,
        *,
        verify: bool,
        for_update: bool = False,
        interrupted: str | None = None,
    ) -> CorpusIndex:
        manifest = read_manifest(folder)
        check_compatible(manifest, config)
        if verify:
            verify_files(folder, manifest)
            verify_store_files(config, manifest, quick=for_update)
        try:
            stats = TermStats.load(folder)
            lines = _load_lines(folder, config)
            store = open_store(config, folder, manifest, stats, mmap=for_update)
        except IndexLoadError:
            raise  # the engine's own verdict (busy, collection missing) stands
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise IndexCorrupt(
                f"cannot read index in {folder}: {exc}; run: python -m rag index --rebuild"
            ) from exc
        expected = manifest.get("chunk_count")
        size = _store_size(store, expected) if for_update else store.size
        # Only a shared store (Milvus) takes a build's writes before the build goes live; the
        # embedded engine's segments are the generation's own, so a mismatch there is damage.
        shared = store.engine == "milvus"
        half_written = shared and for_update and interrupted == folder.name
        if not (stats.chunks == expected and (size == expected or half_written)):
            # A killed build leaves pending.json: its next run repairs the store in place.
            fix = (
                "python -m rag index (an interrupted build left it half-written)"
                if shared and (Path(config.index_dir) / PENDING_FILE).is_file()
                else "python -m rag index --rebuild"
            )
            raise IndexCorrupt(
                f"index parts disagree: the {store.engine} store holds {size} chunks, "
                f"the term table {stats.chunks}, the manifest {expected}; run: {fix}"
            )
        return cls(folder=folder, manifest=manifest, store=store, stats=stats, lines=lines)


def _store_size(store: ChunkStore, expected: object) -> int:
    """The store's chunk count for a build: a cheap count when it says expected, else exact.

    An exact count loads a Milvus Lite collection (seconds per 100k chunks) that a build which
    writes nothing never needs; a disagreement is settled by the exact count, so a cheap count
    never makes a sound index look damaged.
    """
    count = store.cheap_size()
    return count if count == expected else store.size


def _load_lines(folder: Path, config: IndexConfig) -> LineCounts | None:
    """The generation's line-count table, None when it has none (or other parameters)."""
    from index.chrome import FILE_NAME

    if not (folder / FILE_NAME).is_file():
        return None
    try:
        return LineCounts.load(
            folder,
            min_repeats=config.boilerplate_min_repeats,
            max_words=config.boilerplate_max_words,
        )
    except ValueError as exc:
        logger.warning("line table ignored (%s): the next update reads every document", exc)
        return None


def open_store(
    config: IndexConfig, folder: Path, manifest: dict, stats: TermStats, *, mmap: bool = False
) -> ChunkStore:
    """The chunk store a generation's manifest names, opened with the config's connection."""
    entry = manifest.get("store", {})
    if entry.get("engine") == "milvus":
        from index.milvus_store import MilvusStore

        return MilvusStore.open(
            uri=config.milvus_uri, token=config.milvus_token, collection=entry["collection"]
        )
    from index.segments import EmbeddedStore

    ef_search = manifest.get("dense", {}).get("ef_search")
    return EmbeddedStore.open(
        config.index_dir, folder, entry, stats, ef_search=ef_search, mmap=mmap
    )


def verify_store_files(config: IndexConfig, manifest: dict, *, quick: bool = False) -> None:
    """Compare the segments' files with the checksums the manifest recorded (faiss engine)."""
    from index.segments import verify_segment

    for item in manifest.get("store", {}).get("segments", []):
        problem = verify_segment(config.index_dir, item, quick=quick)
        if problem:
            raise IndexCorrupt(f"{problem}; run: python -m rag index --rebuild")


def parse_json_without_collecting(text: str) -> object:
    """json.loads with the cycle collector paused: parsed JSON holds no cycles, and the
    million containers of a 1M-chunk index's manifest set off full collections while it is
    parsed (part of the 1.5-1.8 s of collections measured in a one-document update)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(text)
    finally:
        if was_enabled:
            gc.enable()


def read_manifest(folder: Path) -> dict:
    """The generation's manifest, checked against its own checksum."""
    manifest_path = folder / MANIFEST_FILE
    try:
        text = manifest_path.read_text(encoding="utf-8")
        manifest = parse_json_without_collecting(text)
    except FileNotFoundError as exc:
        raise IndexCorrupt(
            f"{manifest_path} is missing; run: python -m rag index --rebuild"
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(
            f"{manifest_path} is not valid JSON ({exc}); run: python -m rag index --rebuild"
        ) from exc
    if not (isinstance(manifest, dict) and sealed_text_holds(text)):
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
