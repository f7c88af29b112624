"""The Milvus engine of the chunk store: Milvus Lite (a local .db file), standalone or cluster.

    python -m pytest tests/test_milvus_store.py -q -x

One collection per index (`collection_name`), keyed by the stable chunk ids of `index.store`.
Dense search is by inner product of unit vectors; lexical search is Milvus's own BM25 over
`search_text` with its "english" analyzer (the project's analyzer still weighs terms elsewhere).

Facts about pymilvus 2.5 and milvus-lite 2.5.1 this module is built around:
- Lite accepts only FLAT, IVF_FLAT and AUTOINDEX dense indexes ("invalid index type: HNSW, local
  mode only support FLAT IVF_FLAT AUTOINDEX"), and ignores VARCHAR max_length (a server does
  not): rows are checked here so both behave alike.
- A search or a query asks for at most 16,384 rows; a query without limit is cut at 16,383
  rows without an error, so ids of documents are read with a query iterator.
- A Lite collection on disk is loaded into memory by the first query, search, insert, upsert
  or delete (all of them: milvus_lite's proxy loads before each), about 5 s per 100k chunks;
  describe, flush and collection statistics do not load it, and Lite's statistics row count
  is its storage's exact count (deletes included). Stores load on their first read, so a
  build that writes nothing (no change, only new file times) never pays the load.
- Lite parses no filter templates (`filter_params`: pymilvus then retries for minutes) and no
  line break in a string literal, escaped or not: sources with one are matched by a scan.
- Lite serves one process per .db file. A second process is refused, but the refusal deletes
  Lite's lock file, so a third one gets in and two servers share the file. This module holds
  its own lock beside the file (never deleted) and refuses early with `MilvusLiteBusy`.
  Served on a port (`index.milvus_serve`), one Lite core serves every process by URI and
  keeps collections loaded; it answers GetVersion with UNIMPLEMENTED, which is how a URI is
  known to lead to Lite (FLAT only).
- pymilvus shares one connection per (uri, token) in a process and closing any client closes
  it, so clients are shared here, counted, and closed with their last user.
- BM25 on a collection that never held a row fails ("NaN or Inf value"); an id repeated
  within one upsert request leaves two rows. Both are avoided here.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np

from index.analyzer import analyzer
from index.corpus_index import IndexLoadError, IndexProtected
from index.store import (
    Candidates,
    Chunk,
    StoreState,
    TermCounts,
    check_vectors,
    no_candidates,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

INSTALL_HINT = 'pip install "pymilvus==2.5.18" "milvus-lite==2.5.1" "setuptools<81"'
LITE_SUFFIX = ".db"
SERVER_SCHEMES = ("http://", "https://")
# Milvus Lite's own limits on the .db file name (milvus_lite.server.Server).
_LITE_NAME = re.compile(r"^[A-Za-z0-9.\-_]{1,36}$")
_COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
COLLECTION_PREFIX = "corpusqa_"

# Dense index by expected size. Below FLAT_MAX_CHUNKS brute force is exact and fast enough;
# at or above it a server gets HNSW (M 32, efConstruction 80, searched with ef 768). Lite
# refuses HNSW and offers only IVF_FLAT (loses recall, needs tuning) or an opaque AUTOINDEX,
# so Lite always gets FLAT: exact, and fine at the size Lite is meant for (about 1M chunks).
FLAT_MAX_CHUNKS = 100_000
LITE_DENSE_INDEX = "FLAT"
HNSW_PARAMS = {"M": 32, "efConstruction": 80}
HNSW_SEARCH_EF = 768
DENSE_METRIC = "IP"  # inner product of unit vectors = cosine, the score FAISS gives too
MIN_DIMENSION, MAX_DIMENSION = 2, 32_768  # a Milvus server's bounds on FLOAT_VECTOR dim

MAX_TOPK = 16_384  # Milvus's bound on a search's limit and on a query's limit
UPSERT_BATCH = 1_000  # rows per upsert request
ID_BATCH = 1_000  # ids per `id in [...]` query (fetch, vectors, lexical_scores)
# Chunks a read store keeps after fetching them (17 MB with their terms, measured on SQuAD
# chunks): a question's stuffing check reads its BM25 candidates, then its passages are read
# among them again.
CHUNK_CACHE_SIZE = 4_096
SOURCE_BATCH = 100  # sources per `source in [...]` filter (delete, ids_of)
ITERATOR_BATCH = 4_096  # rows per page of a query iterator
# An allowed set up to this many ids is one `id in [...]` filter (about 7 bytes an id; Lite
# takes 0.3 s to parse 100,000 ids and 3 s for 1M). A larger set is searched in slices of this
# size, one request per slice, and the slices' best are merged: exact, but slower.
ALLOWED_FILTER_MAX = 100_000
# Every request gets this timeout (an int: pymilvus ignores others), which also bounds
# pymilvus's retry loop (75 retries, about 3.5 minutes, on an unexpected server error).
REQUEST_TIMEOUT_S = 120
# Loading is the one request that grows with the collection: a 1M-chunk Lite collection was
# still loading when 120 s ran out (about 5 s per 100k chunks on smaller ones).
LOAD_TIMEOUT_S = 1800
# How long a start waits for the Lite server of a killed process to let go of the file.
LITE_EXIT_WAIT_S = 5.0

# Byte bounds of the VARCHAR fields (Milvus counts UTF-8 bytes; 65,535 is its maximum).
TEXT_MAX_BYTES = 65_535
SOURCE_MAX_BYTES = 4_096
LOCATOR_MAX_BYTES = 4_096
DATE_MAX_BYTES = 256

# The collection's fields: (name, pymilvus DataType name, field parameters). The vector's dim
# is added at creation; `sparse` is written by the BM25 function from `search_text`.
MILVUS_FIELDS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("id", "INT64", {"is_primary": True}),
    ("vector", "FLOAT_VECTOR", {}),
    (
        "search_text",
        "VARCHAR",
        {
            "max_length": TEXT_MAX_BYTES,
            "enable_analyzer": True,
            "analyzer_params": {"type": "english"},
        },
    ),
    ("sparse", "SPARSE_FLOAT_VECTOR", {}),
    ("source", "VARCHAR", {"max_length": SOURCE_MAX_BYTES}),
    ("title", "VARCHAR", {"max_length": TEXT_MAX_BYTES}),
    ("date", "VARCHAR", {"max_length": DATE_MAX_BYTES}),
    ("start", "INT64", {}),
    ("end", "INT64", {}),
    ("text", "VARCHAR", {"max_length": TEXT_MAX_BYTES}),
    ("sentences", "JSON", {}),  # list of [start, end]
    ("n_tokens", "INT64", {}),
    ("page", "INT64", {}),  # -1 for None
    ("locator", "VARCHAR", {"max_length": LOCATOR_MAX_BYTES}),
    ("ocr", "BOOL", {}),
)
_VARCHAR_BOUNDS = {
    name: params["max_length"] for name, kind, params in MILVUS_FIELDS if kind == "VARCHAR"
}
BM25_FUNCTION = "bm25"
CHUNK_FIELDS = tuple(
    name for name, _, _ in MILVUS_FIELDS if name not in ("vector", "sparse")
)  # what fetch reads back
NO_PAGE = -1


class CollectionNotFound(IndexLoadError):
    """The index's Milvus collection does not exist (dropped, or another server)."""


