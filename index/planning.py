"""Planning an update: which documents are new, changed, kept or gone, reading as little as can be.

    python -m rag index          # plan_update is its first step

Stat first, as git's index does: a file whose size and modification time match the manifest
is not read again (`index.loaders.scan_corpus` with `known_files`). Page chrome comes from the
corpus's line-count table (`index.chrome.LineCounts`, `lines.json` in each generation),
updated with the texts of the documents read this time and the stored texts of the ones they
replace, so adding a file reads that file only. A document that was not read is re-read only
when a chrome line it contains appeared or disappeared.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from index.chrome import LineCounts, keys_in
from index.config import IndexConfig
from index.corpus_index import CorpusIndex
from index.document_store import get_document
from index.loaders import (
    ParseFailure,
    RawDocument,
    ScanResult,
    Skipped,
    name_suffix,
    reader_version,
    scan_corpus,
)
from index.progress import NO_CONTROL, BuildControl

logger = logging.getLogger(__name__)


@dataclass
class UpdatePlan:
    """What the corpus holds now and how it differs from the live index."""

    documents: list[RawDocument]  # the documents read this time
    skipped: list[Skipped]
    failures: dict[str, ParseFailure]
    chrome: set[str]
    fingerprints: dict[str, str]
    previous: CorpusIndex | None
    added: list[str]
    changed: list[str]
    removed: list[str]
    kept: list[str]  # read again and found the same, or not read (stat unchanged)
    rebuilt_reason: str = ""
    # Indexed documents whose file could not be read this time for a reason that says
    # nothing about it (unreadable now, parser cut off or crashed): their passages are kept.
    carried: list[str] = field(default_factory=list)
    # Kept documents that were not read (size and modification time as indexed).
    not_read: list[str] = field(default_factory=list)
    lines: LineCounts | None = None
    # Kept documents read again whose file stat changed (the manifest records the new one).
    restat: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Documents an interrupted build was writing (pending.json): read again and rewritten,
    # since a shared store (Milvus) may hold half of that build's writes for them.
    pending: list[str] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        """True when the live index already matches the corpus (nothing to write)."""
        if self.previous is None or self.added or self.changed or self.removed or self.restat:
            return False
        if self.pending:
            return False
        manifest = self.previous.manifest
        return manifest.get("skipped") == [[s.source, s.reason] for s in self.skipped] and (
            manifest.get("parse_failures", {}) == failures_json(self.failures)
        )


def fingerprint(doc: RawDocument, chrome_in_doc: list[str], config: IndexConfig) -> str:
    """Changes when the document's bytes, chrome lines, reader or chunking settings change."""
    payload = json.dumps([doc.sha256, sorted(chrome_in_doc), config.chunking_params(), doc.reader])
    return hashlib.sha256(payload.encode()).hexdigest()


def chrome_in(text: str, chrome: set[str]) -> set[str]:
    """The chrome lines that text contains, its lines split as segment() and the table split them.

    Not str.splitlines, which also splits at a carriage return, form feed, U+2028 and others
    inside a line: "Weekly<FF>News" is one line (key "weekly news") to the chunker, so that
    document would keep stale chunks when "weekly news" became chrome or stopped being it.
    """
    return keys_in(text, chrome)


def failures_json(failures: dict[str, ParseFailure]) -> dict[str, dict]:
    """Parse failures as the manifest records them."""
    return {source: f.to_json() for source, f in sorted(failures.items())}


