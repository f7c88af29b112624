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
from rag.reading import ShortAnswer
from rag.verify import CheckedSentence

if TYPE_CHECKING:
    from index.corpus_files import TrashEntry
    from rag.conversations import Conversation
    from rag.library import IngestProgress, NotIndexed, UploadResult
    from rag.viewer import DocumentView

# How long the outcome of a finished ingestion stays in the status line.
RECENT_SECONDS = 120.0

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<&])")


def escape_markdown(text: str) -> str:
    """Text that a Markdown renderer shows literally (HTML and Markdown syntax neutralised)."""
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def short_answer_markdown(answer: Answer) -> str:
    """The short answer in bold with its [n] marker (escaped), or '' when there is none."""
    short = answer.short_answer
    if short is None:
        return ""
    return f"**{escape_markdown(' '.join(short.text.split()))}** \\[{short.citation}\\]"


def _sentences_markdown(answer: Answer) -> str:
    """The cited sentences as escaped Markdown; those verification could not support marked."""
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


def answer_markdown(answer: Answer) -> str:
    """The answer as escaped Markdown: the short answer in bold first, then the sentences."""
    short = short_answer_markdown(answer)
    sentences = _sentences_markdown(answer)
    return f"{short}\n\n{sentences}" if short else sentences


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


def _card_spans(citation: Citation, spans) -> list[tuple[int, int]]:
    """Document spans as non-empty offsets into citation.text (clipped to the passage)."""
    out = []
    for s, e in spans:
        s, e = max(s, citation.start) - citation.start, min(e, citation.end) - citation.start
        if s < e:
            out.append((s, e))
    return out


def _short_span(citation: Citation, short: ShortAnswer | None) -> list[tuple[int, int]]:
    """The short answer's span in the card text when it lies in this citation, else none."""
    if short is None or short.citation != citation.n or short.source != citation.source:
        return []
    return _card_spans(citation, [(short.start, short.end)])


def _tags(was: tuple[bool, bool], now: tuple[bool, bool]) -> str:
    """Tags from one (sentence, short answer) marking state to the next, properly nested."""
    out = []
    if was[1] and (not now[1] or was[0] != now[0]):
        out.append("</mark>")
    if was[0] and not now[0]:
        out.append("</mark>")
    if now[0] and not was[0]:
        out.append("<mark>")
    if now[1] and (not was[1] or was[0] != now[0]):
        out.append("<mark class='short-answer'>")
    return "".join(out)


def _highlighted(citation: Citation, short: ShortAnswer | None = None) -> str:
    """The passage as escaped HTML: cited sentences in <mark>, the short answer marked inside."""
    marks = _card_spans(citation, citation.highlights)
    shorts = _short_span(citation, short)
    cuts = sorted({0, len(citation.text), *(x for sp in marks + shorts for x in sp)})
    out, state = [], (False, False)
    for a, b in zip(cuts, cuts[1:], strict=False):
        now = (any(s <= a < e for s, e in marks), any(s <= a < e for s, e in shorts))
        out.append(_tags(state, now) + html.escape(citation.text[a:b]))
        state = now
    out.append(_tags(state, (False, False)))
    return "".join(out).replace("\n", "<br>")


def _where(citation: Citation) -> str:
    """' · p. 4 · OCR' style locator text for a card (escaped); characters when none."""
    where = citation.locator or f"chars {citation.start}–{citation.end}"
    ocr = " · <span class='cqa-ocr' title='text recognised from a scan'>OCR</span>"
    return f" · {html.escape(where)}" + (ocr if citation.ocr else "")


def _card(c: Citation, short: ShortAnswer | None, note: str) -> str:
    """One source card; with a note (the document changed or left), the quote is not marked."""
    date = f" · {html.escape(c.date)}" if c.date else ""
    # A passage with text aimed at an AI model is marked; those sentences never answer.
    flag = (
        f"<div class='cqa-flag'>⚠️ <b>Suspicious passage:</b> {html.escape(c.flagged)}; "
        "that text was not used for the answer</div>"
        if c.flagged
        else ""
    )
    if note:  # the stored offsets no longer point at this text: no highlight, say why
        stale = f"<div class='cqa-stale-note'>⚠️ {html.escape(note)}</div>"
        text = f"{stale}<div class='cqa-text'>{html.escape(c.text).replace(chr(10), '<br>')}</div>"
        css, state = "cqa-card cqa-stale", " data-state='stale'"
    else:
        text = f"<div class='cqa-text'>{_highlighted(c, short)}</div>"
        css, state = "cqa-card", ""
    return (
        f"<div class='{css}'{state} data-source='{html.escape(c.source, quote=True)}'>"
        f"<div class='cqa-head'><span class='cqa-n'>[{c.n}]</span> "
        f"<b>{html.escape(c.title)}</b></div>"
        f"<div class='cqa-meta'>{html.escape(c.source)}{date}{_where(c)}</div>"
        f"{flag}{text}</div>"
    )


