"""Saved conversations: they persist, stay private to their owner, export, and survive kill -9.

python -m pytest -q tests/test_conversations.py

No model is loaded: the answers are built from the pipeline's own Answer and Citation classes
(so the stored dict is exactly what `Answer.to_dict()` gives) over a two-document toy corpus.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rag import Answer, Citation
from rag import conversations as conv
from rag.conversations import (
    CHANGED,
    OK,
    REMOVED,
    REMOVED_NOTE,
    ConversationNotFound,
    ConversationStore,
    ConversationStoreError,
    check_citations,
    title_from_question,
)
from rag.reading import ShortAnswer

ROOT = Path(__file__).resolve().parent.parent
FERRY = "The Quuxville ferry leaves the north pier at noon. Tickets cost five crowns."
TARIFF = "The Zorblatt Commission set a tariff of 17 percent on avocados in April 2025."
DOCS = {"ferry.txt": FERRY, "notes/tariff.md": TARIFF}


def _span(source: str, text: str) -> tuple[int, int]:
    start = DOCS[source].index(text)
    return start, start + len(text)


def _citation(n: int, source: str, text: str, *, locator: str = "", page=None) -> Citation:
    start, end = _span(source, text)
    return Citation(
        n=n, source=source, title=source.split("/")[-1], start=start, end=end, text=text,
        page=page, locator=locator,
    )  # fmt: skip


def make_answer(*, short: bool = True, warnings: tuple[str, ...] = ()) -> dict:
    """An answer citing both documents, as the pipeline would hand it to the chat."""
    first = _citation(1, "ferry.txt", "The Quuxville ferry leaves the north pier at noon.")
    second = _citation(2, "notes/tariff.md", TARIFF, locator="§ Trade", page=3)
    noon = _span("ferry.txt", "noon")
    answer = Answer(
        answer=f"{first.text} [1] {second.text} [2]",
        abstained=False,
        mode="extractive",
        citations=[first, second],
        timings_ms={"retrieve": 12.345, "total": 40.0},
        query="When does the ferry leave?",
        warnings=list(warnings),
        short_answer=ShortAnswer("noon", "ferry.txt", noon[0], noon[1], 1) if short else None,
    )
    return answer.to_dict()


@pytest.fixture
def path(tmp_path) -> Path:
    return tmp_path / "data" / "conversations.sqlite3"


@pytest.fixture
def store(path):
    with ConversationStore(path) as opened:
        yield opened


# --- persistence, listing, titles -----------------------------------------------------------------


def test_turns_persist_across_reopen(path):
    answer = make_answer()
    with ConversationStore(path) as first:
        created = first.create("alice", "default")
        first.add_turn(created.id, "alice", "When does the ferry leave?", answer)
        first.add_turn(created.id, "alice", "And the tariff?", make_answer(short=False))
    with ConversationStore(path) as again:
        whole = again.get(created.id, "alice")
        assert [c.id for c in again.list("alice")] == [created.id]
    assert whole.conversation.title == "When does the ferry leave?"
    assert whole.conversation.turn_count == 2
    assert [(t.position, t.question) for t in whole.turns] == [
        (1, "When does the ferry leave?"),
        (2, "And the tariff?"),
    ]
    assert whole.turns[0].answer == answer  # citations with their exact spans, timings, warnings
    assert whole.turns[1].answer["short_answer"] is None
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == conv.SCHEMA_VERSION
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newest_first_by_last_turn(store):
    a, b, c = (store.create("alice", "default") for _ in range(3))
    other = store.create("alice", "papers")
    assert [x.id for x in store.list("alice")] == [other.id, c.id, b.id, a.id]
    store.add_turn(a.id, "alice", "first question of a", make_answer())
    listed = store.list("alice", "default")
    assert [x.id for x in listed] == [a.id, c.id, b.id]
    assert listed[0].updated >= listed[0].created and listed[0].turn_count == 1
    assert [x.id for x in store.list("alice", "papers")] == [other.id]
    assert [x.id for x in store.list("alice", limit=2)] == [a.id, other.id]


@pytest.mark.parametrize("limit", [0, -1, 10_001, 2.5, True, "5"])
def test_list_limit_is_checked(store, limit):
    with pytest.raises(ValueError, match="limit"):
        store.list("alice", limit=limit)


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("When does the ferry leave?", "When does the ferry leave?"),
        ("  When\n does\tthe ferry   leave?  ", "When does the ferry leave?"),
        ("word " * 40, ("word " * 16).strip() + "…"),
        ("x" * 200, "x" * 79 + "…"),
    ],
)
def test_title_from_first_question(question, title):
    made = title_from_question(question)
    assert made == title
    assert len(made) <= conv.TITLE_CHARS


def test_title_comes_from_the_first_question_only(store):
    untitled = store.create("alice", "default")
    assert untitled.title == ""
    store.add_turn(untitled.id, "alice", "When does the ferry leave?", make_answer())
    store.add_turn(untitled.id, "alice", "And the tariff?", make_answer())
    assert store.get(untitled.id, "alice").conversation.title == "When does the ferry leave?"
    titled = store.create("alice", "default", title="Ferries")
    store.add_turn(titled.id, "alice", "When does the ferry leave?", make_answer())
    assert store.get(titled.id, "alice").conversation.title == "Ferries"


# --- ownership ----------------------------------------------------------------------------------

OPERATIONS = {
    "get": lambda s, cid, who: s.get(cid, who),
    "add_turn": lambda s, cid, who: s.add_turn(cid, who, "Mine now?", make_answer()),
    "rename": lambda s, cid, who: s.rename(cid, who, "stolen"),
    "delete": lambda s, cid, who: s.delete(cid, who),
    "export_markdown": lambda s, cid, who: s.export_markdown(cid, who),
    "export_json": lambda s, cid, who: s.export_json(cid, who),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("intruder", ["bob", "", "Alice", "alice "])
def test_another_owner_sees_what_an_unknown_id_shows(store, operation, intruder):
    mine = store.create("alice", "default")
    store.add_turn(mine.id, "alice", "When does the ferry leave?", make_answer())
    run = OPERATIONS[operation]
    with pytest.raises(ConversationNotFound) as theirs:
        run(store, mine.id, intruder)
    with pytest.raises(ConversationNotFound) as unknown:
        run(store, "no-such-id-0000", intruder)
    assert str(theirs.value) == str(unknown.value) == "no such conversation"
    assert isinstance(theirs.value, KeyError)
    assert store.list(intruder) == []
    kept = store.get(mine.id, "alice")  # nothing of alice's changed
    assert kept.conversation.title == "When does the ferry leave?"
    assert len(kept.turns) == 1


def test_no_credentials_owner_is_its_own_owner(store):
    open_chat = store.create("", "default")
    assert [c.id for c in store.list("")] == [open_chat.id]
    assert store.list("alice") == []
    with pytest.raises(ConversationNotFound):
        store.get(open_chat.id, "alice")


# --- rename, delete -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 201, "at most 200"),
        ("two\nlines", "control characters"),
        ("tab\there", "control characters"),
        ("bell\x07", "control characters"),
        (None, "must be text"),
        (42, "must be text"),
    ],
)
def test_rename_refuses_bad_titles(store, title, message):
    made = store.create("alice", "default", title="Ferries")
    with pytest.raises(ValueError, match=message):
        store.rename(made.id, "alice", title)
    assert store.get(made.id, "alice").conversation.title == "Ferries"


@pytest.mark.parametrize(
    ("title", "stored"),
    [("  Ferry times  ", "Ferry times"), ("x" * 200, "x" * 200), ("Fähre · 渡船", "Fähre · 渡船")],
)
def test_rename_keeps_the_list_order(store, title, stored):
    older = store.create("alice", "default")
    newer = store.create("alice", "default")
    renamed = store.rename(older.id, "alice", title)
    assert renamed.title == stored
    assert store.get(older.id, "alice").conversation.title == stored
    assert [c.id for c in store.list("alice")] == [newer.id, older.id]


def test_delete_removes_the_conversation_and_its_turns(store, path):
    gone = store.create("alice", "default")
    kept = store.create("alice", "default")
    for made in (gone, kept):
        store.add_turn(made.id, "alice", "When does the ferry leave?", make_answer())
    store.delete(gone.id, "alice")
    assert [c.id for c in store.list("alice")] == [kept.id]
    with pytest.raises(ConversationNotFound):
        store.get(gone.id, "alice")
    with pytest.raises(ConversationNotFound):
        store.delete(gone.id, "alice")
    with sqlite3.connect(path) as raw:
        left = raw.execute("SELECT DISTINCT conversation_id FROM turns").fetchall()
    assert left == [(kept.id,)]


# --- bad input ----------------------------------------------------------------------------------


def _nan_answer() -> dict:
    answer = make_answer()
    answer["timings_ms"]["total"] = math.nan
    return answer


def _bad_span() -> dict:
    answer = make_answer()
    answer["citations"][0]["start"] = 900
    answer["citations"][0]["end"] = 10
    return answer


def _no_text() -> dict:
    answer = make_answer()
    del answer["citations"][1]["text"]
    return answer


@pytest.mark.parametrize(
    ("question", "answer", "message"),
    [
        ("", make_answer(), "question is empty"),
        ("   ", make_answer(), "question is empty"),
        (None, make_answer(), "question is empty"),
        ("ok?", "just text", "must be a dict"),
        ("ok?", {"citations": "none"}, "must be a list"),
        ("ok?", {"citations": ["x"]}, "citation 1 .* not an object"),
        ("ok?", _no_text(), "citation 2 .* 'text'"),
        ("ok?", _bad_span(), "bad span"),
        ("ok?", _nan_answer(), "cannot be stored as JSON"),
        ("ok?", {"answer": object()}, "cannot be stored as JSON"),
    ],
)
def test_add_turn_refuses_bad_input(store, question, answer, message):
    made = store.create("alice", "default")
    with pytest.raises(ValueError, match=message):
        store.add_turn(made.id, "alice", question, answer)
    assert store.get(made.id, "alice").turns == ()


@pytest.mark.parametrize(
    ("owner", "collection", "message"),
    [
        (None, "default", "owner must be text"),
        ("alice", "", "collection is empty"),
        ("alice", None, "collection must be text"),
        ("al\nice", "default", "owner contains control"),
        ("a" * 201, "default", "owner is longer"),
    ],
)
def test_create_refuses_bad_names(store, owner, collection, message):
    with pytest.raises(ValueError, match=message):
        store.create(owner, collection)


# --- export ---------------------------------------------------------------------------------------


def test_markdown_export_has_footnotes_with_locator_and_span(store):
    made = store.create("alice", "default")
    store.add_turn(made.id, "alice", "When does the *ferry* leave?", make_answer())
    warned = make_answer(short=False, warnings=("LLM answer replaced by the extractive one",))
    store.add_turn(made.id, "alice", "# And the tariff?", warned)
    text = store.export_markdown(made.id, "alice")

    assert text.startswith("# When does the \\*ferry\\* leave?\n")
    assert "## 1. When does the \\*ferry\\* leave?" in text
    assert "## 2. \\# And the tariff?" in text  # a question's markup stays text
    assert "**Short answer:** noon \\[1\\][^1-1]" in text
    assert "The Quuxville ferry leaves the north pier at noon. \\[1\\][^1-1]" in text
    start, end = _span("ferry.txt", "The Quuxville ferry leaves the north pier at noon.")
    assert f"[^1-1]: \\[1\\] ferry.txt — ferry.txt, characters {start}–{end}." in text
    t_start, t_end = _span("notes/tariff.md", TARIFF)
    tariff = f"[^2-2]: \\[2\\] tariff.md — notes/tariff.md, § Trade, characters {t_start}–{t_end}."
    assert tariff in text
    assert "> *Note:* LLM answer replaced by the extractive one" in text
    # Every footnote used is defined once, every one defined is used: labels are per turn.
    used = set(re.findall(r"\[\^(\d+-\d+)\](?!:)", text))
    defined = re.findall(r"^\[\^(\d+-\d+)\]:", text, re.MULTILINE)
    assert used == set(defined) == {"1-1", "1-2", "2-1", "2-2"}
    assert len(defined) == len(set(defined))


def test_markdown_export_says_which_documents_changed_or_left(store):
    made = store.create("alice", "default")
    store.add_turn(made.id, "alice", "When does the ferry leave?", make_answer())
    changed = {"ferry.txt": "The ferry was cancelled.", "notes/tariff.md": None}
    text = store.export_markdown(made.id, "alice", read_document=changed.get)
    assert f"characters 0–50 ({conv.CHANGED_NOTE})" in text
    assert f"({REMOVED_NOTE})" in text


def test_json_export_is_the_whole_conversation(store):
    made = store.create("alice", "papers")
    answer = make_answer()
    store.add_turn(made.id, "alice", "When does the ferry leave?", answer)
    exported = store.export_json(made.id, "alice")
    assert json.loads(json.dumps(exported, allow_nan=False)) == exported
    assert exported["format"] == conv.EXPORT_FORMAT
    assert (exported["id"], exported["collection"], exported["title"]) == (
        made.id,
        "papers",
        "When does the ferry leave?",
    )
    [turn] = exported["turns"]
    assert turn["position"] == 1 and turn["question"] == "When does the ferry leave?"
    assert turn["answer"] == answer and turn["created"]


# --- citations of reopened answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("documents", "states"),
    [
        (DOCS, [OK, OK]),
        ({"ferry.txt": FERRY.replace("noon", "one"), "notes/tariff.md": TARIFF}, [CHANGED, OK]),
        ({"ferry.txt": "Prefix. " + FERRY, "notes/tariff.md": TARIFF}, [CHANGED, OK]),
        ({"ferry.txt": FERRY[:20], "notes/tariff.md": TARIFF}, [CHANGED, OK]),
        ({"notes/tariff.md": TARIFF}, [REMOVED, OK]),
        ({}, [REMOVED, REMOVED]),
    ],
)
def test_check_citations(documents, states):
    reads = []

    def read_document(source: str) -> str | None:
        reads.append(source)
        return documents.get(source)

    answer = make_answer()
    answer["citations"].append(dict(answer["citations"][0], n=3))  # a second span of ferry.txt
    found = check_citations(answer, read_document)
    assert [s.state for s in found] == [*states, states[0]]
    assert [(s.n, s.source) for s in found] == [
        (1, "ferry.txt"),
        (2, "notes/tariff.md"),
        (3, "ferry.txt"),
    ]
    assert all(bool(s.note) == (s.state != OK) for s in found)
    assert sorted(reads) == ["ferry.txt", "notes/tariff.md"]  # each document read once


def test_check_citations_of_an_abstention_is_empty():
    assert check_citations({"answer": "The documents do not answer this question."}, DOCS.get) == []
    with pytest.raises(ValueError, match="must be a dict"):
        check_citations(["not", "an", "answer"], DOCS.get)


def test_forget_document_marks_its_citations_in_that_collection(store):
    mine = store.create("alice", "default")
    theirs = store.create("bob", "default")
    elsewhere = store.create("alice", "papers")
    for made, owner in ((mine, "alice"), (theirs, "bob"), (elsewhere, "alice")):
        store.add_turn(made.id, owner, "When does the ferry leave?", make_answer())
        store.add_turn(made.id, owner, "Again?", make_answer())

    assert store.forget_document("ferry.txt", "default") == 4  # 2 owners x 2 turns
    assert store.forget_document("ferry.txt", "default") == 0  # already marked
    for made, owner in ((mine, "alice"), (theirs, "bob")):
        for turn in store.get(made.id, owner).turns:
            found = check_citations(turn.answer, DOCS.get)  # the file still reads the same
            assert [(s.source, s.state) for s in found] == [
                ("ferry.txt", REMOVED),
                ("notes/tariff.md", OK),
            ]
            assert found[0].note == REMOVED_NOTE
    untouched = store.get(elsewhere.id, "alice").turns[0].answer
    assert untouched == make_answer()
    assert [s.state for s in check_citations(untouched, DOCS.get)] == [OK, OK]
    assert REMOVED_NOTE in store.export_markdown(mine.id, "alice")

    assert store.unforget_document("ferry.txt", "default") == 4
    assert store.get(mine.id, "alice").turns[0].answer == make_answer()
    assert store.forget_document("missing.pdf", "default") == 0


# --- threads, files, migrations ----------------------------------------------------------------


def test_threads_share_one_store(store):
    made = [store.create("alice", "default"), store.create("bob", "default")]
    errors = []

    def ask(i: int) -> None:
        try:
            target = made[i % 2]
            for k in range(15):
                store.add_turn(target.id, target.owner, f"question {i}-{k}", make_answer())
                store.list(target.owner)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    for target in made:
        turns = store.get(target.id, target.owner).turns
        assert [t.position for t in turns] == list(range(1, 61))
        assert len({t.question for t in turns}) == 60


def _other_app_db(path: Path) -> None:
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")


def _newer_db(path: Path) -> None:
    ConversationStore(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {conv.SCHEMA_VERSION + 1}")


def _damaged_db(path: Path) -> None:
    with ConversationStore(path) as good:
        made = good.create("alice", "default")
        good.add_turn(made.id, "alice", "When does the ferry leave?", make_answer())
    data = bytearray(path.read_bytes())
    data[100:300] = os.urandom(200)  # the first page: the schema
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: p.write_text("hello, this is not a database\n" * 50), "not a readable"),
        (lambda p: p.write_bytes(os.urandom(8192)), "not a readable"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00" + os.urandom(8192)), "not a readable"),
        (_damaged_db, "not a readable"),
        (_other_app_db, "database of something else"),
        (_newer_db, "newer version"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
    ids=["text", "random", "sqlite-header", "damaged", "other-app", "newer", "folder"],
)
def test_a_file_that_is_not_ours_gives_a_clear_error(path, write, message):
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    with pytest.raises(ConversationStoreError, match=message) as caught:
        ConversationStore(path)
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, sqlite3.Error)
    assert str(path) in str(caught.value)


def test_a_folder_that_cannot_be_made_gives_a_clear_error(tmp_path):
    (tmp_path / "data").write_text("a file where the data folder should be")
    path = tmp_path / "data" / "conversations.sqlite3"
    with pytest.raises(ConversationStoreError, match="cannot create its folder") as caught:
        ConversationStore(path)
    assert str(path) in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files and folders")
@pytest.mark.parametrize("existing", [True, False])
def test_a_read_only_location_gives_a_clear_error(path, existing):
    path.parent.mkdir(parents=True)
    if existing:
        ConversationStore(path).close()
        path.chmod(0o444)
    path.parent.chmod(0o555)
    try:
        with pytest.raises(ConversationStoreError, match="cannot be") as caught:
            ConversationStore(path)
    finally:
        path.parent.chmod(0o755)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("existing", "message"),
    [(True, "cannot be written"), (False, "cannot be opened or created")],
)
def test_a_read_only_database_gives_a_clear_error(path, monkeypatch, existing, message):
    """As the test above, for any user (root too): SQLite itself opens the file read-only."""
    if existing:
        ConversationStore(path).close()

    def read_only(where: Path) -> sqlite3.Connection:
        return sqlite3.connect(
            f"file:{where}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )

    monkeypatch.setattr(conv, "_connect", read_only)
    with pytest.raises(ConversationStoreError, match=message) as caught:
        ConversationStore(path)
    assert str(path) in str(caught.value)
    assert "check" in str(caught.value)  # what to do about it


def test_a_migration_step_runs_once_on_an_older_file(path, monkeypatch):
    with ConversationStore(path) as old:
        made = old.create("alice", "default")
        old.add_turn(made.id, "alice", "When does the ferry leave?", make_answer())
    runs = []

    def add_pinned(connection: sqlite3.Connection) -> None:
        runs.append(1)
        connection.execute("ALTER TABLE conversations ADD COLUMN pinned INTEGER DEFAULT 0")

    monkeypatch.setitem(conv.MIGRATIONS, conv.SCHEMA_VERSION, add_pinned)
    monkeypatch.setattr(conv, "SCHEMA_VERSION", conv.SCHEMA_VERSION + 1)
    for _ in range(2):
        with ConversationStore(path) as upgraded:
            assert upgraded.get(made.id, "alice").turns[0].answer == make_answer()
    assert runs == [1]
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == conv.SCHEMA_VERSION
        assert raw.execute("SELECT pinned FROM conversations").fetchall() == [(0,)]


# --- kill -9 while turns are written ------------------------------------------------------------

WRITER = r"""
import sys
from rag.conversations import ConversationStore

