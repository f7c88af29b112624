"""The Gradio chat: streaming cited answers, source cards, a documents panel, and a JSON API.

    python -m ui            # http://127.0.0.1:7860

No pipeline logic lives here: answers come from `rag.Pipeline`, document changes from
`rag.library`, the document view from `rag.viewer`; this module only wires them to components
and renders them (ui/render.py). Clicking a source card (or a [n] marker of the latest answer)
opens the cited document at the passage. Uploads and folder changes are indexed in the
background; a timer shows their progress under the chat status, with a Cancel button.
The documents panel is read from the index on disk at every page load and after every change;
nothing in it is preselected, removal asks first and goes to the trash. Every finished answer
is saved (rag/conversations.py, data/conversations.sqlite3); the Conversations sidebar lists
the signed-in user's conversations (one shared list when the chat has no credentials), reopens
one as it was shown, renames, deletes (asking first) and exports it. With collections (a
`CollectionPipelines`), a selector picks the collection the questions, the Documents panel and
the conversation list are about; a filter (files, folders) limits a question to part of it.
Removing a document with "forget" (and emptying the trash) marks its citations in saved
conversations as removed. API: `ask`, `upload`,
`documents`, `remove` (a file name, required), `restore` (a trash id), `empty_trash`
(confirm=true), `ingest` (background indexing status).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr

from index import IndexLoadError
from index.config import SUPPORTED_EXTENSIONS
from index.document_store import get_document
from rag import Answer, Citation, Final, Pipeline
from rag.collections import CollectionPipelines
from rag.conversations import DEFAULT_COLLECTION as CHAT_COLLECTION
from rag.conversations import OK as CITATION_OK
from rag.conversations import (
    ConversationNotFound,
    ConversationStore,
    ConversationStoreError,
    ConversationWithTurns,
    check_citations,
    title_from_question,
)
from rag.library import (
    IngestJob,
    LibraryView,
    UploadResult,
    cancel_ingestion,
    check_removable,
    empty,
    follow_disk,
    forget_ocr,
    ingest_status,
    library_view,
    list_documents,
    list_trashed,
    ocr_pages,
    remove,
    restore,
    start_refresh,
    start_upload,
    watch_corpus,
)
from rag.retrieve import SourceFilter
from rag.viewer import DocumentView, open_view
from ui.render import (
    CSS,
    answer_from_record,
    answer_markdown,
    answer_record,
    conversation_label,
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
    target = _download_folder() / path.name
    shutil.copyfile(path, target)
    return str(target)


def _download_folder() -> Path:
    """A new folder under the temporary downloads folder; copies older than an hour go."""
    _DOWNLOADS.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - _DOWNLOAD_KEEP_S
    for old in _DOWNLOADS.iterdir():
        with contextlib.suppress(OSError):  # another click may be removing it right now
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=_DOWNLOADS))


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
        if isinstance(citation, str):  # a reopened answer whose document changed or left
            return _view_failure(f"This passage cannot be shown: {citation}.")
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


def ask_remove(
    pipeline: Pipeline,
    *,
    source: str | None,
    forget: bool = False,
    collection: str = CHAT_COLLECTION,
) -> tuple:
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
    if forget:
        text += " Its citations in saved conversations will show “document removed”."
    pending = {
        "action": "remove", "target": source, "forget": bool(forget), "collection": collection,
    }  # fmt: skip
    view = view_updates(pipeline, keep_selection=True)
    return (gr.update(visible=True), text, gr.update(value="Move to trash"), pending, "", *view)


def ask_empty(pipeline: Pipeline, *, collection: str = CHAT_COLLECTION) -> tuple:
    """The Empty trash button: asks first, deleting is for good."""
    try:
        entries = list_trashed(pipeline)
    except Exception as exc:  # an unreadable trash is a message, never a traceback
        return (_HIDDEN, "", gr.skip(), None, _failure(exc, action="Reading the trash"))
    if not entries:
        return (_HIDDEN, "", gr.skip(), None, "The trash is already empty.")
    text = f"Delete the **{len(entries)}** file(s) in the trash for good? This cannot be undone."
    pending = {"action": "empty", "target": [e.id for e in entries], "collection": collection}
    return (gr.update(visible=True), text, gr.update(value="Delete for good"), pending, "")


def forget_everywhere(
    store: ConversationStore | None, sources: list[str], *, collection: str
) -> str:
    """Mark the citations of sources in saved conversations as removed; a line saying so."""
    if store is None or not sources:
        return ""
    try:
        marked = sum(store.forget_document(source, collection) for source in sources)
    except Exception:  # the documents are gone either way; the message says what failed
        logger.exception("forgetting %s in saved conversations failed", sources)
        return " ⚠️ Saved conversations could not be updated; see the server log."
    if not marked:
        return ""
    return f" {marked} citation(s) in saved conversations now show “document removed”."


def _emptied_sources(pipeline: Pipeline, ids: list[str]) -> list[str]:
    """The sources of the trash entries ids that are not (again) in the index."""
    try:
        trashed = {e.id: e.source for e in list_trashed(pipeline)}
        indexed = {d.source for d in list_documents(pipeline)}
    except Exception:  # nothing to forget is better than a failed emptying
        logger.exception("reading the trash before emptying it failed")
        return []
    return sorted({trashed[i] for i in ids if i in trashed} - indexed)


def confirm_action(
    pipeline: Pipeline, *, pending: dict | None, store: ConversationStore | None = None
) -> tuple:
    """The confirm button: carry out the removal or the emptying the user was asked about.

    With a store, a removal asked with forget (and every emptying of the trash) marks the
    document's citations in saved conversations as removed.
    """
    action = (pending or {}).get("action")
    collection = (pending or {}).get("collection") or CHAT_COLLECTION
    try:
        if action == "remove":
            forget = bool(pending.get("forget"))
            pages = ocr_pages(pipeline, pending["target"]) if forget else []
            removal = remove(pipeline, pending["target"])
            message = (
                f"Moved {escape_markdown(removal.entry.source)} to the trash. "
                f"Index: {escape_markdown(removal.report.summary())}"
            )
            if forget:
                # Forgotten everywhere: not kept in the trash either (the index and its
                # stored text dropped it with the update).
                cleared = forget_ocr(pipeline, removal.entry.path, pages)
                empty(pipeline, ids=[removal.entry.id])
                message += " Deleted from the trash too" + (
                    f", and {cleared} page(s) from the OCR cache." if cleared else "."
                )
                sources = [removal.entry.source]
                message += forget_everywhere(store, sources, collection=collection)
        elif action == "empty":
            gone = _emptied_sources(pipeline, list(pending["target"])) if store else []
            deleted = empty(pipeline, ids=pending["target"])
            message = f"Deleted {deleted} file(s) from the trash for good."
            message += forget_everywhere(store, gone, collection=collection)
        else:
            message = "Nothing to confirm."
    except Exception as exc:  # the UI must never show a traceback
        message = _failure(exc, action="Remove" if action == "remove" else "Emptying the trash")
    return (_HIDDEN, None, message, *view_updates(pipeline))


def restore_file(
    pipeline: Pipeline,
    *,
    entry_id: str | None,
    store: ConversationStore | None = None,
    collection: str = CHAT_COLLECTION,
) -> tuple:
    """The Restore button: the chosen trash entry goes back into the corpus and the index.

    With a store, citations of the document that were marked removed are unmarked.
    """
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
    if store is not None and back.source == back.entry.source:
        try:
            store.unforget_document(back.source, collection)
        except Exception:  # the document is back either way
            logger.exception("unmarking %s in saved conversations failed", back.source)
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
    for update, _answer in _turn_steps(pipeline, message, chat, questions):
        yield update


def answer_messages(
    answer: Answer, status: str, *, notes: dict[int, str] | None = None
) -> list[dict]:
    """The chat messages of a finished answer: the text, then its sources (collapsed).

    Live answers and reopened saved ones go through here, so both look the same.
    """
    body = answer_markdown(answer)
    for warning in answer.warnings:
        body += f"\n\n_{escape_markdown(warning)}_"
    if not answer.citations:
        body += f"\n\n_{escape_markdown(status)}_"
    messages = [{"role": "assistant", "content": body}]
    if answer.citations:
        messages.append(
            {
                "role": "assistant",
                "content": sources_markdown(answer, notes=notes),
                "metadata": {"title": f"Sources · {status}", "status": "done"},
            }
        )
    return messages


def _turn_steps(
    pipeline: Pipeline,
    message: str,
    chat: list[dict],
    questions: list[str],
    where: SourceFilter | None = None,
) -> Iterator[tuple[tuple, Answer | None]]:
    """chat_steps' updates, each with the finished Answer (None until the last one)."""
    limits = {"where": where} if where is not None else {}
    chat = list(chat or [])
    questions = list(questions or [])
    chat.append({"role": "user", "content": escape_markdown(message or "")})
    chat.append({"role": "assistant", "content": "…"})
    text = ""
    answer: Answer | None = None
    try:
        for event in pipeline.stream(message or "", history=questions, **limits):
            if isinstance(event, Final):
                answer = event.answer
            else:
                text += event.text
                chat[-1] = {"role": "assistant", "content": escape_markdown(text)}
                yield (list(chat), gr.skip(), "answering…", questions, gr.skip()), None
    except ValueError as exc:
        chat[-1] = {"role": "assistant", "content": f"⚠️ {escape_markdown(str(exc))}"}
        yield (chat, source_cards(None), "not answered", questions, []), None
        return
    except Exception:  # the UI must never show a traceback
        logger.exception("answering failed")
        chat[-1] = {"role": "assistant", "content": "⚠️ Something went wrong; see the server log."}
        yield (chat, gr.skip(), "error", questions, gr.skip()), None
        return
    if answer is None:
        return
    status = status_line(answer, model_name=pipeline.model_name)
    if where is not None:
        status += f" · only {escape_markdown(where.describe())}"
    chat[-1:] = answer_messages(answer, status)
    cited = list(answer.citations)
    yield (chat, source_cards(answer), status, [*questions, message], cited), answer