def source_cards(answer: Answer | None, *, notes: dict[int, str] | None = None) -> str:
    """HTML cards, one per citation: number, title, date, file, passage with highlights.

    notes: for citations whose document changed or left since (a reopened answer), what the
    card says instead of highlighting a span that may no longer be there.
    """
    if answer is None:
        return "<div class='cqa-empty'>Sources of the latest answer appear here.</div>"
    if answer.abstained:
        return "<div class='cqa-empty'>No source: the documents do not answer this question.</div>"
    notes = notes or {}
    return "\n".join(_card(c, answer.short_answer, notes.get(c.n, "")) for c in answer.citations)


def sources_markdown(answer: Answer, *, notes: dict[int, str] | None = None) -> str:
    """The citations as escaped Markdown, shown in a collapsible block under each answer."""
    lines = []
    for c in answer.citations:
        date = f", {c.date}" if c.date else ""
        date += f", {c.locator}" if c.locator else ""
        quote = c.preview()  # the sentences it was cited for
        note = (notes or {}).get(c.n)
        warn = f"  \n⚠️ _{escape_markdown(note)}_" if note else ""
        lines.append(
            f"**\\[{c.n}\\]** {escape_markdown(c.title)} "
            f"({escape_markdown(c.source)}{escape_markdown(date)}){warn}  \n> "
            f"{escape_markdown(quote)}"
        )
    return "\n\n".join(lines)


# --- answers as saved conversations store them --------------------------------------------------


def answer_record(answer: Answer, *, model_name: str | None) -> dict:
    """The stored form of an answer: `to_dict()` plus what its cards need (dates, highlights).

    Saved conversations keep this dict, so a reopened answer renders as it did live.
    """
    record = answer.to_dict()
    for data, citation in zip(record["citations"], answer.citations, strict=True):
        data["date"] = citation.date
        data["highlights"] = [[int(s), int(e)] for s, e in citation.highlights]
    record["query"] = answer.query
    record["model_name"] = model_name
    return record


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _citation_from(data: dict, i: int) -> Citation:
    spans = []
    for span in data.get("highlights") or []:
        if isinstance(span, list | tuple) and len(span) == 2:
            spans.append((_int(span[0]), _int(span[1])))
    return Citation(
        n=_int(data.get("n"), i), source=_text(data.get("source")),
        title=_text(data.get("title")) or _text(data.get("source")), start=_int(data.get("start")),
        end=_int(data.get("end")), text=_text(data.get("text")), date=_text(data.get("date")),
        highlights=tuple(spans), flagged=_text(data.get("flagged")),
        page=data.get("page") if isinstance(data.get("page"), int) else None,
        locator=_text(data.get("locator")), ocr=data.get("ocr") is True,
    )  # fmt: skip


def _short_from(data: object) -> ShortAnswer | None:
    if not isinstance(data, dict) or not _text(data.get("text")):
        return None
    return ShortAnswer(
        _text(data["text"]), _text(data.get("source")), _int(data.get("start")),
        _int(data.get("end")), _int(data.get("citation"), 1),
    )  # fmt: skip


def answer_from_record(record: dict) -> Answer:
    """An Answer rebuilt from its stored dict (`answer_record` or `to_dict()`), for rendering.

    Missing or mistyped fields take neutral values: a damaged record renders, it never raises.
    """
    citations = [
        _citation_from(c, i)
        for i, c in enumerate(record.get("citations") or [], 1)
        if isinstance(c, dict)
    ]
    timings = record.get("timings_ms") if isinstance(record.get("timings_ms"), dict) else {}
    timings = {k: float(v) for k, v in timings.items() if isinstance(v, int | float)}
    sentences = [
        CheckedSentence(
            _text(s.get("text")),
            tuple(n for n in s.get("citations") or [] if isinstance(n, int)),
            s.get("supported") is not False,
        )
        for s in record.get("sentences") or []
        if isinstance(s, dict)
    ]
    return Answer(
        answer=_text(record.get("answer")),
        abstained=record.get("abstained") is True,
        mode=_text(record.get("mode")) or "extractive",
        citations=citations,
        timings_ms={"retrieve": 0.0, "answer": 0.0, **timings},
        query=_text(record.get("query")),
        warnings=[w for w in record.get("warnings") or [] if isinstance(w, str)],
        sentences=sentences,
        short_answer=_short_from(record.get("short_answer")),
        mode_detail=_text(record.get("mode_detail")),
    )


def conversation_label(conversation: Conversation) -> str:
    """How a saved conversation is listed (plain text): its title and when it last changed."""
    title = conversation.title or "Untitled conversation"
    return f"{title} · {when_text(conversation.updated)}"


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
.cqa-text mark.short-answer {background: #ffd33d; font-weight: 700; padding: 0;}
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
.cqa-stale {border-style: dashed;}
.cqa-stale-note {color: #9a6700; font-size: 0.8em; margin-bottom: 4px;}
"""
