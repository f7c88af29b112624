"""Read a folder of documents into text: .txt, .md, .html/.htm (visible text), .pdf (text layer).

    python -m index.loaders corpus/

Every file either becomes a `RawDocument` or a `Skipped` entry with the reason; nothing raises.
For .txt and .md the text is the file itself, so character spans index the file; for HTML and
PDF the text is what the loader extracted (stored with the index as the document's text).
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import NamedTuple

from index.corpus_index import file_sha256
from index.extraction import Extraction, ReadLimits, Segment
from index.parse_pool import ParseTask, parse_files
from index.progress import NO_CONTROL, BuildControl
from index.readers import LEGACY, extract

logger = logging.getLogger(__name__)

_INVISIBLE_TAGS = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
    "section", "article", "header", "footer", "blockquote", "pre", "hr", "title", "dd", "dt",
}  # fmt: skip


_COMMENT_CLOSE = re.compile(r"--\s*>")
_SECTION_CLOSE = re.compile(r"\]\s*>")


@dataclass(frozen=True)
class RawDocument:
    """One readable file: its corpus-relative path, decoded text and content hash."""

    source: str
    text: str
    sha256: str
    kind: str
    html_title: str = ""
    # Where each stretch of text sits in the source (pages, slides, rows...): index.extraction.
    segments: tuple[Segment, ...] = ()
    # The reader and its version (index.readers.reader_version): part of the fingerprint.
    reader: str = ""
    # Parts of the file that were left out, and why ("page 3: scanned page skipped ...").
    notes: tuple[str, ...] = ()
    # The file's stat before it was read (an attachment: its mail's or archive's), to record as
    # scan_corpus's known_files. size is -1 when the file was modified within RACY_WINDOW_NS of
    # the scan: a write in the same timestamp tick may not change the stat, so it must be read
    # again next time.
    size: int = 0
    mtime_ns: int = 0


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why."""

    source: str
    reason: str
    # True when the file's content could not be parsed (as opposed to a type or size check).
    parse_failed: bool = False
    # True when the failure says nothing about the file (unreadable now, parser cut off or
    # crashed): an indexed file keeps its passages and it is tried again next time.
    transient: bool = False


class _VisibleText(HTMLParser):
    """Collects text a browser would show; drops scripts, styles and comments."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._hidden_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _INVISIBLE_TAGS:
            self._hidden_depth += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _INVISIBLE_TAGS:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif self._hidden_depth == 0:
            self.parts.append(data)


def decode_bytes(data: bytes) -> str:
    """Decode text leniently: UTF-8 (with BOM), UTF-16 by BOM, else UTF-8 with replacement."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # cp1252 is the most common non-UTF-8 encoding of Western text.
        text = data.decode("cp1252", errors="replace")
        return text if text.count("\ufffd") <= len(text) // 100 else data.decode("utf-8", "replace")


def looks_binary(data: bytes) -> bool:
    """True when the bytes are not text: NULs or mostly control characters."""
    sample = data[:8192]
    if not sample:
        return False
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if b"\x00" in sample:
        return True
    control = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    return control > len(sample) * 0.1


def _last_end(pattern: re.Pattern, text: str) -> int:
    """End of the last match of pattern in text, or 0 when there is none."""
    end = 0
    for match in pattern.finditer(text):
        end = match.end()
    return end


def escape_unclosed(markup: str) -> str:
    """Markup with every '<' that nothing closes later written as '&lt;' (shown as text).

    html.parser re-scans to the end of the page for each unclosed opener ("<a<a<a...",
    "<!--<!--...", "</</..."), which made a crafted page of 200 kB take a minute; such openers
    end up as text anyway. Tags need a later '>', comments a later '-->', marked sections a
    later ']>'; everything else is left exactly as it was.
    """
    last_gt = markup.rfind(">") + 1
    head, tail = markup[:last_gt], markup[last_gt:].replace("<", "&lt;")
    cut = _last_end(_COMMENT_CLOSE, head)
    head = head[:cut] + head[cut:].replace("<!--", "&lt;!--")
    cut = _last_end(_SECTION_CLOSE, head)
    head = head[:cut] + head[cut:].replace("<![", "&lt;![")
    return head + tail


def html_to_text(markup: str) -> tuple[str, str]:
    """Visible text of an HTML page and its <title>."""
    markup = escape_unclosed(markup)
    parser = _VisibleText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception as exc:  # html.parser is lenient, but a pathological page must not stop a run
        logger.warning("HTML parser gave up (%s); falling back to tag stripping", exc)
        # An unclosed script or style hides the rest of the page, as in a browser.
        stripped = re.sub(r"(?is)<(script|style)\b.*?(?:</\1\s*>|\Z)|<[^>]*>", " ", markup)
        return html.unescape(stripped), ""
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" *\n[ \n]*", "\n\n", text).strip()
    return text, " ".join("".join(parser.title_parts).split())