def api_answer(
    pipeline: Pipeline,
    question: str,
    history: list[str] | None,
    *,
    collections: CollectionPipelines | None = None,
    name: str | None = None,
) -> dict:
    """The `ask` endpoint: the same JSON as `python -m rag ask --json`, in collection name."""
    try:
        pipeline = pick_pipeline(pipeline, collections, name)
        earlier = [h for h in (history or []) if isinstance(h, str)]
        follow_disk(pipeline)  # answer from the generation on disk, also after `rag index`
        return pipeline.ask(question, history=earlier).to_dict()
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc


# --- collections and the filter ------------------------------------------------------------------


def collection_names(collections: CollectionPipelines | None) -> list[str]:
    """The selector's choices: every collection's name, the default first."""
    if collections is None:
        return [CHAT_COLLECTION]
    try:
        return collections.names()
    except (ValueError, OSError):  # a broken settings file: the default still works
        logger.exception("listing the collections failed")
        return [CHAT_COLLECTION]


def pick_pipeline(
    pipeline: Pipeline, collections: CollectionPipelines | None, name: object
) -> Pipeline:
    """The selected collection's pipeline (pipeline for the default); ValueError says why not."""
    if not name or name == CHAT_COLLECTION:
        return pipeline
    if collections is None or not isinstance(name, str):
        raise ValueError(f"unknown collection {name!r} (known: {CHAT_COLLECTION})")
    try:
        return collections.get(name)
    except IndexLoadError as exc:
        raise ValueError(
            f"collection {name!r} has no usable index; run: python -m rag index --collection {name}"
        ) from exc
    except OSError as exc:
        raise ValueError(f"collection {name!r} cannot be opened: {_reason(exc)}") from exc


