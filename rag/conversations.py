"""Saved conversations: every chat turn (question and full answer) in one SQLite file.

    python -m pytest -q tests/test_conversations.py    # the chat will save and reopen through this

`ConversationStore(path)` keeps conversations (id, owner, collection, title, times) and their
turns (the question, the answer as the JSON of `Answer.to_dict()`, a time stamp) in one file
under the data folder (`DEFAULT_PATH`). A conversation belongs to its owner: for any other
owner an existing id is exactly as unknown as an id that never existed (`ConversationNotFound`
for both), so nobody can list, open, rename, delete or export another's conversation, nor tell
that it exists. One store may serve several chat sessions (threads) at once, and several
processes may share the file (SQLite locks it; a writer waits up to BUSY_SECONDS).

Durability: WAL journal with synchronous=FULL. Each turn is one transaction; its commit
appends the pages to the -wal file and fsyncs it before add_turn returns. A process killed
(kill -9) or a machine losing power while a turn is written leaves frames without a commit
record, which SQLite ignores when it next opens the file: only the turn in flight is lost, and
the database always opens. synchronous=NORMAL would survive kill -9 just as well (the operating
system still holds what was written), but a power cut could then roll back the last few
*confirmed* turns; a turn comes once per answer, seconds apart, so FULL's one fsync per turn
costs nothing a user notices.

Cited documents change: `check_citations` compares each stored citation with the document's
current text, so a reopened answer says "changed" or "removed" instead of showing a wrong
span, and `forget_document` marks the citations of a removed document in the stored turns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_PATH = Path("data/conversations.sqlite3")
DEFAULT_COLLECTION = "default"
EXPORT_FORMAT = "corpusqa-conversation"
TITLE_CHARS = 80  # a title made from the first question
MAX_TITLE_CHARS = 200  # a title given by the user
MAX_NAME_CHARS = 200  # owner and collection names
MAX_LIMIT = 10_000
BUSY_SECONDS = 10.0  # how long a write waits for another process's write to finish
QUOTE_CHARS = 300  # characters of a cited passage quoted in the Markdown export

OK, CHANGED, REMOVED = "ok", "changed", "removed"
CHANGED_NOTE = "the document changed since this answer; the cited span is no longer there"
REMOVED_NOTE = "document removed"
REMOVED_KEY = "removed"  # set on a stored citation by forget_document: when, ISO 8601 UTC


class ConversationNotFound(KeyError):
    """No conversation of that id for this owner (it may not exist, or be someone else's)."""

    def __str__(self) -> str:
        return "no such conversation"


class ConversationStoreError(ValueError):
    """The conversations file cannot be opened or written; the message names the file."""


@dataclass(frozen=True)
class Conversation:
    """One saved conversation, without its turns."""

    id: str
    owner: str  # the signed-in user, "" when the chat runs without credentials
    collection: str
    title: str  # "" until the first question (or a rename) gives it one
    created: str  # ISO 8601, UTC
    updated: str  # the last turn (or the creation), ISO 8601 UTC
    turn_count: int = 0


@dataclass(frozen=True)
class Turn:
    """One question and its answer (the dict of `Answer.to_dict()`, as stored)."""

    conversation_id: str
    position: int  # 1, 2, ... in the order asked
    question: str
    answer: dict
    created: str  # ISO 8601, UTC


@dataclass(frozen=True)
class ConversationWithTurns:
    """A conversation and all its turns, oldest first."""

    conversation: Conversation
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class CitationState:
    """Whether a stored citation still matches its document: ok, changed or removed."""

    n: int
    source: str
    state: str  # OK, CHANGED or REMOVED
    note: str = ""  # what the card says instead of the span ("" when ok)


# --- schema and migrations ----------------------------------------------------------------------


def _schema_v1(conn: sqlite3.Connection) -> None:
    """Version 1: conversations and their turns."""
    conn.execute(
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            collection TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            seq INTEGER NOT NULL
        )"""
    )
    # seq grows with every change that makes a conversation newer: the list order, which time
    # stamps alone cannot give (two turns in one millisecond, a clock set back).
    conn.execute("CREATE INDEX conversations_seq ON conversations (seq)")
    conn.execute("CREATE INDEX conversations_owner ON conversations (owner, collection, seq)")
    conn.execute(
        """CREATE TABLE turns (
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            created TEXT NOT NULL,
            PRIMARY KEY (conversation_id, position)
        )"""
    )


# MIGRATIONS[v] takes a database at user_version v to v + 1, inside one transaction. A new
# schema version adds its step here and raises SCHEMA_VERSION; nothing else changes.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _schema_v1}
SCHEMA_VERSION = 1
_TABLES = {"conversations", "turns"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _connect(path: Path) -> sqlite3.Connection:
    """The store's one connection (autocommit: transactions are explicit)."""
    return sqlite3.connect(
        path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False
    )


def _open_error(path: Path, exc: BaseException) -> ConversationStoreError:
    """A message naming the file and what to do, for a failure to open or write it."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_NOTADB" or name.startswith("SQLITE_CORRUPT"):
        why = f"{path} is not a readable conversations database ({exc})"
        return ConversationStoreError(f"{why}; move it away, or choose another file")
    if name.startswith("SQLITE_READONLY") or "readonly" in str(exc):
        why = f"{path} cannot be written ({exc})"
        return ConversationStoreError(
            f"{why}; check the owner and mode of the file and its folder, or choose another"
        )
    if name.startswith("SQLITE_CANTOPEN"):
        why = f"{path} cannot be opened or created ({exc})"
        return ConversationStoreError(
            f"{why}; check that its folder exists and is writable, or choose another file"
        )
    if isinstance(exc, OSError):
        cause = exc.strerror or str(exc)
        return ConversationStoreError(
            f"{path}: cannot create its folder ({cause}); choose a writable data folder"
        )
    return ConversationStoreError(f"{path}: the conversations database failed ({exc})")


# --- validation ---------------------------------------------------------------------------------


def _name(value: object, what: str, *, empty: bool) -> str:
    if not isinstance(value, str):
        raise ValueError(f"the {what} must be text, got {type(value).__name__}")
    if not empty and not value.strip():
        raise ValueError(f"the {what} is empty")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"the {what} is longer than {MAX_NAME_CHARS} characters")
    if not value.isprintable():
        raise ValueError(f"the {what} contains control characters")
    return value


def check_title(title: object) -> str:
    """A user's title, stripped; ValueError when empty, over 200 characters or not printable."""
    if not isinstance(title, str):
        raise ValueError(f"the title must be text, got {type(title).__name__}")
    title = title.strip()
    if not title:
        raise ValueError("the title is empty")
    if len(title) > MAX_TITLE_CHARS:
        raise ValueError(f"the title has {len(title)} characters; at most {MAX_TITLE_CHARS}")
    if not title.isprintable():
        raise ValueError("the title contains control characters or line breaks")
    return title


def title_from_question(question: str) -> str:
    """The first question as a title: one line, cut at a word to about 80 characters."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in question).split())
    if len(flat) <= TITLE_CHARS:
        return flat
    cut = flat[: TITLE_CHARS - 1]
    if flat[TITLE_CHARS - 1] != " " and " " in cut[TITLE_CHARS // 2 :]:  # mid-word: cut before it
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def _check_citation(item: object, i: int) -> dict:
    if not isinstance(item, dict):
        raise ValueError(f"citation {i} of the answer is not an object")
    for key, kind in (("source", str), ("start", int), ("end", int), ("text", str)):
        value = item.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"citation {i} of the answer has no {kind.__name__} {key!r}")
    if not 0 <= item["start"] <= item["end"]:
        raise ValueError(f"citation {i} of the answer has a bad span {item['start']}-{item['end']}")
    return item


def _answer_json(answer: object) -> str:
    """The stored form of an answer dict; ValueError when it is not one."""
    if not isinstance(answer, dict):
        kind = type(answer).__name__
        raise ValueError(f"the answer must be a dict (Answer.to_dict()), got {kind}")
    citations = answer.get("citations", [])
    if not isinstance(citations, list):
        raise ValueError("the answer's citations must be a list")
    for i, item in enumerate(citations, 1):
        _check_citation(item, i)
    try:
        return json.dumps(answer, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the answer cannot be stored as JSON ({exc})") from exc


def _conversation_id(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"the conversation id must be text, got {type(value).__name__}")
    return value


# --- the store ----------------------------------------------------------------------------------


class ConversationStore:
    """Conversations and their turns in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        if self.path.is_dir():
            raise ConversationStoreError(f"{self.path} is a folder, not a conversations file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _open_error(self.path, exc) from exc
        try:
            self._conn = _connect(self.path)
        except sqlite3.Error as exc:
            raise _open_error(self.path, exc) from exc
        try:
            self._set_up()
        except sqlite3.Error as exc:
            self._conn.close()
            raise _open_error(self.path, exc) from exc
        except ConversationStoreError:
            self._conn.close()
            raise

    def _set_up(self) -> None:
        conn = self._conn
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a file system without shared memory
            logger.warning("%s: WAL journal not available, using %s", self.path, mode)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION, one transaction per step."""
        conn = self._conn
        while True:
            with self._write():
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == SCHEMA_VERSION:
                    # A write, so that a read-only file fails here and not at the first turn.
                    conn.execute(f"PRAGMA user_version = {int(version)}")
                    return
                if version > SCHEMA_VERSION:
                    raise ConversationStoreError(
                        f"{self.path} was written by a newer version (schema {version}, this "
                        f"one reads up to {SCHEMA_VERSION}); upgrade, or choose another file"
                    )
                if version == 0:
                    tables = {
                        row[0]
                        for row in conn.execute(
                            "SELECT name FROM sqlite_master WHERE type = 'table'"
                        )
                    }
                    if tables and not tables <= _TABLES:
                        raise ConversationStoreError(
                            f"{self.path} is an SQLite database of something else (tables: "
                            f"{', '.join(sorted(tables))}); choose another file"
                        )
                step = MIGRATIONS.get(version)
                if step is None:
                    raise ConversationStoreError(
                        f"{self.path}: no migration from schema {version} to {version + 1}"
                    )
                logger.info("%s: schema %d -> %d", self.path, version, version + 1)
                step(conn)
                conn.execute(f"PRAGMA user_version = {int(version) + 1}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, under the lock; rolled back on any failure."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # also when COMMIT itself failed (disk full)
                    conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Database failures after opening, as an error naming the file."""
        try:
            yield
        except sqlite3.Error as exc:
            logger.error("%s: %s", self.path, exc)
            raise _open_error(self.path, exc) from exc

    def close(self) -> None:
        """Close the file (a later call on this store fails)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reading --------------------------------------------------------------------------------

    _SELECT = (
        "SELECT c.id, c.owner, c.collection, c.title, c.created, c.updated, "
        "(SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id) FROM conversations c"
    )

    def _owned(self, conversation_id: object, owner: object) -> Conversation:
        """The conversation if owner owns it; ConversationNotFound otherwise."""
        conversation_id = _conversation_id(conversation_id)
        owner = _name(owner, "owner", empty=True)
        row = self._conn.execute(
            f"{self._SELECT} WHERE c.id = ? AND c.owner = ?", (conversation_id, owner)
        ).fetchone()
        if row is None:
            raise ConversationNotFound(conversation_id)
        return Conversation(*row)

    def _turns(self, conversation_id: str) -> tuple[Turn, ...]:
        rows = self._conn.execute(
            "SELECT position, question, answer, created FROM turns "
            "WHERE conversation_id = ? ORDER BY position",
            (conversation_id,),
        )
        return tuple(
            Turn(conversation_id, position, question, self._load(text, conversation_id), created)
            for position, question, text, created in rows
        )

    def _load(self, text: str, conversation_id: str) -> dict:
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            return answer
        logger.error("%s: a turn of conversation %s is not readable", self.path, conversation_id)
        return {"answer": "", "citations": [], "warnings": ["this answer could not be read"]}

    def get(self, conversation_id: str, owner: str) -> ConversationWithTurns:
        """The conversation with its turns; ConversationNotFound unless owner owns it."""
        with self._lock, self._guard():
            self._conn.execute("BEGIN")  # one snapshot for the conversation and its turns
            try:
                conversation = self._owned(conversation_id, owner)
                return ConversationWithTurns(conversation, self._turns(conversation.id))
            finally:
                self._conn.execute("COMMIT")

    # --- writing --------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM conversations").fetchone()
        return row[0]

    def create(
        self, owner: str, collection: str = DEFAULT_COLLECTION, *, title: str | None = None
    ) -> Conversation:
        """A new, empty conversation of owner in collection (untitled until its first turn)."""
        owner = _name(owner, "owner", empty=True)
        collection = _name(collection, "collection", empty=False)
        title = "" if title is None else check_title(title)
        now = _now()
        with self._guard(), self._write() as conn:
            conversation_id = secrets.token_urlsafe(12)
            conn.execute(
                "INSERT INTO conversations (id, owner, collection, title, created, updated, seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, owner, collection, title, now, now, self._next_seq()),
            )
        return Conversation(conversation_id, owner, collection, title, now, now, 0)

    def add_turn(self, conversation_id: str, owner: str, question: str, answer: dict) -> Turn:
        """Store a question and its answer as the conversation's next turn (one transaction).

        An untitled conversation takes its title from this question.
        """
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty")
        text = _answer_json(answer)
        now = _now()
        with self._guard(), self._write() as conn:
            conversation = self._owned(conversation_id, owner)
            position = conn.execute(
                "SELECT COALESCE(MAX(position), 0) + 1 FROM turns WHERE conversation_id = ?",
                (conversation.id,),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO turns (conversation_id, position, question, answer, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (conversation.id, position, question, text, now),
            )
            title = conversation.title or title_from_question(question)
            conn.execute(
                "UPDATE conversations SET title = ?, updated = ?, seq = ? WHERE id = ?",
                (title, now, self._next_seq(), conversation.id),
            )
        return Turn(conversation.id, position, question, json.loads(text), now)

    def rename(self, conversation_id: str, owner: str, title: str) -> Conversation:
        """Give the conversation a new title (it keeps its place in the list)."""
        title = check_title(title)
        with self._guard(), self._write() as conn:
            conversation = self._owned(conversation_id, owner)
            conn.execute(
                "UPDATE conversations SET title = ? WHERE id = ?", (title, conversation.id)
            )
        return Conversation(
            conversation.id, conversation.owner, conversation.collection, title,
            conversation.created, conversation.updated, conversation.turn_count,
        )  # fmt: skip

    def delete(self, conversation_id: str, owner: str) -> None:
        """Delete the conversation and its turns for good."""
        with self._guard(), self._write() as conn:
            conversation = self._owned(conversation_id, owner)
            conn.execute("DELETE FROM turns WHERE conversation_id = ?", (conversation.id,))
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation.id,))

    def forget_document(self, source: str, collection: str = DEFAULT_COLLECTION) -> int:
        """Mark the citations of source in every turn of collection as removed; returns how many.

        Every owner's turns: the document left the collection for all of them.
        """
        return self._mark(source, collection, removed=True)

    def unforget_document(self, source: str, collection: str = DEFAULT_COLLECTION) -> int:
        """Take the removed mark off the citations of source (the document is back); how many."""
        return self._mark(source, collection, removed=False)

    def _mark(self, source: str, collection: str, *, removed: bool) -> int:
        source = _name(source, "source", empty=False)
        collection = _name(collection, "collection", empty=False)
        needle = json.dumps(source, ensure_ascii=False)  # how the source appears in the JSON
        now, changed = _now(), 0
        with self._guard(), self._write() as conn:
            rows = conn.execute(
                "SELECT t.conversation_id, t.position, t.answer FROM turns t "
                "JOIN conversations c ON c.id = t.conversation_id "
                "WHERE c.collection = ? AND instr(t.answer, ?) > 0",
                (collection, needle),
            ).fetchall()
            for conversation_id, position, text in rows:
                answer = self._load(text, conversation_id)
                marked = 0
                for citation in answer.get("citations", []):
                    if not isinstance(citation, dict) or citation.get("source") != source:
                        continue
                    if removed and not citation.get(REMOVED_KEY):
                        citation[REMOVED_KEY] = now
                        marked += 1
                    elif not removed and REMOVED_KEY in citation:
                        del citation[REMOVED_KEY]
                        marked += 1
                if marked:
                    conn.execute(
                        "UPDATE turns SET answer = ? WHERE conversation_id = ? AND position = ?",
                        (json.dumps(answer, ensure_ascii=False), conversation_id, position),
                    )
                    changed += marked
        logger.info(
            "%s citations of %s in %s marked %s",
            changed, source, collection, "removed" if removed else "present",
        )  # fmt: skip
        return changed

    # --- export ---------------------------------------------------------------------------------

    def export_json(self, conversation_id: str, owner: str) -> dict:
        """The conversation and its turns as one JSON-ready dict."""
        whole = self.get(conversation_id, owner)
        c = whole.conversation
        return {
            "format": EXPORT_FORMAT,
            "version": SCHEMA_VERSION,
            "id": c.id,
            "owner": c.owner,
            "collection": c.collection,
            "title": c.title,
            "created": c.created,
            "updated": c.updated,
            "turns": [
                {
                    "position": t.position,
                    "question": t.question,
                    "created": t.created,
                    "answer": t.answer,
                }
                for t in whole.turns
            ],
        }

    def export_markdown(
        self,
        conversation_id: str,
        owner: str,
        *,
        read_document: Callable[[str], str | None] | None = None,
    ) -> str:
        """The conversation as Markdown: questions as headings, citations as footnotes.

        With read_document, citations whose document changed or left are said to be so.
        """
        return conversation_markdown(self.get(conversation_id, owner), read_document=read_document)

    # Last: inside the class body, later annotations would otherwise read `list` as this method.
    def list(
        self, owner: str, collection: str | None = None, *, limit: int = 100
    ) -> list[Conversation]:
        """The owner's conversations (of one collection, or all), newest first."""
        owner = _name(owner, "owner", empty=True)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be an integer in [1, {MAX_LIMIT}], got {limit!r}")
        where, args = "c.owner = ?", [owner]
        if collection is not None:
            where += " AND c.collection = ?"
            args.append(_name(collection, "collection", empty=False))
        with self._lock, self._guard():
            rows = self._conn.execute(
                f"{self._SELECT} WHERE {where} ORDER BY c.seq DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [Conversation(*row) for row in rows]


# --- citations of a reopened answer -------------------------------------------------------------


def check_citations(
    turn_answer: dict, read_document: Callable[[str], str | None]
) -> list[CitationState]:
    """For each stored citation: ok, changed (span differs now) or removed (document gone).

    read_document(source) returns the document's current text, or None when it is gone; each
    source is read once. A citation marked by forget_document is removed without a read.
    """
    if not isinstance(turn_answer, dict):
        raise ValueError(f"the answer must be a dict, got {type(turn_answer).__name__}")
    citations = turn_answer.get("citations") or []
    if not isinstance(citations, list):
        raise ValueError("the answer's citations must be a list")
    texts: dict[str, str | None] = {}
    states = []
    for i, item in enumerate(citations, 1):
        citation = _check_citation(item, i)
        source, n = citation["source"], citation.get("n", i)
        if citation.get(REMOVED_KEY):
            states.append(CitationState(n, source, REMOVED, REMOVED_NOTE))
            continue
        if source not in texts:
            texts[source] = read_document(source)
        text = texts[source]
        if text is None:
            states.append(CitationState(n, source, REMOVED, REMOVED_NOTE))
        elif text[citation["start"] : citation["end"]] == citation["text"]:
            states.append(CitationState(n, source, OK))
        else:
            states.append(CitationState(n, source, CHANGED, CHANGED_NOTE))
    return states


# --- Markdown export ----------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~&])")
_MD_LINE_START = re.compile(r"^(\s*)([-+=]|\d+(?=[.)]))", re.MULTILINE)
_MD_MARKER = re.compile(r"\\\[(\d+)\\\]")


def _md(text: str) -> str:
    """Text a Markdown renderer shows as it is (no markup, no HTML)."""
    escaped = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LINE_START.sub(
        lambda m: f"{m[1]}\\{m[2]}" if m[2] in "-+=" else m[0] + "\\", escaped
    )


def _flat(text: str) -> str:
    return " ".join(str(text).split())


def _footnote(label: str, citation: dict, state: CitationState | None) -> str:
    where = [_md(citation["source"])]
    if citation.get("locator"):
        where.append(_md(str(citation["locator"])))
    where.append(f"characters {citation['start']}–{citation['end']}")
    title = _flat(citation.get("title") or "")
    head = f"\\[{citation.get('n', '?')}\\] " + (f"{_md(title)} — " if title else "")
    quote = _flat(citation["text"])
    if len(quote) > QUOTE_CHARS:
        quote = quote[: QUOTE_CHARS - 3] + "..."
    note = ""
    if citation.get(REMOVED_KEY) or (state is not None and state.state == REMOVED):
        note = f" ({REMOVED_NOTE})"
    elif state is not None and state.state == CHANGED:
        note = f" ({CHANGED_NOTE})"
    return f"[^{label}]: {head}{', '.join(where)}{note}. “{_md(quote)}”"


def _turn_markdown(turn: Turn, read_document: Callable[[str], str | None] | None) -> list[str]:
    answer = turn.answer
    citations = [c for c in answer.get("citations") or [] if isinstance(c, dict)]
    by_n = {c.get("n"): c for c in citations}
    states = {}
    if read_document is not None and citations:
        states = {s.n: s for s in check_citations(answer, read_document)}
    used: list[int] = []

    def ref(match: re.Match) -> str:
        n = int(match[1])
        if n not in by_n:
            return match[0]
        used.append(n)
        return f"{match[0]}[^{turn.position}-{n}]"

    lines = [f"## {turn.position}. {_md(_flat(turn.question))}", ""]
    meta = [f"asked {turn.created}"]
    if answer.get("mode"):
        meta.append(f"mode: {_md(str(answer['mode']))}")
    lines += [f"*{' · '.join(meta)}*", ""]
    short = answer.get("short_answer")
    if isinstance(short, dict) and short.get("text"):
        marker = f"\\[{short.get('citation')}\\]" if short.get("citation") is not None else ""
        line = _MD_MARKER.sub(ref, f"**Short answer:** {_md(_flat(short['text']))} {marker}")
        lines += [line.rstrip(), ""]
    body = _MD_MARKER.sub(ref, _md(str(answer.get("answer", ""))).strip())
    lines += [body or "*(no answer text)*", ""]
    rest = [n for n in by_n if n not in used]
    if rest:
        lines += ["Also cited: " + " ".join(f"\\[{n}\\][^{turn.position}-{n}]" for n in rest), ""]
    for warning in answer.get("warnings") or []:
        lines += [f"> *Note:* {_md(_flat(warning))}", ""]
    for citation in citations:
        label = f"{turn.position}-{citation.get('n')}"
        lines.append(_footnote(label, citation, states.get(citation.get("n"))))
    if citations:
        lines.append("")
    return lines


def conversation_markdown(
    whole: ConversationWithTurns,
    *,
    read_document: Callable[[str], str | None] | None = None,
) -> str:
    """A conversation as Markdown: each question a heading, each citation a footnote [^t-n]."""
    c = whole.conversation
    lines = [
        f"# {_md(c.title or 'Untitled conversation')}",
        "",
        f"*Collection {_md(c.collection)} · started {c.created} · updated {c.updated} · "
        f"{len(whole.turns)} question{'' if len(whole.turns) == 1 else 's'}*",
        "",
    ]
    for turn in whole.turns:
        lines += _turn_markdown(turn, read_document)
    return "\n".join(lines).rstrip() + "\n"
