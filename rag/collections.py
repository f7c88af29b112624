"""Named collections: each its own corpus folder and index, settings in one file per collection.

    python -m rag collections                        # name, corpus folder, documents
    python -m rag index --collection notes --corpus ~/notes
    python -m rag ask --collection notes "When was the meeting moved?"

A collection's settings live in `<data>/collections/<name>.json`:
`{"name", "corpus_dir", "index_dir", "created", "settings": {"top_k": 5, ...}}`. Relative
paths in the file are relative to the data folder; new collections record their corpus folder
as an absolute path and keep their index in `<data>/collections/<name>/index`. The collection
"default" is `corpus/` with `<data>/index` (the paths of a single-corpus install) and exists
without a file; a file named default.json, written when its corpus is changed, overrides it.
Trash is `<data>/trash` for all of them (it is kept per corpus folder already).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from index.corpus_index import IndexLoadError, current_generation, read_manifest
from rag.config import Config

if TYPE_CHECKING:
    from rag.pipeline import Pipeline

DEFAULT_COLLECTION = "default"
NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,40}")
FOLDER = "collections"
# Config fields a collection's file may set, with the JSON types they take.
SETTINGS: dict[str, tuple[type, ...]] = {
    "top_k": (int,),
    "report_depth": (int,),
    "retrieval": (str,),
    "dense_weight": (int, float),
    "answer_sentences": (int,),
    "min_evidence": (int, float),
}
# The default collection's corpus when no file says otherwise (relative to the working folder,
# as `rag index` without flags has always used it).
DEFAULT_CORPUS = Path("corpus")


class UnknownCollection(ValueError):
    """A collection name that has no settings file (and is not the default)."""


@dataclass(frozen=True)
class Collection:
    """One named library: its corpus folder, its index folder and its own settings."""

    name: str
    corpus_dir: Path
    index_dir: Path
    trash_dir: Path
    created: str = ""  # ISO 8601 UTC; "" for the implicit default
    settings: dict = field(default_factory=dict)
    path: Path | None = None  # its settings file; None for the implicit default


def check_name(name: object) -> str:
    """name when it is a valid collection name (a-z, 0-9, - and _, 1-40 chars); else ValueError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"invalid collection name {name!r}: use 1-40 lowercase letters, digits, - or _"
        )
    return name


def settings_path(data_dir: Path, name: str) -> Path:
    """Where a collection's settings file lives."""
    return Path(data_dir) / FOLDER / f"{check_name(name)}.json"


def check_settings(settings: object) -> dict:
    """The settings when every key is a known Config field of the right type; else ValueError."""
    if not isinstance(settings, dict):
        raise ValueError(f"collection settings must be an object, got {settings!r}")
    for key, value in settings.items():
        if key not in SETTINGS:
            known = ", ".join(SETTINGS)
            raise ValueError(f"unknown collection setting {key!r} (known: {known})")
        if isinstance(value, bool) or not isinstance(value, SETTINGS[key]):
            raise ValueError(f"collection setting {key} has the wrong type: {value!r}")
    return dict(settings)


