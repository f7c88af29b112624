"""Query sets: JSONL files of questions with gold answers and sources, validated up front.

    python -m eval --queries eval/queries/corpus.jsonl

One JSON object per line:
    {"id": str, "question": str, "answers": [str], "sources": [str],
     "answerable": bool (optional), "kind": str (optional), "history": [str] (optional)}
"kind" says what sort of question it is: "answerable" (needs "answerable": true), or one
of the unanswerable kinds (need "answerable": false) "off-topic" (nothing to do with the
corpus), "on-topic-missing" (about the corpus, but the answer is not in it), "false-premise"
(assumes something the corpus contradicts) and the generic "unanswerable". Without "kind"
it is "answerable" or "unanswerable" as "answerable" says; without "answerable" it follows
"kind" (true only for "answerable"), and with neither the question is answerable.
An answerable question with sources and no answers is retrieval-only: it is scored on
retrieval metrics and left out of answer metrics. Unknown fields are ignored. Every problem
of the file is collected with its line number and raised as one `QueryFormatError`, so a run
stops before any work is done.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

# More problems than this are summarised as a count: a wrong file should not flood the screen.
MAX_REPORTED_PROBLEMS = 20

ANSWERABLE_KIND = "answerable"
# The kinds of question the corpus does not answer; "unanswerable" is the generic one (old
# query sets without a "kind" field), listed last.
UNANSWERABLE_KINDS = ("off-topic", "on-topic-missing", "false-premise", "unanswerable")
KINDS = (ANSWERABLE_KIND, *UNANSWERABLE_KINDS)


def default_kind(answerable: bool) -> str:
    """The kind of a question without a "kind" field."""
    return ANSWERABLE_KIND if answerable else "unanswerable"


def kind_problem(kind: object, answerable: bool) -> str:
    """Why kind is not valid for a question with this answerable flag, or ''."""
    if not isinstance(kind, str) or kind not in KINDS:
        return f"'kind' must be one of {', '.join(KINDS)}; got {kind!r}"
    if (kind == ANSWERABLE_KIND) != answerable:
        needed = "true" if kind == ANSWERABLE_KIND else "false"
        return f'kind {kind!r} needs "answerable": {needed}, got {str(answerable).lower()}'
    return ""


@dataclass(frozen=True)
class Query:
    """One scripted question: gold answers (any one counts) and gold sources (any one counts)."""

    id: str
    question: str
    answers: tuple[str, ...]
    sources: tuple[str, ...]
    answerable: bool = True
    history: tuple[str, ...] = ()
    # One of KINDS; empty: the default for `answerable` ("answerable" or "unanswerable").
    kind: str = ""
    line: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", default_kind(self.answerable))
        if message := kind_problem(self.kind, self.answerable):
            raise ValueError(message)

    @property
    def retrieval_only(self) -> bool:
        """True for an answerable question with gold sources but no gold answers."""
        return self.answerable and not self.answers


class QueryFormatError(ValueError):
    """A query set that cannot be used; `problems` holds (line number, message) pairs."""

    def __init__(self, path: str, problems: Sequence[tuple[int, str]]) -> None:
        self.path = path
        self.problems = list(problems)
        shown = [f"{path}:{line}: {message}" for line, message in problems[:MAX_REPORTED_PROBLEMS]]
        more = len(problems) - len(shown)
        if more > 0:
            shown.append(f"... and {more} more problems")
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"invalid query set ({len(problems)} {noun}):\n" + "\n".join(shown))


def _string_list(value: object, name: str) -> list[str]:
    """The value as a list of non-empty strings; raises ValueError otherwise."""
    if not isinstance(value, list):
        raise ValueError(f"'{name}' must be a list of strings, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"'{name}' item {i} must be a non-empty string, got {item!r}")
    return list(value)


def _check_source(source: str) -> str:
    """An error message when a gold source is not a plain corpus-relative path, else ''."""
    pure = PurePosixPath(source.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts:
        return f"source {source!r} must be a path relative to the corpus folder"
    return ""


def _answerable_and_kind(data: dict) -> tuple[bool, str]:
    """The "answerable" flag and "kind" of a line, each defaulted from the other."""
    kind = data.get("kind")
    answerable = data.get("answerable", "kind" not in data or kind == ANSWERABLE_KIND)
    if not isinstance(answerable, bool):
        raise ValueError(f"'answerable' must be true or false, got {answerable!r}")
    if "kind" not in data:
        return answerable, default_kind(answerable)
    if message := kind_problem(kind, answerable):
        raise ValueError(message)
    return answerable, kind


def parse_query(data: object, *, line: int = 0) -> Query:
    """A Query from one decoded JSON line; raises ValueError naming the first problem."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    for name in ("id", "question"):
        if name not in data:
            raise ValueError(f"missing field '{name}'")
        if not isinstance(data[name], str) or not data[name].strip():
            raise ValueError(f"'{name}' must be a non-empty string, got {data[name]!r}")
    for name in ("answers", "sources"):
        if name not in data:
            raise ValueError(f"missing field '{name}' (use [] when there is none)")
    answerable, kind = _answerable_and_kind(data)
    answers = _string_list(data["answers"], "answers")
    sources = _string_list(data["sources"], "sources")
    history = _string_list(data.get("history", []), "history")
    for source in sources:
        if message := _check_source(source):
            raise ValueError(message)
    if answerable and not sources:
        raise ValueError("an answerable question needs at least one file in 'sources'")
    if not answerable and (answers or sources):
        raise ValueError(
            f"an unanswerable question (kind {kind!r}) must have empty 'answers' and 'sources'"
        )
    return Query(
        id=data["id"],
        question=data["question"],
        answers=tuple(answers),
        sources=tuple(str(PurePosixPath(s.replace("\\", "/"))) for s in sources),
        answerable=answerable,
        history=tuple(history),
        kind=kind,
        line=line,
    )