def chat_filter(files: object, folders: object) -> SourceFilter | None:
    """The chat's filter: chosen files and comma-separated folders; None when both are empty."""
    if isinstance(files, str):
        files = [files]
    chosen = [f for f in files or [] if not isinstance(f, str) or f.strip()]
    if isinstance(folders, str):
        folders = re.split(r"[,\n]", folders)
    below = [f for f in folders or [] if not isinstance(f, str) or f.strip()]
    if not chosen and not below:
        return None
    return SourceFilter(files=tuple(chosen), folders=tuple(below))


def filter_choices(pipeline: Pipeline, *, clear: bool = False) -> dict:
    """The filter's file list: the collection's indexed documents (cleared when clear)."""
    try:
        sources = sorted(d.source for d in list_documents(pipeline))
    except Exception:  # the UI must never show a traceback
        logger.exception("listing the documents for the filter failed")
        return gr.skip()
    return gr.update(choices=sources, **({"value": []} if clear else {}))


def _refused_turn(message: str, chat: list[dict], questions: list[str], reason: str) -> tuple:
    """The outputs of a question that was not asked: the reason in the chat, nothing saved."""
    chat = [
        *(chat or []),
        {"role": "user", "content": escape_markdown(message or "")},
        {"role": "assistant", "content": f"⚠️ {escape_markdown(reason)}"},
    ]
    return (chat, source_cards(None), "not answered", list(questions or []), [],
            *(gr.skip(),) * 4)  # fmt: skip


def collection_steps(
    pipeline: Pipeline,
    collections: CollectionPipelines | None,
    store: ConversationStore | None,
    *,
    owner: str,
    collection: str | None,
    conversation_id: str | None,
    message: str,
    chat: list[dict],
    questions: list[str],
    files: object = None,
    folders: object = "",
) -> Iterator[tuple]:
    """conversation_steps on the selected collection, with the filter (when one is set).

    An unknown collection or an invalid filter is said in the chat; nothing is saved then.
    """
    name = collection or CHAT_COLLECTION
    try:
        chosen = pick_pipeline(pipeline, collections, name)
        where = chat_filter(files, folders)
    except ValueError as exc:
        yield _refused_turn(message, chat, questions, str(exc))
        return
    follow_disk(chosen)
    yield from conversation_steps(
        chosen, store, owner=owner, conversation_id=conversation_id, message=message,
        chat=chat, questions=questions, collection=name, where=where,
    )  # fmt: skip


def switch_collection(store: ConversationStore | None, *, owner: str, name: str | None) -> tuple:
    """The selector: a new conversation of that collection; (*new_conversation, info)."""
    chat, cards, _status, questions, cited, _cid, _list, title = new_conversation()
    listing, info = conversation_list(store, owner, collection=name or CHAT_COLLECTION)
    status = f"Collection: **{escape_markdown(name or CHAT_COLLECTION)}**. Ready."
    return chat, cards, status, questions, cited, None, listing, title, info


def collection_panel(
    pipeline: Pipeline, collections: CollectionPipelines | None, name: str | None
) -> tuple:
    """The Documents panel and the filter of the selected collection, the confirm box closed.

    Returns (*view_updates, filter files, filter folders, confirm box, pending).
    """
    reset = (gr.update(value=[]), "", _HIDDEN, None)
    try:
        chosen = pick_pipeline(pipeline, collections, name)
    except ValueError as exc:
        failed = f"⚠️ {escape_markdown(str(exc))}"
        empty_list = gr.update(choices=[], value=None)
        rows = (failed, [], empty_list, "", "", empty_list)
        return (*rows, gr.update(choices=[], value=[]), *reset[1:])
    return (*view_updates(chosen), filter_choices(chosen, clear=True), *reset[1:])


# --- saved conversations ------------------------------------------------------------------------

CONVERSATIONS_FILE = "conversations.sqlite3"
SAVE_FAILED = "⚠️ this answer was not saved (see the server log)"
SAVING_OFF = "⚠️ not saved: saving conversations is off (see the server log)"
EXPORT_KINDS = {"markdown": ".md", "json": ".json"}


def conversations_path(pipeline: Pipeline) -> Path:
    """Where the chat saves conversations: the data folder that holds the index (data/)."""
    return Path(pipeline.config.index.index_dir).parent / CONVERSATIONS_FILE


def open_conversations(path: str | Path) -> ConversationStore | None:
    """The conversations store at path, or None (logged) when it cannot be opened."""
    try:
        return ConversationStore(path)
    except ConversationStoreError as exc:
        logger.error("saved conversations are off: %s", exc)
        return None


def request_owner(request: gr.Request | None) -> str:
    """The signed-in user when the chat has credentials; "" when it runs without them."""
    return str(getattr(request, "username", None) or "") if request is not None else ""


def document_reader(pipeline: Pipeline) -> Callable[[str], str | None]:
    """The indexed text of a document by source (None when it left the index), read once."""
    documents = pipeline.index.manifest.get("documents", {})
    index_dir = Path(pipeline.config.index.index_dir)
    texts: dict[str, str | None] = {}

    def read(source: str) -> str | None:
        if source not in texts:
            entry = documents.get(source)
            text = None
            if isinstance(entry, dict):
                try:
                    text = get_document(index_dir, str(entry.get("text_key", ""))).text
                except ValueError as exc:
                    logger.warning("stored text of %s not readable: %s", source, exc)
            texts[source] = text
        return texts[source]

    return read


def _list_info(count: int | None) -> str:
    """The line under the list: how many are saved, or why saving is off."""
    if count is None:
        return "⚠️ Saving conversations is off: the conversations file cannot be opened."
    if count == 0:
        return "_No saved conversations yet: every answer is saved here._"
    return f"{count} saved conversation{'' if count == 1 else 's'}, newest first."


def conversation_list(
    store: ConversationStore | None,
    owner: str,
    *,
    selected: str | None = None,
    collection: str = CHAT_COLLECTION,
) -> tuple[dict, str]:
    """(list update, info line): the owner's conversations of collection, newest first."""
    if store is None:
        return gr.update(choices=[], value=None), _list_info(None)
    try:
        found = store.list(owner, collection or CHAT_COLLECTION)
    except Exception:  # the UI must never show a traceback
        logger.exception("listing conversations failed")
        return gr.update(), "⚠️ The saved conversations could not be read; see the server log."
    choices = [(conversation_label(c), c.id) for c in found]
    value = selected if selected in {c.id for c in found} else None
    return gr.update(choices=choices, value=value), _list_info(len(found))


