"""OpenAI-compatible and JSON endpoints beside the chat, on the same port.

    RAG_API_KEY=secret python -m ui    # then point a client at http://127.0.0.1:7860/v1

`POST /v1/chat/completions` (plain or streamed as server-sent events), `GET /v1/models`,
`POST /api/ask` (the JSON of `rag ask --json`) and `/docs`. A chat reply's `content` is the
answer with its [n] markers; its `citations` and `short_answer` (on the message, and on the
last stream chunk) are those of `Answer.to_dict()`. Only requests and responses are
translated here: the last user message is the question, earlier user messages are its history,
system messages are ignored. Token counts in `usage` are whitespace-separated words. Background
requests of chat front ends (Open WebUI's title, tags, follow-ups, search queries) are answered
briefly without a corpus search.

Collections (given as a `CollectionPipelines`): `/v1/models` lists `corpusqa` (the default
collection) and `corpusqa/<name>` for each other one, and a request's `model` picks it;
`/api/ask` takes `"collection": "<name>"`. Both take `"filter": {"files": [...], "folders":
[...]}` (corpus-relative paths; empty lists mean no limit), applied inside retrieval.

A chat request with `"store": true` (OpenAI's flag) is saved as a conversation of the owner
"api" (rag/conversations.py; without it nothing is kept: API clients keep their own history);
the response's `conversation_id` names it, and a later request that passes it back adds its turn
to the same conversation.
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

from index import IndexLoadError
from rag import Answer, Pipeline
from rag.collections import DEFAULT_COLLECTION, CollectionPipelines
from rag.conversations import ConversationNotFound, ConversationStore
from rag.library import follow_disk
from rag.retrieve import SourceFilter

logger = logging.getLogger(__name__)

MODEL_ID = "corpusqa"
MAX_CONTENT_CHARS = 100_000  # per message; the pipeline cuts questions much shorter anyway
API_OWNER = "api"  # whose conversations `store: true` requests make (the key names no user)


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


class FilterBody(BaseModel):
    """Which documents a question may use: corpus-relative files and folders."""

    model_config = ConfigDict(extra="forbid")
    files: list[str] = Field(default_factory=list, max_length=1000)
    folders: list[str] = Field(default_factory=list, max_length=1000)


class ChatRequest(BaseModel):
    """The body of `POST /v1/chat/completions`; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)  # answers are not sampled
    max_tokens: int | None = Field(default=None, ge=1)
    filter: FilterBody | None = None
    store: bool = False  # save this turn as a conversation (OpenAI's flag)
    conversation_id: str | None = Field(default=None, max_length=100)  # continue that one


class AskRequest(BaseModel):
    """The body of `POST /api/ask`: a question, the earlier questions, collection and filter."""

    question: str = Field(max_length=MAX_CONTENT_CHARS)
    history: list[str] = Field(default_factory=list)
    collection: str | None = None
    filter: FilterBody | None = None


@dataclass
class Reply:
    """What the assistant says: text, citations, the short answer and why it stopped."""

    content: str
    citations: list[dict] = field(default_factory=list)
    short_answer: dict | None = None
    finish_reason: str = "stop"
    answer: dict | None = None  # the whole Answer.to_dict() (None for a front end's task)


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


def source_filter(body: FilterBody | None) -> SourceFilter | None:
    """The request's filter as a SourceFilter (None when absent or empty); a bad one is a 400."""
    if body is None or not (body.files or body.folders):
        return None
    try:
        return SourceFilter(files=tuple(body.files), folders=tuple(body.folders))
    except ValueError as exc:
        raise ApiError(400, f"filter: {exc}", kind="invalid_request_error", param="filter") from exc


def _asked(
    pipeline: Pipeline,
    question: str,
    history: list[str],
    where: SourceFilter | None,
    *,
    param: str,
) -> Answer:
    """pipeline.ask with the filter when there is one; a bad question or filter is a 400."""
    follow_disk(pipeline)
    limits = {"where": where} if where is not None else {}
    try:
        return pipeline.ask(question, history=history, **limits)
    except ValueError as exc:
        param = "filter" if str(exc).startswith("no document matches the filter") else param
        raise ApiError(400, str(exc), kind="invalid_request_error", param=param) from exc