def reader_version(suffix: str) -> str:
    """Name and version of the reader (and its library) used for files with this suffix."""
    from index.readers import reader_version as version

    return version(suffix)


@dataclass(frozen=True)
class ParseFailure:
    """A file whose content could not be read: it is not parsed again until one of these changes."""

    size: int
    mtime_ns: int
    reader: str
    reason: str

    def to_json(self) -> dict:
        """The manifest's record of the failure."""
        return {"size": self.size, "mtime_ns": self.mtime_ns, "reader": self.reader,
                "reason": self.reason}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> ParseFailure:
        """Read a failure back from the manifest."""
        return cls(
            int(data["size"]), int(data["mtime_ns"]), str(data["reader"]), str(data["reason"])
        )


class ScanResult(NamedTuple):
    """Documents read, files skipped (with reasons), the content failures among the skips, and
    the known files left unread because their stat is unchanged (sorted sources)."""

    documents: list[RawDocument]
    skipped: list[Skipped]
    failures: dict[str, ParseFailure]
    unchanged: list[str] = []  # never mutated: scan_corpus always passes its own list


# A file modified this close before a scan started (or later) is read even when its recorded
# stat matches, and its stat is recorded so that the next scan reads it again: filesystems
# stamp times in ticks (up to 2 s on FAT), so a second write in the tick of the first can leave
# size and mtime as they were (git's "racy clean" entries).
RACY_WINDOW_NS = 2_000_000_000


def _size_limit(suffix: str, max_bytes: int, limits: ReadLimits) -> int:
    """The largest file of this type that is read."""
    return max(max_bytes, limits.max_mailbox_bytes) if suffix == ".mbox" else max_bytes


def read_document(
    path: Path, *, source: str, max_bytes: int, limits: ReadLimits | None = None
) -> list[RawDocument] | Skipped:
    """Load one file into RawDocuments (the file, then its attachments), or say why not."""
    suffix = path.suffix.lower()
    limits = limits or ReadLimits()
    try:
        stat = path.stat()
        size = stat.st_size
        limit = _size_limit(suffix, max_bytes, limits)
        if size > limit:
            return Skipped(source, f"file too large ({size} bytes > {limit})")
        sha = file_sha256(path)
    except OSError as exc:
        return Skipped(source, f"unreadable: {exc.strerror or exc}", transient=True)
    problem = _content_problem(path, suffix)
    if problem:
        return Skipped(source, problem, parse_failed=True)
    try:
        extraction = extract(path, limits=limits)
    except OSError as exc:
        return Skipped(source, f"unreadable: {exc.strerror or exc}", transient=True)
    except Exception as exc:  # a reader bug must not stop the run; ValueError is the norm
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        return Skipped(source, f"could not extract text: {reason}"[:300], parse_failed=True)
    document = _document(source, sha, suffix, extraction)
    if document is None:
        return Skipped(source, "no text", parse_failed=True)
    documents = [document, *_attachments(source, extraction, limits=limits)]
    return [replace(d, size=size, mtime_ns=stat.st_mtime_ns) for d in documents]


def _content_problem(path: Path, suffix: str) -> str:
    """Why a text-type file's bytes are not text ('' when they are)."""
    if suffix not in (".txt", ".md", ".html", ".htm", ".csv"):
        return ""
    with open(path, "rb") as handle:
        head = handle.read(8192)
    if head.startswith(b"%PDF"):
        return f"a PDF with a {suffix} extension (rename it to .pdf)"
    if looks_binary(head):
        return "binary content in a text file"
    return ""


def _document(source: str, sha: str, suffix: str, extraction: Extraction) -> RawDocument | None:
    """The RawDocument of an extraction, or None when it holds no text."""
    if "\x00" in extraction.text:
        # Removing NULs shifts offsets: only segment-free text (plain formats) has them.
        extraction = Extraction(extraction.text.replace("\x00", ""), extraction.title, (),
                                extraction.notes, extraction.attachments)  # fmt: skip
    if _SURROGATE.search(extraction.text):
        extraction = _without_surrogates(extraction)
    if not extraction.text.strip():
        return None
    return RawDocument(
        source=source, text=extraction.text, sha256=sha, kind=suffix.lstrip("."),
        html_title=extraction.title, segments=tuple(extraction.segments),
        reader=reader_version(suffix), notes=tuple(extraction.notes),
    )  # fmt: skip


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(extraction: Extraction) -> Extraction:
    """Text that UTF-8 can store: surrogate halves (RTF's \\u-10179?) paired, or replaced.

    With segments, offsets must not move: each half becomes U+FFFD. Without, pairs are joined.
    """
    text = extraction.text
    if extraction.segments:
        text = _SURROGATE.sub("\ufffd", text)
    else:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        text = _SURROGATE.sub("\ufffd", text)
    return Extraction(text, extraction.title, extraction.segments, extraction.notes,
                      extraction.attachments)  # fmt: skip


