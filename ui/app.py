"""The Gradio chat: streaming cited answers, source cards, a corpus panel, and an `ask` API.

    python -m ui            # http://127.0.0.1:7860

No pipeline logic lives here: answers come from `rag.Pipeline`, document changes from
`rag.library`; this module only wires them to components and renders them (ui/render.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from rag import Answer, Pipeline
from rag.library import library_stats, list_documents, remove, upload
from ui.render import (
    CSS,
    answer_markdown,
    escape_markdown,
    source_cards,
    sources_markdown,
    status_line,
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


def documents_table(pipeline: Pipeline) -> list[list]:
    """Rows of the corpus panel: title, date, chunks, file."""
    return [[d.title, d.date, d.chunks, d.source] for d in list_documents(pipeline)]


def stats_line(pipeline: Pipeline) -> str:
    """Index size, for the corpus panel."""
    stats = library_stats(pipeline)
    return (
        f"{stats.documents} documents · {stats.chunks} passages · "
        f"{stats.bytes_on_disk / 1e6:.1f} MB index · embedding: {pipeline.embedder.backend} · "
        f"mode: {pipeline.mode}"
    )


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
        return pipeline.ask(question, history=earlier).to_dict()
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc


def build_app(pipeline: Pipeline, *, upload_limit_bytes: int = 20 * 1024 * 1024) -> gr.Blocks:
    """The complete Blocks app around one shared pipeline."""

    def respond(message: str, chat: list[dict], questions: list[str]) -> Iterator[tuple]:
        yield from chat_turn(pipeline, message, chat, questions)

    def api_ask(question: str, history: list[str] | None = None) -> dict:
        """Answer a question (with optional earlier questions) as `rag ask --json` does."""
        return api_answer(pipeline, question, history)

    def on_upload(files, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (Gradio's API)
        if not files:
            return gr.skip(), gr.skip(), gr.skip(), "No file selected."
        pairs, refused = [], []
        for f in files:
            path = Path(f if isinstance(f, str) else f.name)
            try:
                size = path.stat().st_size
                if size > upload_limit_bytes:
                    refused.append(f"{path.name}: {size / 1e6:.1f} MB is over the limit")
                    continue
                pairs.append((path.name, path.read_bytes()))
            except OSError as exc:
                refused.append(f"{path.name}: unreadable ({exc.strerror or exc})")
        if not pairs:
            return _refresh_outputs("  \n".join(f"⚠️ {escape_markdown(r)}" for r in refused))
        progress(0, desc="indexing")
        try:
            saved, errors, report = upload(pipeline, pairs, max_bytes=upload_limit_bytes)
        except Exception as exc:
            logger.exception("upload failed")
            return _refresh_outputs(f"⚠️ Upload failed: {escape_markdown(str(exc))}")
        lines = [f"⚠️ {escape_markdown(e)}" for e in refused + errors]
        if saved:
            lines.insert(
                0,
                f"Added {escape_markdown(', '.join(saved))}. " + escape_markdown(report.summary()),
            )
        return _refresh_outputs("  \n".join(lines))

    def on_remove(source: str | None):
        if not source:
            return _refresh_outputs("Choose a document to remove.")
        try:
            report = remove(pipeline, source)
        except (ValueError, OSError) as exc:
            return _refresh_outputs(f"⚠️ {escape_markdown(str(exc))}")
        return _refresh_outputs(
            f"Removed {escape_markdown(source)}. {escape_markdown(report.summary())}"
        )

    def _refresh_outputs(message: str):
        sources = [d.source for d in list_documents(pipeline)]
        return (
            documents_table(pipeline),
            stats_line(pipeline),
            gr.update(choices=sources, value=None),
            message,
        )

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
        with gr.Accordion("Documents", open=False):
            stats = gr.Markdown(stats_line(pipeline), elem_id="cqa-stats")
            table = gr.Dataframe(
                value=documents_table(pipeline), headers=["Title", "Date", "Chunks", "File"],
                interactive=False, wrap=True,
            )  # fmt: skip
            with gr.Row():
                limit_mb = upload_limit_bytes // 2**20
                files = gr.File(
                    label=f"Add documents (.txt .md .html .pdf, up to {limit_mb} MB)",
                    file_count="multiple", file_types=[".txt", ".md", ".html", ".htm", ".pdf"],
                )  # fmt: skip
                with gr.Column():
                    choice = gr.Dropdown(
                        choices=[d.source for d in list_documents(pipeline)],
                        label="Remove a document",
                    )
                    remove_btn = gr.Button("Remove", variant="stop")
            library_msg = gr.Markdown("", elem_id="cqa-library-msg")
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
        outputs = [table, stats, choice, library_msg]
        files.upload(
            on_upload,
            files,
            outputs,
            concurrency_limit=1,
            concurrency_id="library",
            api_name="upload",
        )
        remove_btn.click(
            on_remove,
            choice,
            outputs,
            concurrency_limit=1,
            concurrency_id="library",
            api_name="remove",
        )
        gr.api(api_ask, api_name="ask", concurrency_limit=8)
    return app


def launch_kwargs(*, upload_limit_bytes: int) -> dict:
    """Options every launch uses (CSS goes to launch in Gradio 6)."""
    return {"css": CSS, "max_file_size": upload_limit_bytes, "show_error": False}