def answer_reply(
    pipeline: Pipeline, *, question: str, history: list[str], where: SourceFilter | None = None
) -> Reply:
    """The pipeline's answer with its citations; a bad question is a 400."""
    answer = _asked(pipeline, question, history, where, param="messages")
    data = answer.to_dict()  # the one JSON form of an answer (also `rag ask --json`)
    return Reply(data["answer"], data["citations"], data["short_answer"], answer=data)


def model_ids(collections: CollectionPipelines | None) -> list[str]:
    """The model ids served: corpusqa, then corpusqa/<name> for every other collection."""
    names = collections.names() if collections is not None else []
    return [MODEL_ID] + [f"{MODEL_ID}/{n}" for n in names if n != DEFAULT_COLLECTION]


def collection_pipeline(
    pipeline: Pipeline, collections: CollectionPipelines | None, name: str | None, *, param: str
) -> Pipeline:
    """The pipeline of the named collection (None: the default); unknown is a 404."""
    if name is None or name == DEFAULT_COLLECTION:
        return pipeline
    if collections is None:
        raise ApiError(404, f"unknown collection {name!r} (known: {DEFAULT_COLLECTION})",
                       kind="invalid_request_error", param=param)  # fmt: skip
    try:
        return collections.get(name)
    except ValueError as exc:  # unknown or invalid name, or a broken settings file
        raise ApiError(404, str(exc), kind="invalid_request_error", param=param) from exc
    except IndexLoadError as exc:
        raise ApiError(409, f"collection {name!r} has no usable index; run: python -m rag index "
                       f"--collection {name}", kind="invalid_request_error",
                       param=param) from exc  # fmt: skip


def model_pipeline(
    pipeline: Pipeline, collections: CollectionPipelines | None, model: str
) -> Pipeline:
    """The pipeline a chat request's model names; an unknown model is a 404."""
    if model == MODEL_ID:
        return pipeline
    name = model.removeprefix(f"{MODEL_ID}/")
    if collections is None or name == model or name not in collections.names():
        raise ApiError(404, f"The model `{model}` does not exist", param="model",
                       kind="invalid_request_error", code="model_not_found")  # fmt: skip
    return collection_pipeline(pipeline, collections, name, param="model")


def chat_reply(
    pipeline: Pipeline, *, body: ChatRequest, collections: CollectionPipelines | None = None
) -> Reply:
    """The reply to a chat request: a front-end task or a cited answer, cut to max_tokens."""
    pipeline = model_pipeline(pipeline, collections, body.model)
    where = source_filter(body.filter)
    questions = [m.content for m in body.messages if m.role == "user"]
    if not questions:
        raise ApiError(400, "messages: no user message", kind="invalid_request_error",
                       param="messages")  # fmt: skip
    task = front_end_task(questions[-1])
    if task is not None:
        reply = task_reply(task=task, prompt=questions[-1], questions=questions[:-1])
    else:
        reply = answer_reply(pipeline, question=questions[-1], history=questions[:-1], where=where)
    reply.content, cut = cut_words(reply.content, limit=body.max_tokens)
    if cut:
        reply.finish_reason = "length"
    return reply


def _collection_of(model: str) -> str:
    """The collection a chat request's model names: corpusqa/<name>, else the default."""
    name = model.removeprefix(f"{MODEL_ID}/")
    return name if name != model else DEFAULT_COLLECTION


def check_conversation(conversations: ConversationStore | None, body: ChatRequest) -> None:
    """Before answering: a `conversation_id` to continue must be one of the API's (else 404)."""
    if not body.store or body.conversation_id is None or conversations is None:
        return
    try:
        conversations.get(body.conversation_id, API_OWNER)
    except ConversationNotFound as exc:
        raise ApiError(404, "no such conversation", kind="invalid_request_error",
                       param="conversation_id") from exc  # fmt: skip


def store_turn(conversations: ConversationStore | None, *, body: ChatRequest, reply: Reply) -> dict:
    """Save the turn of a `store: true` request; the fields it adds to the response."""
    if reply.answer is None:  # a front end's background prompt: nothing worth keeping
        return {"conversation_id": None}
    if conversations is None:
        return {"conversation_id": None, "store_error": "saving conversations is off"}
    question = [m.content for m in body.messages if m.role == "user"][-1]
    try:
        cid = body.conversation_id
        if cid is None:
            cid = conversations.create(API_OWNER, _collection_of(body.model)).id
        conversations.add_turn(cid, API_OWNER, question, reply.answer)
    except Exception:  # the answer is returned whatever happens to the file
        logger.exception("saving an API turn failed")
        return {"conversation_id": None, "store_error": "not saved; see the server log"}
    return {"conversation_id": cid}


