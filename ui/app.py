"""The Gradio chat: streaming cited answers, source cards, a documents panel, and a JSON API.

    python -m ui            # http://127.0.0.1:7860

No pipeline logic lives here: answers come from `rag.Pipeline`, document changes from
`rag.library`, the document view from `rag.viewer`; this module only wires them to components
and renders them (ui/render.py). Clicking a source card (or a [n] marker of the latest answer)
opens the cited document at the passage. Uploads and folder changes are indexed in the
background; a timer shows their progress under the chat status, with a Cancel button.
The documents panel is read from the index on disk at every page load and after every change;
nothing in it is preselected, removal asks first and goes to the trash. API: `ask`, `upload`,
`documents`, `remove` (a file name, required), `restore` (a trash id), `empty_trash`
(confirm=true), `ingest` (background indexing status).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from index.config import SUPPORTED_EXTENSIONS
from rag import Answer, Citation, Final, Pipeline
from rag.library import (
    IngestJob,
    LibraryView,
    UploadResult,
    cancel_ingestion,
    check_removable,
    empty,
    follow_disk,
    ingest_status,
    library_view,
    list_trashed,
    remove,
    restore,
    start_refresh,
    start_upload,
    watch_corpus,
)
from rag.viewer import DocumentView, open_view
from ui.render import (
    CSS,
    answer_markdown,
    document_view_html,
    escape_markdown,
    ingest_line,
    not_indexed_markdown,
    source_cards,
    sources_markdown,
    status_line,
    trash_label,
    trash_markdown,
    upload_message,
    view_label,
    view_message,
)

logger = logging.getLogger(__name__)

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "corpus"
EXAMPLES = [
    "What did Hegseth warn Mexico's military officials about on the Jan. 31 call?",
    "How many cartel bosses did Mexico hand over to the United States?",
    "What did JD Vance say about sending U.S. troops into Mexico?",
    "Where did he say that?",
    "How many fentanyl overdose deaths were recorded in 2023?",
]


def documents_table(view: LibraryView) -> list[list]:
    """Rows of the corpus panel: title, date, chunks, file."""
    return [[d.title, d.date, d.chunks, d.source] for d in view.documents]


def stats_line(view: LibraryView, pipeline: Pipeline) -> str:
    """Index size, for the corpus panel."""
    stats = view.stats
    line = (
        f"{stats.documents} documents · {stats.chunks} passages · "
        f"{stats.bytes_on_disk / 1e6:.1f} MB index · embedding: {pipeline.embedder.backend} · "
        f"mode: {pipeline.mode}"
    )
    return line + (f"  \n⚠️ {escape_markdown(view.warning)}" if view.warning else "")


def view_updates(pipeline: Pipeline, *, keep_selection: bool = False) -> tuple:
    """The panel as it is on disk now: stats, table, remove choices, not indexed, trash."""
    try:
        view = library_view(pipeline)
    except Exception:  # the UI must never show a traceback
        logger.exception("reading the library failed")
        failed = "⚠️ The document list could not be read; see the server log."
        return (failed, *(gr.skip() for _ in range(5)))
    sources = [(d.source, d.source) for d in view.documents]
    sources += [(f"{n.source} (not indexed)", n.source) for n in view.not_indexed]
    # Nothing is ever preselected: a press on Remove must name a file the user chose.
    selection = {} if keep_selection else {"value": None}
    return (
        stats_line(view, pipeline),
        documents_table(view),
        gr.update(choices=sources, **selection),
        not_indexed_markdown(view.not_indexed),
        trash_markdown(view.trash),
        gr.update(choices=[(trash_label(e), e.id) for e in view.trash], value=None),
    )


def _reason(exc: ValueError | OSError) -> str:
    """Why a change was refused, in plain words (an OS error without its server path)."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _failure(exc: Exception, *, action: str) -> str:
    """A message for the panel: the reason of a refusal, never a traceback."""
    if isinstance(exc, ValueError | OSError):
        return f"⚠️ {escape_markdown(_reason(exc))}"
    logger.exception("%s failed", action)
    return f"⚠️ {action} failed; see the server log."


