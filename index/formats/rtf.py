"""Rich Text Format (.rtf) as plain text (striprtf): no segments, the \\info title kept.

python -m index.formats.rtf letter.rtf      # prints the text as it is indexed
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from index.extraction import Extraction, ReadLimits
from index.formats.containers import ReadError, TextBuilder, guarded, library_version, one_line
from index.loaders import decode_bytes

logger = logging.getLogger(__name__)

VERSIONS = {".rtf": f"rtf-1 striprtf-{library_version('striprtf')}"}
_UNICODE = re.compile(r"\\u(-?\d+)")
_TITLE = re.compile(r"\{\\title\s+([^{}]*)\}")
_BLANK_LINES = re.compile(r"[ \t]*\n(?:[ \t]*\n)+")
_TRAILING = re.compile(r"[ \t]+\n")


def _safe_unicode(match: re.Match) -> str:
    # striprtf passes \uN straight to chr(): a crafted N would raise instead of showing "?".
    value = int(match.group(1))
    return match.group(0) if -32768 <= value <= 0x10FFFF else "\\u63"


def _source(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReadError(f"cannot read the file: {exc.strerror or exc}") from exc
    if not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{\\rtf"):
        raise ReadError("not an RTF document (it does not start with {\\rtf)")
    return _UNICODE.sub(_safe_unicode, decode_bytes(data).replace("\x00", ""))


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _BLANK_LINES.sub("\n\n", _TRAILING.sub("\n", text)).strip()


@guarded("RTF document")
def read_rtf(path: Path, *, limits: ReadLimits) -> Extraction:
    """An .rtf as its plain text (paragraphs on their own lines); the title from \\info."""
    from striprtf.striprtf import rtf_to_text

    source = _source(path)
    text = _tidy(rtf_to_text(source, errors="ignore"))
    if not text:
        raise ReadError("the RTF document has no text")
    builder = TextBuilder(max_chars=limits.max_chars)
    builder.add(text)
    title = _TITLE.search(source[:100_000])
    return builder.build(title=one_line(title.group(1)) if title else "")


READERS = {".rtf": read_rtf}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for arg in sys.argv[1:]:
        try:
            extraction = read_rtf(Path(arg), limits=ReadLimits())
        except ValueError as exc:
            logger.error("%s: %s", arg, exc)
            continue
        logger.info("%r\n%s", extraction.title, extraction.text[:2000])