def save_turn(
    store: ConversationStore | None,
    *,
    owner: str,
    conversation_id: str | None,
    question: str,
    answer: Answer,
    model_name: str | None,
    collection: str = CHAT_COLLECTION,
) -> tuple[str | None, str]:
    """Store a finished turn: (the conversation it is in, a warning or ""). Never raises.

    Without a conversation (or when it was deleted meanwhile) a new one starts with this turn.
    """
    if store is None:
        return conversation_id, SAVING_OFF
    record = answer_record(answer, model_name=model_name)
    note = ""
    try:
        if conversation_id:
            try:
                store.add_turn(conversation_id, owner, question, record)
                return conversation_id, ""
            except ConversationNotFound:
                note = "⚠️ that conversation was deleted meanwhile; this answer starts a new one"
        created = store.create(owner, collection or CHAT_COLLECTION)
        try:
            store.add_turn(created.id, owner, question, record)
        except Exception:
            with contextlib.suppress(Exception):  # no empty conversation left behind
                store.delete(created.id, owner)
            raise
        return created.id, note
    except Exception:  # the answer stays on screen whatever happens to the file
        logger.exception("saving a chat turn failed")
        return conversation_id, SAVE_FAILED


def conversation_steps(
    pipeline: Pipeline,
    store: ConversationStore | None,
    *,
    owner: str,
    conversation_id: str | None,
    message: str,
    chat: list[dict],
    questions: list[str],
    collection: str = CHAT_COLLECTION,
    where: SourceFilter | None = None,
) -> Iterator[tuple]:
    """chat_steps, the finished turn saved: + (conversation id, list, list info, title)."""
    for update, answer in _turn_steps(pipeline, message, chat, questions, where):
        if answer is None:
            yield (*update, gr.skip(), gr.skip(), gr.skip(), gr.skip())
            continue
        saved, warning = save_turn(
            store, owner=owner, conversation_id=conversation_id, question=message,
            answer=answer, model_name=pipeline.model_name, collection=collection,
        )  # fmt: skip
        chat, cards, status, asked, cited = update
        if warning:
            status = f"{status} · {warning}"
        listing = (
            conversation_list(store, owner, selected=saved, collection=collection)
            if saved
            else (gr.skip(),) * 2
        )
        title = title_from_question(message) if saved and saved != conversation_id else gr.skip()
        yield chat, cards, status, asked, cited, saved, *listing, title


def _citation_notes(record: dict, read: Callable[[str], str | None]) -> dict[int, str]:
    """For each stored citation whose document changed or left: its number and what to say."""
    try:
        states = check_citations(record, read)
    except Exception:  # a damaged record: shown as stored
        logger.exception("checking stored citations failed")
        return {}
    return {s.n: s.note for s in states if s.state != CITATION_OK}


def conversation_chat(pipeline: Pipeline, whole: ConversationWithTurns) -> tuple:
    """A saved conversation as the chat shows it: (chat, cards, status, questions, cited).

    Answers render as they did live; a citation whose document changed or left since says so
    on its card (and a click on it explains) instead of showing a span that is not there.
    """
    read = document_reader(pipeline)
    chat: list[dict] = []
    questions: list[str] = []
    last: Answer | None = None
    last_notes: dict[int, str] = {}
    stale = 0
    for turn in whole.turns:
        answer = answer_from_record(turn.answer)
        notes = _citation_notes(turn.answer, read)
        stale += len(notes)
        model = turn.answer.get("model_name")
        status = status_line(answer, model_name=model if isinstance(model, str) else None)
        chat.append({"role": "user", "content": escape_markdown(turn.question)})
        chat += answer_messages(answer, status, notes=notes)
        questions.append(turn.question)
        last, last_notes = answer, notes
    title = whole.conversation.title or "Untitled conversation"
    count = len(whole.turns)
    status = f"Reopened “{escape_markdown(title)}” · {count} question{'' if count == 1 else 's'}"
    if stale:
        status += f" · ⚠️ {stale} cited passage(s) changed or removed since"
    cited: list = [last_notes.get(c.n) or c for c in last.citations] if last else []
    return chat, source_cards(last, notes=last_notes), status, questions, cited


def _nothing_open(store: ConversationStore | None) -> str:
    return "Saving conversations is off." if store is None else "Open a conversation first."


def reopen_conversation(
    pipeline: Pipeline,
    store: ConversationStore | None,
    *,
    owner: str,
    conversation_id: object,
    collections: CollectionPipelines | None = None,
    current: str = CHAT_COLLECTION,
) -> tuple:
    """A pick in the list: (chat, cards, status, questions, cited, id, title, msg, list, ...).

    The last three are the list, its info line and the selector. pipeline is the default
    collection's; a conversation of another collection than current is checked against that
    collection's index, and the selector switches to it.
    """
    skip5 = (gr.skip(),) * 5
    if store is None or not isinstance(conversation_id, str) or not conversation_id:
        return (*skip5, gr.skip(), gr.skip(), _nothing_open(store), *(gr.skip(),) * 3)
    try:
        whole = store.get(conversation_id, owner)
        name = whole.conversation.collection or CHAT_COLLECTION
        chosen = pick_pipeline(pipeline, collections, name)
        follow_disk(chosen)  # compare citations with the documents as indexed now
        shown = conversation_chat(chosen, whole)
    except ConversationNotFound:
        listing = conversation_list(store, owner, collection=current)
        message = "That conversation no longer exists."
        return (*skip5, gr.skip(), gr.skip(), message, *listing, gr.skip())
    except ValueError as exc:  # its collection is gone or has no index
        message = f"⚠️ The conversation could not be opened: {escape_markdown(str(exc))}"
        return (*skip5, gr.skip(), gr.skip(), message, *(gr.skip(),) * 3)
    except Exception:  # the UI must never show a traceback
        logger.exception("reopening conversation %s failed", conversation_id)
        message = "⚠️ The conversation could not be opened; see the server log."
        return (*skip5, gr.skip(), gr.skip(), message, *(gr.skip(),) * 3)
    title = whole.conversation.title
    if name == (current or CHAT_COLLECTION):
        return (*shown, conversation_id, title, "", gr.skip(), gr.skip(), gr.skip())
    listing = conversation_list(store, owner, selected=conversation_id, collection=name)
    return (*shown, conversation_id, title, "", *listing, gr.update(value=name))