def read_uploads(
    files: list | None, *, limit_bytes: int
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """(name, bytes) of the files Gradio received, and a message for each unreadable one."""
    pairs, refused = [], []
    for f in files or []:
        path = Path(f if isinstance(f, str) else f.name)
        try:
            size = path.stat().st_size
            if size > limit_bytes:
                refused.append(f"{path.name}: {size / 1e6:.1f} MB is over the limit")
                continue
            pairs.append((path.name, path.read_bytes()))
        except OSError as exc:
            refused.append(f"{path.name}: unreadable ({exc.strerror or exc})")
    return pairs, refused


def _upload_outcome(job: IngestJob, refused: list[str]) -> str:
    """What a finished upload job did, one escaped line per file."""
    result = job.result
    if not isinstance(result, UploadResult):  # the job failed before it had a result
        return f"⚠️ {escape_markdown(job.progress().message)}"
    result.errors[:0] = refused
    return upload_message(result)


def upload_stream(
    pipeline: Pipeline, *, files: list | None, replace: bool, limit_bytes: int, poll_s: float = 0.5
) -> Iterator[str]:
    """The upload: indexed by a background job; yields its progress, then what it did."""
    if not files:
        yield "No file selected."
        return
    pairs, refused = read_uploads(files, limit_bytes=limit_bytes)
    if not pairs:
        yield "  \n".join(f"⚠️ {escape_markdown(r)}" for r in refused)
        return
    try:
        job = start_upload(pipeline, pairs, max_bytes=limit_bytes, replace=bool(replace))
    except Exception as exc:  # the UI must never show a traceback
        yield _failure(exc, action="Upload")
        return
    while not (progress := job.wait(poll_s)).finished:
        yield ingest_line(progress)
    yield _upload_outcome(job, refused)


def upload_files(pipeline: Pipeline, *, files: list | None, replace: bool, limit_bytes: int) -> str:
    """The upload, waited for: save, index, and say what happened to each file."""
    *_, message = upload_stream(pipeline, files=files, replace=replace, limit_bytes=limit_bytes)
    return message


def rescan_folder(pipeline: Pipeline) -> str:
    """The 'Index the folder now' button: a background refresh (or the one already running)."""
    try:
        job = start_refresh(pipeline)
    except Exception as exc:  # the UI must never show a traceback
        return _failure(exc, action="Indexing the folder")
    what = "Indexing" if job.kind == "refresh" else "An upload is indexing"
    return f"{what} the folder in the background; progress shows under the chat status."


def ingest_tick(pipeline: Pipeline, *, seen: dict | None) -> tuple:
    """The timer: (status line, Cancel button, seen, *panel) — skips what did not change.

    seen holds what this page shows: the line and the last finished job it took in, so the
    documents panel is re-read once when a job finishes (also one another tab or the
    folder watcher started). The first tick only takes note: the page load read the panel,
    and re-reading it then would close a list the user just opened.
    """
    seen = dict(seen or {})
    progress, waiting = ingest_status(pipeline)
    line = ingest_line(progress, waiting=waiting)
    busy = progress is not None and not progress.finished
    finished = [progress.job_id, progress.state] if progress and progress.finished else None
    out_line = gr.skip() if seen.get("line") == line else line
    out_button = gr.skip() if seen.get("busy", False) == busy else gr.update(visible=busy)
    panel = (gr.skip(),) * 6
    if "finished" in seen and finished not in (None, seen["finished"]):
        panel = view_updates(pipeline, keep_selection=True)
    seen.update(line=line, busy=busy, finished=finished or seen.get("finished"))
    return (out_line, out_button, seen, *panel)


def cancel_indexing(pipeline: Pipeline) -> str:
    """The Cancel button of the status line: every unfinished ingestion is asked to stop."""
    count = cancel_ingestion(pipeline)
    return "Cancelling… the index stays as it was." if count else "Nothing is being indexed."


_DOWNLOADS = Path(tempfile.gettempdir()) / "cqa-downloads"
_DOWNLOAD_KEEP_S = 3600.0
# Originals larger than this are not copied for download (each click would copy them).
_DOWNLOAD_MAX_BYTES = 64 * 1024 * 1024


def _download_copy(path: Path) -> str:
    """A copy of a corpus file in a temporary folder, which is where Gradio may serve it from.

    Gradio serves only its cache, the working directory and the temp folder; the corpus stays
    out of its allowed paths so nothing else in it can be fetched. Old copies are removed.
    """
    _DOWNLOADS.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - _DOWNLOAD_KEEP_S
    for old in _DOWNLOADS.iterdir():
        with contextlib.suppress(OSError):  # another click may be removing it right now
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(dir=_DOWNLOADS))
    target = folder / path.name
    shutil.copyfile(path, target)
    return str(target)


