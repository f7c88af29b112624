"""Turning answers into what the chat shows: escaped text, source cards, status lines.

    python -m ui   # then ask a question; the cards on the right come from here

Everything that comes from a document or a question is escaped here, so markup in either is
shown as text and never interpreted as HTML or Markdown.
"""

from __future__ import annotations

import base64
import html
import re
import time
import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING

from rag import Answer, Citation

if TYPE_CHECKING:
    from index.corpus_files import TrashEntry
    from rag.library import IngestProgress, NotIndexed, UploadResult
    from rag.viewer import DocumentView

# How long the outcome of a finished ingestion stays in the status line.
RECENT_SECONDS = 120.0

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<&])")


def escape_markdown(text: str) -> str:
    """Text that a Markdown renderer shows literally (HTML and Markdown syntax neutralised)."""
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def answer_markdown(answer: Answer) -> str:
    """The answer as escaped Markdown; sentences verification could not support are marked."""
    if answer.mode != "llm" or not answer.sentences:
        return escape_markdown(answer.answer)
    parts = []
    for sentence in answer.sentences:
        markers = "".join(f"\\[{n}\\]" for n in sentence.citations)
        text = f"{escape_markdown(sentence.text)} {markers}".strip()
        if not sentence.supported:
            text = f"~~{text}~~ ⚠️ _not supported by its sources_"
        parts.append(text)
    return " ".join(parts)


def _pages(answer: Answer) -> str:
    """' ([1] p. 4, [2] slide 3)' for citations with a page or slide; '' when none has one."""
    where = [f"[{c.n}] {c.locator}" for c in answer.citations if c.page is not None and c.locator]
    return f" ({', '.join(where)})" if where else ""


def status_line(answer: Answer, *, model_name: str | None) -> str:
    """Mode, timings and passages used (with their pages), in one line."""
    mode = f"LLM: {model_name}" if answer.mode == "llm" and model_name else "extractive"
    t = answer.timings_ms
    used = (
        "abstained"
        if answer.abstained
        else f"{len(answer.citations)} passage(s) cited{_pages(answer)}"
    )
    return f"{mode} · retrieval {t['retrieve']:.0f} ms · answer {t['answer']:.0f} ms · {used}"


def _highlighted(citation: Citation) -> str:
    """The passage as escaped HTML with the cited sentences wrapped in <mark>."""
    spans = sorted(
        (max(s, citation.start) - citation.start, min(e, citation.end) - citation.start)
        for s, e in citation.highlights
    )
    out, cursor = [], 0
    for s, e in spans:
        if s < cursor:
            continue
        out.append(html.escape(citation.text[cursor:s]))
        out.append(f"<mark>{html.escape(citation.text[s:e])}</mark>")
        cursor = e
    out.append(html.escape(citation.text[cursor:]))
    return "".join(out).replace("\n", "<br>")


def _where(citation: Citation) -> str:
    """' · p. 4 · OCR' style locator text for a card (escaped); characters when none."""
    where = citation.locator or f"chars {citation.start}–{citation.end}"
    ocr = " · <span class='cqa-ocr' title='text recognised from a scan'>OCR</span>"
    return f" · {html.escape(where)}" + (ocr if citation.ocr else "")


def source_cards(answer: Answer | None) -> str:
    """HTML cards, one per citation: number, title, date, file, passage with highlights."""
    if answer is None:
        return "<div class='cqa-empty'>Sources of the latest answer appear here.</div>"
    if answer.abstained:
        return "<div class='cqa-empty'>No source: the documents do not answer this question.</div>"
    cards = []
    for c in answer.citations:
        date = f" · {html.escape(c.date)}" if c.date else ""
        # A passage with text aimed at an AI model is marked; those sentences never answer.
        flag = (
            f"<div class='cqa-flag'>⚠️ <b>Suspicious passage:</b> {html.escape(c.flagged)}; "
            "that text was not used for the answer</div>"
            if c.flagged
            else ""
        )
        cards.append(
            f"<div class='cqa-card' data-source='{html.escape(c.source, quote=True)}'>"
            f"<div class='cqa-head'><span class='cqa-n'>[{c.n}]</span> "
            f"<b>{html.escape(c.title)}</b></div>"
            f"<div class='cqa-meta'>{html.escape(c.source)}{date}{_where(c)}</div>"
            f"{flag}<div class='cqa-text'>{_highlighted(c)}</div></div>"
        )
    return "\n".join(cards)