class MilvusLiteBusy(IndexProtected, RuntimeError):
    """Another process has the Milvus Lite file open; Lite serves one process per file."""


class _DropIteratorNoise(logging.Filter):
    """Drops pymilvus's warning that Lite gives query iterators no MVCC timestamp (harmless)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the mvccTs warning."""
        return "mvccTs" not in record.getMessage()


logging.getLogger("pymilvus.orm.iterator").addFilter(_DropIteratorNoise())


# --- connections -------------------------------------------------------------------------


@dataclass
class _Connection:
    """One client shared by every store and writer of a (uri, token) in this process."""

    client: Any
    lite_path: Path | None
    lock: IO[str] | None
    users: int = 0
    # Milvus Lite behind the URI: opened as a file, or served (index.milvus_serve).
    lite: bool = False


_CONNECTIONS: dict[tuple[str, str], _Connection] = {}
_CONNECTIONS_LOCK = threading.Lock()
# Writes per (connection key, collection) in this process: a store's cached size is stale
# once this moves.
_WRITES: dict[tuple[tuple[str, str], str], int] = {}


def _pymilvus() -> Any:
    """The pymilvus module, or ImportError with the install command."""
    try:
        import pymilvus
    except ImportError as exc:
        raise ImportError(
            f"the milvus store needs pymilvus; install it with: {INSTALL_HINT}"
        ) from exc
    return pymilvus


def is_lite_uri(uri: str) -> bool:
    """True for a Milvus Lite .db path, False for an http(s) server; ValueError otherwise."""
    if not uri or not uri.strip():
        raise ValueError(
            "milvus uri is empty: give a .db path (Milvus Lite) or http(s)://host:port"
        )
    if uri.startswith(SERVER_SCHEMES):
        return False
    if "://" in uri or not uri.endswith(LITE_SUFFIX):
        raise ValueError(
            f"milvus uri {uri!r} is neither a local path ending in {LITE_SUFFIX} (Milvus Lite) "
            "nor http(s)://host:port (a server)"
        )
    name = Path(uri).name
    if not _LITE_NAME.match(name):
        raise ValueError(
            f"Milvus Lite file name {name!r} must be at most 36 characters of letters, digits, "
            "'.', '-' and '_'"
        )
    return True


def _connection_key(uri: str, token: str) -> tuple[str, str]:
    """The cache key of a uri: a resolved path for Lite, the url without a trailing slash."""
    if is_lite_uri(uri):
        return str(Path(uri).expanduser().resolve()), ""
    return uri.rstrip("/"), token