def _view_failure(text: str) -> tuple:
    """Outputs of a card click that opens nothing but a message."""
    opened = gr.update(open=True, label="Document")
    return opened, view_message(text), gr.update(value=None, visible=False)


def _download_update(view: DocumentView) -> dict:
    """The download button for a view: the original file, or hidden when there is none."""
    if view.download_path is None:
        return gr.update(value=None, visible=False)
    try:
        too_big = view.download_path.stat().st_size > _DOWNLOAD_MAX_BYTES
    except OSError:
        return gr.update(value=None, visible=False)
    if too_big:  # a 4 GB mailbox is not copied on every click: open it from the folder
        return gr.update(value=None, visible=False)
    name = view.download_path.name
    return gr.update(
        value=_download_copy(view.download_path), visible=True, label=f"Download {name}"
    )


def view_citation(
    pipeline: Pipeline, *, citations: list | None, index: object, source: str
) -> tuple:
    """A click on a source card: (Document panel, view HTML, download button) for it."""
    try:
        citation = (citations or [])[int(index)]
        if not isinstance(citation, Citation) or (source and citation.source != source):
            raise IndexError(index)
    except (TypeError, ValueError, IndexError):
        return _view_failure("That source is not in the latest answer; ask again.")
    try:
        view = open_view(
            pipeline, source=citation.source, start=citation.start, end=citation.end,
            highlights=list(citation.highlights),
        )  # fmt: skip
        download = _download_update(view)
    except (ValueError, OSError) as exc:
        return _view_failure(f"The document could not be opened: {_reason(exc)}")
    except Exception:  # the UI must never show a traceback
        logger.exception("opening %s failed", citation.source)
        return _view_failure("The document could not be opened; see the server log.")
    label = gr.update(open=True, label=f"Document · {view_label(view)}")
    return label, document_view_html(view), download


_HIDDEN = gr.update(visible=False)


def _not_asked(pipeline: Pipeline, message: str) -> tuple:
    """Outputs of the Remove button when nothing is to be confirmed."""
    return (_HIDDEN, "", gr.skip(), None, message, *view_updates(pipeline))


def ask_remove(pipeline: Pipeline, *, source: str | None) -> tuple:
    """The Remove button: nothing happens yet; the file is named and the user must confirm."""
    if not source:
        return _not_asked(pipeline, "Choose a document to remove.")
    try:
        check_removable(pipeline, source)
    except ValueError as exc:
        return _not_asked(pipeline, _failure(exc, action="Remove"))
    text = (
        f"Move **{escape_markdown(source)}** to the trash? Its passages leave the index at once; "
        "you can restore it from the trash below."
    )
    pending = {"action": "remove", "target": source}
    view = view_updates(pipeline, keep_selection=True)
    return (gr.update(visible=True), text, gr.update(value="Move to trash"), pending, "", *view)


def ask_empty(pipeline: Pipeline) -> tuple:
    """The Empty trash button: asks first, deleting is for good."""
    try:
        entries = list_trashed(pipeline)
    except Exception as exc:  # an unreadable trash is a message, never a traceback
        return (_HIDDEN, "", gr.skip(), None, _failure(exc, action="Reading the trash"))
    if not entries:
        return (_HIDDEN, "", gr.skip(), None, "The trash is already empty.")
    text = f"Delete the **{len(entries)}** file(s) in the trash for good? This cannot be undone."
    pending = {"action": "empty", "target": [e.id for e in entries]}
    return (gr.update(visible=True), text, gr.update(value="Delete for good"), pending, "")