def parse_queries(lines: Sequence[str], *, path: str = "<queries>") -> list[Query]:
    """Queries from JSONL lines (blank lines skipped); raises QueryFormatError on any problem."""
    queries: list[Query] = []
    problems: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append((number, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        try:
            query = parse_query(data, line=number)
        except ValueError as exc:
            problems.append((number, str(exc)))
            continue
        if query.id in first_line:
            problems.append(
                (number, f"duplicate id {query.id!r} (first on line {first_line[query.id]})")
            )
            continue
        first_line[query.id] = number
        queries.append(query)
    if not queries and not problems:
        problems.append((0, "the file holds no queries"))
    if problems:
        raise QueryFormatError(path, problems)
    return queries


def load_queries(path: str | Path) -> list[Query]:
    """Read and validate a JSONL query set; raises QueryFormatError listing every bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise QueryFormatError(str(path), [(0, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QueryFormatError(str(path), [(0, f"cannot read the file: {exc}")]) from None
    return parse_queries(text.splitlines(), path=str(path))


def check_sources(queries: Sequence[Query], corpus_dir: Path, *, path: str = "<queries>") -> None:
    """Raise QueryFormatError for gold sources that are not files of the corpus folder."""
    problems = [
        (q.line, f"source {s!r} is not a file in {corpus_dir}")
        for q in queries
        for s in q.sources
        if not (Path(corpus_dir) / s).is_file()
    ]
    if problems:
        raise QueryFormatError(path, problems)


def select_queries(
    queries: Sequence[Query], *, limit: int | None = None, seed: int | None = None
) -> list[Query]:
    """The first `limit` queries, or with a seed a reproducible random sample in file order."""
    if limit is None or limit >= len(queries):
        return list(queries)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if seed is None:
        return list(queries[:limit])
    picked = sorted(random.Random(seed).sample(range(len(queries)), limit))
    return [queries[i] for i in picked]


def query_to_dict(query: Query) -> dict:
    """The JSONL form of a query (one line of a query set)."""
    return {
        "id": query.id,
        "question": query.question,
        "answers": list(query.answers),
        "sources": list(query.sources),
        "answerable": query.answerable,
        "kind": query.kind,
        "history": list(query.history),
    }
