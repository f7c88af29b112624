"""The OpenAI-compatible API and /api/ask, served with uvicorn and driven with the openai client.

python -m pytest -q tests/test_openai_api.py
"""

from __future__ import annotations

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


def test_public_bind_needs_an_api_key(monkeypatch, capsys):
    assert resolve_api_key("127.0.0.1", {}) is None
    assert resolve_api_key("0.0.0.0", {"RAG_API_KEY": "k"}) == "k"
    monkeypatch.setenv("RAG_USERNAME", "u")
    monkeypatch.setenv("RAG_PASSWORD", "p")
    monkeypatch.delenv("RAG_API_KEY", raising=False)
    assert main(["--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "RAG_API_KEY" in err and len(err.strip().splitlines()) == 1
