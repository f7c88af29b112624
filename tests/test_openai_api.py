"""The OpenAI-compatible API and /api/ask, served with uvicorn and driven with the openai client.

python -m pytest -q tests/test_openai_api.py
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import openai
import pytest

from ui.__main__ import main, resolve_api_key
from ui.openai_api import MODEL_ID, front_end_task

KEY = "test-key"
TITLE_PROMPT = (
    "### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n"
    '### Output:\nJSON format: { "title": "your concise title here" }\n'
    "### Chat History:\n<chat_history>\nUSER: Who commands NORTHCOM these days?\n"
    "ASSISTANT: General Guillot [1]\n</chat_history>"
)


@pytest.fixture(scope="module")
def api_url(pipeline):
    """serve_app (chat + API) under uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    from ui.openai_api import serve_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = serve_app(pipeline, api_key=KEY, upload_limit_bytes=200_000)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def client(api_url):
    return openai.OpenAI(base_url=f"{api_url}/v1", api_key=KEY, max_retries=0)


QUESTION = "Who commands NORTHCOM?"


def test_models_lists_the_collection(client):
    assert [m.id for m in client.models.list().data] == [MODEL_ID]


def test_completion_with_citations(client):
    reply = client.chat.completions.create(
        model=MODEL_ID,
        messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": QUESTION},
        ],
        temperature=0.2,
        top_p=0.5,
    )
    message = reply.choices[0].message
    assert "[1]" in message.content and reply.choices[0].finish_reason == "stop"
    citations = message.model_extra["citations"]
    assert citations[0]["source"] == "004_b24285a9b201835e.txt"
    assert {"source", "locator", "page", "start", "end", "text"} <= set(citations[0])
    assert "short_answer" in message.model_extra  # its value depends on the reader model
    assert reply.usage.completion_tokens == len(message.content.split())
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_stream_joins_to_the_same_content(client):
    plain = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}]
    )
    chunks = list(
        client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(chunks) > 3 and text == plain.choices[0].message.content
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["citations"] == plain.choices[0].message.model_extra["citations"]
    assert last.model_extra["short_answer"] == plain.choices[0].message.model_extra["short_answer"]
    assert last.usage.completion_tokens == plain.usage.completion_tokens


def test_max_tokens_cuts_with_length(client):
    reply = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}], max_tokens=3
    )
    assert len(reply.choices[0].message.content.split()) == 3
    assert reply.choices[0].finish_reason == "length"


def test_follow_up_uses_earlier_user_turns(client):
    reply = client.chat.completions.create(
        model=MODEL_ID,
        messages=[
            {
                "role": "user",
                "content": "What did JD Vance say about sending U.S. troops into Mexico?",
            },
            {"role": "assistant", "content": "He said ... [1]"},
            {"role": "user", "content": "Where did he say that?"},
        ],
    )
    sources = [c["source"] for c in reply.choices[0].message.model_extra["citations"]]
    assert "000_3b56b7e336b84316.txt" in sources


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": QUESTION}]
        )
    assert caught.value.body["code"] == "model_not_found"


def test_bad_or_missing_key_is_401(api_url):
    bad = openai.OpenAI(base_url=f"{api_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    response = httpx.post(f"{api_url}/api/ask", json={"question": QUESTION})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_malformed_requests_are_400(client, api_url):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": 7}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "x" * 1_000_000}]
        )
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "  "}])
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    for body in (b"{not json", b'{"model": "corpusqa"}'):
        response = httpx.post(f"{api_url}/v1/chat/completions", content=body, headers=headers)
        assert response.status_code == 400
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert "Traceback" not in response.text


def test_front_end_title_needs_no_retrieval(client, pipeline, monkeypatch):
    def no_search(*_args, **_kwargs):
        raise AssertionError("retrieval ran for a background task")

    monkeypatch.setattr(pipeline, "ask", no_search)
    title = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": TITLE_PROMPT}]
    )
    assert title.choices[0].message.content == '{"title": "Who commands NORTHCOM these days"}'
    tags = client.chat.completions.create(
        model=MODEL_ID,
        messages=[
            {
                "role": "user",
                "content": "### Task:\nGenerate 1-3 broad tags categorizing the main themes",
            }
        ],
    )
    assert tags.choices[0].message.content == '{"tags": []}'
    assert (
        front_end_task("### Task:\nSuggest 3-5 relevant follow-up questions or prompts")
        == "follow_ups"
    )
    assert front_end_task("What is the title of the audit?") is None