def confirm_action(pipeline: Pipeline, *, pending: dict | None) -> tuple:
    """The confirm button: carry out the removal or the emptying the user was asked about."""
    action = (pending or {}).get("action")
    try:
        if action == "remove":
            removal = remove(pipeline, pending["target"])
            message = (
                f"Moved {escape_markdown(removal.entry.source)} to the trash. "
                f"Index: {escape_markdown(removal.report.summary())}"
            )
        elif action == "empty":
            deleted = empty(pipeline, ids=pending["target"])
            message = f"Deleted {deleted} file(s) from the trash for good."
        else:
            message = "Nothing to confirm."
    except Exception as exc:  # the UI must never show a traceback
        message = _failure(exc, action="Remove" if action == "remove" else "Emptying the trash")
    return (_HIDDEN, None, message, *view_updates(pipeline))


def restore_file(pipeline: Pipeline, *, entry_id: str | None) -> tuple:
    """The Restore button: the chosen trash entry goes back into the corpus and the index."""
    if not entry_id:
        return ("Choose a file in the trash to restore.", *view_updates(pipeline))
    try:
        done = restore(pipeline, entry_id)
    except Exception as exc:  # the UI must never show a traceback
        return (_failure(exc, action="Restore"), *view_updates(pipeline))
    back = done.restored
    where = (
        ""
        if back.source == back.entry.source
        else f" as {escape_markdown(back.source)} (its name was taken)"
    )
    message = (
        f"Restored {escape_markdown(back.entry.source)}{where}. "
        f"Index: {escape_markdown(done.report.summary())}"
    )
    return (message, *view_updates(pipeline))


def api_documents(pipeline: Pipeline) -> dict:
    """The `documents` endpoint: documents, counts, files not indexed and the trash."""
    view = _api_call("Listing the documents", library_view, pipeline)
    return {
        "documents": [
            {"source": d.source, "title": d.title, "date": d.date, "chunks": d.chunks}
            for d in view.documents
        ],
        "stats": {"documents": view.stats.documents, "chunks": view.stats.chunks},
        "not_indexed": [{"source": n.source, "reason": n.reason} for n in view.not_indexed],
        "trash": [
            {
                "id": e.id,
                "source": e.source,
                "trashed_at": e.trashed_at,
                "reason": e.reason,
                "size": e.size,
            }
            for e in view.trash
        ],
        "warning": view.warning,
    }


def _api_call(action: str, fn, *args) -> object:
    """Run a library change for an API caller; refusals become gr.Error with the reason."""
    try:
        return fn(*args)
    except (ValueError, OSError) as exc:
        raise gr.Error(_reason(exc)) from exc
    except Exception as exc:
        logger.exception("%s failed", action)
        raise gr.Error(f"{action} failed; see the server log.") from exc


def api_remove(pipeline: Pipeline, *, source: str) -> dict:
    """The `remove` endpoint: the named document goes to the trash (nothing is ever assumed)."""
    removal = _api_call("Remove", remove, pipeline, source)
    return {
        "removed": removal.entry.source,
        "trash_id": removal.entry.id,
        "message": f"Removed {removal.entry.source} (moved to the trash). "
        + removal.report.summary(),
    }


def api_restore(pipeline: Pipeline, *, trash_id: str) -> dict:
    """The `restore` endpoint: a trash entry, by id, goes back into the corpus."""
    done = _api_call("Restore", restore, pipeline, trash_id)
    return {
        "restored": done.restored.source,
        "original": done.restored.entry.source,
        "message": f"Restored {done.restored.source}. {done.report.summary()}",
    }


def api_empty_trash(pipeline: Pipeline, *, confirm: bool) -> dict:
    """The `empty_trash` endpoint: deletes the trash for good, only with confirm=True."""
    if confirm is not True:
        raise gr.Error("the trash is deleted for good only with confirm=true")
    return {"deleted": _api_call("Emptying the trash", empty, pipeline)}


def chat_turn(
    pipeline: Pipeline, message: str, chat: list[dict], questions: list[str]
) -> Iterator[tuple[list[dict], object, str, list[str]]]:
    """One chat turn: yields (chat messages, source cards, status, questions) as it grows.

    `questions` holds the raw text of earlier questions (the chat shows escaped text), and is
    what follow-ups are rewritten from.
    """
    for update in chat_steps(pipeline, message, chat, questions):
        yield update[:4]