def sources_markdown(answer: Answer) -> str:
    """The citations as escaped Markdown, shown in a collapsible block under each answer."""
    lines = []
    for c in answer.citations:
        date = f", {c.date}" if c.date else ""
        date += f", {c.locator}" if c.locator else ""
        quote = " ".join(c.text.split())
        if len(quote) > 300:
            quote = quote[:297] + "..."
        lines.append(
            f"**\\[{c.n}\\]** {escape_markdown(c.title)} "
            f"({escape_markdown(c.source)}{escape_markdown(date)})  \n> {escape_markdown(quote)}"
        )
    return "\n\n".join(lines)


def size_text(size: int) -> str:
    """A byte count for people: 812 B, 14.2 kB, 3.1 MB."""
    if size < 1000:
        return f"{size} B"
    return f"{size / 1e3:.1f} kB" if size < 1e6 else f"{size / 1e6:.1f} MB"


def when_text(stamp: str) -> str:
    """An ISO time stamp as 'YYYY-MM-DD HH:MM UTC' (the stamp itself when it does not parse)."""
    try:
        return f"{datetime.fromisoformat(stamp):%Y-%m-%d %H:%M} UTC"
    except ValueError:
        return stamp


def trash_label(entry: TrashEntry) -> str:
    """How a trash entry is offered in the restore list (plain text)."""
    return f"{entry.source} · {entry.reason} {when_text(entry.trashed_at)}"


def trash_markdown(entries: list[TrashEntry]) -> str:
    """The trash as an escaped Markdown table, newest first."""
    if not entries:
        return "_The trash is empty._"
    rows = ["| File | Moved to the trash | Why | Size |", "|---|---|---|---|"]
    for e in entries:
        why = "replaced by an upload" if e.reason == "replaced" else "removed"
        rows.append(
            f"| {escape_markdown(e.source)} | {when_text(e.trashed_at)} | {why} "
            f"| {size_text(e.size)} |"
        )
    return "\n".join(rows)


def not_indexed_markdown(items: list[NotIndexed]) -> str:
    """Files in the corpus folder the index skipped, with the reason (empty when none)."""
    if not items:
        return ""
    lines = [f"- {escape_markdown(i.source)}: {escape_markdown(i.reason)}" for i in items]
    return "**In the folder but not indexed** (they can be removed):\n" + "\n".join(lines)


def upload_message(result: UploadResult) -> str:
    """What an upload did, one escaped line per file, then the index summary."""
    lines = []
    for a in result.added:
        name, source = escape_markdown(a.requested), escape_markdown(a.source)
        if a.replaced:
            lines.append(f"Replaced {source}; the previous version is in the trash.")
        elif a.clashed_with:
            taken = escape_markdown(a.clashed_with)
            lines.append(f"Added {name} as {source}: {taken} already exists (kept as it was).")
        elif unicodedata.normalize("NFC", a.requested) != a.source:
            lines.append(f"Added {name} as {source} (name cleaned).")
        else:
            lines.append(f"Added {source}.")
    lines += [f"⚠️ {escape_markdown(e)}" for e in result.errors]
    if result.added and result.report is not None:
        lines.append(f"Index: {escape_markdown(result.report.summary())}")
    return "  \n".join(lines) or "Nothing was added."


def _view_text(view: DocumentView) -> str:
    """The text window as escaped HTML: the passage spanned, its cited sentences marked."""
    out = ["… " if view.cut_before else ""]
    for piece in view.pieces:
        text = html.escape(piece.text)
        if piece.kind == "highlight":
            text = f"<mark class='cqa-hit'>{text}</mark>"
        elif piece.kind == "passage":
            text = f"<span class='cqa-passage'>{text}</span>"
        out.append(text)
    out.append(" …" if view.cut_after else "")
    return "".join(out)


