"""Read a folder of documents into text: .txt, .md, .html/.htm (visible text), .pdf (text layer).

    python -m index.loaders corpus/

Every file either becomes a `RawDocument` or a `Skipped` entry with the reason; nothing raises.
For .txt and .md the text is the file itself, so character spans index the file; for HTML and
PDF the text is what the loader extracted (stored with the index as the document's text).
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

logger = logging.getLogger(__name__)

_INVISIBLE_TAGS = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
    "section", "article", "header", "footer", "blockquote", "pre", "hr", "title", "dd", "dt",
}  # fmt: skip


_COMMENT_CLOSE = re.compile(r"--\s*>")
_SECTION_CLOSE = re.compile(r"\]\s*>")


@dataclass(frozen=True)
class RawDocument:
    """One readable file: its corpus-relative path, decoded text and content hash."""

    source: str
    text: str
    sha256: str
    kind: str
    html_title: str = ""


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why."""

    source: str
    reason: str


class _VisibleText(HTMLParser):
    """Collects text a browser would show; drops scripts, styles and comments."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._hidden_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _INVISIBLE_TAGS:
            self._hidden_depth += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _INVISIBLE_TAGS:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif self._hidden_depth == 0:
            self.parts.append(data)


def decode_bytes(data: bytes) -> str:
    """Decode text leniently: UTF-8 (with BOM), UTF-16 by BOM, else UTF-8 with replacement."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # cp1252 is the most common non-UTF-8 encoding of Western text.
        text = data.decode("cp1252", errors="replace")
        return text if text.count("\ufffd") <= len(text) // 100 else data.decode("utf-8", "replace")


def looks_binary(data: bytes) -> bool:
    """True when the bytes are not text: NULs or mostly control characters."""
    sample = data[:8192]
    if not sample:
        return False
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if b"\x00" in sample:
        return True
    control = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    return control > len(sample) * 0.1


def _last_end(pattern: re.Pattern, text: str) -> int:
    """End of the last match of pattern in text, or 0 when there is none."""
    end = 0
    for match in pattern.finditer(text):
        end = match.end()
    return end


def escape_unclosed(markup: str) -> str:
    """Markup with every '<' that nothing closes later written as '&lt;' (shown as text).

    html.parser re-scans to the end of the page for each unclosed opener ("<a<a<a...",
    "<!--<!--...", "</</..."), which made a crafted page of 200 kB take a minute; such openers
    end up as text anyway. Tags need a later '>', comments a later '-->', marked sections a
    later ']>'; everything else is left exactly as it was.
    """
    last_gt = markup.rfind(">") + 1
    head, tail = markup[:last_gt], markup[last_gt:].replace("<", "&lt;")
    cut = _last_end(_COMMENT_CLOSE, head)
    head = head[:cut] + head[cut:].replace("<!--", "&lt;!--")
    cut = _last_end(_SECTION_CLOSE, head)
    head = head[:cut] + head[cut:].replace("<![", "&lt;![")
    return head + tail


def html_to_text(markup: str) -> tuple[str, str]:
    """Visible text of an HTML page and its <title>."""
    markup = escape_unclosed(markup)
    parser = _VisibleText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception as exc:  # html.parser is lenient, but a pathological page must not stop a run
        logger.warning("HTML parser gave up (%s); falling back to tag stripping", exc)
        # An unclosed script or style hides the rest of the page, as in a browser.
        stripped = re.sub(r"(?is)<(script|style)\b.*?(?:</\1\s*>|\Z)|<[^>]*>", " ", markup)
        return html.unescape(stripped), ""
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" *\n[ \n]*", "\n\n", text).strip()
    return text, " ".join("".join(parser.title_parts).split())