def chat_steps(
    pipeline: Pipeline, message: str, chat: list[dict], questions: list[str]
) -> Iterator[tuple]:
    """chat_turn's updates plus the answer's citations (what a click on a card opens)."""
    chat = list(chat or [])
    questions = list(questions or [])
    chat.append({"role": "user", "content": escape_markdown(message or "")})
    chat.append({"role": "assistant", "content": "…"})
    text = ""
    answer: Answer | None = None
    try:
        for event in pipeline.stream(message or "", history=questions):
            if isinstance(event, Final):
                answer = event.answer
            else:
                text += event.text
                chat[-1] = {"role": "assistant", "content": escape_markdown(text)}
                yield list(chat), gr.skip(), "answering…", questions, gr.skip()
    except ValueError as exc:
        chat[-1] = {"role": "assistant", "content": f"⚠️ {escape_markdown(str(exc))}"}
        yield chat, source_cards(None), "not answered", questions, []
        return
    except Exception:  # the UI must never show a traceback
        logger.exception("answering failed")
        chat[-1] = {"role": "assistant", "content": "⚠️ Something went wrong; see the server log."}
        yield chat, gr.skip(), "error", questions, gr.skip()
        return
    if answer is None:
        return
    status = status_line(answer, model_name=pipeline.model_name)
    body = answer_markdown(answer)
    for warning in answer.warnings:
        body += f"\n\n_{escape_markdown(warning)}_"
    if not answer.citations:
        body += f"\n\n_{escape_markdown(status)}_"
    chat[-1] = {"role": "assistant", "content": body}
    if answer.citations:
        chat.append(
            {
                "role": "assistant",
                "content": sources_markdown(answer),
                "metadata": {"title": f"Sources · {status}", "status": "done"},
            }
        )
    yield chat, source_cards(answer), status, [*questions, message], list(answer.citations)


def api_answer(pipeline: Pipeline, question: str, history: list[str] | None) -> dict:
    """The `ask` endpoint: the same JSON as `python -m rag ask --json`."""
    try:
        earlier = [h for h in (history or []) if isinstance(h, str)]
        follow_disk(pipeline)  # answer from the generation on disk, also after `rag index`
        return pipeline.ask(question, history=earlier).to_dict()
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc


def _megabytes(size: int) -> str:
    """An upload limit for the label: '20 MB', '0.2 MB' (a small limit is not '0 MB')."""
    mb = size / 2**20
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f}".removesuffix(".0") + " MB"


def _documents_panel(limit_bytes: int) -> dict:
    """The Documents accordion's components, by name (values come from the load event)."""
    c: dict = {}
    with gr.Accordion("Documents", open=False, elem_id="cqa-documents"):
        c["stats"] = gr.Markdown("Loading the document list…", elem_id="cqa-stats")
        c["table"] = gr.Dataframe(
            value=[], headers=["Title", "Date", "Chunks", "File"], interactive=False, wrap=True,
            elem_id="cqa-docs",
        )  # fmt: skip
        c["not_indexed"] = gr.Markdown("", elem_id="cqa-not-indexed")
        with gr.Row():
            with gr.Column():
                c["files"] = gr.File(
                    label=f"Add documents ({' '.join(SUPPORTED_EXTENSIONS)}; up to "
                    f"{_megabytes(limit_bytes)} each)",
                    file_count="multiple", file_types=list(SUPPORTED_EXTENSIONS),
                    elem_id="cqa-upload",
                )  # fmt: skip
                c["replace"] = gr.Checkbox(
                    False, label="Replace files with the same name (the old version goes to the "
                    "trash)", elem_id="cqa-replace",
                )  # fmt: skip
            with gr.Column():
                c["choice"] = gr.Dropdown(
                    choices=[], value=None, allow_custom_value=True, label="Remove a document",
                    elem_id="cqa-remove-choice",
                )  # fmt: skip
                c["remove"] = gr.Button("Remove…", variant="stop", elem_id="cqa-remove")
                c["rescan"] = gr.Button(
                    "Index the folder now", size="sm", elem_id="cqa-rescan",
                )  # fmt: skip
        with gr.Column(visible=False, elem_id="cqa-confirm") as c["confirm_box"]:
            c["confirm_text"] = gr.Markdown("", elem_id="cqa-confirm-text")
            with gr.Row():
                c["confirm"] = gr.Button("Move to trash", variant="stop", elem_id="cqa-confirm-yes")
                c["cancel"] = gr.Button("Cancel", elem_id="cqa-confirm-no")
        c["message"] = gr.Markdown("", elem_id="cqa-library-msg")
        gr.Markdown("#### Trash")
        c["trash"] = gr.Markdown("", elem_id="cqa-trash")
        with gr.Row():
            c["trash_choice"] = gr.Dropdown(
                choices=[], value=None, allow_custom_value=True, label="Restore a file",
                elem_id="cqa-trash-choice", scale=3,
            )  # fmt: skip
            c["restore"] = gr.Button("Restore", elem_id="cqa-restore", scale=1)
            c["empty"] = gr.Button("Empty trash…", elem_id="cqa-empty-trash", scale=1)
        c["pending"] = gr.State(None)
    return c