def test_api_ask_matches_rag_ask_json(api_url, pipeline):
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {
        "question": "Where did he say that?",
        "history": ["What did JD Vance say about U.S. forces going into Mexico?"],
    }
    served = httpx.post(f"{api_url}/api/ask", json=body, headers=headers, timeout=60).json()
    local = pipeline.ask(body["question"], history=body["history"]).to_dict()
    assert served.keys() == local.keys()
    assert {"short_answer", "answerability", "mode_detail"} <= served.keys()
    assert [c["source"] for c in served["citations"]] == [c["source"] for c in local["citations"]]
    empty = httpx.post(f"{api_url}/api/ask", json={"question": " "}, headers=headers)
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]


def test_docs_and_chat_on_the_same_port(api_url):
    assert "swagger" in httpx.get(f"{api_url}/docs").text.lower()
    schema = httpx.get(f"{api_url}/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/models", "/api/ask"} <= set(schema["paths"])
    missing = httpx.get(f"{api_url}/v1/embeddings")
    assert missing.status_code == 404 and "error" in missing.json()
    page = httpx.get(f"{api_url}/", follow_redirects=True)
    assert page.status_code == 200 and "gradio" in page.text.lower()
    from gradio_client import Client

    result = Client(f"{api_url}/", verbose=False).predict(QUESTION, None, api_name="/ask")
    assert result["citations"][0]["source"] == "004_b24285a9b201835e.txt"
    assert "short_answer" in result  # the Gradio endpoint sends Answer.to_dict() too