def _usage(body: ChatRequest, reply: Reply) -> dict:
    prompt = _word_count([m.content for m in body.messages])
    completion = _word_count([reply.content])
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


def _extras(reply: Reply) -> dict:
    """The fields beyond OpenAI's that a reply carries: citations and short_answer."""
    return {"citations": reply.citations, "short_answer": reply.short_answer}


def completion_json(*, body: ChatRequest, reply: Reply, extra: dict | None = None) -> dict:
    """The non-streamed `chat.completion` object (extra: fields beyond OpenAI's, at its top)."""
    message = {"role": "assistant", "content": reply.content, **_extras(reply)}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
        "created": int(time.time()), "model": body.model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": _usage(body, reply), **(extra or {}),
    }  # fmt: skip


def completion_chunks(
    *, body: ChatRequest, reply: Reply, extra: dict | None = None
) -> Iterator[str]:
    """Server-sent events of `chat.completion.chunk` objects, ending with `data: [DONE]`.

    extra (fields beyond OpenAI's) rides on the last chunk, with citations and usage.
    """
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": body.model}  # fmt: skip

    def event(delta: dict, finish: str | None = None, **extra: object) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return f"data: {json.dumps({**base, 'choices': [choice], **extra})}\n\n"

    yield event({"role": "assistant", "content": ""})
    for piece in re.findall(r"\s*\S+", reply.content):
        yield event({"content": piece})
    last = {**_extras(reply), "usage": _usage(body, reply), **(extra or {})}
    yield event({}, reply.finish_reason, **last)
    yield "data: [DONE]\n\n"


def build_api(
    pipeline: Pipeline,
    *,
    api_key: str | None,
    collections: CollectionPipelines | None = None,
    conversations: ConversationStore | None = None,
) -> FastAPI:
    """The FastAPI app with /v1 (OpenAI-compatible), /api/ask and /docs.

    pipeline answers the default collection; collections (optional) opens the others;
    conversations keeps the turns of `store: true` chat requests.
    """
    app = FastAPI(title="Corpus QA", summary="Cited answers from your documents.")
    _install_error_handlers(app)
    guard = [Depends(_key_check(api_key))]

    @app.get("/v1/models", dependencies=guard)
    def models() -> dict:
        """One model per collection: corpusqa (the default), corpusqa/<name> for the others."""
        return {"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "corpusqa"}
            for model in model_ids(collections)
        ]}  # fmt: skip

    @app.post("/v1/chat/completions", dependencies=guard, response_model=None)
    def chat_completions(body: ChatRequest) -> dict | StreamingResponse:
        """Answer the last user message from the corpus (OpenAI chat completions)."""
        check_conversation(conversations, body)
        reply = chat_reply(pipeline, body=body, collections=collections)
        extra = store_turn(conversations, body=body, reply=reply) if body.store else None
        if body.stream:
            return StreamingResponse(
                completion_chunks(body=body, reply=reply, extra=extra),
                media_type="text/event-stream",
            )
        return completion_json(body=body, reply=reply, extra=extra)

    @app.post("/api/ask", dependencies=guard)
    def ask(body: AskRequest) -> dict:
        """The same JSON as `python -m rag ask --json`."""
        chosen = collection_pipeline(pipeline, collections, body.collection, param="collection")
        where = source_filter(body.filter)
        return _asked(chosen, body.question, body.history, where, param="question").to_dict()

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
    collections: CollectionPipelines | None = None,
    conversations: ConversationStore | None = None,
) -> FastAPI:
    """The API with the chat mounted at /, ready for uvicorn (collections: see build_api).

    The chat and the API save into one store: conversations, else the data folder's file.
    """
    from ui.app import build_app, conversations_path, launch_kwargs, open_conversations

    store = conversations or open_conversations(conversations_path(pipeline))
    blocks = build_app(
        pipeline, upload_limit_bytes=upload_limit_bytes, conversations=store,
        collections=collections,
    )  # fmt: skip
    blocks.queue(default_concurrency_limit=8)
    app = build_api(pipeline, api_key=api_key, collections=collections, conversations=store)
    return gr.mount_gradio_app(
        app, blocks, path="/", auth=auth, **launch_kwargs(upload_limit_bytes=upload_limit_bytes)
    )