def new_conversation() -> tuple:
    """The New conversation button: (chat, cards, status, questions, cited, id, list, title)."""
    return [], source_cards(None), "Ready.", [], [], None, gr.update(value=None), ""


def rename_conversation(
    store: ConversationStore | None,
    *,
    owner: str,
    conversation_id: str | None,
    title: str,
    collection: str = CHAT_COLLECTION,
) -> tuple:
    """The Rename button: (list, info, title box, message)."""
    shown = {"collection": collection}
    if store is None or not conversation_id:
        return gr.skip(), gr.skip(), gr.skip(), _nothing_open(store)
    try:
        renamed = store.rename(conversation_id, owner, title)
    except ConversationNotFound:
        gone = "That conversation no longer exists."
        return (*conversation_list(store, owner, **shown), gr.skip(), gone)
    except Exception as exc:  # a refused title is a message, anything else too
        return gr.skip(), gr.skip(), gr.skip(), _failure(exc, action="Renaming")
    listing = conversation_list(store, owner, selected=renamed.id, **shown)
    return (*listing, renamed.title, f"Renamed to “{escape_markdown(renamed.title)}”.")


def ask_delete(
    store: ConversationStore | None, *, owner: str, conversation_id: str | None
) -> tuple:
    """The Delete button: nothing happens yet; (confirm box, its text, pending, message)."""
    if store is None or not conversation_id:
        return _HIDDEN, "", None, _nothing_open(store)
    try:
        whole = store.get(conversation_id, owner)
    except ConversationNotFound:
        return _HIDDEN, "", None, "That conversation no longer exists."
    except Exception as exc:  # the UI must never show a traceback
        return _HIDDEN, "", None, _failure(exc, action="Reading the conversation")
    title = escape_markdown(whole.conversation.title or "Untitled conversation")
    count = len(whole.turns)
    text = (
        f"Delete **{title}** ({count} question{'' if count == 1 else 's'}) for good? "
        "This cannot be undone."
    )
    return gr.update(visible=True), text, conversation_id, ""


def confirm_delete(
    store: ConversationStore | None,
    *,
    owner: str,
    pending: str | None,
    current: str | None,
    collection: str = CHAT_COLLECTION,
) -> tuple:
    """The confirm button: (box, pending, message, list, info, id, title, *chat outputs).

    Deleting the open conversation also clears the chat; deleting another leaves it be.
    """
    if store is None or not pending:
        return (_HIDDEN, None, "Nothing to delete.", *(gr.skip(),) * 9)
    try:
        store.delete(pending, owner)
        message = "Deleted the conversation."
    except ConversationNotFound:
        message = "That conversation was already deleted."
    except Exception as exc:  # the UI must never show a traceback
        return (_HIDDEN, None, _failure(exc, action="Deleting"), *(gr.skip(),) * 9)
    if pending == current:
        chat_reset = ([], source_cards(None), "Ready.", [], [])
        listing = conversation_list(store, owner, collection=collection)
        return (_HIDDEN, None, message, *listing, None, "", *chat_reset)
    listing = conversation_list(store, owner, selected=current, collection=collection)
    return (_HIDDEN, None, message, *listing, gr.skip(), gr.skip(), *(gr.skip(),) * 5)


def _file_name(title: str, suffix: str) -> str:
    """A safe download name from a title: 'Who-commands-NORTHCOM.md'."""
    stem = re.sub(r"[^\w-]+", "-", title, flags=re.UNICODE).strip("-_")[:60].strip("-_")
    return (stem or "conversation") + suffix