def test_public_bind_needs_an_api_key(monkeypatch, capsys):
    assert resolve_api_key("127.0.0.1", {}) is None
    assert resolve_api_key("0.0.0.0", {"RAG_API_KEY": "k"}) == "k"
    monkeypatch.setenv("RAG_USERNAME", "u")
    monkeypatch.setenv("RAG_PASSWORD", "p")
    monkeypatch.delenv("RAG_API_KEY", raising=False)
    assert main(["--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "RAG_API_KEY" in err and len(err.strip().splitlines()) == 1


# --- one JSON form: every endpoint sends Answer.to_dict(), built here by hand -------------------


class FakePipeline:
    """Answers every question with one hand-built answer (no model, no index)."""

    def __init__(self, answer) -> None:
        self.answer = answer

    def refresh_if_stale(self) -> bool:
        """The index on disk never changes."""
        return False

    def ask(self, question, *, history=()):
        """The fixed answer."""
        return self.answer


def fake_answer():
    """The hand-built answer of FakePipeline: one citation and a short answer."""
    from rag import Answer, Citation
    from rag.reading import ShortAnswer

    text = "Trucks waited at Eagle Pass, Texas."
    citation = Citation(n=1, source="a.txt", title="t", start=10, end=10 + len(text), text=text,
                        highlights=((10, 10 + len(text)),), locator="lines 1–2")  # fmt: skip
    answer = Answer(
        answer=f"{text} [1]", abstained=False, mode="extractive", citations=[citation],
        timings_ms={"retrieve": 1.0, "answer": 2.0}, answerability=3.25,
        short_answer=ShortAnswer("Eagle Pass, Texas", "a.txt", 27, 44, 1),
        mode_detail="LLM answer rejected: most sentences are not supported",
    )  # fmt: skip
    return answer


@pytest.fixture
def fake_api():
    """build_api over a FakePipeline, driven in-process; yields (client, the answer's JSON)."""
    from fastapi.testclient import TestClient

    from ui.openai_api import build_api

    answer = fake_answer()
    with TestClient(build_api(FakePipeline(answer), api_key=None)) as http:
        yield http, answer.to_dict()


def _chat(http, **extra):
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Where?"}], **extra}
    return http.post("/v1/chat/completions", json=body)


def test_api_ask_is_answer_to_dict(fake_api):
    http, expected = fake_api
    served = http.post("/api/ask", json={"question": "Where?"}).json()
    assert served == expected
    assert served["short_answer"]["text"] == "Eagle Pass, Texas" and served["answerability"] == 3.25


def test_chat_message_carries_the_answers_citations_and_short_answer(fake_api):
    http, expected = fake_api
    message = _chat(http).json()["choices"][0]["message"]
    assert message["content"] == expected["answer"]
    assert message["citations"] == expected["citations"]
    assert message["short_answer"] == expected["short_answer"]


def test_last_stream_chunk_carries_citations_short_answer_and_usage(fake_api):
    http, expected = fake_api
    events = [line[6:] for line in _chat(http, stream=True).text.splitlines() if line]
    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert last["choices"][0]["finish_reason"] == "stop" and last["usage"]["total_tokens"] > 0
    assert last["citations"] == expected["citations"]
    assert last["short_answer"] == expected["short_answer"]
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == expected["answer"]


def test_a_front_end_task_has_no_short_answer(fake_api):
    http, _ = fake_api
    message = _chat(http, messages=[{"role": "user", "content": TITLE_PROMPT}]).json()
    assert message["choices"][0]["message"]["short_answer"] is None


# --- store: true saves the turn as a conversation ------------------------------------------------


def test_store_true_saves_the_turn_and_without_it_nothing_is_kept(client, pipeline):
    from rag.conversations import ConversationStore
    from ui.app import conversations_path
    from ui.openai_api import API_OWNER

    messages = [{"role": "user", "content": QUESTION}]
    with ConversationStore(conversations_path(pipeline)) as store:  # the file the server uses
        before = {c.id for c in store.list(API_OWNER)}
        plain = client.chat.completions.create(model=MODEL_ID, messages=messages)
        assert "conversation_id" not in (plain.model_extra or {})
        assert {c.id for c in store.list(API_OWNER)} == before
        saved = client.chat.completions.create(model=MODEL_ID, messages=messages, store=True)
        cid = saved.model_extra["conversation_id"]
        assert cid and cid not in before
        (turn,) = store.get(cid, API_OWNER).turns
        assert turn.question == QUESTION
        assert turn.answer["citations"] == saved.choices[0].message.model_extra["citations"]
        assert cid not in {c.id for c in store.list("")}  # not in the chat's list
        follow = [*messages, {"role": "assistant", "content": "x"},
                  {"role": "user", "content": "Where did he say that?"}]  # fmt: skip
        chunks = list(
            client.chat.completions.create(
                model=MODEL_ID, messages=follow, store=True, stream=True,
                extra_body={"conversation_id": cid},
            )
        )  # fmt: skip
        assert chunks[-1].model_extra["conversation_id"] == cid
        assert [t.question for t in store.get(cid, API_OWNER).turns] == [
            QUESTION,
            follow[-1]["content"],
        ]
        with pytest.raises(openai.NotFoundError, match="no such conversation"):
            client.chat.completions.create(
                model=MODEL_ID, messages=messages, store=True,
                extra_body={"conversation_id": "not-a-conversation"},
            )  # fmt: skip


def test_store_true_never_loses_the_answer(fake_api, tmp_path):
    from fastapi.testclient import TestClient

    from rag.conversations import ConversationStore
    from ui.openai_api import API_OWNER, build_api

    http, expected = fake_api
    off = _chat(http, store=True).json()  # a server without a conversations store
    assert off["choices"][0]["message"]["content"] == expected["answer"]
    assert off["conversation_id"] is None and "off" in off["store_error"]
    store = ConversationStore(tmp_path / "c.sqlite3")
    with TestClient(
        build_api(FakePipeline(fake_answer()), api_key=None, conversations=store)
    ) as api:
        cid = _chat(api, store=True).json()["conversation_id"]
        (conversation,) = store.list(API_OWNER)
        assert conversation.id == cid and conversation.collection == "default"
        assert store.get(cid, API_OWNER).turns[0].answer == expected
        task = _chat(api, store=True, messages=[{"role": "user", "content": TITLE_PROMPT}])
        assert task.json()["conversation_id"] is None and len(store.list(API_OWNER)) == 1
        store.close()  # every write now fails: the answer still comes back
        failed = _chat(api, store=True).json()
        assert failed["choices"][0]["message"]["content"] == expected["answer"]
        assert failed["conversation_id"] is None and "not saved" in failed["store_error"]
