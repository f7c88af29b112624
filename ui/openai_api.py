"""OpenAI-compatible and JSON endpoints beside the chat, on the same port.

    RAG_API_KEY=secret python -m ui    # then point a client at http://127.0.0.1:7860/v1

`POST /v1/chat/completions` (plain or streamed as server-sent events), `GET /v1/models`,
`POST /api/ask` (the JSON of `rag ask --json`) and `/docs`. Only requests and responses are
translated here: the last user message is the question, earlier user messages are its history,
system messages are ignored. Token counts in `usage` are whitespace-separated words. Background
requests of chat front ends (Open WebUI's title, tags, follow-ups, search queries) are answered
briefly without a corpus search.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import gradio as gr
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag import Pipeline
from rag.library import follow_disk

logger = logging.getLogger(__name__)

MODEL_ID = "corpusqa"
MAX_CONTENT_CHARS = 100_000  # per message; the pipeline cuts questions much shorter anyway


class ApiError(Exception):
    """An error answered in OpenAI's format with an HTTP status."""

    def __init__(self, status: int, message: str, *, kind: str, param: str | None = None,
                 code: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status, message, kind, param, code,
        )  # fmt: skip


class ChatMessage(BaseModel):
    """One message of the conversation (text content only)."""

    model_config = ConfigDict(extra="ignore")
    role: str
    content: str = Field(max_length=MAX_CONTENT_CHARS)


class ChatRequest(BaseModel):
    """The body of `POST /v1/chat/completions`; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)  # answers are not sampled
    max_tokens: int | None = Field(default=None, ge=1)


class AskRequest(BaseModel):
    """The body of `POST /api/ask`: a question and the earlier questions of the chat."""

    question: str = Field(max_length=MAX_CONTENT_CHARS)
    history: list[str] = Field(default_factory=list)


@dataclass
class Reply:
    """What the assistant says: text, citations and why it stopped."""

    content: str
    citations: list[dict] = field(default_factory=list)
    finish_reason: str = "stop"


def error_body(*, message: str, kind: str, param: str | None, code: str | None) -> dict:
    """OpenAI's error JSON."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _error_response(exc: ApiError) -> JSONResponse:
    body = error_body(message=exc.message, kind=exc.kind, param=exc.param, code=exc.code)
    return JSONResponse(body, status_code=exc.status)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = (exc.errors() or [{}])[0]
    where = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    return f"{'.'.join(where) or 'body'}: {first.get('msg', 'invalid')}", ".".join(where) or None


def _install_error_handlers(app: FastAPI) -> None:
    """Every error of the API (and of the app around it) as OpenAI error JSON, no traceback."""

    @app.exception_handler(ApiError)
    async def on_api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return _error_response(ApiError(400, message, kind="invalid_request_error", param=param))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return _error_response(ApiError(exc.status_code, str(exc.detail), kind=kind))

    @app.exception_handler(Exception)
    async def on_crash(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("API request failed")
        return _error_response(ApiError(500, "internal error", kind="server_error"))


def _key_check(api_key: str | None) -> Callable[[Request], None]:
    """A dependency refusing requests without `Authorization: Bearer <api_key>` (when set)."""

    def check(request: Request) -> None:
        if not api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), api_key):
            raise ApiError(401, "invalid or missing API key", kind="invalid_request_error",
                           code="invalid_api_key")  # fmt: skip

    return check


# Open WebUI's background prompts: "### Task:\nGenerate a concise, 3-5 word title ...".
_TASKS = (
    ("title", re.compile(r"\btitle\b", re.I)),
    ("tags", re.compile(r"\btags\b", re.I)),
    ("follow_ups", re.compile(r"follow-up", re.I)),
    ("queries", re.compile(r"search quer", re.I)),
)
_HISTORY_USER = re.compile(r"^USER:\s*(.+)$", re.M)


def front_end_task(text: str) -> str | None:
    """'title', 'tags', 'follow_ups' or 'queries' for a chat front end's background prompt."""
    stripped = text.lstrip()
    if not stripped.startswith("### Task:"):
        return None
    head = stripped.removeprefix("### Task:").strip().split("\n", 1)[0]
    return next((name for name, pattern in _TASKS if pattern.search(head)), None)


def task_reply(*, task: str, prompt: str, questions: list[str]) -> Reply:
    """A brief reply to a background prompt, without a corpus search."""
    if task != "title":
        return Reply(json.dumps({task: []}))
    found = _HISTORY_USER.search(prompt)
    first = found.group(1) if found else (questions[0] if questions else "")
    title = " ".join(first.split()[:5]).rstrip("?.!,;:") or "New chat"
    return Reply(json.dumps({"title": title}) if "json" in prompt.lower() else title)


def _word_count(texts: list[str]) -> int:
    return sum(len(t.split()) for t in texts)


def cut_words(text: str, *, limit: int | None) -> tuple[str, bool]:
    """The first `limit` words of text (spacing kept) and whether it was cut."""
    if limit is None:
        return text, False
    words = list(re.finditer(r"\S+", text))
    if len(words) <= limit:
        return text, False
    return text[: words[limit - 1].end()], True