def lock_lite(path: Path) -> IO[str]:
    """Hold this module's lock on a Lite file, or MilvusLiteBusy."""
    import fcntl

    # Held open for the connection's life, so no context manager.
    handle = open(path.parent / f".{path.name}.corpusqa.lock", "a+", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise MilvusLiteBusy(
            f"{path} is open in another process (Milvus Lite serves one process per file); "
            "close it, or serve the file to several processes (python -m rag milvus-lite --db "
            "FILE, then --milvus-uri http://127.0.0.1:19530), or use a Milvus server"
        ) from None
    return handle


def _wait_for_lite_exit(path: Path) -> None:
    """Wait (a few seconds at most) while a process holds Milvus Lite's own lock on the file.

    A Lite server waits on that lock while its owner lives and takes it when the owner dies
    (kill -9), until it gets the CPU to let go and exit. A start in that moment is refused,
    and the refused start deletes the lock file (so a third server could get in).
    """
    import fcntl

    lock = path.parent / f".{path.name}.lock"  # milvus_lite.server.Server's name for it
    if not lock.exists():
        return
    deadline = time.monotonic() + LITE_EXIT_WAIT_S
    with open(lock, "a", encoding="utf-8") as handle:
        while True:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                if time.monotonic() > deadline:
                    return  # someone else's: the start below reports it
                time.sleep(0.05)
                continue
            fcntl.lockf(handle, fcntl.LOCK_UN)
            return


def _new_client(key: tuple[str, str], *, lite: bool) -> Any:
    """A MilvusClient for the key, with Lite's start-up warning silenced."""
    pymilvus = _pymilvus()
    uri, token = key
    try:
        with warnings.catch_warnings():
            # milvus_lite imports pkg_resources (deprecated) when it starts its server.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            return pymilvus.MilvusClient(uri=uri, token=token, timeout=REQUEST_TIMEOUT_S)
    except pymilvus.exceptions.MilvusException as exc:
        if lite:
            raise MilvusLiteBusy(
                f"Milvus Lite could not open {uri} ({exc.message}); is another program using it?"
            ) from exc
        raise RuntimeError(f"cannot connect to Milvus at {uri}: {exc.message}") from exc


def _acquire(uri: str, token: str) -> tuple[tuple[str, str], Any]:
    """The shared client of (uri, token), started on first use; pair with _release."""
    key = _connection_key(uri, token)
    with _CONNECTIONS_LOCK:
        conn = _CONNECTIONS.get(key)
        if conn is None:
            lite_path = Path(key[0]) if is_lite_uri(uri) else None
            if lite_path is not None and not lite_path.parent.is_dir():
                raise ValueError(
                    f"folder of the Milvus Lite file does not exist: {lite_path.parent}"
                )
            lock = lock_lite(lite_path) if lite_path is not None else None
            try:
                if lite_path is not None:
                    _wait_for_lite_exit(lite_path)
                client = _new_client(key, lite=lite_path is not None)
            except BaseException:
                if lock is not None:
                    lock.close()
                raise
            lite = lite_path is not None or _serves_lite(client)
            conn = _CONNECTIONS[key] = _Connection(
                client=client, lite_path=lite_path, lock=lock, lite=lite
            )
        conn.users += 1
        return key, conn.client


def _serves_lite(client: Any) -> bool:
    """Whether a server URI leads to Milvus Lite served on a port (it has no GetVersion).

    Lite refuses HNSW, so an index built there gets FLAT like a Lite file.
    """
    quiet = logging.getLogger("pymilvus.decorators")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # pymilvus logs the refusal as an error
    try:
        client.get_server_version(timeout=REQUEST_TIMEOUT_S)
    except Exception as exc:  # grpc's and pymilvus's own types
        return "UNIMPLEMENTED" in str(exc).upper()
    finally:
        quiet.setLevel(level)
    return False


def is_lite(key: tuple[str, str]) -> bool:
    """Whether the open connection of key is to Milvus Lite (a file, or served)."""
    with _CONNECTIONS_LOCK:
        conn = _CONNECTIONS.get(key)
        return conn is not None and conn.lite


def _release(key: tuple[str, str]) -> None:
    """Give back a client; the last user closes it (and stops the Lite server)."""
    with _CONNECTIONS_LOCK:
        conn = _CONNECTIONS.get(key)
        if conn is None:
            return
        conn.users -= 1
        if conn.users > 0:
            return
        del _CONNECTIONS[key]
        conn.client.close()
        if conn.lite_path is not None:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(str(conn.lite_path))
        if conn.lock is not None:
            conn.lock.close()


def _note_write(key: tuple[str, str], collection: str) -> None:
    """Mark a collection as changed in this process (stores recount their size)."""
    with _CONNECTIONS_LOCK:
        _WRITES[(key, collection)] = _WRITES.get((key, collection), 0) + 1


# --- names, filters, rows ----------------------------------------------------------------


def collection_name(index_dir: Path) -> str:
    """The collection of an index folder: "corpusqa_" and 16 hex of its resolved path's SHA-256."""
    digest = hashlib.sha256(str(Path(index_dir).resolve()).encode("utf-8")).hexdigest()
    return COLLECTION_PREFIX + digest[:16]


def _check_collection(collection: str) -> None:
    """ValueError unless the name is a valid Milvus collection name."""
    if not _COLLECTION_NAME.match(collection):
        raise ValueError(
            f"collection name {collection!r} must start with a letter or '_' and hold only "
            "letters, digits and '_' (at most 255)"
        )


def _literal(value: str) -> str:
    """A Milvus string literal (Lite and server parse `\\\\` and `\\"`, nothing else reliably)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _filterable(source: str) -> bool:
    """Whether a source can be written in a filter (Lite takes no line break in a literal)."""
    return "\n" not in source and "\r" not in source


def _ids_filter(ids: Iterable[int]) -> str:
    """The expression `id in [...]`."""
    return "id in [" + ",".join(str(int(i)) for i in ids) + "]"


def _sources_filter(sources: Sequence[str]) -> str:
    """The expression `source in [...]`."""
    return "source in [" + ",".join(_literal(s) for s in sources) + "]"


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most size items."""
    for begin in range(0, len(items), size):
        yield items[begin : begin + size]


def _check_row(chunk: Chunk) -> None:
    """ValueError when a chunk does not fit the collection's fields."""
    if not 0 < chunk.id < 1 << 63:
        raise ValueError(f"chunk of {chunk.source!r} has id {chunk.id}, not a positive int64")
    for name, bound in _VARCHAR_BOUNDS.items():
        size = len(getattr(chunk, name).encode("utf-8"))
        if size > bound:
            raise ValueError(
                f"chunk {chunk.id} of {chunk.source!r}: {name} is {size} bytes, "
                f"the collection holds at most {bound}"
            )


def _row(chunk: Chunk, vector: np.ndarray) -> dict[str, Any]:
    """The collection row of a chunk."""
    return {
        "id": chunk.id,
        "vector": vector.tolist(),
        "search_text": chunk.search_text,
        "source": chunk.source,
        "title": chunk.title,
        "date": chunk.date,
        "start": chunk.start,
        "end": chunk.end,
        "text": chunk.text,
        "sentences": [[int(s), int(e)] for s, e in chunk.sentences],
        "n_tokens": chunk.n_tokens,
        "page": NO_PAGE if chunk.page is None else chunk.page,
        "locator": chunk.locator,
        "ocr": bool(chunk.ocr),
    }


def _chunk(row: dict[str, Any]) -> Chunk:
    """The chunk of a collection row."""
    page = int(row["page"])
    return Chunk(
        id=int(row["id"]),
        source=row["source"],
        title=row["title"],
        date=row["date"],
        start=int(row["start"]),
        end=int(row["end"]),
        text=row["text"],
        search_text=row["search_text"],
        sentences=tuple((int(s), int(e)) for s, e in row["sentences"]),
        n_tokens=int(row["n_tokens"]),
        page=None if page == NO_PAGE else page,
        locator=row["locator"],
        ocr=bool(row["ocr"]),
    )


def _hits(result: Any) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores) of a one-query search result, best first."""
    hits = result[0] if result else []
    ids = np.fromiter((hit["id"] for hit in hits), dtype=np.int64, count=len(hits))
    scores = np.fromiter((hit["distance"] for hit in hits), dtype=np.float32, count=len(hits))
    return ids, scores


def _best(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of several (ids, scores) slices."""
    if len(parts) == 1:
        return parts[0]
    ids = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts])
    order = np.argsort(-scores, kind="stable")[:k]
    return ids[order], scores[order]


