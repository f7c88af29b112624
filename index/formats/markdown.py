"""Section segments of Markdown text from its headings, so a chunk's locator reads "§ Heading".

    python -m index.formats.markdown README.md     # prints each section's heading and span

ATX headings (`#` to `######`) and setext headings (a line underlined with `===` or `---`) open a
section that runs to the next heading; lines inside ``` or ~~~ fences and a leading YAML front
matter block are not headings. The Markdown text itself stays the document's text.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from index.extraction import SECTION, Segment

logger = logging.getLogger(__name__)

VERSIONS = {".md": "markdown-1"}
MAX_LABEL = 200
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r" {0,3}#{1,6}(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*")
# A line that cannot be the text of a setext heading: list items, quotes, tables, indented code.
_NOT_SETEXT_TEXT = re.compile(r"(?: {4}|\t| {0,3}(?:[-*+>|]|\d+[.)])(?:\s|$))")
_FRONT_MATTER = re.compile(r"---[ \t]*\r?\n")
_FRONT_MATTER_CLOSE = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$", re.M)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")


def _label(text: str) -> str:
    text = _LINK.sub(r"\1", text).replace("`", "").replace("**", "").replace("__", "")
    return " ".join(text.split())[:MAX_LABEL]


def _lines(text: str) -> Iterator[tuple[int, str]]:
    offset = 0
    for line in text.splitlines(keepends=True):
        yield offset, line.rstrip("\r\n")
        offset += len(line)


def _front_matter_end(text: str) -> int:
    if not _FRONT_MATTER.match(text):
        return 0
    opening = text.index("\n") + 1
    close = _FRONT_MATTER_CLOSE.search(text, opening)
    return close.end() if close else 0


def _headings(text: str) -> Iterator[tuple[int, str]]:
    """(start offset, label) of every heading outside fences and front matter."""
    fence = ""
    skip_to = _front_matter_end(text)
    previous: tuple[int, str] | None = None
    for offset, line in _lines(text):
        if offset < skip_to:
            continue
        opened = _FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            continue
        if opened:
            fence, previous = opened.group(1), None
            continue
        atx = _ATX.fullmatch(line)
        if atx:
            yield offset, atx.group(1) or ""
            previous = None
        elif previous and _SETEXT.fullmatch(line):
            yield previous
            previous = None
        else:
            plain = line.strip() and not _NOT_SETEXT_TEXT.match(line)
            previous = (offset, line.strip()) if plain else None


def markdown_sections(text: str) -> tuple[Segment, ...]:
    """ "section" segments of Markdown text, one per heading, each running to the next heading."""
    found = [(start, _label(label)) for start, label in _headings(text)]
    segments = []
    for index, (start, label) in enumerate(found):
        end = found[index + 1][0] if index + 1 < len(found) else len(text)
        if label and end > start:
            segments.append(Segment(start, end, SECTION, label=label))
    return tuple(segments)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for arg in sys.argv[1:]:
        for segment in markdown_sections(Path(arg).read_text(encoding="utf-8", errors="replace")):
            logger.info("%d-%d § %s", segment.start, segment.end, segment.label)