def _attachments(source: str, extraction: Extraction, *, limits: ReadLimits) -> list[RawDocument]:
    """Mail attachments of a readable type, each a document named message.eml/attachment."""
    import tempfile

    documents = []
    for attachment in extraction.attachments:
        name = Path(attachment.name).name
        suffix = Path(name).suffix.lower()
        with tempfile.TemporaryDirectory(prefix="cqa-attachment-") as folder:
            path = Path(folder) / f"attachment{suffix}"
            path.write_bytes(attachment.data)
            sha = hashlib.sha256(attachment.data).hexdigest()
            try:
                inner = extract(path, limits=limits)
            except Exception as exc:
                logger.info("attachment %s/%s not read: %s", source, name, exc)
                continue
            document = _document(f"{source}/{name}", sha, suffix, inner)
        if document is not None:
            documents.append(document)
    return documents


class _Entry(NamedTuple):
    """One entry of a scan: its path, its source (path below the corpus, "/"-separated), and
    the folder and name its path joins."""

    path: str
    source: str
    folder: str
    name: str

    @property
    def suffix(self) -> str:
        """The name's suffix as pathlib gives it, case kept."""
        return name_suffix(self.name)


def _walk(corpus_dir: Path) -> tuple[list[_Entry], list[Skipped]]:
    """Every entry below corpus_dir (symlinked folders listed, not entered), sorted as paths
    sort (part by part), and the folders that could not be listed.

    Plain strings, not Path objects: building, sorting and relativising 100,000 Paths cost
    most of a stat-only rescan.
    """
    unreadable: list[Skipped] = []
    root = os.fspath(corpus_dir)

    def report(error: OSError) -> None:
        where = Path(error.filename or corpus_dir)
        source = where.relative_to(corpus_dir).as_posix() if where != corpus_dir else "."
        unreadable.append(
            Skipped(f"{source}/", f"folder unreadable: {error.strerror or error}; its files "
                    "are not indexed (check its permissions)")
        )  # fmt: skip

    entries: list[_Entry] = []
    for folder, dirs, files in os.walk(root, onerror=report, followlinks=False):
        relative = os.path.relpath(folder, root)
        prefix = "" if relative == os.curdir else relative.replace(os.sep, "/") + "/"
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # .git, .Trash: not documents
        entries.extend(_Entry(os.path.join(folder, d), prefix + d, folder, d) for d in dirs)
        entries.extend(
            _Entry(os.path.join(folder, f), prefix + f, folder, f)
            for f in files
            if not f.startswith(".")
        )
    entries.sort(key=lambda entry: entry.source.split("/"))
    return entries, unreadable