# --- schema ------------------------------------------------------------------------------


def _schema(client: Any, dimension: int) -> Any:
    """The collection schema of MILVUS_FIELDS with the BM25 function."""
    pymilvus = _pymilvus()
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    for name, kind, params in MILVUS_FIELDS:
        extra = {"dim": dimension} if name == "vector" else {}
        schema.add_field(name, pymilvus.DataType[kind], **params, **extra)
    schema.add_function(
        pymilvus.Function(
            name=BM25_FUNCTION,
            function_type=pymilvus.FunctionType.BM25,
            input_field_names=["search_text"],
            output_field_names=["sparse"],
        )
    )
    return schema


def dense_index_kind(*, lite: bool, expected_chunks: int) -> str:
    """The dense index type for a collection of about expected_chunks chunks."""
    if lite or expected_chunks < FLAT_MAX_CHUNKS:
        return LITE_DENSE_INDEX if lite else "FLAT"
    return "HNSW"


def _index_params(client: Any, kind: str) -> Any:
    """Index parameters: the dense index of this kind and BM25's sparse inverted index."""
    params = client.prepare_index_params()
    params.add_index(
        field_name="vector",
        index_name="vector",
        index_type=kind,
        metric_type=DENSE_METRIC,
        params=HNSW_PARAMS if kind == "HNSW" else {},
    )
    params.add_index(
        field_name="sparse",
        index_name="sparse",
        index_type="SPARSE_INVERTED_INDEX",
        metric_type="BM25",
    )
    return params


def _described_dimension(client: Any, collection: str) -> int:
    """The vector dimension of an existing collection; ValueError if it is not ours."""
    fields = {
        f["name"]: f
        for f in client.describe_collection(collection, timeout=REQUEST_TIMEOUT_S)["fields"]
    }
    missing = [name for name, _, _ in MILVUS_FIELDS if name not in fields]
    if missing:
        raise ValueError(
            f"Milvus collection {collection!r} lacks the fields {missing}: not a corpusqa "
            "collection, or one from another version; rebuild with: python -m rag index --rebuild"
        )
    return int(fields["vector"]["params"]["dim"])


def _ensure_loaded(client: Any, collection: str) -> None:
    """Load the collection into memory when it is not (a reopened Lite file is not)."""
    state = client.get_load_state(collection, timeout=REQUEST_TIMEOUT_S)
    if str(state.get("state")) != "Loaded":
        client.load_collection(collection, timeout=LOAD_TIMEOUT_S)