def known_files(previous: CorpusIndex | None) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of the indexed files that need not be read if their stat is the same.

    Attachments are found through their container; a file whose reader changed is read again.
    """
    if previous is None or previous.lines is None:
        return {}
    documents = previous.manifest["documents"]
    known = {}
    versions: dict[str, str] = {}  # per suffix: a reader's version is asked once per scan
    for source, info in documents.items():
        parts = source.split("/")
        inside = any("/".join(parts[:n]) in documents for n in range(1, len(parts)))
        size, mtime = info.get("size"), info.get("mtime_ns")
        if inside or not isinstance(size, int) or size < 0 or not mtime:
            continue
        suffix = name_suffix(parts[-1]).lower()
        if suffix not in versions:
            versions[suffix] = reader_version(suffix)
        if info.get("reader") == versions[suffix]:
            known[source] = (size, int(mtime))
    return known


def _scan(config: IndexConfig, previous, known, *, progress, control) -> ScanResult:
    failures = {}
    if previous is not None:
        failures = {
            s: ParseFailure.from_json(f)
            for s, f in previous.manifest.get("parse_failures", {}).items()
        }
    return scan_corpus(
        Path(config.corpus_dir), extensions=config.extensions, max_bytes=config.max_file_bytes,
        known_failures=failures, limits=config.read_limits(), workers=config.parse_workers,
        parse_seconds=config.parse_seconds, progress=progress, control=control, known_files=known,
    )  # fmt: skip


def _with_attachments(sources: list[str], documents: dict) -> list[str]:
    """The sources and every indexed document inside them (a mail's attachments)."""
    roots = set(sources)
    return sorted(s for s in documents if _inside_any(s, roots))


def _inside_any(source: str, roots: set[str]) -> bool:
    """True when source is one of roots or lies inside one ("a.eml/b.pdf" inside "a.eml")."""
    if source in roots:
        return True
    parts = source.split("/")
    return any("/".join(parts[:n]) in roots for n in range(1, len(parts)))


def update_lines(
    config: IndexConfig,
    previous: CorpusIndex | None,
    base: LineCounts | None,
    read: list[RawDocument],
    gone: list[str],
) -> LineCounts:
    """The line-count table with the read documents' old texts (and gone ones) replaced.

    Without a base table every document must have been read. ValueError when a stored text
    that must be counted out is missing or damaged.
    """
    params = {
        "min_repeats": config.boilerplate_min_repeats,
        "max_words": config.boilerplate_max_words,
    }
    if base is None:
        return LineCounts.from_texts((d.text for d in read), **params)
    lines = LineCounts.from_json(base.to_json(), **params)
    documents = previous.manifest["documents"]
    for source in sorted({*(d.source for d in read if d.source in documents), *gone}):
        lines.subtract(_stored_text(config, documents[source]))
    for doc in read:
        lines.add(doc.text)
    return lines


def _stored_text(config: IndexConfig, info: dict) -> str:
    return get_document(Path(config.index_dir), info.get("text_key", "")).text


def plan_update(
    config: IndexConfig,
    *,
    previous: CorpusIndex | None,
    rebuilt_reason: str = "",
    progress: bool = False,
    control: BuildControl = NO_CONTROL,
    pending: Sequence[str] = (),
) -> UpdatePlan:
    """Scan the corpus folder and sort its documents into added, changed, kept and removed.

    pending: documents an interrupted build was writing; each is read again and counted as
    changed (or removed, when it cannot be read now), never kept as it was.
    """
    base = previous.lines if previous is not None else None
    pending = sorted(set(pending))
    known = known_files(previous) if base is not None else {}
    known = {k: st for k, st in known.items() if not any(_inside_any(s, {k}) for s in pending)}
    run = {
        "rebuilt_reason": rebuilt_reason, "progress": progress, "control": control,
        "pending": pending,
    }  # fmt: skip
    try:
        return _plan(config, previous, base, known, **run)
    except NoDocuments:
        raise
    except ValueError as exc:
        if base is None:
            raise
        # A stored text is missing or damaged: count every line again from the files.
        logger.warning("line table not updatable (%s): reading every document", exc)
        return _plan(config, previous, None, {}, **run)


def _plan(
    config: IndexConfig,
    previous: CorpusIndex | None,
    base: LineCounts | None,
    known: dict[str, tuple[int, int]],
    *,
    rebuilt_reason: str,
    progress: bool,
    control: BuildControl,
    pending: list[str],
    second_pass: bool = False,
) -> UpdatePlan:
    scan = _scan(config, previous, known, progress=progress, control=control)
    old_docs = previous.manifest["documents"] if previous else {}
    not_read = _with_attachments(scan.unchanged, old_docs)
    if not scan.documents and not not_read:
        reasons = "; ".join(f"{s.source}: {s.reason}" for s in scan.skipped[:5])
        raise NoDocuments(
            f"no documents to index in {config.corpus_dir} "
            f"(supported: {', '.join(config.extensions)})"
            + (f"; skipped {reasons}" if reasons else "")
        )
    # A pending document is not carried over as it was: a shared store may have lost it.
    carried = [s for s in carried_sources(old_docs, scan.skipped) if s not in pending]
    present = {d.source for d in scan.documents} | set(not_read)
    removed = sorted(set(old_docs) - present - set(carried))
    lines = update_lines(config, previous, base, scan.documents, removed)
    chrome = lines.chrome()
    flipped = chrome ^ base.chrome() if base is not None and not_read else set()
    # Only when a line became chrome or stopped being it: then stored texts are searched.
    again = (
        [s for s in not_read if chrome_in(_stored_text(config, old_docs[s]), flipped)]
        if flipped
        else []
    )
    if again and not second_pass:
        # Their chunks change with the chrome: read them too (and only them).
        logger.info("chrome lines changed: reading %d more documents", len(again))
        known = {
            k: st
            for k, st in known.items()
            if not any(s == k or s.startswith(k + "/") for s in again)
        }
        return _plan(config, previous, base, known, rebuilt_reason=rebuilt_reason,
                     progress=progress, control=control, pending=pending,
                     second_pass=True)  # fmt: skip
    plan = _sorted_plan(
        config, scan, previous, lines, chrome, not_read, carried, removed, rebuilt_reason
    )
    return with_pending(plan, pending)


class NoDocuments(ValueError):
    """The corpus folder holds no document this version can index."""


def _sorted_plan(
    config, scan, previous, lines, chrome, not_read, carried, removed, rebuilt_reason
) -> UpdatePlan:
    """The plan: each document read sorted into added, changed or kept by its fingerprint."""
    old_docs = previous.manifest["documents"] if previous else {}
    fingerprints = {
        doc.source: fingerprint(doc, sorted(chrome_in(doc.text, chrome)), config)
        for doc in scan.documents
    }
    added, changed, kept, restat = [], [], [], {}
    for doc in scan.documents:
        old = old_docs.get(doc.source)
        if old is None:
            added.append(doc.source)
        elif old["fingerprint"] != fingerprints[doc.source]:
            changed.append(doc.source)
        else:
            kept.append(doc.source)
            if (old.get("size"), old.get("mtime_ns")) != (doc.size, doc.mtime_ns):
                restat[doc.source] = (doc.size, doc.mtime_ns)
    return UpdatePlan(
        documents=scan.documents, skipped=scan.skipped, failures=scan.failures, chrome=chrome,
        fingerprints=fingerprints, previous=previous, added=added, changed=changed,
        removed=removed, kept=sorted([*kept, *not_read]), rebuilt_reason=rebuilt_reason,
        carried=carried, not_read=not_read, lines=lines, restat=restat,
    )  # fmt: skip


def with_pending(plan: UpdatePlan, pending: list[str]) -> UpdatePlan:
    """The plan with the pending documents it kept moved to changed (they are rewritten)."""
    if not pending:
        return plan
    again = [s for s in plan.kept if _inside_any(s, set(pending))]
    kept = [s for s in plan.kept if s not in again]
    return replace(
        plan, kept=kept, changed=sorted({*plan.changed, *again}), pending=list(pending),
        not_read=[s for s in plan.not_read if s not in again],
        restat={k: v for k, v in plan.restat.items() if k not in again},
    )  # fmt: skip


def carried_sources(old_docs: dict, skipped: list[Skipped]) -> list[str]:
    """Indexed sources (and their attachments) whose file failed to read only transiently."""
    failed = {s.source for s in skipped if s.transient}
    return sorted(source for source in old_docs if failed and _inside_any(source, failed))