store = ConversationStore(sys.argv[1])
made = store.create("alice", "default")
cited = "The Quuxville ferry leaves the north pier at noon."
answer = {
    "answer": cited + " [1] " + "filler " * 40_000,  # ~280 kB: a write takes many pages
    "mode": "extractive",
    "citations": [{"n": 1, "source": "ferry.txt", "start": 0, "end": len(cited), "text": cited}],
}
n = 0
while True:
    n += 1
    store.add_turn(made.id, "alice", f"question {n}", answer)
    print(n, flush=True)  # only after add_turn returned: the turn is committed
"""


@pytest.mark.parametrize(("written", "delay"), [(3, 0.0), (5, 0.011), (8, 0.037)])
def test_kill_9_while_writing_loses_at_most_the_turn_in_flight(path, written, delay):
    path.parent.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watchdog = threading.Timer(120, child.kill)
    watchdog.start()
    try:
        confirmed = 0
        while confirmed < written:
            line = child.stdout.readline()
            assert line, f"the writer stopped: {child.stderr.read()}"
            confirmed = int(line)
        threading.Event().wait(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        lines = child.stdout.read().split()  # turns confirmed before the kill landed
        confirmed = int(lines[-1]) if lines else confirmed
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        raw_turns = raw.execute("SELECT answer FROM turns").fetchall()
    assert all(isinstance(json.loads(text), dict) for (text,) in raw_turns)
    with ConversationStore(path) as reopened:
        [made] = reopened.list("alice")
        turns = reopened.get(made.id, "alice").turns
        assert confirmed - 1 <= len(turns) <= confirmed + 1
        assert len(turns) >= confirmed  # WAL: a confirmed turn is never lost to kill -9
        assert [t.position for t in turns] == list(range(1, len(turns) + 1))
        assert [t.question for t in turns] == [f"question {t.position}" for t in turns]
        assert all(t.answer["citations"][0]["source"] == "ferry.txt" for t in turns)
        assert all(len(t.answer["answer"]) > 200_000 for t in turns)
        after = reopened.add_turn(made.id, "alice", "still writable?", make_answer())
        assert after.position == len(turns) + 1