def _count(client: Any, collection: str) -> int:
    """Exact live rows (count(*) honours deletes; collection stats may not on a server)."""
    rows = client.query(
        collection, filter="", output_fields=["count(*)"], timeout=REQUEST_TIMEOUT_S
    )
    return int(rows[0]["count(*)"])


def _row_count(client: Any, collection: str) -> int:
    """Exact live rows of a Lite collection without loading it: count(*) when it is loaded
    (milliseconds), else the statistics' row count, its storage's exact count (about 0.15 s
    at 100k chunks, measured on a served collection)."""
    state = client.get_load_state(collection, timeout=REQUEST_TIMEOUT_S)
    if str(state.get("state")) == "Loaded":
        return _count(client, collection)
    stats = client.get_collection_stats(collection, timeout=REQUEST_TIMEOUT_S)
    return int(stats["row_count"])


def _retry_loaded(client: Any, collection: str, call: Callable[[], T]) -> T:
    """call(), and once more after loading the collection if it was refused as not loaded."""
    try:
        return call()
    except _pymilvus().exceptions.MilvusException as exc:
        # A server refuses a delete by filter or a count on a released collection.
        if "not loaded" not in str(exc.message).lower():
            raise
    logger.info("Milvus collection %s was not loaded: loading it", collection)
    _ensure_loaded(client, collection)
    return call()


def _dense_kind(client: Any, collection: str) -> str:
    """The index type of the collection's vector field."""
    info = client.describe_index(collection, index_name="vector", timeout=REQUEST_TIMEOUT_S)
    return str(info.get("index_type", "")) if info else ""


def _iterate_ids(client: Any, collection: str, expression: str) -> Iterator[int]:
    """Every id matching an expression, page by page (past the 16,384-row query cap)."""
    iterator = client.query_iterator(
        collection,
        batch_size=ITERATOR_BATCH,
        filter=expression,
        output_fields=["id"],
        timeout=REQUEST_TIMEOUT_S,
    )
    try:
        while page := iterator.next():
            yield from (int(row["id"]) for row in page)
    finally:
        iterator.close()


def _scan_ids(client: Any, collection: str, sources: set[str]) -> Iterator[int]:
    """Ids of sources that no filter can name, by reading every row's source."""
    logger.warning("reading every source of %s to match %d unusual names", collection, len(sources))
    iterator = client.query_iterator(
        collection,
        batch_size=ITERATOR_BATCH,
        filter="",
        output_fields=["id", "source"],
        timeout=REQUEST_TIMEOUT_S,
    )
    try:
        while page := iterator.next():
            yield from (int(row["id"]) for row in page if row["source"] in sources)
    finally:
        iterator.close()


def _source_ids(client: Any, collection: str, sources: Iterable[str]) -> np.ndarray:
    """Sorted unique ids of the chunks of these sources."""
    wanted = sorted(set(sources))
    plain = [s for s in wanted if _filterable(s)]
    odd = {s for s in wanted if not _filterable(s)}
    found: list[int] = []
    for batch in _batches(plain, SOURCE_BATCH):
        found.extend(_iterate_ids(client, collection, _sources_filter(batch)))
    if odd:
        found.extend(_scan_ids(client, collection, odd))
    return np.unique(np.asarray(found, dtype=np.int64))


def _unique_ids(ids: Sequence[int]) -> list[int]:
    """Distinct ids in first-seen order."""
    return list(dict.fromkeys(int(i) for i in ids))


# --- read side ---------------------------------------------------------------------------


