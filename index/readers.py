"""Which reader reads which file type, and the version of each (part of every fingerprint).

    python -m index.readers            # lists the readers, their versions and OCR status

Text, Markdown and HTML are read here; every other format has its module in `index/formats/`,
imported on first use. `extract` turns one file into an `Extraction`; `reader_version` names the
reader and its library, so changing a format's parser (or installing OCR) re-reads only the
files of that format.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from index.config import IMAGE_EXTENSIONS
from index.extraction import Extraction, ReadLimits

logger = logging.getLogger(__name__)

# Bumped when this module's own readers change their output.
TEXT_VERSION = "text-1"
HTML_VERSION = "html-1"
MARKDOWN_VERSION = "markdown-1"

# suffix -> (module in index.formats, function name)
_FORMAT_READERS = {
    ".docx": ("office", "read_docx"),
    ".pptx": ("office", "read_pptx"),
    ".xlsx": ("office", "read_xlsx"),
    ".odt": ("office", "read_odt"),
    ".csv": ("tables", "read_csv"),
    ".epub": ("ebook", "read_epub"),
    ".eml": ("mail", "read_eml"),
    ".mbox": ("mail", "read_mbox"),
    ".rtf": ("rtf", "read_rtf"),
}
# Old binary formats no reader here understands, and what to do with them.
LEGACY = {
    ".doc": "a legacy Word file: save it as .docx",
    ".ppt": "a legacy PowerPoint file: save it as .pptx",
    ".xls": "a legacy Excel file: save it as .xlsx",
    ".pages": "an Apple Pages file: export it as .docx or .pdf",
    ".key": "an Apple Keynote file: export it as .pptx or .pdf",
    ".numbers": "an Apple Numbers file: export it as .xlsx or .csv",
    ".msg": "an Outlook message: save it as .eml",
}


def _module(name: str):
    import importlib

    return importlib.import_module(f"index.formats.{name}")


@functools.lru_cache(maxsize=4)
def ocr_engine(language: str):
    """The OCR engine for language, or None when Tesseract (or its language data) is missing."""
    try:
        from index.ocr import find_ocr
    except ImportError as exc:
        logger.info("OCR unavailable: %s", exc)
        return None
    return find_ocr(language=language)


def reader_version(suffix: str, *, ocr_language: str = "eng") -> str:
    """Name and version of the reader (and its library, and OCR where used) for this suffix."""
    suffix = suffix.lower()
    if suffix in (".txt",):
        return TEXT_VERSION
    if suffix == ".md":
        return MARKDOWN_VERSION
    if suffix in (".html", ".htm"):
        return HTML_VERSION
    ocr = ocr_engine(ocr_language) if suffix == ".pdf" or suffix in IMAGE_EXTENSIONS else None
    ocr_name = ocr.version if ocr is not None else "none"
    if suffix == ".pdf":
        return _module("pdf").pdf_reader_version(ocr)
    if suffix in IMAGE_EXTENSIONS:
        return f"{_module('images').VERSION} pillow-{_package_version('pillow')} ocr={ocr_name}"
    if suffix in _FORMAT_READERS:
        module, _ = _FORMAT_READERS[suffix]
        return _module(module).VERSIONS[suffix]
    return "none"


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def _read_text(path: Path, *, limits: ReadLimits) -> Extraction:
    from index.loaders import decode_bytes

    return Extraction(text=decode_bytes(path.read_bytes()))


def _read_markdown(path: Path, *, limits: ReadLimits) -> Extraction:
    from index.loaders import decode_bytes

    text = decode_bytes(path.read_bytes())
    return Extraction(text=text, segments=_module("markdown").markdown_sections(text))


def _read_html(path: Path, *, limits: ReadLimits) -> Extraction:
    from index.loaders import decode_bytes, html_to_text

    text, title = html_to_text(decode_bytes(path.read_bytes()))
    return Extraction(text=text, title=title)


def reader_for(suffix: str, *, limits: ReadLimits) -> Callable[[Path], Extraction]:
    """A function path -> Extraction for files with this suffix; ValueError for none."""
    suffix = suffix.lower()
    if suffix == ".txt":
        return functools.partial(_read_text, limits=limits)
    if suffix == ".md":
        return functools.partial(_read_markdown, limits=limits)
    if suffix in (".html", ".htm"):
        return functools.partial(_read_html, limits=limits)
    if suffix == ".pdf":
        reader = _module("pdf").read_pdf
        return functools.partial(reader, limits=limits, ocr=ocr_engine(limits.ocr_language))
    if suffix in IMAGE_EXTENSIONS:
        reader = _module("images").read_image
        return functools.partial(reader, limits=limits, ocr=ocr_engine(limits.ocr_language))
    if suffix in _FORMAT_READERS:
        module, function = _FORMAT_READERS[suffix]
        return functools.partial(getattr(_module(module), function), limits=limits)
    if suffix in LEGACY:
        raise ValueError(LEGACY[suffix])
    raise ValueError(f"unsupported file type {suffix or '(none)'}")


def extract(path: Path, *, limits: ReadLimits) -> Extraction:
    """Read one file with the reader for its suffix."""
    return reader_for(path.suffix, limits=limits)(path)


def ocr_status(language: str = "eng") -> str:
    """One line on OCR: the engine in use, or what to install."""
    from index.ocr import ocr_status as status

    return status(language=language)


if __name__ == "__main__":
    for ext in (".txt", ".md", ".html", ".pdf", *_FORMAT_READERS, *IMAGE_EXTENSIONS):
        try:
            sys.stdout.write(f"{ext:6s} {reader_version(ext)}\n")
        except ImportError as exc:
            sys.stdout.write(f"{ext:6s} unavailable: {exc}\n")
    sys.stdout.write(ocr_status() + "\n")
