"""Saved conversations in the chat: every answer saved, listed, reopened as shown, private.

python -m pytest -q tests/test_ui_conversations.py
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from rag.conversations import CHANGED_NOTE, REMOVED_NOTE, ConversationStore
from ui.app import (
    SAVE_FAILED,
    SAVING_OFF,
    ask_delete,
    build_app,
    chat_steps,
    confirm_delete,
    conversation_chat,
    conversation_list,
    conversation_steps,
    conversations_path,
    export_conversation,
    new_conversation,
    rename_conversation,
    reopen_conversation,
    request_owner,
    view_citation,
)
from ui.render import answer_from_record, answer_record

FIRST = "What did JD Vance say about U.S. forces going into Mexico?"
FOLLOW = "Where did he say that?"
PASSAGE = "004_b24285a9b201835e.txt"  # the NORTHCOM article


@pytest.fixture
def store(tmp_path):
    """A fresh conversations file for one test."""
    with ConversationStore(tmp_path / "conversations.sqlite3") as s:
        yield s


def ask(pipeline, store, message, *, owner="", conversation_id=None, chat=(), questions=()):
    """One saved chat turn; returns its last update."""
    *_, last = conversation_steps(
        pipeline, store, owner=owner, conversation_id=conversation_id, message=message,
        chat=list(chat), questions=list(questions),
    )  # fmt: skip
    return last


def choices(update: dict) -> list[tuple[str, str]]:
    """The (label, id) pairs of a list update."""
    return [tuple(c) for c in update["choices"]]


def test_every_answer_is_saved_with_its_spans_and_listed(pipeline, store):
    chat, cards, status, questions, cited, cid, listing, info, title = ask(pipeline, store, FIRST)
    assert cid and title == FIRST and "⚠️" not in status
    assert [c.id for c in store.list("")] == [cid]
    assert choices(listing)[0][1] == cid and listing["value"] == cid
    assert choices(listing)[0][0].startswith(FIRST) and "1 saved conversation" in info
    follow = ask(pipeline, store, FOLLOW, conversation_id=cid, chat=chat, questions=questions)
    assert follow[5] == cid and not isinstance(follow[8], str)  # same one; title unchanged
    turns = store.get(cid, "").turns
    assert [t.question for t in turns] == [FIRST, FOLLOW]
    stored = turns[0].answer
    assert {"answer", "mode", "short_answer", "citations", "timings_ms", "warnings"} <= set(stored)
    first = stored["citations"][0]
    assert first["highlights"] and {"start", "end", "text", "locator", "date"} <= set(first)
    assert stored["model_name"] == pipeline.model_name


def test_a_reopened_conversation_looks_as_it_did_live(pipeline, store):
    live = list(chat_steps(pipeline, FIRST, [], []))[-1]
    *_, cid, _, _, _ = ask(pipeline, store, FIRST)
    first = ask(pipeline, store, FIRST)  # a second conversation, to be left alone
    assert first[5] != cid
    shown = reopen_conversation(pipeline, store, owner="", conversation_id=cid)
    chat, cards, status, questions, cited, opened, title, message, *_ = shown
    assert (opened, title, message, questions) == (cid, FIRST, "", [FIRST])
    assert [m["content"] for m in chat] == [m["content"] for m in live[0]]
    assert cards == live[1] and "<mark>" in cards and "cqa-stale" not in cards
    assert [c.to_dict() for c in cited] == [c.to_dict() for c in live[4]]
    assert status.startswith("Reopened “") and "1 question" in status
    # A follow-up of the reopened conversation uses its stored questions as history.
    follow = ask(pipeline, store, FOLLOW, conversation_id=cid, chat=chat, questions=questions)
    assert "000_3b56b7e336b84316.txt" in follow[1] and follow[3] == [FIRST, FOLLOW]
    assert len(store.get(cid, "").turns) == 2


def test_a_stored_answer_renders_from_its_dict_alone(pipeline):
    answer = pipeline.ask("How many cartel bosses did Mexico hand over?")
    again = answer_from_record(json.loads(json.dumps(answer_record(answer, model_name=None))))
    assert [c.to_dict() for c in again.citations] == [c.to_dict() for c in answer.citations]
    assert [c.highlights for c in again.citations] == [c.highlights for c in answer.citations]
    assert again.short_answer == answer.short_answer and again.answer == answer.answer
    assert answer_from_record({"citations": "nonsense", "timings_ms": None}).answer == ""


def test_a_changed_or_removed_document_says_so_on_the_card(pipeline, store):
    answer = pipeline.ask("Who commands NORTHCOM?")
    record = answer_record(answer, model_name=None)
    changed = record["citations"][0]
    assert changed["source"] == PASSAGE
    changed["text"] = "A sentence the document held when the answer was given."
    gone = dict(changed, n=len(record["citations"]) + 1, source="deleted-since.txt")
    record["citations"].append(gone)
    conversation = store.create("")
    store.add_turn(conversation.id, "", "Who commands NORTHCOM?", record)
    chat, cards, status, _, cited = conversation_chat(pipeline, store.get(conversation.id, ""))
    assert cards.count("cqa-stale'") == 2 and CHANGED_NOTE in cards and REMOVED_NOTE in cards
    stale = cards.split("<div class='cqa-card")[1]
    assert "<mark" not in stale and "A sentence the document held" in stale
    assert "⚠️ 2 cited passage(s) changed or removed since" in status
    assert CHANGED_NOTE in chat[-1]["content"]  # the Sources block under the answer too
    _, view, _ = view_citation(pipeline, citations=cited, index=0, source=PASSAGE)
    assert "cannot be shown" in view and CHANGED_NOTE in view
    exported = export_conversation(
        pipeline, store, owner="", conversation_id=conversation.id, kind="markdown"
    )
    text = Path(exported[0]["value"]).read_text(encoding="utf-8")
    assert CHANGED_NOTE in text and REMOVED_NOTE in text


def test_rename_delete_and_export(pipeline, store):
    *_, cid, _, _, _ = ask(pipeline, store, FIRST)
    listing, _, title, message = rename_conversation(
        store, owner="", conversation_id=cid, title="  Vance on troops  "
    )
    assert title == "Vance on troops" and "Renamed" in message
    assert choices(listing)[0][0].startswith("Vance on troops")
    *_, message = rename_conversation(store, owner="", conversation_id=cid, title=" ")
    assert "empty" in message and store.get(cid, "").conversation.title == "Vance on troops"

    md, message = export_conversation(
        pipeline, store, owner="", conversation_id=cid, kind="markdown"
    )
    path = Path(md["value"])
    assert path.name == "Vance-on-troops.md" and "Markdown" in message
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Vance on troops") and "[^1-1]:" in text and "000\\_3b56" in text
    js, _ = export_conversation(pipeline, store, owner="", conversation_id=cid, kind="json")
    data = json.loads(Path(js["value"]).read_text(encoding="utf-8"))
    assert data == store.export_json(cid, "") and data["turns"][0]["question"] == FIRST

    box, text, pending, _ = ask_delete(store, owner="", conversation_id=cid)
    assert box["visible"] and "Vance on troops" in text and pending == cid
    assert store.get(cid, "")  # asking deletes nothing
    other = store.create("").id
    out = confirm_delete(store, owner="", pending=other, current=cid)  # not the open one
    assert out[2] == "Deleted the conversation." and out[5:] == (out[5],) * 7  # chat untouched
    out = confirm_delete(store, owner="", pending=cid, current=cid)
    box, pending, message, listing, info, current, title, chat, *_ = out
    assert (pending, current, title, chat) == (None, None, "", []) and "No saved" in info
    assert store.list("") == [] and choices(listing) == []
    assert "already deleted" in confirm_delete(store, owner="", pending=cid, current=None)[2]


def test_one_user_never_sees_or_touches_another_users_conversation(pipeline, store):
    *_, cid, _, _, _ = ask(pipeline, store, FIRST, owner="alice")
    assert choices(conversation_list(store, "bob")[0]) == []
    assert choices(conversation_list(store, "")[0]) == []  # nor the chat without credentials
    opened = reopen_conversation(pipeline, store, owner="bob", conversation_id=cid)
    assert opened[7] == "That conversation no longer exists." and opened[0] is not None
    assert (
        "no longer exists"
        in rename_conversation(store, owner="bob", conversation_id=cid, title="mine")[3]
    )
    assert ask_delete(store, owner="bob", conversation_id=cid)[2] is None
    assert "already deleted" in confirm_delete(store, owner="bob", pending=cid, current=None)[2]
    for kind in ("markdown", "json"):
        update, message = export_conversation(
            pipeline, store, owner="bob", conversation_id=cid, kind=kind
        )
        assert update["value"] is None and "no longer exists" in message
    # bob's own question in alice's conversation id starts his own conversation
    mine = ask(pipeline, store, FOLLOW, owner="bob", conversation_id=cid)
    assert mine[5] != cid and "deleted meanwhile" in mine[2]
    assert [c.title for c in store.list("alice")] == [FIRST]
    assert len(store.get(cid, "alice").turns) == 1
    assert request_owner(SimpleNamespace(username="alice")) == "alice"
    assert request_owner(SimpleNamespace(username=None)) == "" and request_owner(None) == ""


def test_a_failed_save_keeps_the_answer_and_says_so(pipeline, tmp_path):
    broken = ConversationStore(tmp_path / "c.sqlite3")
    broken.close()  # every write now fails
    chat, cards, status, questions, _, cid, *_ = ask(pipeline, broken, FIRST)
    assert status.endswith(SAVE_FAILED) and cid is None and questions == [FIRST]
    assert "cqa-card" in cards and "\\[1\\]" in chat[1]["content"]
    chat, cards, status, *_ = ask(pipeline, None, FIRST)
    assert status.endswith(SAVING_OFF) and "cqa-card" in cards
    assert "off" in conversation_list(None, "")[1]
    assert "off" in reopen_conversation(pipeline, None, owner="", conversation_id="x")[7]


def test_new_conversation_clears_the_chat_and_the_selection():
    chat, _, status, questions, cited, cid, listing, title = new_conversation()
    assert (chat, status, questions, cited, cid, title) == ([], "Ready.", [], [], None, "")
    assert listing["value"] is None


def test_the_app_saves_beside_the_index_and_runs_without_a_store(pipeline, tmp_path):
    assert conversations_path(pipeline) == (
        Path(pipeline.config.index.index_dir).parent / "conversations.sqlite3"
    )
    target = tmp_path / "data" / "saved.sqlite3"
    build_app(pipeline, conversations_file=target)
    assert target.is_file()
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert build_app(pipeline, conversations_file=folder) is not None  # chat on, saving off