class ChunkCache:
    """The chunks a store read last, by id, with their analyzer terms once computed.

    A chunk id hashes the chunk's document, span and texts, so a cached chunk is never out of
    date; only its removal could be missed, so the cache empties whenever a writer of this
    process has written (`sync`). Another process's update changes the index's manifest, and
    the chat then opens a new store. Thread-safe: the chat answers several questions at once.
    """

    def __init__(self, size: int = CHUNK_CACHE_SIZE) -> None:
        if size < 0:
            raise ValueError(f"cache size must be >= 0, got {size}")
        self._size = size
        self._items: OrderedDict[int, tuple[Chunk, tuple[str, ...] | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._writes: int | None = None

    def __len__(self) -> int:
        return len(self._items)

    def sync(self, writes: int) -> None:
        """Empty the cache if this process wrote since it was last synced."""
        with self._lock:
            if writes != self._writes:
                self._items.clear()
                self._writes = writes

    def chunks(self, ids: Iterable[int]) -> dict[int, Chunk]:
        """The cached chunks among ids."""
        with self._lock:
            found = {}
            for i in ids:
                item = self._items.get(i)
                if item is not None:
                    self._items.move_to_end(i)
                    found[i] = item[0]
            return found

    def add(self, chunks: Iterable[Chunk]) -> None:
        """Keep these chunks (the oldest go past the size)."""
        with self._lock:
            for chunk in chunks:
                old = self._items.get(chunk.id)
                self._items[chunk.id] = (chunk, old[1] if old else None)
                self._items.move_to_end(chunk.id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def terms(self, chunk: Chunk, tokenize: Callable[[str], list[str]]) -> tuple[str, ...]:
        """The analyzer terms of the chunk's searchable text (computed once while cached)."""
        with self._lock:
            item = self._items.get(chunk.id)
            if item is not None and item[1] is not None:
                return item[1]
        terms = tuple(sys.intern(t) for t in tokenize(chunk.search_text))
        with self._lock:
            if chunk.id in self._items:
                self._items[chunk.id] = (chunk, terms)
        return terms


class MilvusStore:
    """A Milvus collection as a ChunkStore: candidate search and chunks by id."""

    engine = "milvus"

    def __init__(
        self,
        *,
        key: tuple[str, str],
        client: Any,
        collection: str,
        dimension: int,
        dense_index: str,
        lite: bool = False,
    ) -> None:
        self._key = key
        self._client = client
        self.collection = collection
        self.dimension = dimension
        self.dense_index = dense_index
        self._lite = lite
        self._loaded = False
        self._size: tuple[int, int] | None = None  # (write count when counted, rows)
        self._closed = False
        self._cache = ChunkCache()

    @classmethod
    def open(cls, *, uri: str, token: str = "", collection: str) -> MilvusStore:
        """Open an existing collection; CollectionNotFound when there is none of that name."""
        _check_collection(collection)
        if is_lite_uri(uri) and not Path(uri).expanduser().is_file():
            raise CollectionNotFound(
                f"no Milvus Lite file at {uri}; rebuild with: python -m rag index --rebuild"
            )
        key, client = _acquire(uri, token)
        try:
            if not client.has_collection(collection, timeout=REQUEST_TIMEOUT_S):
                raise CollectionNotFound(
                    f"Milvus at {uri} has no collection {collection!r} (dropped, or another "
                    "server?); rebuild with: python -m rag index --rebuild"
                )
            dimension = _described_dimension(client, collection)
            kind = _dense_kind(client, collection)
        except BaseException:
            _release(key)
            raise
        return cls(
            key=key, client=client, collection=collection, dimension=dimension,
            dense_index=kind, lite=is_lite(key),
        )  # fmt: skip

    def load(self) -> None:
        """Load the collection into memory now; every read does on first use."""
        if not self._loaded:
            _ensure_loaded(self._client, self.collection)
            self._loaded = True

    @property
    def size(self) -> int:
        """Live chunks (counted once, recounted after a writer of this process wrote)."""
        writes = _WRITES.get((self._key, self.collection), 0)
        if self._size is None or self._size[0] != writes:
            self.load()
            self._size = (writes, _count(self._client, self.collection))
        return self._size[1]

    def cheap_size(self) -> int:
        """Live chunks without loading a Lite collection (its storage's count); else size."""
        if self._lite:
            return _row_count(self._client, self.collection)
        return self.size  # a server's statistics count deleted rows until compaction

    def _is_empty(self) -> bool:
        """Whether the collection holds no row now (an empty count is never trusted from cache).

        BM25 on a collection that never held a row fails in Lite ("Invalid sparse row: NaN or
        Inf value": its average document length is 0), so lexical requests are skipped then.
        """
        if self.size > 0:
            return False
        self._size = None
        return self.size == 0

    def search(
        self,
        *,
        text: str | None,
        vector: np.ndarray | None,
        k: int,
        allowed: np.ndarray | None = None,
    ) -> Candidates:
        """Top-k dense candidates for vector and top-k BM25 ones for text (empty side for None)."""
        if not 1 <= k <= MAX_TOPK:
            raise ValueError(f"k must be between 1 and {MAX_TOPK}, got {k}")
        filters = self._allowed_filters(allowed)
        dense = self._dense(vector, k, filters) if vector is not None else no_candidates()
        lexical = self._lexical(text, k, filters) if text is not None else no_candidates()
        return Candidates(dense[0], dense[1], lexical[0], lexical[1])

    def _allowed_filters(self, allowed: np.ndarray | None) -> list[str]:
        """One filter per slice of allowed ([""] for no limit, [] for nothing allowed)."""
        if allowed is None:
            return [""]
        ids = np.asarray(allowed, dtype=np.int64)
        if ids.ndim != 1:
            raise ValueError(f"allowed must be a 1-D array of chunk ids, got shape {ids.shape}")
        return [_ids_filter(part.tolist()) for part in _batches(ids, ALLOWED_FILTER_MAX)]

    def _dense(
        self, vector: np.ndarray, k: int, filters: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dense (ids, inner products), one request per filter."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dimension:
            raise ValueError(
                f"query vector has {query.shape[0]} dimensions, the index {self.dimension}"
            )
        params: dict[str, Any] = {"metric_type": DENSE_METRIC, "params": {}}
        if self.dense_index == "HNSW":
            params["params"] = {"ef": max(HNSW_SEARCH_EF, k)}
        parts = [self._request(query.tolist(), "vector", k, expr, params) for expr in filters]
        return _best(parts, k) if parts else no_candidates()

    def _lexical(self, text: str, k: int, filters: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """BM25 (ids, scores), one request per filter; empty for a text without characters."""
        if not text.strip() or self._is_empty():
            return no_candidates()
        params = {"metric_type": "BM25", "params": {}}
        parts = [self._request(text, "sparse", k, expr, params) for expr in filters]
        return _best(parts, k) if parts else no_candidates()

    def _request(
        self, data: Any, field: str, k: int, expression: str, params: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        """One search request on a field."""
        self.load()
        result = self._client.search(
            self.collection,
            data=[data],
            anns_field=field,
            limit=k,
            filter=expression,
            search_params=params,
            timeout=REQUEST_TIMEOUT_S,
        )
        return _hits(result)

    def _rows(self, ids: Sequence[int], fields: Sequence[str]) -> dict[int, dict[str, Any]]:
        """Rows by id, read in batches of ID_BATCH."""
        self.load()
        rows: dict[int, dict[str, Any]] = {}
        for batch in _batches(_unique_ids(ids), ID_BATCH):
            found = self._client.query(
                self.collection,
                filter=_ids_filter(batch),
                output_fields=list(fields),
                limit=len(batch),
                timeout=REQUEST_TIMEOUT_S,
            )
            rows.update((int(row["id"]), row) for row in found)
        return rows

    def fetch(self, ids: Sequence[int]) -> list[Chunk]:
        """The chunks with these ids, in the order asked; ids no longer stored are left out."""
        self._cache.sync(_WRITES.get((self._key, self.collection), 0))
        wanted = [int(i) for i in ids]
        found = self._cache.chunks(wanted)
        missing = [i for i in wanted if i not in found]
        if missing:
            read = [_chunk(row) for row in self._rows(missing, CHUNK_FIELDS).values()]
            self._cache.add(read)
            found.update((c.id, c) for c in read)
        return [found[i] for i in wanted if i in found]

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored unit vectors of these ids, rows in the order asked; KeyError for an unknown id."""
        rows = self._rows(ids, ("id", "vector"))
        missing = next((int(i) for i in ids if int(i) not in rows), None)
        if missing is not None:
            raise KeyError(f"chunk id {missing} is not in Milvus collection {self.collection!r}")
        out = np.zeros((len(ids), self.dimension), dtype=np.float32)
        for row, i in enumerate(ids):
            out[row] = rows[int(i)]["vector"]
        return out

    def lexical_scores(self, text: str, ids: Sequence[int]) -> np.ndarray:
        """Milvus's BM25 score of text for each id (0 where no term matches)."""
        scores = np.zeros(len(ids), dtype=np.float32)
        if not text.strip() or not len(ids) or self._is_empty():
            return scores
        found: dict[int, float] = {}
        params = {"metric_type": "BM25", "params": {}}
        for batch in _batches(_unique_ids(ids), ID_BATCH):
            hit_ids, hit_scores = self._request(
                text, "sparse", len(batch), _ids_filter(batch), params
            )
            found.update(zip(hit_ids.tolist(), hit_scores.tolist(), strict=True))
        for row, i in enumerate(ids):
            scores[row] = found.get(int(i), 0.0)
        return scores

    def query_term_counts(self, text: str, ids: Sequence[int]) -> TermCounts:
        """Per id: length in analyzer terms and occurrences of text's terms (from its text)."""
        tokenize = analyzer().tokenize
        chunks = {c.id: c for c in self.fetch(ids)}
        terms = [
            self._cache.terms(chunks[int(i)], tokenize) if int(i) in chunks else () for i in ids
        ]
        return TermCounts.of_terms(terms, text)

    def ids_of(self, sources: Iterable[str]) -> np.ndarray:
        """Sorted chunk ids of the documents with these sources."""
        self.load()
        return _source_ids(self._client, self.collection, sources)

    def close(self) -> None:
        """Give back the shared connection (idempotent)."""
        if not self._closed:
            self._closed = True
            _release(self._key)


# --- write side --------------------------------------------------------------------------


class MilvusWriter:
    """Writes one build into a Milvus collection: deletes, upserts, then finish.

    It never loads the collection itself: Lite loads it on the first write, and a server
    keeps it loaded (a refusal as not loaded is answered by loading and asking again).
    """

    def __init__(
        self,
        *,
        key: tuple[str, str],
        client: Any,
        collection: str,
        dimension: int,
        lite: bool = False,
    ) -> None:
        self._key = key
        self._client = client
        self.collection = collection
        self.dimension = dimension
        self._lite = lite
        self._closed = False
        # Sources whose chunks this writer deleted and has not written since: their new
        # chunks cannot be in the collection, so they are inserted, not upserted. An upsert
        # looks up every id first: 12 rows took 120-130 ms on a 21k-row Lite collection and
        # 360-490 ms on 100k, against 7-10 ms to insert them.
        self._emptied: set[str] = set()

    @classmethod
    def create(
        cls,
        *,
        uri: str,
        token: str = "",
        collection: str,
        dimension: int,
        expected_chunks: int,
    ) -> MilvusWriter:
        """Open the collection, created with its indexes when absent; ValueError on another dim."""
        _check_collection(collection)
        if not MIN_DIMENSION <= dimension <= MAX_DIMENSION:
            raise ValueError(
                f"dimension must be between {MIN_DIMENSION} and {MAX_DIMENSION}, got {dimension}"
            )
        if expected_chunks < 0:
            raise ValueError(f"expected_chunks must be >= 0, got {expected_chunks}")
        if is_lite_uri(uri):
            Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
        key, client = _acquire(uri, token)
        try:
            _open_or_create(
                client,
                collection,
                dimension=dimension,
                lite=is_lite(key),
                expected_chunks=expected_chunks,
            )
        except BaseException:
            _release(key)
            raise
        return cls(
            key=key, client=client, collection=collection, dimension=dimension,
            lite=is_lite(key),
        )  # fmt: skip

    @staticmethod
    def drop(*, uri: str, token: str = "", collection: str) -> bool:
        """Delete a collection and its data (for --rebuild); False when there was none."""
        _check_collection(collection)
        if is_lite_uri(uri) and not Path(uri).expanduser().is_file():
            return False
        key, client = _acquire(uri, token)
        try:
            if not client.has_collection(collection, timeout=REQUEST_TIMEOUT_S):
                return False
            client.drop_collection(collection, timeout=REQUEST_TIMEOUT_S)
            _note_write(key, collection)
            logger.info("dropped Milvus collection %s", collection)
            return True
        finally:
            _release(key)

    def delete_documents(self, sources: Sequence[str]) -> None:
        """Remove every chunk of these documents (idempotent)."""
        if isinstance(sources, str):
            raise ValueError("sources must be a sequence of source names, not one string")
        wanted = sorted(set(sources))
        plain = [s for s in wanted if _filterable(s)]
        delete = self._client.delete
        for batch in _batches(plain, SOURCE_BATCH):
            self._call(
                delete, self.collection, filter=_sources_filter(batch), timeout=REQUEST_TIMEOUT_S
            )
        odd = {s for s in wanted if not _filterable(s)}
        if odd:
            ids = self._call(lambda: list(_scan_ids(self._client, self.collection, odd)))
            for batch in _batches(ids, ID_BATCH):
                self._call(delete, self.collection, ids=list(batch), timeout=REQUEST_TIMEOUT_S)
        if wanted:
            _note_write(self._key, self.collection)
        self._emptied.update(wanted)

    def upsert(
        self,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        *,
        terms: Sequence[list[str]] | None = None,
    ) -> None:
        """Add chunks with their vectors, replacing any chunk with the same id (idempotent).

        terms are not used: Milvus's own analyzer indexes the text.
        """
        vectors = check_vectors(chunks, vectors)
        if not len(chunks):
            return
        if vectors.shape[1] != self.dimension:
            raise ValueError(
                f"vectors have {vectors.shape[1]} dimensions, the collection {self.dimension}"
            )
        # Milvus keeps both rows of an id repeated within one request: keep the last one only.
        last = {chunk.id: row for row, chunk in enumerate(chunks)}
        for chunk in chunks:
            _check_row(chunk)
        sources = {chunks[i].source for i in last.values()}
        write = self._client.insert if sources <= self._emptied else self._client.upsert
        # Rows are built one request at a time: as Python lists, 1M rows' vectors alone took
        # over 9 GB (a 1M-chunk build ran out of memory on 24 GB).
        for batch in _batches(list(last.values()), UPSERT_BATCH):
            rows = [_row(chunks[i], vectors[i]) for i in batch]
            self._call(write, self.collection, rows, timeout=REQUEST_TIMEOUT_S)
        self._emptied -= sources
        _note_write(self._key, self.collection)

    def _call(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A request, asked again after loading the collection if a server refused it unloaded."""
        return _retry_loaded(self._client, self.collection, lambda: call(*args, **kwargs))

    def _rows(self) -> int:
        """Exact live rows; on Lite the storage's count, which needs no load."""
        if self._lite:
            return _row_count(self._client, self.collection)
        return self._call(_count, self._client, self.collection)

    def finish(self, generation: Path) -> StoreState:
        """Flush every write (durable and visible) and give back the connection."""
        try:
            self._client.flush(self.collection, timeout=REQUEST_TIMEOUT_S)
            _note_write(self._key, self.collection)
            manifest = {
                "engine": "milvus",
                "collection": self.collection,
                "dimension": self.dimension,
                "dense_index": _dense_kind(self._client, self.collection),
                "chunks": self._rows(),
            }
        finally:
            self.close()
        logger.info("Milvus collection %s: %d chunks", self.collection, manifest["chunks"])
        return StoreState(manifest=manifest, files=[])

    def close(self) -> None:
        """Give back the shared connection without flushing (idempotent)."""
        if not self._closed:
            self._closed = True
            _release(self._key)


def _open_or_create(
    client: Any, collection: str, *, dimension: int, lite: bool, expected_chunks: int
) -> None:
    """Check an existing collection's dimension, or create it with its indexes."""
    if client.has_collection(collection, timeout=REQUEST_TIMEOUT_S):
        found = _described_dimension(client, collection)
        if found != dimension:
            raise ValueError(
                f"Milvus collection {collection!r} holds {found}-dimensional vectors, the "
                f"embedding model gives {dimension}; rebuild with: python -m rag index --rebuild"
            )
        return
    kind = dense_index_kind(lite=lite, expected_chunks=expected_chunks)
    client.create_collection(
        collection,
        schema=_schema(client, dimension),
        index_params=_index_params(client, kind),
        consistency_level="Strong",
        timeout=REQUEST_TIMEOUT_S,
    )
    logger.info("created Milvus collection %s (%s, dimension %d)", collection, kind, dimension)
