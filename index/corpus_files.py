"""Adding, removing and restoring documents in the corpus folder, safely (the upload panel).

    python -m index.corpus_files corpus/ some/file.pdf

Names are sanitised (no separators, no "..", no hidden or reserved names), types are checked by
content as well as by extension, sizes are limited, and files land only inside the corpus.
An upload never replaces a file unless asked to: a name that is taken (also by a name that only
differs in case or Unicode form) gets a free one, "name (2).txt". Removed and replaced files are
moved to the corpus's own trash folder, `<trash_dir>/<corpus name>-<hash of its path>/`, one
entry per file with a `record.json` of where it came from, and can be restored from there.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from index.config import SUPPORTED_EXTENSIONS, IndexConfig
from index.durable import fsync_path
from index.loaders import looks_binary

logger = logging.getLogger(__name__)

ALLOWED_SUFFIXES = SUPPORTED_EXTENSIONS  # the upload panel takes every type the index reads
# Checked here; every other type by its format module (index.formats.containers).
_TEXT_SUFFIXES = (".txt", ".md", ".html", ".htm")
MAX_NAME_BYTES = 200  # well under the 255-byte limit of common file systems, with room to spare
DEFAULT_TRASH = IndexConfig.trash_dir
# Hidden, so the index scan never reads a half-written upload.
STAGING_PREFIX = ".upload-"
STAGING_SUFFIX = ".part"
# Older staging files belong to no running upload (a killed process left them).
STALE_STAGING_SECONDS = 3600.0
RECORD_FILE = "record.json"
_ENTRY_ID = re.compile(r"\d{8}T\d{12}-[0-9a-f]{6}")
_COUNTER = re.compile(r" \(\d+\)$")
# Errors of file systems without hard links (FAT, exFAT, some network shares).
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}


@dataclass(frozen=True)
class StoredName:
    """The corpus name of an upload; `exact` when it is the upload's own name (NFC form)."""

    name: str
    exact: bool


@dataclass(frozen=True)
class TrashEntry:
    """One file in a corpus's trash and where it came from."""

    id: str
    source: str  # its corpus-relative path before it was trashed
    trashed_at: str  # ISO 8601, UTC
    reason: str  # "removed", or "replaced" by an upload of the same name
    size: int
    path: Path  # the file inside the trash


@dataclass(frozen=True)
class SavedUpload:
    """An upload written into the corpus folder."""

    requested: str  # the file name the user gave
    path: Path
    replaced: TrashEntry | None = None  # the file it replaced, kept in the trash
    clashed_with: str = ""  # the existing file whose name made it take a free one


@dataclass(frozen=True)
class Restored:
    """A trash entry put back into the corpus, under `source` (a free name if its was taken)."""

    entry: TrashEntry
    source: str


def _basename(name: str) -> str:
    return re.split(r"[\\/]", name.strip())[-1]  # drop any directory part, POSIX or Windows