def _wire_documents(app: gr.Blocks, pipeline: Pipeline, c: dict, *, limit_bytes: int) -> None:
    """Events of the Documents panel; every change ends with the panel re-read from disk."""
    view = [c[k] for k in ("stats", "table", "choice", "not_indexed", "trash", "trash_choice")]
    ask = [c["confirm_box"], c["confirm_text"], c["confirm"], c["pending"], c["message"]]
    library = {"concurrency_limit": 1, "concurrency_id": "library"}
    private = {"api_visibility": "private"}
    app.load(lambda: view_updates(pipeline), None, view, **private)

    def on_upload(files: list | None, replace: bool) -> Iterator[str]:
        yield from upload_stream(pipeline, files=files, replace=replace, limit_bytes=limit_bytes)

    c["files"].upload(
        on_upload, [c["files"], c["replace"]], c["message"], api_name="upload", **library
    ).then(lambda: view_updates(pipeline), None, view, **private)
    c["rescan"].click(lambda: rescan_folder(pipeline), None, c["message"], **private)
    c["remove"].click(lambda s: ask_remove(pipeline, source=s), c["choice"], ask + view, **private)
    c["empty"].click(lambda: ask_empty(pipeline), None, ask, **private)
    c["cancel"].click(
        lambda: (_HIDDEN, None, "Nothing was changed."),
        None, [c["confirm_box"], c["pending"], c["message"]], queue=False, **private,
    )  # fmt: skip
    c["confirm"].click(
        lambda p: confirm_action(pipeline, pending=p), c["pending"],
        [c["confirm_box"], c["pending"], c["message"], *view], **library, **private,
    )  # fmt: skip
    c["restore"].click(
        lambda e: restore_file(pipeline, entry_id=e), c["trash_choice"], [c["message"], *view],
        **library, **private,
    )  # fmt: skip


def _wire_api(pipeline: Pipeline) -> None:
    """JSON endpoints for scripts; each change names its file, nothing has a default."""

    def documents() -> dict:
        """The documents, counts, files not indexed and the trash, from the index on disk."""
        return api_documents(pipeline)

    def remove_document(source: str) -> dict:
        """Move the named document (its corpus path, e.g. "notes.txt") to the trash."""
        return api_remove(pipeline, source=source)

    def restore_document(trash_id: str) -> dict:
        """Put a trash entry (its id, from `documents`) back into the corpus."""
        return api_restore(pipeline, trash_id=trash_id)

    def empty_trash(confirm: bool) -> dict:
        """Delete every file in the trash for good; confirm must be true."""
        return api_empty_trash(pipeline, confirm=confirm)

    library = {"concurrency_limit": 1, "concurrency_id": "library"}
    gr.api(documents, api_name="documents")
    gr.api(remove_document, api_name="remove", **library)
    gr.api(restore_document, api_name="restore", **library)
    gr.api(empty_trash, api_name="empty_trash", **library)