def view_label(view: DocumentView) -> str:
    """'report.pdf · p. 2' (plain text): the document and the page drawn, else the locator."""
    if not view.page_png:
        return f"{view.source} · {view.locator}" if view.locator else view.source
    shown = f"p. {view.page}"
    passage = f" (passage: {view.locator})" if view.locator and view.locator != shown else ""
    return f"{view.source} · {shown}{passage}"


def document_view_html(view: DocumentView) -> str:
    """The document view: label, note, the drawn page (PNG inline) and the text around it."""
    page = ""
    if view.page_png:
        data = base64.b64encode(view.page_png).decode("ascii")
        alt = html.escape(f"page {view.page} of {view.title}, the cited passage highlighted", True)
        page = f"<img class='cqa-page' alt='{alt}' src='data:image/png;base64,{data}'>"
    note = f"<div class='cqa-view-note'>⚠️ {html.escape(view.note)}</div>" if view.note else ""
    return (
        f"<div class='cqa-view' data-source='{html.escape(view.source, quote=True)}' "
        f"data-page='{view.page or ''}' data-boxes='{view.boxes}'>"
        f"<div class='cqa-view-head'><b>{html.escape(view.title)}</b></div>"
        f"<div class='cqa-view-label'>{html.escape(view_label(view))}</div>{note}{page}"
        f"<div class='cqa-view-text'>{_view_text(view)}</div></div>"
    )


def view_message(text: str) -> str:
    """The document view when there is nothing to show but a message (escaped)."""
    return f"<div class='cqa-empty'>{html.escape(text)}</div>"


def _progress_words(progress: IngestProgress) -> str:
    """'reading 12/40 files', 'embedding 300/900 chunks', or what the job is doing."""
    if progress.state == "waiting":
        return "waiting for the indexing in progress"
    unit = {"reading": "files", "embedding": "chunks"}.get(progress.stage)
    if unit and progress.total:
        return f"{progress.stage} {progress.done}/{progress.total} {unit}"
    return "scanning the folder"


def ingest_line(progress: IngestProgress | None, *, waiting: int = 0) -> str:
    """The ingestion status line (escaped Markdown); '' when nothing ran lately."""
    if progress is None:
        return ""
    what = "Upload" if progress.kind == "upload" else "Folder"
    more = f" (+{waiting} waiting)" if waiting else ""
    if not progress.finished:
        return f"⏳ {what}: {escape_markdown(_progress_words(progress))}{more}"
    if time.monotonic() - (progress.finished_at or 0.0) > RECENT_SECONDS:
        return ""
    if progress.state == "done":
        done = "indexed" if progress.kind == "refresh" else "done"
        return f"✓ {what} {done}: {escape_markdown(progress.message)}"
    if progress.state == "cancelled":
        return f"{what}: cancelled; the index is unchanged."
    return f"⚠️ {what}: {escape_markdown(progress.message)}; the index is unchanged."


CSS = """
.cqa-card {border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 10px; margin-bottom: 8px;}
.cqa-head {font-size: 0.95em;}
.cqa-n {color: #0969da; font-weight: 700;}
.cqa-meta {color: #57606a; font-size: 0.8em; margin: 2px 0 6px 0;}
.cqa-ocr {border: 1px solid #8c959f; border-radius: 4px; padding: 0 3px; font-size: 0.9em;}
.cqa-text {font-size: 0.85em; line-height: 1.4; max-height: 16em; overflow-y: auto;}
.cqa-text mark {background: #fff3b0; padding: 0 1px;}
.cqa-empty {color: #57606a; font-style: italic;}
.cqa-card {cursor: pointer;}
.cqa-card:hover {border-color: #0969da;}
.cqa-view-label {color: #57606a; font-size: 0.85em; margin: 2px 0 6px 0;}
.cqa-view-note {color: #9a6700; font-size: 0.85em; margin-bottom: 6px;}
.cqa-page {max-width: 100%; border: 1px solid #d0d7de; margin-bottom: 8px;}
.cqa-view-text {position: relative; white-space: pre-wrap; font-size: 0.85em; line-height: 1.45;
  max-height: 28em; overflow-y: auto; border: 1px solid #d0d7de; border-radius: 6px;
  padding: 6px 8px;}
.cqa-passage {background: #f0f6ff;}
.cqa-view-text mark.cqa-hit {background: #fff3b0; padding: 0 1px;}
"""