def export_conversation(
    pipeline: Pipeline,
    store: ConversationStore | None,
    *,
    owner: str,
    conversation_id: str | None,
    kind: str,
) -> tuple:
    """An Export button: (file download, message); Markdown or JSON of the open conversation."""
    if store is None or not conversation_id:
        return gr.update(value=None, visible=False), _nothing_open(store)
    try:
        if kind == "markdown":
            follow_disk(pipeline)
            text = store.export_markdown(
                conversation_id, owner, read_document=document_reader(pipeline)
            )
            title = text.split("\n", 1)[0].removeprefix("# ")
        else:
            data = store.export_json(conversation_id, owner)
            text, title = json.dumps(data, ensure_ascii=False, indent=2) + "\n", data["title"]
        target = _download_folder() / _file_name(title.replace("\\", ""), EXPORT_KINDS[kind])
        target.write_text(text, encoding="utf-8")
    except ConversationNotFound:
        return gr.update(value=None, visible=False), "That conversation no longer exists."
    except Exception as exc:  # the UI must never show a traceback
        return gr.update(value=None, visible=False), _failure(exc, action="Exporting")
    label = "Markdown" if kind == "markdown" else "JSON"
    return gr.update(value=str(target), visible=True), f"Exported as {label}: {target.name}"


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
                c["forget"] = gr.Checkbox(
                    False, label="Forget it everywhere: delete it from the trash too, and saved "
                    "conversations show its citations as “document removed”", elem_id="cqa-forget",
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


def _wire_documents(
    app: gr.Blocks,
    pipeline: Pipeline,
    collections: CollectionPipelines | None,
    store: ConversationStore | None,
    c: dict,
    chat: dict,
    *,
    limit_bytes: int,
) -> None:
    """Events of the Documents panel, on the selected collection.

    Every change ends with the panel (and the filter's file list) re-read from disk.
    """
    view = [c[k] for k in ("stats", "table", "choice", "not_indexed", "trash", "trash_choice")]
    ask = [c["confirm_box"], c["confirm_text"], c["confirm"], c["pending"], c["message"]]
    library = {"concurrency_limit": 1, "concurrency_id": "library"}
    private = {"api_visibility": "private"}
    selector, files_filter = chat["collection"], chat["filter_files"]
    whole = [*view, files_filter, chat["filter_folders"], c["confirm_box"], c["pending"]]

    def shown(name: str | None) -> tuple:
        return collection_panel(pipeline, collections, name)

    def chosen(name: str | None) -> Pipeline:
        return pick_pipeline(pipeline, collections, name)

    def refused(exc: ValueError) -> str:
        return f"⚠️ {escape_markdown(str(exc))}"

    def reread(name: str | None) -> tuple:
        try:
            target = chosen(name)
        except ValueError as exc:
            return (refused(exc), *(gr.skip(),) * 6)
        return (*view_updates(target), filter_choices(target))

    def refilter(name: str | None) -> dict:
        try:
            return filter_choices(chosen(name))
        except ValueError:
            return gr.skip()

    def on_upload(files: list | None, replace: bool, name: str | None) -> Iterator[str]:
        try:
            target = chosen(name)
        except ValueError as exc:
            yield refused(exc)
            return
        yield from upload_stream(target, files=files, replace=replace, limit_bytes=limit_bytes)

    def on_rescan(name: str | None) -> str:
        try:
            return rescan_folder(chosen(name))
        except ValueError as exc:
            return refused(exc)

    def on_remove(source: str | None, forget: bool, name: str | None) -> tuple:
        try:
            target = chosen(name)
        except ValueError as exc:
            return (_HIDDEN, "", gr.skip(), None, refused(exc), *(gr.skip(),) * 6)
        collection = name or CHAT_COLLECTION
        return ask_remove(target, source=source, forget=forget, collection=collection)

    def on_empty(name: str | None) -> tuple:
        try:
            target = chosen(name)
        except ValueError as exc:
            return (_HIDDEN, "", gr.skip(), None, refused(exc))
        return ask_empty(target, collection=name or CHAT_COLLECTION)

    def on_confirm(pending: dict | None) -> tuple:
        try:  # the collection the user was asked about, whatever is selected now
            target = chosen((pending or {}).get("collection"))
        except ValueError as exc:
            return (_HIDDEN, None, refused(exc), *(gr.skip(),) * 6)
        return confirm_action(target, pending=pending, store=store)

    def on_restore(entry_id: str | None, name: str | None) -> tuple:
        try:
            target = chosen(name)
        except ValueError as exc:
            return (refused(exc), *(gr.skip(),) * 6)
        collection = name or CHAT_COLLECTION
        return restore_file(target, entry_id=entry_id, store=store, collection=collection)

    app.load(shown, selector, whole, **private)
    selector.change(shown, selector, whole, **private)  # also when reopening switches it
    c["files"].upload(
        on_upload, [c["files"], c["replace"], selector], c["message"], api_name="upload",
        **library,
    ).then(reread, selector, [*view, files_filter], **private)  # fmt: skip
    c["rescan"].click(on_rescan, selector, c["message"], **private)
    c["remove"].click(on_remove, [c["choice"], c["forget"], selector], ask + view, **private)
    c["empty"].click(on_empty, selector, ask, **private)
    c["cancel"].click(
        lambda: (_HIDDEN, None, "Nothing was changed."),
        None, [c["confirm_box"], c["pending"], c["message"]], queue=False, **private,
    )  # fmt: skip
    c["confirm"].click(
        on_confirm, c["pending"], [c["confirm_box"], c["pending"], c["message"], *view],
        **library, **private,
    ).then(refilter, selector, files_filter, **private)  # fmt: skip
    c["restore"].click(
        on_restore, [c["trash_choice"], selector], [c["message"], *view], **library, **private,
    ).then(refilter, selector, files_filter, **private)  # fmt: skip


def _wire_api(pipeline: Pipeline, collections: CollectionPipelines | None = None) -> None:
    """JSON endpoints for scripts; each change names its file, nothing has a default.

    Each takes an optional collection name last (the default collection without one).
    """

    def chosen(collection: str | None) -> Pipeline:
        try:
            return pick_pipeline(pipeline, collections, collection)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    def documents(collection: str | None = None) -> dict:
        """The documents, counts, files not indexed and the trash, from the index on disk."""
        return api_documents(chosen(collection))

    def remove_document(source: str, collection: str | None = None) -> dict:
        """Move the named document (its corpus path, e.g. "notes.txt") to the trash."""
        return api_remove(chosen(collection), source=source)

    def restore_document(trash_id: str, collection: str | None = None) -> dict:
        """Put a trash entry (its id, from `documents`) back into the corpus."""
        return api_restore(chosen(collection), trash_id=trash_id)

    def empty_trash(confirm: bool, collection: str | None = None) -> dict:
        """Delete every file in the trash for good; confirm must be true."""
        return api_empty_trash(chosen(collection), confirm=confirm)

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
    with gr.Accordion("Filter: only some documents", open=False, elem_id="cqa-filter"), gr.Row():
        c["filter_files"] = gr.Dropdown(
            choices=[], value=[], multiselect=True, allow_custom_value=True,
            label="Only these files", elem_id="cqa-filter-files", scale=3,
        )  # fmt: skip
        c["filter_folders"] = gr.Textbox(
            label="Only these folders (comma-separated)", max_lines=1, scale=2,
            placeholder="e.g. notes, mail/2024", elem_id="cqa-filter-folders",
        )  # fmt: skip
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


def _conversations_panel(names: list[str]) -> dict:
    """The Conversations sidebar's components, by name (the list comes from the load event)."""
    c: dict = {}
    with gr.Sidebar(label="Conversations", open=True, width=300, elem_id="cqa-conversations"):
        c["collection"] = gr.Dropdown(
            choices=names, value=CHAT_COLLECTION, label="Collection", interactive=True,
            elem_id="cqa-collection",
        )  # fmt: skip
        gr.Markdown("### Conversations")
        c["clear"] = gr.Button("New conversation", variant="primary", size="sm", elem_id="cqa-new")
        c["conv_info"] = gr.Markdown("", elem_id="cqa-conv-info")
        c["conv_list"] = gr.Radio(
            choices=[], value=None, show_label=False, container=False, elem_id="cqa-conv-list",
        )  # fmt: skip
        gr.Markdown("#### This conversation")
        c["conv_title"] = gr.Textbox(label="Title", max_lines=1, elem_id="cqa-conv-title")
        c["conv_rename"] = gr.Button("Rename", size="sm", elem_id="cqa-conv-rename")
        with gr.Row():
            c["conv_md"] = gr.Button("Export Markdown", size="sm", elem_id="cqa-conv-md")
            c["conv_json"] = gr.Button("Export JSON", size="sm", elem_id="cqa-conv-json")
        c["conv_file"] = gr.File(
            label="Export", visible=False, interactive=False, elem_id="cqa-conv-file"
        )
        c["conv_delete"] = gr.Button(
            "Delete…", variant="stop", size="sm", elem_id="cqa-conv-delete"
        )
        with gr.Column(visible=False, elem_id="cqa-conv-confirm") as c["conv_confirm_box"]:
            c["conv_confirm_text"] = gr.Markdown("", elem_id="cqa-conv-confirm-text")
            with gr.Row():
                c["conv_confirm"] = gr.Button(
                    "Delete for good", variant="stop", size="sm", elem_id="cqa-conv-confirm-yes"
                )
                c["conv_cancel"] = gr.Button("Cancel", size="sm", elem_id="cqa-conv-confirm-no")
        c["conv_message"] = gr.Markdown("", elem_id="cqa-conv-msg")
        c["conv_pending"] = gr.State(None)
    return c


def _wire_chat(
    pipeline: Pipeline,
    collections: CollectionPipelines | None,
    store: ConversationStore | None,
    c: dict,
) -> list:
    """Question, stop and new-conversation events; each finished answer is saved.

    Returns the answer events (what reopening a conversation cancels).
    """

    def respond(
        message: str, chat: list[dict], questions: list[str], conversation_id: str | None,
        collection: str | None, files: list | None, folders: str | None, request: gr.Request,
    ) -> Iterator[tuple]:  # fmt: skip
        yield from collection_steps(
            pipeline, collections, store, owner=request_owner(request), collection=collection,
            conversation_id=conversation_id, message=message, chat=chat, questions=questions,
            files=files, folders=folders,
        )  # fmt: skip

    pending = gr.State("")
    outputs = [c["chatbot"], c["cards"], c["status"], c["questions"], c["cited"]]
    saved = [c["conversation"], c["conv_list"], c["conv_info"], c["conv_title"]]
    asked = [pending, c["chatbot"], c["questions"], c["conversation"], c["collection"]]
    answer_events = [
        trigger(lambda m: ("", m), c["box"], [c["box"], pending], queue=False).then(
            respond,
            [*asked, c["filter_files"], c["filter_folders"]],
            outputs + saved,
            concurrency_limit=8,
            concurrency_id="chat",
        )  # fmt: skip
        for trigger in (c["box"].submit, c["send"].click)
    ]
    c["stop"].click(lambda: "stopped", None, c["status"], cancels=answer_events, queue=False)
    reset = [*outputs, c["conversation"], c["conv_list"], c["conv_title"]]
    for trigger in (c["clear"].click, c["chatbot"].clear):  # the chat's own bin too
        trigger(
            new_conversation, None, reset, cancels=answer_events, queue=False,
            api_visibility="private",
        )  # fmt: skip
    switched = [*outputs, c["conversation"], c["conv_list"], c["conv_title"], c["conv_info"]]

    def switch(name: str | None, request: gr.Request) -> tuple:
        return switch_collection(store, owner=request_owner(request), name=name)

    c["collection"].input(  # the user's pick only: reopening switches it without a reset
        switch, c["collection"], switched, cancels=answer_events, api_visibility="private"
    )
    return answer_events


def _wire_conversations(
    app: gr.Blocks,
    pipeline: Pipeline,
    collections: CollectionPipelines | None,
    store: ConversationStore | None,
    c: dict,
    answers: list,
) -> None:
    """The Conversations sidebar: list, reopen, rename, delete (confirmed) and export."""
    private = {"api_visibility": "private"}
    chat = [c["chatbot"], c["cards"], c["status"], c["questions"], c["cited"]]
    listing = [c["conv_list"], c["conv_info"]]

    def listed(name: str | None, request: gr.Request) -> tuple:
        shown = conversation_list(store, request_owner(request), collection=name or CHAT_COLLECTION)
        return (*shown, gr.update(choices=collection_names(collections)))

    def reopen(conversation_id: str | None, name: str | None, request: gr.Request) -> tuple:
        return reopen_conversation(
            pipeline, store, owner=request_owner(request), conversation_id=conversation_id,
            collections=collections, current=name or CHAT_COLLECTION,
        )  # fmt: skip

    def renamed(
        conversation_id: str | None, title: str, name: str | None, request: gr.Request
    ) -> tuple:
        return rename_conversation(
            store, owner=request_owner(request), conversation_id=conversation_id, title=title,
            collection=name or CHAT_COLLECTION,
        )  # fmt: skip

    def asked(conversation_id: str | None, request: gr.Request) -> tuple:
        return ask_delete(store, owner=request_owner(request), conversation_id=conversation_id)

    def deleted(
        pending: str | None, current: str | None, name: str | None, request: gr.Request
    ) -> tuple:
        return confirm_delete(
            store, owner=request_owner(request), pending=pending, current=current,
            collection=name or CHAT_COLLECTION,
        )  # fmt: skip

    def exporter(kind: str) -> Callable:
        def export(conversation_id: str | None, name: str | None, request: gr.Request) -> tuple:
            try:
                chosen = pick_pipeline(pipeline, collections, name)
            except ValueError as exc:
                return gr.update(value=None, visible=False), f"⚠️ {escape_markdown(str(exc))}"
            return export_conversation(
                chosen, store, owner=request_owner(request), conversation_id=conversation_id,
                kind=kind,
            )  # fmt: skip

        return export

    app.load(listed, c["collection"], [*listing, c["collection"]], **private)
    c["conv_list"].input(
        reopen, [c["conv_list"], c["collection"]],
        [*chat, c["conversation"], c["conv_title"], c["conv_message"], *listing,
         c["collection"]],
        cancels=answers, concurrency_limit=4, concurrency_id="view", **private,
    )  # fmt: skip
    rename_out = [*listing, c["conv_title"], c["conv_message"]]
    for trigger in (c["conv_rename"].click, c["conv_title"].submit):
        trigger(
            renamed, [c["conversation"], c["conv_title"], c["collection"]], rename_out, **private
        )
    confirm = [c["conv_confirm_box"], c["conv_confirm_text"], c["conv_pending"]]
    c["conv_delete"].click(asked, c["conversation"], [*confirm, c["conv_message"]], **private)
    c["conv_cancel"].click(
        lambda: (_HIDDEN, None, "Nothing was deleted."), None,
        [c["conv_confirm_box"], c["conv_pending"], c["conv_message"]], queue=False, **private,
    )  # fmt: skip
    c["conv_confirm"].click(
        deleted, [c["conv_pending"], c["conversation"], c["collection"]],
        [c["conv_confirm_box"], c["conv_pending"], c["conv_message"], *listing,
         c["conversation"], c["conv_title"], *chat],
        **private,
    )  # fmt: skip
    for button, kind in ((c["conv_md"], "markdown"), (c["conv_json"], "json")):
        button.click(
            exporter(kind), [c["conversation"], c["collection"]],
            [c["conv_file"], c["conv_message"]], **private,
        )  # fmt: skip


def _wire_view(pipeline: Pipeline, collections: CollectionPipelines | None, c: dict) -> None:
    """A click on a card opens the Document panel at that citation (of the selected collection)."""

    def on_card(cited: list, name: str | None, event: gr.EventData) -> tuple:
        data = getattr(event, "_data", None) or {}
        try:
            chosen = pick_pipeline(pipeline, collections, name)
        except ValueError as exc:
            return _view_failure(f"The document could not be opened: {exc}")
        return view_citation(
            chosen, citations=cited, index=data.get("index"), source=str(data.get("source", ""))
        )

    c["cards"].click(
        on_card, [c["cited"], c["collection"]], [c["view_box"], c["view"], c["download"]],
        api_visibility="private", concurrency_limit=4, concurrency_id="view",
    )  # fmt: skip


def _wire_ingest(
    pipeline: Pipeline, collections: CollectionPipelines | None, c: dict, panel: dict
) -> None:
    """The timer polling background indexing (of the selected collection), and Cancel."""
    view = [panel[k] for k in ("stats", "table", "choice", "not_indexed", "trash", "trash_choice")]
    seen = gr.State({})
    timer = gr.Timer(1.0)

    def tick(name: str | None, shown: dict | None) -> tuple:
        try:
            chosen = pick_pipeline(pipeline, collections, name)
        except ValueError:  # the panel already says why
            return (gr.skip(),) * (3 + len(view))
        return ingest_tick(chosen, seen=shown)

    def cancel(name: str | None) -> str:
        try:
            return cancel_indexing(pick_pipeline(pipeline, collections, name))
        except ValueError as exc:
            return f"⚠️ {escape_markdown(str(exc))}"

    timer.tick(
        tick, [c["collection"], seen], [c["ingest"], c["cancel_ingest"], seen, *view],
        queue=False, show_progress="hidden", api_visibility="private",
    )  # fmt: skip
    c["cancel_ingest"].click(
        cancel, c["collection"], c["ingest"], queue=False, api_visibility="private"
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
    conversations: ConversationStore | None = None,
    conversations_file: str | Path | None = None,
    collections: CollectionPipelines | None = None,
) -> gr.Blocks:
    """The complete Blocks app around one shared pipeline (that of the default collection).

    watch_seconds: look at the corpus folder that often and index what changed (None: never).
    conversations: the store chat turns are saved in; without one, conversations_file is
    opened (default: conversations.sqlite3 in the data folder, beside the index). When it
    cannot be opened the chat still answers, and says that nothing is saved.
    collections: the other collections the selector offers (None: the default one only).
    """
    store = conversations
    if store is None:
        store = open_conversations(conversations_file or conversations_path(pipeline))

    def api_ask(
        question: str, history: list[str] | None = None, collection: str | None = None
    ) -> dict:
        """Answer a question (earlier questions, a collection optional) as `rag ask --json`."""
        return api_answer(pipeline, question, history, collections=collections, name=collection)

    def ingest() -> dict:
        """Background indexing (uploads, folder changes): state, stage, done/total, message."""
        return api_ingest(pipeline)

    # analytics off: Gradio would otherwise call home (version check, telemetry) at run time.
    with gr.Blocks(title="Corpus QA", fill_height=True, analytics_enabled=False) as app:
        conv = _conversations_panel(collection_names(collections))
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
        c |= conv | {"conversation": gr.State(None)}
        panel = _documents_panel(upload_limit_bytes)
        answers = _wire_chat(pipeline, collections, store, c)
        _wire_conversations(app, pipeline, collections, store, c, answers)
        _wire_view(pipeline, collections, c)
        _wire_documents(app, pipeline, collections, store, panel, c, limit_bytes=upload_limit_bytes)
        _wire_ingest(pipeline, collections, c, panel)
        gr.api(api_ask, api_name="ask", concurrency_limit=8)
        gr.api(ingest, api_name="ingest")
        _wire_api(pipeline, collections)
    if watch_seconds:
        watch_corpus(pipeline, every=watch_seconds)
    return app


def launch_kwargs(*, upload_limit_bytes: int) -> dict:
    """Options every launch uses (CSS goes to launch in Gradio 6)."""
    return {"css": CSS, "max_file_size": upload_limit_bytes, "show_error": False}