# Card clicks (and clicks on a [n] marker of the latest answer) send the card's position and
# source to Python. Positions, not new attributes: cards are rendered in citation order.
CARDS_JS = r"""
const send = (card) => {
  const all = Array.from(element.querySelectorAll('.cqa-card'));
  const index = all.indexOf(card);
  if (index >= 0) trigger('click', {index: index, source: card.dataset.source || ''});
};
element.addEventListener('click', (event) => {
  const card = event.target.closest('.cqa-card');
  if (card) send(card);
});
window.cqaCards = {element, send};
if (!window.cqaMarkers) {
  window.cqaMarkers = true;
  document.addEventListener('click', (event) => {
    const message = event.target.closest && event.target.closest('#cqa-chat [data-testid="bot"]');
    if (!message || !document.caretRangeFromPoint) return;
    const users = document.querySelectorAll('#cqa-chat [data-testid="user"]');
    const last = users[users.length - 1];
    if (last && (message.compareDocumentPosition(last) & Node.DOCUMENT_POSITION_FOLLOWING)) return;
    const range = document.caretRangeFromPoint(event.clientX, event.clientY);
    if (!range || range.startContainer.nodeType !== Node.TEXT_NODE) return;
    const text = range.startContainer.textContent, at = range.startOffset;
    for (const m of text.matchAll(/\[(\d+)\]/g)) {
      if (m.index <= at && at <= m.index + m[0].length) {
        const {element: cards, send: open} = window.cqaCards;
        const card = Array.from(cards.querySelectorAll('.cqa-card')).find(
          (c) => (c.querySelector('.cqa-n') || {}).textContent === m[0]);
        if (card) open(card);
        return;
      }
    }
  });
}
"""
# The view scrolls its text to the first highlight, and itself into sight, when it changes
# and when it first appears (the closed panel mounts it only once it opens).
VIEW_JS = r"""
const show = () => setTimeout(() => {
  const box = element.querySelector('.cqa-view-text');
  const hit = element.querySelector('mark.cqa-hit') || element.querySelector('.cqa-passage');
  if (box && hit) box.scrollTop = Math.max(0, hit.offsetTop - 40);
  const view = element.querySelector('.cqa-view');
  if (view) view.scrollIntoView({block: 'nearest'});
}, 200);
watch('value', show);
show();
"""


def _chat_column(pipeline: Pipeline) -> dict:
    """Status lines, chat, question box and buttons, by name."""
    c: dict = {}
    c["status"] = gr.Markdown("Ready.", elem_id="cqa-status")
    with gr.Row():
        c["ingest"] = gr.Markdown("", elem_id="cqa-ingest")
        c["cancel_ingest"] = gr.Button(
            "Cancel indexing", visible=False, size="sm", scale=0, min_width=140,
            elem_id="cqa-ingest-cancel",
        )  # fmt: skip
    c["chatbot"] = gr.Chatbot(
        elem_id="cqa-chat", height=520, sanitize_html=True, buttons=["copy"], label="Chat",
    )  # fmt: skip
    with gr.Row():
        c["box"] = gr.Textbox(
            placeholder="Ask a question about the documents…", show_label=False,
            scale=5, elem_id="cqa-question", max_lines=6, autofocus=True,
        )  # fmt: skip
        c["send"] = gr.Button("Ask", variant="primary", scale=1, min_width=70, elem_id="cqa-send")
        c["stop"] = gr.Button("Stop", scale=1, min_width=70, elem_id="cqa-stop")
        c["clear"] = gr.Button("New chat", scale=1, min_width=90)
    if Path(pipeline.config.index.corpus_dir).resolve() == DEFAULT_CORPUS:
        gr.Examples(EXAMPLES, inputs=c["box"], label="Examples")
    return c


def _sources_column() -> dict:
    """Source cards and the Document panel they open, by name."""
    c: dict = {}
    gr.Markdown("### Sources")
    c["cards"] = gr.HTML(source_cards(None), elem_id="cqa-sources", js_on_load=CARDS_JS)
    with gr.Accordion("Document", open=False, elem_id="cqa-view") as c["view_box"]:
        c["view"] = gr.HTML(
            view_message("Click a source to open the document at the cited passage."),
            elem_id="cqa-view-body", js_on_load=VIEW_JS,
        )  # fmt: skip
        c["download"] = gr.DownloadButton(
            "Download the original", visible=False, size="sm", elem_id="cqa-view-download"
        )
    return c