def _clean_parts(name: str) -> tuple[str, str]:
    """(stem, suffix) of the cleaned, uncut name, or ValueError saying why there is none."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("file name is empty")
    if "\x00" in name:
        raise ValueError("file name contains a NUL character")
    base = unicodedata.normalize("NFKC", _basename(name))
    base = re.sub(r"[^\w.\- ()]+", "_", base).strip(" .")
    if not base or base in (".", "..") or set(base) <= {".", "_"}:
        raise ValueError(f"file name {name!r} has no usable characters")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        raise ValueError(
            f"file name {name!r} has no extension (allowed: {', '.join(ALLOWED_SUFFIXES)})"
        )
    # Windows ignores what follows the first dot and trailing spaces: "CON .txt", "nul.tar.md".
    if stem.split(".")[0].strip().lower() in _RESERVED:
        raise ValueError(f"file name {name!r} is a reserved device name")
    if f".{suffix.lower()}" not in ALLOWED_SUFFIXES:
        raise ValueError(
            f"unsupported file type .{suffix} (allowed: {', '.join(ALLOWED_SUFFIXES)})"
        )
    return stem, suffix


def _fit(stem: str, suffix: str, *, tag: str = "") -> str:
    """stem + tag + .suffix, the stem cut (by bytes, never the extension) to MAX_NAME_BYTES."""
    ending = f"{tag}.{suffix}" if suffix else tag
    name = stem + ending
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    # Count bytes: 200 accented letters are 400 bytes, over the usual 255-byte limit.
    room = MAX_NAME_BYTES - len(ending.encode("utf-8"))
    return stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(" .") + ending


def sanitize_filename(name: str) -> str:
    """A safe file name for the corpus folder, or ValueError saying why there is none."""
    stem, suffix = _clean_parts(name)
    return _fit(stem, suffix)


def storage_name(name: str) -> StoredName:
    """The name an upload is stored under: sanitised; a cut name ends in a hash of the whole one.

    Without the hash, two long names that differ only past the cut would get the same name.
    """
    stem, suffix = _clean_parts(name)
    own = unicodedata.normalize("NFC", _basename(name))
    full = f"{stem}.{suffix}"
    if len(full.encode("utf-8")) <= MAX_NAME_BYTES:
        return StoredName(full, exact=full == own)
    digest = hashlib.sha256(own.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return StoredName(_fit(stem, suffix, tag=f"-{digest}"), exact=full == own)


def name_key(name: str) -> str:
    """What two names must share to clash: case and Unicode form do not tell files apart."""
    return unicodedata.normalize("NFC", name).casefold()


def free_name(folder: Path, name: str) -> str:
    """name, or the first of 'stem (2).ext', 'stem (3).ext'... that no file in folder has."""
    taken = {name_key(p.name) for p in Path(folder).iterdir()} if Path(folder).is_dir() else set()
    if name_key(name) not in taken:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, suffix = name, ""
    stem = _COUNTER.sub("", stem)
    for n in range(2, 100_000):
        candidate = _fit(stem, suffix, tag=f" ({n})")
        if name_key(candidate) not in taken:
            return candidate
    raise ValueError(f"no free name for {name} in {folder}")


def check_content(name: str, data: bytes) -> None:
    """Raise ValueError when the bytes do not match the extension (a PDF must be a PDF...)."""
    suffix = Path(name).suffix.lower()
    if not data.strip():
        raise ValueError(f"{name} is empty")
    if suffix == ".pdf":
        if not data.startswith(b"%PDF"):
            raise ValueError(f"{name} is not a PDF (no %PDF header)")
        return
    if suffix not in _TEXT_SUFFIXES:
        # Imported here: the zip and image checks are only needed for those uploads.
        from index.formats.containers import check_upload_content

        check_upload_content(name, data)
        return
    if data.startswith(b"%PDF"):
        raise ValueError(f"{name} is a PDF renamed to {suffix}")
    if looks_binary(data):
        raise ValueError(f"{name} is binary, not text")


def _stage(folder: Path, data: bytes) -> Path:
    """data in a new hidden file in folder, flushed to disk; nothing is left when it fails."""
    path = folder / f"{STAGING_PREFIX}{secrets.token_hex(8)}{STAGING_SUFFIX}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _stage_copy(src: Path, folder: Path) -> Path:
    """A copy of src as a staging file in folder (to cross file systems)."""
    return _stage(folder, src.read_bytes())


def _claim(src: Path, folder: Path, name: str) -> Path:
    """Give src a free name in folder (name or 'name (n)'); never replaces an existing file.

    A hard link cannot overwrite, so two writers racing for one name both keep their file.
    Without hard links, an empty file claims the name first and src is renamed onto it.
    """
    for _ in range(1000):
        candidate = folder / free_name(folder, name)
        try:
            os.link(src, candidate)
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        try:
            os.replace(src, candidate)
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        return candidate
    raise OSError(errno.EEXIST, f"no free name for {name}", str(folder))


def _move_new(src: Path, folder: Path, name: str) -> Path:
    """Move src into folder under a free variant of name, across file systems if need be."""
    try:
        placed = _claim(src, folder, name)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        staging = _stage_copy(src, folder)
        try:
            placed = _claim(staging, folder, name)
        finally:
            staging.unlink(missing_ok=True)
    src.unlink(missing_ok=True)
    return placed


def _move(src: Path, dst: Path) -> None:
    """Rename src to the new path dst, copying when they are on different file systems."""
    try:
        os.rename(src, dst)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    try:
        shutil.copy2(src, dst)
        fsync_path(dst)
        src.unlink()
    except BaseException:
        dst.unlink(missing_ok=True)
        raise


def _same_name(folder: Path, name: str) -> Path | None:
    """The entry of folder whose name is name in another Unicode form (or exactly), if any."""
    wanted = unicodedata.normalize("NFC", name)
    for path in folder.iterdir():
        if unicodedata.normalize("NFC", path.name) == wanted:
            return path
    return None


def _clash(folder: Path, name: str) -> str:
    """Name of the entry of folder that name would clash with, or ''."""
    key = name_key(name)
    return next((p.name for p in folder.iterdir() if name_key(p.name) == key), "")


def save_upload(
    corpus_dir: Path,
    name: str,
    data: bytes,
    *,
    max_bytes: int,
    replace: bool = False,
    trash_dir: Path = DEFAULT_TRASH,
) -> SavedUpload:
    """Write an upload into the corpus: a free name when its name is taken, unless replace.

    With replace, only a file of exactly the upload's own name is replaced, and it goes to the
    trash first; a name that cleaning changed (NFKC, cut, odd characters) never replaces.
    """
    corpus = Path(corpus_dir).resolve()
    stored = storage_name(name)
    if len(data) > max_bytes:
        raise ValueError(
            f"{stored.name} is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit"
        )
    check_content(stored.name, data)
    target = corpus / stored.name
    if target.is_symlink() and not target.resolve().is_relative_to(corpus):
        raise ValueError(f"{name!r} would be stored outside the corpus folder")
    requested = _basename(name)
    staging = _stage(corpus, data)
    try:
        existing = _same_name(corpus, stored.name) if replace and stored.exact else None
        if existing is not None and existing.is_file() and not existing.is_symlink():
            entry = _keep_in_trash(corpus, existing, trash_dir=trash_dir)
            try:
                os.replace(staging, existing)
            except BaseException:
                discard_entry(entry)
                raise
            return SavedUpload(requested, existing, replaced=entry)
        clash = _clash(corpus, stored.name)
        path = _claim(staging, corpus, stored.name)
    finally:
        staging.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # durability of the new entry only; the file is written
        fsync_path(corpus)
    return SavedUpload(requested, path, clashed_with=clash if path.name != stored.name else "")


def add_document(
    corpus_dir: Path,
    name: str,
    data: bytes,
    *,
    max_bytes: int,
    replace: bool = False,
    trash_dir: Path = DEFAULT_TRASH,
) -> Path:
    """Write an uploaded document into the corpus folder; returns its path (see save_upload)."""
    saved = save_upload(
        corpus_dir, name, data, max_bytes=max_bytes, replace=replace, trash_dir=trash_dir
    )
    return saved.path


def clean_staging(corpus_dir: Path, *, older_than_s: float = STALE_STAGING_SECONDS) -> list[str]:
    """Delete staging files that crashed uploads left in the corpus folder; returns their names."""
    removed = []
    cutoff = time.time() - older_than_s
    for path in Path(corpus_dir).iterdir():
        ours = path.name.startswith(STAGING_PREFIX) and path.name.endswith(STAGING_SUFFIX)
        legacy = path.name.startswith(".") and path.name.endswith(".upload")  # older versions
        if not (ours or legacy) or path.is_symlink() or not path.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path.name)
                logger.info("removed the leftover of a failed upload: %s", path.name)
    return removed


def trash_folder(corpus_dir: Path, *, trash_dir: Path = DEFAULT_TRASH) -> Path:
    """The trash of one corpus: `<trash_dir>/<folder name>-<hash of its resolved path>`."""
    corpus = Path(corpus_dir).resolve()
    digest = hashlib.sha256(os.fsencode(corpus)).hexdigest()[:12]
    label = re.sub(r"[^\w.-]+", "_", corpus.name)[:40].strip("._") or "corpus"
    return Path(trash_dir) / f"{label}-{digest}"


def _corpus_file(corpus: Path, source: str) -> Path:
    """The file `source` names inside corpus (not resolved), or ValueError."""
    if not isinstance(source, str) or not source.strip():
        raise ValueError("no document named")
    path = corpus / source
    resolved = path.resolve()
    if not resolved.is_relative_to(corpus) or resolved == corpus or path.name in ("", ".", ".."):
        raise ValueError(f"{source!r} is not inside the corpus folder")
    if not path.is_file():
        raise ValueError(f"{source!r} is not in the corpus")
    return path


def _open_entry(
    corpus: Path, path: Path, *, trash_dir: Path, reason: str
) -> tuple[TrashEntry, Path]:
    """A new trash entry for path: its folder and record are written, the file not yet."""
    trash = trash_folder(corpus, trash_dir=trash_dir)
    entry_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(3)}"
    folder = trash / entry_id
    folder.mkdir(parents=True)
    entry = TrashEntry(
        id=entry_id, source=path.relative_to(corpus).as_posix(),
        trashed_at=datetime.now(UTC).isoformat(timespec="seconds"), reason=reason,
        size=path.stat().st_size, path=folder / path.name,
    )  # fmt: skip
    record = {k: v for k, v in vars(entry).items() if k not in ("id", "path")}
    try:
        tmp = folder / f".{RECORD_FILE}.tmp"
        tmp.write_text(json.dumps({**record, "name": path.name}, ensure_ascii=False))
        os.replace(tmp, folder / RECORD_FILE)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return entry, folder


def _keep_in_trash(corpus: Path, path: Path, *, trash_dir: Path) -> TrashEntry:
    """Put a copy of a file about to be replaced in the trash; the file itself stays."""
    entry, folder = _open_entry(corpus, path, trash_dir=trash_dir, reason="replaced")
    try:
        try:
            os.link(path, entry.path)
        except OSError:
            shutil.copy2(path, entry.path)  # another file system, or no hard links
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return entry


def move_to_trash(
    corpus_dir: Path, source: str, *, trash_dir: Path = DEFAULT_TRASH, reason: str = "removed"
) -> TrashEntry:
    """Move a document (by corpus-relative path) into its corpus's trash."""
    corpus = Path(corpus_dir).resolve()
    path = _corpus_file(corpus, source)
    entry, folder = _open_entry(corpus, path, trash_dir=trash_dir, reason=reason)
    try:
        _move(path, entry.path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return entry


def remove_document(
    corpus_dir: Path, source: str, *, trash_dir: Path = DEFAULT_TRASH
) -> TrashEntry:
    """Take a document out of the corpus folder; it is moved to the trash, never deleted."""
    return move_to_trash(corpus_dir, source, trash_dir=trash_dir)


def _read_entry(folder: Path) -> TrashEntry | None:
    """The entry stored in folder, or None when it holds no file (a half-made entry)."""
    try:
        record = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
        name = record["name"]
        entry = TrashEntry(
            id=folder.name, source=str(record["source"]), trashed_at=str(record["trashed_at"]),
            reason=str(record.get("reason", "removed")), size=int(record.get("size", 0)),
            path=folder / Path(name).name,
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        files = [p for p in folder.iterdir() if p.name != RECORD_FILE and p.is_file()]
        if len(files) != 1:
            return None
        logger.warning("trash entry %s has no usable record (%s)", folder, exc)
        stamp = datetime.fromtimestamp(files[0].stat().st_mtime, UTC)
        entry = TrashEntry(
            id=folder.name, source=files[0].name, trashed_at=stamp.isoformat(timespec="seconds"),
            reason="removed", size=files[0].stat().st_size, path=files[0],
        )  # fmt: skip
    return entry if os.path.lexists(entry.path) else None


def list_trash(corpus_dir: Path, *, trash_dir: Path = DEFAULT_TRASH) -> list[TrashEntry]:
    """The corpus's trash, newest first."""
    trash = trash_folder(corpus_dir, trash_dir=trash_dir)
    if not trash.is_dir():
        return []
    folders = [p for p in trash.iterdir() if p.is_dir() and _ENTRY_ID.fullmatch(p.name)]
    entries = [_read_entry(f) for f in sorted(folders, key=lambda p: p.name, reverse=True)]
    return [e for e in entries if e is not None]


def find_entry(corpus_dir: Path, entry_id: str, *, trash_dir: Path = DEFAULT_TRASH) -> TrashEntry:
    """The trash entry entry_id, or ValueError when it is not (or no longer) in the trash."""
    if not isinstance(entry_id, str) or not _ENTRY_ID.fullmatch(entry_id.strip()):
        raise ValueError(f"{entry_id!r} is not a trash entry")
    folder = trash_folder(corpus_dir, trash_dir=trash_dir) / entry_id.strip()
    entry = _read_entry(folder) if folder.is_dir() else None
    if entry is None:
        raise ValueError("that file is no longer in the trash (restored or emptied meanwhile)")
    return entry


def discard_entry(entry: TrashEntry) -> None:
    """Delete one trash entry for good."""
    shutil.rmtree(entry.path.parent, ignore_errors=True)


def restore_entry(corpus_dir: Path, entry: TrashEntry) -> Restored:
    """Move a trash entry back to where it was, under a free name if that one is taken now."""
    corpus = Path(corpus_dir).resolve()
    relative = Path(entry.source)
    folder = (corpus / relative.parent).resolve()
    if not folder.is_relative_to(corpus) or relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"{entry.source!r} would be restored outside the corpus folder")
    folder.mkdir(parents=True, exist_ok=True)
    placed = _move_new(entry.path, folder, relative.name)
    discard_entry(entry)
    return Restored(entry, placed.relative_to(corpus).as_posix())


def put_back(corpus_dir: Path, entry: TrashEntry) -> None:
    """Undo a replace or a removal: the trashed file goes back to its exact path, over any file."""
    corpus = Path(corpus_dir).resolve()
    target = corpus / entry.source
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(entry.path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copy2(entry.path, target)
    discard_entry(entry)


def empty_trash(corpus_dir: Path, *, trash_dir: Path = DEFAULT_TRASH) -> int:
    """Delete everything in the corpus's trash for good; returns how many files went."""
    trash = trash_folder(corpus_dir, trash_dir=trash_dir)
    count = len(list_trash(corpus_dir, trash_dir=trash_dir))
    if trash.is_dir():
        for child in trash.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    return count


if __name__ == "__main__":
    path = Path(sys.argv[2])
    written = add_document(Path(sys.argv[1]), path.name, path.read_bytes(), max_bytes=20_000_000)
    sys.stdout.write(f"saved {written}\n")