def name_suffix(name: str) -> str:
    """The suffix of a file name as pathlib gives it ("a.tar.gz" -> ".gz", "a." -> "")."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def _known_failure(entry: _Entry, known: dict[str, ParseFailure]) -> ParseFailure | None:
    """The recorded failure of this file when neither its bytes nor its reader changed."""
    failure = known.get(entry.source)
    if failure is None:
        return None
    try:
        stat = os.stat(entry.path)
    except OSError:
        return None
    same_file = (stat.st_size, stat.st_mtime_ns) == (failure.size, failure.mtime_ns)
    return failure if same_file and failure.reader == reader_version(entry.suffix.lower()) else None


def _check_entry(
    entry: _Entry,
    root: Path,
    extensions: tuple[str, ...],
    inside: dict[str, bool] | None = None,
) -> tuple[str | None, os.stat_result | None]:
    """Why an entry is not a document to read (None when it is; '' for folders), and the
    stat of a regular file (lstat and stat agree on one).

    inside caches, per folder, whether it resolves into root (one scan's folders): resolving
    every file cost most of a stat-only rescan of 100,000 files.
    """
    try:
        entry.source.encode("utf-8")
    except UnicodeEncodeError:
        # Undecodable bytes in a name (surrogate escapes) cannot be written to the UTF-8 index
        # files; they used to abort the whole build.
        return "file name is not valid UTF-8 (rename it)", None
    try:
        stat = os.lstat(entry.path)
    except OSError:
        return "not a regular file", None
    mode = stat.st_mode
    if S_ISLNK(mode):
        return "symbolic link (not followed)", None
    if not S_ISREG(mode):
        return ("" if S_ISDIR(mode) else "not a regular file"), None
    cache = {} if inside is None else inside
    folder_inside = cache.get(entry.folder)
    if folder_inside is None:
        folder_inside = cache[entry.folder] = Path(entry.folder).resolve().is_relative_to(root)
    if not folder_inside:
        return "outside the corpus folder", None
    suffix = entry.suffix
    if suffix.lower() not in extensions:
        legacy = LEGACY.get(suffix.lower())
        return legacy or f"unsupported file type {suffix or '(none)'}", None
    return None, stat


def _unchanged(
    stat: os.stat_result, recorded: tuple[int, int] | None, *, racy_after: int, limit: int
) -> bool:
    """True when the file's stat is the recorded one and old enough to trust (not racy)."""
    if recorded is None:
        return False
    size, mtime_ns = recorded
    return (
        (stat.st_size, stat.st_mtime_ns) == (size, mtime_ns)
        and stat.st_mtime_ns <= racy_after
        and stat.st_size <= limit
    )


@dataclass(frozen=True)
class _OffsetControl(BuildControl):
    """A control whose reading progress counts `offset` files as already done."""

    inner: BuildControl = NO_CONTROL
    offset: int = 0

    def step(self, stage: str, done: int, total: int) -> None:
        """Report to the inner control with the offset added."""
        self.inner.step(stage, done + self.offset, total + self.offset)

    def check(self) -> None:
        """The inner control's cancellation check."""
        self.inner.check()


def scan_corpus(
    corpus_dir: Path,
    *,
    extensions: tuple[str, ...],
    max_bytes: int,
    known_failures: dict[str, ParseFailure] | None = None,
    known_files: dict[str, tuple[int, int]] | None = None,
    limits: ReadLimits | None = None,
    workers: int = 2,
    parse_seconds: float = 60.0,
    progress: bool = False,
    control: BuildControl = NO_CONTROL,
) -> ScanResult:
    """Read every supported file under corpus_dir (recursively, symlinks not followed).

    A file listed in known_failures whose size, modification time and reader are unchanged
    is skipped with its recorded reason instead of being parsed again. A file listed in
    known_files (source -> (size, mtime_ns) of its RawDocument when it was indexed) whose stat
    is unchanged and older than RACY_WINDOW_NS before the scan started is not read: its source
    goes to `unchanged`, not `documents` (its attachments are not listed).
    """
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise ValueError(f"corpus folder not found: {corpus_dir}")
    racy_after = time.time_ns() - RACY_WINDOW_NS
    root = corpus_dir.resolve()
    known = known_failures or {}
    files = known_files or {}
    limits = limits or ReadLimits()
    entries, skipped = _walk(corpus_dir)
    failures: dict[str, ParseFailure] = {}
    outcomes: dict[str, object] = {}
    tasks: list[ParseTask] = []
    unchanged: list[str] = []
    inside: dict[str, bool] = {}
    for entry in entries:
        source = entry.source
        why, stat = _check_entry(entry, root, extensions, inside)
        if why == "":
            continue
        if why is not None:
            printable = source.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            outcomes[printable] = Skipped(printable, why)
            continue
        failure = _known_failure(entry, known)
        limit = _size_limit(entry.suffix.lower(), max_bytes, limits)
        if failure is not None:
            outcomes[source] = Skipped(source, failure.reason)
            failures[source] = failure
        elif _unchanged(stat, files.get(source), racy_after=racy_after, limit=limit):
            unchanged.append(source)
        else:
            path = Path(entry.path)
            outcomes[source] = path
            tasks.append(ParseTask(path, source, max_bytes))
    if unchanged:
        control.step("reading", len(unchanged), len(unchanged) + len(tasks))
        control = _OffsetControl(inner=control, offset=len(unchanged))
    parsed = parse_files(
        tasks, limits=limits, workers=workers, seconds=parse_seconds, progress=progress,
        control=control,
    )  # fmt: skip
    documents: list[RawDocument] = []
    for source, outcome in outcomes.items():
        result = parsed.get(source, outcome)
        if isinstance(result, list):
            # Modified in the racy window: record a stat that no file has (read next time).
            documents.extend(replace(d, size=-1) if d.mtime_ns > racy_after else d for d in result)
            continue
        skipped.append(result)
        if isinstance(outcome, Path) and result.parse_failed:
            record = _failure_record(outcome, result.reason)
            if record is not None:
                failures[source] = record
    for item in skipped:
        logger.info("skipped %s: %s", item.source, item.reason)
    return ScanResult(documents, skipped, failures, sorted(unchanged))


def _failure_record(path: Path, reason: str) -> ParseFailure | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return ParseFailure(stat.st_size, stat.st_mtime_ns, reader_version(path.suffix.lower()), reason)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from index.config import IndexConfig

    defaults = IndexConfig()
    scan = scan_corpus(
        Path(sys.argv[1] if len(sys.argv) > 1 else "corpus"),
        extensions=defaults.extensions,
        max_bytes=defaults.max_file_bytes,
        limits=defaults.read_limits(),
    )
    for d in scan.documents:
        logger.info("%s\t%s\t%d chars", d.source, d.kind, len(d.text))