def answer_reply(pipeline: Pipeline, *, question: str, history: list[str]) -> Reply:
    """The pipeline's answer with its citations; a bad question is a 400."""
    follow_disk(pipeline)
    try:
        answer = pipeline.ask(question, history=history)
    except ValueError as exc:
        raise ApiError(400, str(exc), kind="invalid_request_error", param="messages") from exc
    return Reply(answer.answer, [c.to_dict() for c in answer.citations])


def chat_reply(pipeline: Pipeline, *, body: ChatRequest) -> Reply:
    """The reply to a chat request: a front-end task or a cited answer, cut to max_tokens."""
    if body.model != MODEL_ID:
        raise ApiError(404, f"The model `{body.model}` does not exist", param="model",
                       kind="invalid_request_error", code="model_not_found")  # fmt: skip
    questions = [m.content for m in body.messages if m.role == "user"]
    if not questions:
        raise ApiError(400, "messages: no user message", kind="invalid_request_error",
                       param="messages")  # fmt: skip
    task = front_end_task(questions[-1])
    if task is not None:
        reply = task_reply(task=task, prompt=questions[-1], questions=questions[:-1])
    else:
        reply = answer_reply(pipeline, question=questions[-1], history=questions[:-1])
    reply.content, cut = cut_words(reply.content, limit=body.max_tokens)
    if cut:
        reply.finish_reason = "length"
    return reply


def _usage(body: ChatRequest, reply: Reply) -> dict:
    prompt = _word_count([m.content for m in body.messages])
    completion = _word_count([reply.content])
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


def completion_json(*, body: ChatRequest, reply: Reply) -> dict:
    """The non-streamed `chat.completion` object."""
    message = {"role": "assistant", "content": reply.content, "citations": reply.citations}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
        "created": int(time.time()), "model": MODEL_ID,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": _usage(body, reply),
    }  # fmt: skip


def completion_chunks(*, body: ChatRequest, reply: Reply) -> Iterator[str]:
    """Server-sent events of `chat.completion.chunk` objects, ending with `data: [DONE]`."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": MODEL_ID}  # fmt: skip

    def event(delta: dict, finish: str | None = None, **extra: object) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return f"data: {json.dumps({**base, 'choices': [choice], **extra})}\n\n"

    yield event({"role": "assistant", "content": ""})
    for piece in re.findall(r"\s*\S+", reply.content):
        yield event({"content": piece})
    yield event({}, reply.finish_reason, citations=reply.citations, usage=_usage(body, reply))
    yield "data: [DONE]\n\n"


def build_api(pipeline: Pipeline, *, api_key: str | None) -> FastAPI:
    """The FastAPI app with /v1 (OpenAI-compatible), /api/ask and /docs."""
    app = FastAPI(title="Corpus QA", summary="Cited answers from your documents.")
    _install_error_handlers(app)
    guard = [Depends(_key_check(api_key))]

    @app.get("/v1/models", dependencies=guard)
    def models() -> dict:
        """The one model: the default collection."""
        return {"object": "list", "data": [
            {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "corpusqa"}
        ]}  # fmt: skip

    @app.post("/v1/chat/completions", dependencies=guard, response_model=None)
    def chat_completions(body: ChatRequest) -> dict | StreamingResponse:
        """Answer the last user message from the corpus (OpenAI chat completions)."""
        reply = chat_reply(pipeline, body=body)
        if body.stream:
            return StreamingResponse(
                completion_chunks(body=body, reply=reply), media_type="text/event-stream"
            )
        return completion_json(body=body, reply=reply)

    @app.post("/api/ask", dependencies=guard)
    def ask(body: AskRequest) -> dict:
        """The same JSON as `python -m rag ask --json`."""
        follow_disk(pipeline)
        try:
            return pipeline.ask(body.question, history=body.history).to_dict()
        except ValueError as exc:
            raise ApiError(400, str(exc), kind="invalid_request_error", param="question") from exc

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    @app.api_route("/v1/{rest:path}", methods=methods, include_in_schema=False)
    @app.api_route("/api/{rest:path}", methods=methods, include_in_schema=False)
    def unknown(rest: str) -> None:
        """Other paths under /v1 and /api: an OpenAI-style 404, not the chat's page."""
        raise ApiError(404, f"no such endpoint: {rest}", kind="invalid_request_error")

    return app


def serve_app(
    pipeline: Pipeline,
    *,
    api_key: str | None,
    auth: tuple[str, str] | None = None,
    upload_limit_bytes: int = 20 * 1024 * 1024,
) -> FastAPI:
    """The API with the chat mounted at /, ready for uvicorn."""
    from ui.app import build_app, launch_kwargs

    blocks = build_app(pipeline, upload_limit_bytes=upload_limit_bytes)
    blocks.queue(default_concurrency_limit=8)
    app = build_api(pipeline, api_key=api_key)
    return gr.mount_gradio_app(
        app, blocks, path="/", auth=auth, **launch_kwargs(upload_limit_bytes=upload_limit_bytes)
    )
