"""E-books (.epub) as text: chapters in reading order, one "chapter" segment each.

    python -m index.formats.ebook book.epub     # prints each chapter's number, title and size

Chapters follow the spine (the reading order); each is its HTML's visible text. A chapter's
title comes from the table of contents, else from its first heading. Spine documents with no
text (a cover picture) are left out and not counted. E-books whose chapters are encrypted (DRM)
are refused with a reason rather than indexed as noise.
"""

from __future__ import annotations

import html
import logging
import posixpath
import re
import sys
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from index.extraction import CHAPTER, Extraction, ReadLimits
from index.formats.containers import (
    ReadError,
    TextBuilder,
    check_zip,
    guarded,
    library_version,
    one_line,
)
from index.loaders import decode_bytes, html_to_text

if TYPE_CHECKING:
    from ebooklib.epub import EpubBook, EpubHtml

logger = logging.getLogger(__name__)
# ebooklib warns about its own future defaults on every book.
warnings.filterwarnings("ignore", category=UserWarning, module=r"ebooklib(\..*)?$")
warnings.filterwarnings("ignore", category=FutureWarning, module=r"ebooklib(\..*)?$")

VERSIONS = {".epub": f"epub-1 EbookLib-{library_version('EbookLib')}"}
MAX_LABEL = 200
_HEADING = re.compile(r"<h([1-3])\b[^>]*>(.*?)</h\1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]*>")
_CIPHER_URI = re.compile(rb"<(?:\w+:)?CipherReference[^>]*\bURI\s*=\s*[\"']([^\"']+)[\"']")
# Fonts may be obfuscated (IDPF, Adobe) without any DRM; only encrypted documents matter.
_DOCUMENT_SUFFIXES = (".html", ".xhtml", ".htm", ".xml", ".opf", ".ncx")


def _refuse_drm(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        try:
            manifest = archive.read("META-INF/encryption.xml")
        except KeyError:
            return
    for uri in _CIPHER_URI.findall(manifest[:1_000_000]):
        if unquote(uri.decode("utf-8", "replace")).lower().endswith(_DOCUMENT_SUFFIXES):
            raise ReadError(
                "DRM-protected e-book: its chapters are encrypted; index a DRM-free copy"
            )


def _href_key(href: str) -> str:
    return posixpath.normpath(unquote(href.split("#", 1)[0])).lstrip("/")


def toc_titles(entries: Iterable) -> dict[str, str]:
    """File name -> the first table-of-contents title that points into it."""
    titles: dict[str, str] = {}
    for entry in entries:
        children: Iterable = ()
        if isinstance(entry, tuple | list) and len(entry) == 2:
            entry, children = entry
        href, title = getattr(entry, "href", ""), one_line(getattr(entry, "title", "") or "")
        if href and title:
            titles.setdefault(_href_key(href), title)
        for key, value in toc_titles(children).items():
            titles.setdefault(key, value)
    return titles


def _first_heading(markup: str) -> str:
    match = _HEADING.search(markup)
    return one_line(html.unescape(_TAG.sub(" ", match.group(2)))) if match else ""


def _spine_documents(book: EpubBook) -> Iterator[EpubHtml]:
    import ebooklib
    from ebooklib import epub

    seen = set()
    for entry in book.spine:
        idref = entry[0] if isinstance(entry, tuple | list) else entry
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or idref in seen:
            continue
        if isinstance(item, epub.EpubNav):
            continue  # the table of contents page repeats every chapter title
        seen.add(idref)
        yield item


def _load(path: Path) -> EpubBook:
    from ebooklib import epub

    return epub.read_epub(str(path), options={"ignore_ncx": True})


def _book_title(book: EpubBook) -> str:
    titles = book.get_metadata("DC", "title")
    return one_line(str(titles[0][0])) if titles and titles[0] else ""


@guarded("e-book")
def read_epub(path: Path, *, limits: ReadLimits) -> Extraction:
    """An .epub in reading order, one "chapter" segment (number, title) per chapter."""
    check_zip(path, expected=".epub", limits=limits)
    _refuse_drm(path)
    book = _load(path)
    titles = toc_titles(book.toc)
    builder = TextBuilder(max_chars=limits.max_chars)
    number = 0
    for item in _spine_documents(book):
        markup = decode_bytes(item.get_content() or b"")
        text = html_to_text(markup)[0]
        if not text.strip():
            continue
        number += 1
        title = titles.get(_href_key(item.get_name()), "") or _first_heading(markup)
        # Chapters are hard boundaries: a passage never starts in one and ends in the next,
        # so its locator names the chapter it is from.
        builder.begin(CHAPTER, number=number, label=title[:MAX_LABEL], hard=True)
        builder.add(text)
        builder.end()
        if builder.full:
            break
    if not builder.length:
        raise ReadError("the e-book has no chapters with text")
    return builder.build(title=_book_title(book))


READERS = {".epub": read_epub}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for arg in sys.argv[1:]:
        try:
            extraction = read_epub(Path(arg), limits=ReadLimits())
        except ValueError as exc:
            logger.error("%s: %s", arg, exc)
            continue
        logger.info("%s: %r", arg, extraction.title)
        for segment in extraction.segments:
            logger.info("  chapter %d %r: %d chars", segment.number, segment.label,
                        segment.end - segment.start)  # fmt: skip