def pdf_to_text(path: Path) -> tuple[str, str]:
    """Text layer of a PDF (pages separated by blank lines) and its metadata title."""
    try:
        from pypdf import PdfReader
    except ImportError as exc:  # pragma: no cover - pinned dependency
        raise ImportError("PDF support needs pypdf: pip install pypdf") from exc
    reader = PdfReader(str(path))
    if reader.is_encrypted:
        # decrypt("") opens PDFs that only restrict printing/copying; it returns
        # NOT_DECRYPTED (0) rather than raising when a password is needed.
        try:
            opened = reader.decrypt("")
        except Exception as exc:
            raise ValueError(f"encrypted PDF ({type(exc).__name__}: {exc})") from exc
        if not opened:
            raise ValueError("encrypted PDF (a password is needed to open it)")
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    title = ""
    try:
        title = str((reader.metadata or {}).get("/Title") or "").strip()
    except Exception:
        title = ""
    return "\n\n".join(p for p in pages if p), title


def read_document(path: Path, *, source: str, max_bytes: int) -> RawDocument | Skipped:
    """Load one file into a RawDocument, or say why it was skipped."""
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return Skipped(source, f"file too large ({size} bytes > {max_bytes})")
        data = path.read_bytes()
    except OSError as exc:
        return Skipped(source, f"unreadable: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    title = ""
    try:
        if suffix == ".pdf":
            if not data.startswith(b"%PDF"):
                return Skipped(source, "not a PDF (no %PDF header)")
            text, title = pdf_to_text(path)
        else:
            if data.startswith(b"%PDF"):
                return Skipped(source, f"a PDF with a {suffix} extension (rename it to .pdf)")
            if looks_binary(data):
                return Skipped(source, "binary content in a text file")
            text = decode_bytes(data)
            if suffix in (".html", ".htm"):
                text, title = html_to_text(text)
    except Exception as exc:
        return Skipped(source, f"could not extract text: {type(exc).__name__}: {exc}"[:300])
    text = text.replace("\x00", "")
    if not text.strip():
        return Skipped(source, "no text")
    return RawDocument(
        source=source, text=text, sha256=sha, kind=suffix.lstrip("."), html_title=title
    )


def scan_corpus(
    corpus_dir: Path, *, extensions: tuple[str, ...], max_bytes: int
) -> tuple[list[RawDocument], list[Skipped]]:
    """Read every supported file under corpus_dir (recursively, symlinks not followed)."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise ValueError(f"corpus folder not found: {corpus_dir}")
    root = corpus_dir.resolve()
    documents: list[RawDocument] = []
    skipped: list[Skipped] = []
    for path in sorted(corpus_dir.rglob("*")):
        source = path.relative_to(corpus_dir).as_posix()
        if any(part.startswith(".") for part in path.relative_to(corpus_dir).parts):
            continue  # hidden files and folders (.git, .DS_Store) are not documents
        try:
            source.encode("utf-8")
        except UnicodeEncodeError:
            # Undecodable bytes in a name (surrogate escapes) cannot be written to the
            # UTF-8 index files; they used to abort the whole build.
            printable = source.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            skipped.append(Skipped(printable, "file name is not valid UTF-8 (rename it)"))
            continue
        if path.is_symlink():
            skipped.append(Skipped(source, "symbolic link (not followed)"))
            continue
        if not path.is_file():
            if not path.is_dir():
                skipped.append(Skipped(source, "not a regular file"))
            continue
        if not path.resolve().is_relative_to(root):
            skipped.append(Skipped(source, "outside the corpus folder"))
            continue
        if path.suffix.lower() not in extensions:
            skipped.append(Skipped(source, f"unsupported file type {path.suffix or '(none)'}"))
            continue
        result = read_document(path, source=source, max_bytes=max_bytes)
        if isinstance(result, Skipped):
            skipped.append(result)
        else:
            documents.append(result)
    for item in skipped:
        logger.info("skipped %s: %s", item.source, item.reason)
    return documents, skipped


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    docs, skips = scan_corpus(
        Path(sys.argv[1] if len(sys.argv) > 1 else "corpus"),
        extensions=(".txt", ".md", ".html", ".htm", ".pdf"),
        max_bytes=50 * 2**20,
    )
    for d in docs:
        logger.info("%s\t%s\t%d chars", d.source, d.kind, len(d.text))
