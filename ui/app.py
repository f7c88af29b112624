"""The Gradio chat: streaming cited answers, source cards, a documents panel, and a JSON API.

    python -m ui            # http://127.0.0.1:7860

No pipeline logic lives here: answers come from `rag.Pipeline`, document changes from
`rag.library`; this module only wires them to components and renders them (ui/render.py).
The documents panel is read from the index on disk at every page load and after every change;
nothing in it is preselected, removal asks first and goes to the trash. API: `ask`, `upload`,
`documents`, `remove` (a file name, required), `restore` (a trash id), `empty_trash`
(confirm=true).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from rag import Answer, Pipeline
from rag.library import (
    LibraryView,
    check_removable,
    empty,
    follow_disk,
    library_view,
    list_trashed,
    remove,
    restore,
    upload,
)
from ui.render import (
    CSS,
    answer_markdown,
    escape_markdown,
    not_indexed_markdown,
    source_cards,
    sources_markdown,
    status_line,
    trash_label,
    trash_markdown,
    upload_message,
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


def upload_files(pipeline: Pipeline, *, files: list | None, replace: bool, limit_bytes: int) -> str:
    """The upload button: save, index, and say what happened to each file."""
    if not files:
        return "No file selected."
    pairs, refused = read_uploads(files, limit_bytes=limit_bytes)
    if not pairs:
        return "  \n".join(f"⚠️ {escape_markdown(r)}" for r in refused)
    try:
        result = upload(pipeline, pairs, max_bytes=limit_bytes, replace=bool(replace))
    except Exception as exc:  # the UI must never show a traceback
        return _failure(exc, action="Upload")
    result.errors[:0] = refused
    return upload_message(result)


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
    entries = list_trashed(pipeline)
    if not entries:
        return (_HIDDEN, "", gr.skip(), None, "The trash is already empty.")
    text = f"Delete the **{len(entries)}** file(s) in the trash for good? This cannot be undone."
    pending = {"action": "empty", "target": len(entries)}
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
            message = f"Deleted {empty(pipeline)} file(s) from the trash for good."
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
    view = library_view(pipeline)
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
    chat = list(chat or [])
    questions = list(questions or [])
    chat.append({"role": "user", "content": escape_markdown(message or "")})
    chat.append({"role": "assistant", "content": "…"})
    text = ""
    answer: Answer | None = None
    try:
        for item in pipeline.stream(message or "", history=questions):
            if isinstance(item, Answer):
                answer = item
            else:
                text += item
                chat[-1] = {"role": "assistant", "content": escape_markdown(text)}
                yield list(chat), gr.skip(), "answering…", questions
    except ValueError as exc:
        chat[-1] = {"role": "assistant", "content": f"⚠️ {escape_markdown(str(exc))}"}
        yield chat, source_cards(None), "not answered", questions
        return
    except Exception:  # the UI must never show a traceback
        logger.exception("answering failed")
        chat[-1] = {"role": "assistant", "content": "⚠️ Something went wrong; see the server log."}
        yield chat, gr.skip(), "error", questions
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
    yield chat, source_cards(answer), status, [*questions, message]


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
                    label=f"Add documents (.txt .md .html .pdf, up to {_megabytes(limit_bytes)})",
                    file_count="multiple", file_types=[".txt", ".md", ".html", ".htm", ".pdf"],
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

    def on_upload(files, replace, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (Gradio)
        progress(0, desc="indexing")
        return upload_files(pipeline, files=files, replace=replace, limit_bytes=limit_bytes)

    c["files"].upload(
        on_upload, [c["files"], c["replace"]], c["message"], api_name="upload", **library
    ).then(lambda: view_updates(pipeline), None, view, **private)
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


def build_app(pipeline: Pipeline, *, upload_limit_bytes: int = 20 * 1024 * 1024) -> gr.Blocks:
    """The complete Blocks app around one shared pipeline."""

    def respond(message: str, chat: list[dict], questions: list[str]) -> Iterator[tuple]:
        follow_disk(pipeline)
        yield from chat_turn(pipeline, message, chat, questions)

    def api_ask(question: str, history: list[str] | None = None) -> dict:
        """Answer a question (with optional earlier questions) as `rag ask --json` does."""
        return api_answer(pipeline, question, history)

    is_default_corpus = Path(pipeline.config.index.corpus_dir).resolve() == DEFAULT_CORPUS
    # analytics off: Gradio would otherwise call home (version check, telemetry) at run time.
    with gr.Blocks(title="Corpus QA", fill_height=True, analytics_enabled=False) as app:
        gr.Markdown(
            "## Ask your documents\nAnswers come only from the indexed documents, each sentence "
            "cited [n]. Mode: **" + pipeline.mode + "**."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                status = gr.Markdown("Ready.", elem_id="cqa-status")
                cards = gr.HTML(source_cards(None), render=False, elem_id="cqa-sources")
                questions = gr.State([])
                pending = gr.State("")
                chatbot = gr.Chatbot(
                    elem_id="cqa-chat", height=520, sanitize_html=True, buttons=["copy"],
                    label="Chat",
                )  # fmt: skip
                with gr.Row():
                    box = gr.Textbox(
                        placeholder="Ask a question about the documents…", show_label=False,
                        scale=5, elem_id="cqa-question", max_lines=6, autofocus=True,
                    )  # fmt: skip
                    send = gr.Button(
                        "Ask", variant="primary", scale=1, min_width=70, elem_id="cqa-send"
                    )
                    stop = gr.Button("Stop", scale=1, min_width=70, elem_id="cqa-stop")
                    clear = gr.Button("New chat", scale=1, min_width=90)
                if is_default_corpus:
                    gr.Examples(EXAMPLES, inputs=box, label="Examples")
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                cards.render()
        panel = _documents_panel(upload_limit_bytes)
        answer_events = [
            trigger(lambda m: ("", m), box, [box, pending], queue=False).then(
                respond,
                [pending, chatbot, questions],
                [chatbot, cards, status, questions],
                concurrency_limit=8,
                concurrency_id="chat",
            )  # fmt: skip
            for trigger in (box.submit, send.click)
        ]
        stop.click(lambda: "stopped", None, status, cancels=answer_events, queue=False)
        clear.click(
            lambda: ([], [], source_cards(None), "Ready."),
            None,
            [chatbot, questions, cards, status],
            cancels=answer_events,
            queue=False,
        )
        _wire_documents(app, pipeline, panel, limit_bytes=upload_limit_bytes)
        gr.api(api_ask, api_name="ask", concurrency_limit=8)
        _wire_api(pipeline)
    return app


def launch_kwargs(*, upload_limit_bytes: int) -> dict:
    """Options every launch uses (CSS goes to launch in Gradio 6)."""
    return {"css": CSS, "max_file_size": upload_limit_bytes, "show_error": False}