def _resolve(data_dir: Path, value: object, *, what: str, file: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{file}: {what} must be a non-empty path string")
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(data_dir) / path


def default_collection(data_dir: Path) -> Collection:
    """The implicit default collection: corpus/ with <data>/index."""
    data_dir = Path(data_dir)
    return Collection(
        name=DEFAULT_COLLECTION,
        corpus_dir=DEFAULT_CORPUS,
        index_dir=data_dir / "index",
        trash_dir=data_dir / "trash",
    )


def _read(data_dir: Path, path: Path) -> Collection:
    """The collection a settings file describes; ValueError when the file is not valid."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    name = check_name(data.get("name"))
    if name != path.stem:
        raise ValueError(f"{path} names collection {name!r}, not {path.stem!r}")
    created = data.get("created", "")
    if not isinstance(created, str):
        raise ValueError(f"{path}: created must be a string")
    return Collection(
        name=name,
        corpus_dir=_resolve(data_dir, data.get("corpus_dir"), what="corpus_dir", file=path),
        index_dir=_resolve(data_dir, data.get("index_dir"), what="index_dir", file=path),
        trash_dir=Path(data_dir) / "trash",
        created=created,
        settings=check_settings(data.get("settings", {})),
        path=path,
    )


def _stored(data_dir: Path, path: Path) -> str:
    """A path as the settings file records it: relative to the data folder when inside it."""
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(Path(data_dir).resolve()).as_posix()
    return str(path.resolve())


def _write(data_dir: Path, collection: Collection) -> Collection:
    """Write the collection's settings file atomically (temporary file, fsync, rename)."""
    path = settings_path(data_dir, collection.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "name": collection.name,
        "corpus_dir": str(Path(collection.corpus_dir).expanduser().resolve()),
        "index_dir": _stored(data_dir, collection.index_dir),
        "created": collection.created,
        "settings": collection.settings,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return _read(data_dir, path)


def list_collections(data_dir: Path) -> list[Collection]:
    """Every collection, the default first, then by name; a broken file raises ValueError."""
    folder = Path(data_dir) / FOLDER
    found: dict[str, Collection] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            if path.name.startswith(".") or not NAME_PATTERN.fullmatch(path.stem):
                continue
            found[path.stem] = _read(data_dir, path)
    default = found.pop(DEFAULT_COLLECTION, None) or default_collection(data_dir)
    return [default, *(found[name] for name in sorted(found))]


def get_collection(data_dir: Path, name: str) -> Collection:
    """The named collection; UnknownCollection (a ValueError) naming the known ones."""
    check_name(name)
    path = settings_path(data_dir, name)
    if path.is_file():
        return _read(data_dir, path)
    if name == DEFAULT_COLLECTION:
        return default_collection(data_dir)
    known = ", ".join(c.name for c in list_collections(data_dir))
    raise UnknownCollection(f"unknown collection {name!r} (known: {known})")


def find_collection(data_dir: Path, name: str) -> Collection | None:
    """The named collection, or None when it does not exist."""
    try:
        return get_collection(data_dir, name)
    except UnknownCollection:
        return None


def _same_folder(a: Path, b: Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def create_or_update(
    data_dir: Path,
    name: str,
    *,
    corpus_dir: Path | None = None,
    settings: dict | None = None,
) -> Collection:
    """Create the collection (corpus_dir required) or change its corpus folder or settings.

    The corpus folder must exist and may not be another collection's; settings replace the
    stored ones key by key (a None value removes a key).
    """
    check_name(name)
    before = find_collection(data_dir, name)
    if before is None and corpus_dir is None:
        raise ValueError(f"collection {name!r} does not exist; give its corpus folder to create it")
    corpus = Path(corpus_dir).expanduser() if corpus_dir is not None else before.corpus_dir
    if not corpus.is_dir():
        raise ValueError(f"corpus folder {corpus} does not exist or is not a folder")
    for other in list_collections(data_dir):
        if other.name != name and _same_folder(other.corpus_dir, corpus):
            raise ValueError(f"{corpus} is already the corpus folder of collection {other.name!r}")
    changes = settings or {}
    merged = dict(before.settings) if before is not None else {}
    merged.update(check_settings({k: v for k, v in changes.items() if v is not None}))
    for key in [k for k, v in changes.items() if v is None]:
        merged.pop(key, None)
    if before is None:
        collection = Collection(
            name=name,
            corpus_dir=corpus,
            index_dir=Path(data_dir) / FOLDER / name / "index",
            trash_dir=Path(data_dir) / "trash",
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    else:
        collection = before
    collection = dataclasses.replace(
        collection,
        corpus_dir=corpus,
        settings=merged,
        created=collection.created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    config_for(collection, Config())  # refuse settings the Config would refuse, before writing
    return _write(data_dir, collection)


def config_for(collection: Collection, base: Config) -> Config:
    """base with the collection's corpus, index and trash folders and its own settings."""
    index = dataclasses.replace(
        base.index,
        corpus_dir=collection.corpus_dir,
        index_dir=collection.index_dir,
        trash_dir=collection.trash_dir,
    )
    return dataclasses.replace(base, index=index, **collection.settings)


def document_count(collection: Collection) -> int | None:
    """Documents in the collection's live index (manifest only); None when none was built."""
    try:
        folder = current_generation(collection.index_dir)
        if folder is None:
            return None
        return len(read_manifest(folder).get("documents", {}))
    except (OSError, ValueError, IndexLoadError):
        return None


class CollectionPipelines:
    """One Pipeline per collection, opened on first use; the default collection's is given.

    Every pipeline shares the default one's embedder (and, through ModelSlot, its LLM); its
    Config is the default's with the collection's folders and settings. A collection whose
    file changed (another corpus folder, other settings) is opened again on its next use.
    """

    def __init__(self, data_dir: Path, default: Pipeline, *, watch_every: float = 0.0) -> None:
        self.data_dir = Path(data_dir)
        self.default = default
        # > 0: each collection opened gets a CorpusWatcher of its folder, as the default has.
        self.watch_every = watch_every
        self._open: dict[str, Pipeline] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Every collection's name, the default first."""
        return [c.name for c in list_collections(self.data_dir)]

    def get(self, name: str) -> Pipeline:
        """The collection's pipeline: UnknownCollection, or IndexLoadError when it has no index."""
        if name == DEFAULT_COLLECTION:
            return self.default
        from rag.pipeline import Pipeline

        config = config_for(get_collection(self.data_dir, name), self.default.config)
        with self._lock:
            pipeline = self._open.get(name)
            if pipeline is None or pipeline.config != config:
                pipeline = Pipeline(config, embedder=self.default.embedder)
                self._open[name] = pipeline
                if self.watch_every > 0:
                    from rag.library import watch_corpus

                    watch_corpus(pipeline, every=self.watch_every)
            return pipeline