def _wire_chat(pipeline: Pipeline, c: dict) -> None:
    """Question, stop and new-chat events; answers keep their citations for the view."""

    def respond(message: str, chat: list[dict], questions: list[str]) -> Iterator[tuple]:
        follow_disk(pipeline)
        yield from chat_steps(pipeline, message, chat, questions)

    pending = gr.State("")
    outputs = [c["chatbot"], c["cards"], c["status"], c["questions"], c["cited"]]
    answer_events = [
        trigger(lambda m: ("", m), c["box"], [c["box"], pending], queue=False).then(
            respond,
            [pending, c["chatbot"], c["questions"]],
            outputs,
            concurrency_limit=8,
            concurrency_id="chat",
        )  # fmt: skip
        for trigger in (c["box"].submit, c["send"].click)
    ]
    c["stop"].click(lambda: "stopped", None, c["status"], cancels=answer_events, queue=False)
    c["clear"].click(
        lambda: ([], source_cards(None), "Ready.", [], []), None, outputs,
        cancels=answer_events, queue=False,
    )  # fmt: skip


def _wire_view(pipeline: Pipeline, c: dict) -> None:
    """A click on a card opens the Document panel at that citation."""

    def on_card(cited: list, event: gr.EventData) -> tuple:
        data = getattr(event, "_data", None) or {}
        return view_citation(
            pipeline, citations=cited, index=data.get("index"), source=str(data.get("source", ""))
        )

    c["cards"].click(
        on_card, c["cited"], [c["view_box"], c["view"], c["download"]],
        api_visibility="private", concurrency_limit=4, concurrency_id="view",
    )  # fmt: skip


def _wire_ingest(pipeline: Pipeline, c: dict, panel: dict) -> None:
    """The timer polling background indexing, and its Cancel button."""
    view = [panel[k] for k in ("stats", "table", "choice", "not_indexed", "trash", "trash_choice")]
    seen = gr.State({})
    timer = gr.Timer(1.0)
    timer.tick(
        lambda s: ingest_tick(pipeline, seen=s), seen,
        [c["ingest"], c["cancel_ingest"], seen, *view],
        queue=False, show_progress="hidden", api_visibility="private",
    )  # fmt: skip
    c["cancel_ingest"].click(
        lambda: cancel_indexing(pipeline), None, c["ingest"], queue=False, api_visibility="private"
    )


def api_ingest(pipeline: Pipeline) -> dict:
    """The `ingest` endpoint: the background indexing shown in the status line."""
    progress, waiting = ingest_status(pipeline)
    if progress is None:
        return {"state": "idle", "waiting": 0}
    return {
        "job": progress.job_id, "kind": progress.kind, "state": progress.state,
        "stage": progress.stage, "done": progress.done, "total": progress.total,
        "message": progress.message, "waiting": waiting,
    }  # fmt: skip


def build_app(
    pipeline: Pipeline,
    *,
    upload_limit_bytes: int = 20 * 1024 * 1024,
    watch_seconds: float | None = None,
) -> gr.Blocks:
    """The complete Blocks app around one shared pipeline.

    watch_seconds: look at the corpus folder that often and index what changed (None: never).
    """

    def api_ask(question: str, history: list[str] | None = None) -> dict:
        """Answer a question (with optional earlier questions) as `rag ask --json` does."""
        return api_answer(pipeline, question, history)

    def ingest() -> dict:
        """Background indexing (uploads, folder changes): state, stage, done/total, message."""
        return api_ingest(pipeline)

    # analytics off: Gradio would otherwise call home (version check, telemetry) at run time.
    with gr.Blocks(title="Corpus QA", fill_height=True, analytics_enabled=False) as app:
        gr.Markdown(
            "## Ask your documents\nAnswers come only from the indexed documents, each sentence "
            "cited [n]; click a source to open it. Mode: **" + pipeline.mode + "**."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                c = _chat_column(pipeline)
            with gr.Column(scale=2):
                c |= _sources_column()
        c["questions"], c["cited"] = gr.State([]), gr.State([])
        panel = _documents_panel(upload_limit_bytes)
        _wire_chat(pipeline, c)
        _wire_view(pipeline, c)
        _wire_documents(app, pipeline, panel, limit_bytes=upload_limit_bytes)
        _wire_ingest(pipeline, c, panel)
        gr.api(api_ask, api_name="ask", concurrency_limit=8)
        gr.api(ingest, api_name="ingest")
        _wire_api(pipeline)
    if watch_seconds:
        watch_corpus(pipeline, every=watch_seconds)
    return app


def launch_kwargs(*, upload_limit_bytes: int) -> dict:
    """Options every launch uses (CSS goes to launch in Gradio 6)."""
    return {"css": CSS, "max_file_size": upload_limit_bytes, "show_error": False}
