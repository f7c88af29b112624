"""Office documents as text a person would recognise: .docx, .pptx, .xlsx and .odt.

    python -m index.formats.office report.docx deck.pptx budget.xlsx notes.odt

Word and OpenDocument text keep paragraphs, headings, lists ("- " or "1. " markers) and tables
(one line per row, cells separated by " | ") in body order; headers and footers are left out as
chrome. Each heading opens a "section" segment labelled with it. Slides keep their title, the
text of every shape (tables and groups included) and the speaker notes, one hard "slide"
segment each. Workbooks become `header: value` row lines (see `index.formats.tables`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from xml.parsers import expat

from lxml import etree

from index.extraction import SECTION, SLIDE, Extraction, ReadLimits
from index.formats.containers import (
    ReadError,
    TextBuilder,
    check_zip,
    guarded,
    library_version,
    one_line,
)
from index.formats.tables import cut_note, write_sheet

if TYPE_CHECKING:
    from docx.document import Document as WordDocument
    from odf.element import Element as OdfElement
    from odf.opendocument import OpenDocument
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet
    from pptx.slide import Slide
    from pptx.table import Table as SlideTable
    from pptx.text.text import TextFrame

logger = logging.getLogger(__name__)
# openpyxl warns about every style or extension it does not know; a document is not a bug report.
warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl(\..*)?$")

VERSIONS = {
    ".docx": f"docx-1 python-docx-{library_version('python-docx')}",
    ".pptx": f"pptx-1 python-pptx-{library_version('python-pptx')}",
    ".xlsx": f"xlsx-1 openpyxl-{library_version('openpyxl')}",
    ".odt": f"odt-1 odfpy-{library_version('odfpy')}",
}
MAX_LABEL = 200
# Default titles that Office and python-pptx write into new files; they name no document.
PLACEHOLDER_TITLES = {"powerpoint presentation", "presentation", "document", "untitled"}


class Flow:
    """Headings, paragraphs, list items and table rows written into a builder in body order."""

    def __init__(self, builder: TextBuilder) -> None:
        self.builder = builder
        self.first_heading = ""
        self._previous = ""

    def heading(self, text: str) -> None:
        """A heading: it opens a section segment labelled with it."""
        text = one_line(text)
        if not text:
            return
        self.builder.begin(SECTION, label=text[:MAX_LABEL])
        self.builder.add(text)
        self.first_heading = self.first_heading or text
        self._previous = "heading"

    def paragraph(self, text: str) -> None:
        """A paragraph of body text."""
        text = text.strip()
        if text:
            self.builder.add(text)
            self._previous = "paragraph"

    def item(self, marker: str, text: str) -> None:
        """A list item: consecutive items stay on consecutive lines."""
        text = one_line(text)
        if text:
            self.builder.add(marker + text, sep="\n" if self._previous == "item" else "\n\n")
            self._previous = "item"

    def table(self, rows: Iterable[list[str]]) -> None:
        """A table, one line per row, cells separated by ' | '."""
        first = True
        for cells in rows:
            while cells and not cells[-1]:
                cells.pop()
            if cells:
                self.builder.add(" | ".join(cells), sep="\n\n" if first else "\n")
                first = False
            if self.builder.full:
                return
        if not first:
            self._previous = "table"


def _title(package: object, fallback: str) -> str:
    """The core-properties title of a python-docx/-pptx document, else fallback."""
    try:
        title = one_line(package.core_properties.title or "")
    except Exception:  # a damaged docProps/core.xml costs the title, not the document
        title = ""
    return title if title and title.lower() not in PLACEHOLDER_TITLES else fallback


# --- Word (.docx) ---------------------------------------------------------------------------

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
NS = {"w": W_NS, "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006"}
_OUTSIDE = "not(ancestor::mc:Fallback or ancestor::w:del or ancestor::w:moveFrom)"
_RUN_PARTS = ("w:t", "w:tab", "w:br", "w:cr", "w:noBreakHyphen")


def _run_query(extra: str) -> etree.XPath:
    parts = (f".//w:r/{part}[{_OUTSIDE}{extra}]" for part in _RUN_PARTS)
    return etree.XPath(" | ".join(parts), namespaces=NS)


# A paragraph's own runs (hyperlinks, fields and insertions included; its text boxes, their
# duplicate VML fallback and deleted text not), and the runs of a text box's paragraph.
_PARA_TEXT = _run_query(" and not(ancestor::w:txbxContent)")
_BOX_TEXT = _run_query("")
_TEXT_BOXES = etree.XPath(".//w:txbxContent[not(ancestor::mc:Fallback)]/w:p", namespaces=NS)
_CHARS = {"tab": "\t", "br": "\n", "cr": "\n", "noBreakHyphen": "-"}


def _w(tag: str) -> str:
    return f"{{{W_NS}}}{tag}"


def _val(element: etree._Element | None, path: str) -> str | None:
    found = element.find(path, NS) if element is not None else None
    return found.get(_w("val")) if found is not None else None


def _run_text(paragraph: etree._Element, query: etree.XPath) -> str:
    parts = []
    for node in query(paragraph):
        name = etree.QName(node).localname
        parts.append((node.text or "") if name == "t" else _CHARS.get(name, ""))
    return "".join(parts)


ROMAN = ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"), (50, "l"),
         (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"))  # fmt: skip


def _roman(number: int) -> str:
    out = []
    for value, letters in ROMAN:
        count, number = divmod(number, value)
        out.append(letters * count)
    return "".join(out)


def _letter(number: int) -> str:
    return chr(96 + (number - 1) % 26 + 1) * ((number - 1) // 26 + 1)


def _format_number(number: int, fmt: str) -> str:
    formats = {"lowerLetter": _letter, "upperLetter": lambda n: _letter(n).upper(),
               "lowerRoman": _roman, "upperRoman": lambda n: _roman(n).upper()}  # fmt: skip
    return formats.get(fmt, str)(number) if fmt != "none" else ""


class Numbering:
    """List markers of a Word document: bullet or numbered, counted per list and level."""

    def __init__(self, root: etree._Element | None) -> None:
        self._levels: dict[str, dict[int, tuple[str, str, int]]] = {}
        self._counts: dict[str, dict[int, int]] = {}
        if root is None:
            return
        abstract = {a.get(_w("abstractNumId")): a for a in root.iterfind("w:abstractNum", NS)}
        for num in root.iterfind("w:num", NS):
            levels = abstract.get(_val(num, "w:abstractNumId"))
            if levels is not None:
                self._levels[num.get(_w("numId"))] = self._read_levels(levels)

    @staticmethod
    def _read_levels(abstract: etree._Element) -> dict[int, tuple[str, str, int]]:
        levels = {}
        for lvl in abstract.iterfind("w:lvl", NS):
            start = _val(lvl, "w:start") or "1"
            levels[int(lvl.get(_w("ilvl"), "0"))] = (
                _val(lvl, "w:numFmt") or "decimal",
                _val(lvl, "w:lvlText") or "%1.",
                int(start) if start.isdigit() else 1,
            )
        return levels

    def marker(self, num_id: str, level: int) -> str:
        """The marker of the next item of list num_id at level ("- ", "2. ", "1.3. ")."""
        levels = self._levels.get(num_id, {})
        fmt, text, start = levels.get(level, ("bullet", "", 1))
        indent = "  " * min(level, 8)
        if fmt == "bullet":
            return indent + "- "
        counts = self._counts.setdefault(num_id, {})
        counts[level] = counts.get(level, start - 1) + 1
        for deeper in [known for known in counts if known > level]:
            del counts[deeper]  # a new item restarts the numbering of the levels below it
        for index in range(level + 1):
            index_fmt, _, index_start = levels.get(index, ("decimal", "", 1))
            count = counts.get(index, index_start)
            text = text.replace(f"%{index + 1}", _format_number(count, index_fmt))
        return indent + (text.strip() + " " if text.strip() else "")


class Styles:
    """What each paragraph style means: heading or not, and the list it numbers (if any)."""

    def __init__(self, root: etree._Element | None) -> None:
        self._styles: dict[str, etree._Element] = {}
        if root is not None:
            self._styles = {s.get(_w("styleId")): s for s in root.iterfind("w:style", NS)}
        self._cache: dict[str, tuple[bool, tuple[str, int] | None]] = {}

    def _chain(self, style_id: str) -> Iterator[etree._Element]:
        seen = set()
        while style_id in self._styles and style_id not in seen:
            seen.add(style_id)
            style = self._styles[style_id]
            yield style
            style_id = _val(style, "w:basedOn") or ""

    def info(self, style_id: str) -> tuple[bool, tuple[str, int] | None]:
        """(is a heading, (numId, level) of the style's numbering or None)."""
        if style_id not in self._cache:
            self._cache[style_id] = self._resolve(style_id)
        return self._cache[style_id]

    def _resolve(self, style_id: str) -> tuple[bool, tuple[str, int] | None]:
        heading: bool | None = None
        numbering = None
        for style in self._chain(style_id):
            name = (_val(style, "w:name") or "").lower()
            outline = _val(style, "w:pPr/w:outlineLvl")
            if heading is None and (outline is not None or re.fullmatch(r"heading \d|title", name)):
                heading = outline is None or (outline.isdigit() and int(outline) < 9)
            num_id = _val(style, "w:pPr/w:numPr/w:numId")
            if numbering is None and num_id is not None:
                level = _val(style, "w:pPr/w:numPr/w:ilvl") or "0"
                numbering = (num_id, int(level) if level.isdigit() else 0)
        return bool(heading), numbering


class WordBody:
    """Walks a Word body in order and writes it into a Flow."""

    def __init__(self, flow: Flow, styles: Styles, numbering: Numbering) -> None:
        self.flow = flow
        self.styles = styles
        self.numbering = numbering

    def walk(self, container: etree._Element) -> None:
        """Write every block of container (body, content control, custom XML) in order."""
        for child in container.iterchildren():
            if self.flow.builder.full:
                return
            tag = child.tag
            if tag == _w("p"):
                self.paragraph(child)
            elif tag == _w("tbl"):
                self.flow.table(self._rows(child))
            elif tag == _w("sdt"):
                content = child.find("w:sdtContent", NS)
                if content is not None:
                    self.walk(content)
            elif tag in (_w("customXml"), _w("ins"), _w("smartTag")):
                self.walk(child)

    def paragraph(self, p: etree._Element) -> None:
        """One paragraph as a heading, list item or body text, then its text boxes."""
        text = _run_text(p, _PARA_TEXT)
        ppr = p.find("w:pPr", NS)
        heading, numbering = self.styles.info(_val(ppr, "w:pStyle") or "")
        outline = _val(ppr, "w:outlineLvl")
        if outline is not None:
            heading = outline.isdigit() and int(outline) < 9  # 9 is "body text"
        num_id = _val(ppr, "w:numPr/w:numId")
        if num_id is not None:
            level = _val(ppr, "w:numPr/w:ilvl") or "0"
            numbering = (num_id, int(level) if level.isdigit() else 0)
        if heading:
            self.flow.heading(text)
        elif numbering is not None and numbering[0] != "0" and text.strip():
            self.flow.item(self.numbering.marker(*numbering), text)
        else:
            self.flow.paragraph(text)
        for box in _TEXT_BOXES(p):
            self.flow.paragraph(_run_text(box, _BOX_TEXT))

    def _rows(self, table: etree._Element) -> Iterator[list[str]]:
        for row in table.iterfind("w:tr", NS):
            yield [self._cell(cell) for cell in row.iterfind("w:tc", NS)]

    @staticmethod
    def _cell(cell: etree._Element) -> str:
        return one_line(" ".join(_run_text(p, _PARA_TEXT) for p in cell.iter(_w("p"))))


def _word_parts(document: WordDocument) -> tuple[Styles, Numbering]:
    from docx.opc.constants import RELATIONSHIP_TYPE as RT

    try:
        numbering = document.part.part_related_by(RT.NUMBERING).element
    except KeyError:
        numbering = None
    try:
        styles = document.part.part_related_by(RT.STYLES).element
    except KeyError:
        styles = None
    return Styles(styles), Numbering(numbering)


@guarded("Word document")
def read_docx(path: Path, *, limits: ReadLimits) -> Extraction:
    """A .docx in body order: headings (section segments), paragraphs, lists and tables."""
    import docx

    check_zip(path, expected=".docx", limits=limits)
    document = docx.Document(str(path))
    builder = TextBuilder(max_chars=limits.max_chars)
    flow = Flow(builder)
    WordBody(flow, *_word_parts(document)).walk(document.element.body)
    return builder.build(title=_title(document, flow.first_heading))


# --- PowerPoint (.pptx) ---------------------------------------------------------------------


def _frame_lines(frame: TextFrame) -> Iterator[str]:
    for paragraph in frame.paragraphs:
        text = paragraph.text.replace("\v", "\n").strip()
        if text:
            yield "  " * min(paragraph.level, 8) + text


def _table_lines(table: SlideTable) -> Iterator[str]:
    for row in table.rows:
        cells = [one_line(cell.text) for cell in row.cells if not cell.is_spanned]
        if any(cells):
            yield " | ".join(cells)


def _shape_blocks(shapes: Iterable) -> Iterator[str]:
    """Text of each shape, in reading order (top to bottom, left to right); groups opened."""
    from pptx.shapes.group import GroupShape

    def position(shape) -> tuple[int, int]:
        return (shape.top or 0, shape.left or 0)

    for shape in sorted(shapes, key=position):
        if isinstance(shape, GroupShape):
            yield from _shape_blocks(shape.shapes)
        elif getattr(shape, "has_table", False) and shape.has_table:
            yield "\n".join(_table_lines(shape.table))
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            yield "\n".join(_frame_lines(shape.text_frame))


def _slide_parts(slide: Slide) -> tuple[str, list[str], str]:
    """(title, text blocks of the other shapes, speaker notes) of one slide."""
    title_shape = slide.shapes.title
    title = one_line(title_shape.text_frame.text) if title_shape is not None else ""
    others = [s for s in slide.shapes if title_shape is None or s.shape_id != title_shape.shape_id]
    notes = ""
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = slide.notes_slide.notes_text_frame.text.replace("\v", "\n").strip()
    return title, [b for b in _shape_blocks(others) if b.strip()], notes


@guarded("PowerPoint presentation")
def read_pptx(path: Path, *, limits: ReadLimits) -> Extraction:
    """A .pptx, one hard "slide" segment per slide: title, shape text, then "Notes: ..."."""
    import pptx

    check_zip(path, expected=".pptx", limits=limits)
    presentation = pptx.Presentation(str(path))
    builder = TextBuilder(max_chars=limits.max_chars)
    first_title = ""
    for number, slide in enumerate(presentation.slides, 1):
        title, blocks, notes = _slide_parts(slide)
        first_title = first_title or title
        builder.begin(SLIDE, number=number, label=title[:MAX_LABEL], hard=True)
        for block in ([title] if title else []) + blocks + ([f"Notes: {notes}"] if notes else []):
            builder.add(block)
        builder.end()
        if builder.full:
            break
    return builder.build(title=_title(presentation, first_title))


# --- Excel (.xlsx) --------------------------------------------------------------------------


def _write_worksheet(builder: TextBuilder, sheet: ReadOnlyWorksheet, *, limits: ReadLimits) -> None:
    declared = sheet.max_row
    # The stored dimension can be wrong either way (too small cuts rows, too large pads a
    # million empty ones), so the rows are read as they are.
    sheet.reset_dimensions()
    rows = sheet.iter_rows(values_only=True)
    result = write_sheet(builder, sheet=sheet.title, rows=rows, max_rows=limits.max_sheet_rows)
    if result.cut:
        total = declared if isinstance(declared, int) and declared > result.rows_read else None
        builder.note(cut_note(sheet.title, total=total, read=result.rows_read))


@guarded("Excel workbook")
def read_xlsx(path: Path, *, limits: ReadLimits) -> Extraction:
    """An .xlsx, each row a `header: value; ...` line and segment, under `Sheet: <name>`."""
    import openpyxl

    check_zip(path, expected=".xlsx", limits=limits)
    workbook = openpyxl.load_workbook(str(path), read_only=True, data_only=True)
    builder = TextBuilder(max_chars=limits.max_chars)
    try:
        for sheet in workbook.worksheets:
            _write_worksheet(builder, sheet, limits=limits)
            if builder.full:
                break
        title = one_line(workbook.properties.title or "")
    finally:
        workbook.close()
    if not builder.length:
        raise ReadError("the workbook has no cells with values")
    return builder.build(title=title)


# --- OpenDocument text (.odt) ---------------------------------------------------------------

TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
TABLE_NS = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
OFFICE_NS = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
STYLE_NS = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
# Generated or hidden content: the table of contents repeats the headings, tracked changes hold
# deleted text, notes and comments would land mid-sentence.
ODF_SKIPPED = {
    (TEXT_NS, "tracked-changes"), (TEXT_NS, "table-of-content"), (TEXT_NS, "note"),
    (OFFICE_NS, "annotation"), (TEXT_NS, "sequence-decls"), (TEXT_NS, "variable-decls"),
    (OFFICE_NS, "forms"), (TEXT_NS, "alphabetical-index"), (TEXT_NS, "bibliography"),
}  # fmt: skip
LIST_ITEMS = ((TEXT_NS, "list-item"), (TEXT_NS, "list-header"))
MAX_SPACES = 100
MAX_REPEAT = 50


def _count(value: str | None, default: int = 1) -> int:
    return int(value) if value and value.isdigit() else default


def _odf_text(node: OdfElement, parts: list[str]) -> None:
    """Visible text below node: text:s, tab and line-break expanded, skipped parts left out."""
    for child in node.childNodes:
        if child.nodeType == child.TEXT_NODE:
            parts.append(child.data)
            continue
        qname = getattr(child, "qname", None)
        if qname in ODF_SKIPPED:
            continue
        if qname == (TEXT_NS, "s"):
            # A crafted count ("c=1000000000") would otherwise allocate gigabytes.
            parts.append(" " * min(_count(child.getAttrNS(TEXT_NS, "c")), MAX_SPACES))
        elif qname == (TEXT_NS, "tab"):
            parts.append("\t")
        elif qname == (TEXT_NS, "line-break"):
            parts.append("\n")
        else:
            _odf_text(child, parts)


def odf_text(node: OdfElement) -> str:
    """The visible text of an OpenDocument element."""
    parts: list[str] = []
    _odf_text(node, parts)
    return "".join(parts)


def _list_styles(document: OpenDocument) -> dict[str, dict[int, bool]]:
    """For each list style: level -> True when numbered (else bulleted)."""
    styles: dict[str, dict[int, bool]] = {}
    for container in (document.styles, document.automaticstyles):
        for style in container.childNodes:
            if getattr(style, "qname", None) != (TEXT_NS, "list-style"):
                continue
            levels = styles.setdefault(style.getAttrNS(STYLE_NS, "name") or "", {})
            for level in style.childNodes:
                kind = getattr(level, "qname", (None, ""))[1]
                if kind.startswith("list-level-style-"):
                    levels[_count(level.getAttrNS(TEXT_NS, "level"))] = kind.endswith("number")
    return styles


class OdfBody:
    """Walks an OpenDocument text body in order and writes it into a Flow."""

    def __init__(self, flow: Flow, list_styles: dict[str, dict[int, bool]]) -> None:
        self.flow = flow
        self.list_styles = list_styles

    def walk(self, container: OdfElement) -> None:
        """Write every block of container (the body or a section) in order."""
        for child in container.childNodes:
            if self.flow.builder.full:
                return
            qname = getattr(child, "qname", None)
            if qname == (TEXT_NS, "h"):
                self.flow.heading(odf_text(child))
            elif qname == (TEXT_NS, "p"):
                self.flow.paragraph(odf_text(child))
            elif qname == (TEXT_NS, "list"):
                self.items(child, style="", depth=1)
            elif qname == (TABLE_NS, "table"):
                self.flow.table(self._rows(child))
            elif qname not in ODF_SKIPPED and qname is not None:
                self.walk(child)

    def items(self, node: OdfElement, *, style: str, depth: int) -> None:
        """A list's items with their markers; nested lists indented, style inherited."""
        style = node.getAttrNS(TEXT_NS, "style-name") or style
        numbered = self.list_styles.get(style, {}).get(depth, False)
        number = 0
        for item in node.childNodes:
            if getattr(item, "qname", None) not in LIST_ITEMS:
                continue
            number += 1
            for part in item.childNodes:
                if getattr(part, "qname", None) == (TEXT_NS, "list"):
                    self.items(part, style=style, depth=depth + 1)
                elif getattr(part, "qname", None) in ((TEXT_NS, "p"), (TEXT_NS, "h")):
                    marker = f"{number}. " if numbered else "- "
                    self.flow.item("  " * min(depth - 1, 8) + marker, odf_text(part))

    def _rows(self, table: OdfElement) -> Iterator[list[str]]:
        for node in table.childNodes:
            qname = getattr(node, "qname", None)
            if qname == (TABLE_NS, "table-row"):
                yield self._cells(node)
            elif qname in ((TABLE_NS, "table-header-rows"), (TABLE_NS, "table-rows"),
                           (TABLE_NS, "table-row-group")):  # fmt: skip
                yield from self._rows(node)

    @staticmethod
    def _cells(row: OdfElement) -> list[str]:
        cells: list[str] = []
        for cell in row.childNodes:
            if getattr(cell, "qname", (None, ""))[1] not in ("table-cell", "covered-table-cell"):
                continue
            text = one_line(odf_text(cell))
            # Empty cells are often "repeated 1,000 times" to fill the row: one is enough.
            repeat = _count(cell.getAttrNS(TABLE_NS, "number-columns-repeated"))
            cells.extend([text] * (min(repeat, MAX_REPEAT) if text else 1))
        return cells


ODF_XML_PARTS = ("content.xml", "styles.xml", "meta.xml", "settings.xml")


_UNBOUND_PREFIX = expat.errors.codes[expat.errors.XML_ERROR_UNBOUND_PREFIX]


def _check_odf_xml(path: Path) -> bool:
    """Raise ReadError for a damaged XML part; True when a part only lacks a namespace
    declaration, which odfpy repairs (odfpy prints a part it cannot parse to stdout and
    carries on with half a document, so damage is caught here first)."""
    needs_repair = False
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for name in (part for part in ODF_XML_PARTS if part in names):
            parser = expat.ParserCreate(namespace_separator=" ")
            try:
                with archive.open(name) as stream:
                    parser.ParseFile(stream)
            except expat.ExpatError as exc:
                if exc.code != _UNBOUND_PREFIX:
                    raise ReadError(f"the OpenDocument file is damaged ({name}: {exc})") from exc
                needs_repair = True
    return needs_repair


def _load_odf(path: Path, *, needs_repair: bool) -> OpenDocument:
    from odf.opendocument import load

    if not needs_repair:
        return load(str(path))
    # Only this rare path captures stdout (process-wide, for the few milliseconds of the load).
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        document = load(str(path))
    if "SAX FAILED" in printed.getvalue():
        raise ReadError("the OpenDocument file is damaged (an XML part could not be parsed)")
    return document


def _odt_title(document: OpenDocument) -> str:
    from odf.dc import Title

    titles = document.meta.getElementsByType(Title)
    return one_line(odf_text(titles[0])) if titles else ""


@guarded("OpenDocument text")
def read_odt(path: Path, *, limits: ReadLimits) -> Extraction:
    """An .odt in body order: headings (section segments), paragraphs, lists and tables."""
    check_zip(path, expected=".odt", limits=limits)
    document = _load_odf(path, needs_repair=_check_odf_xml(path))
    if document.text is None:
        raise ReadError("the OpenDocument file has no text body")
    builder = TextBuilder(max_chars=limits.max_chars)
    flow = Flow(builder)
    OdfBody(flow, _list_styles(document)).walk(document.text)
    return builder.build(title=_odt_title(document) or flow.first_heading)


READERS = {".docx": read_docx, ".pptx": read_pptx, ".xlsx": read_xlsx, ".odt": read_odt}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for arg in sys.argv[1:]:
        try:
            extraction = READERS[Path(arg).suffix.lower()](Path(arg), limits=ReadLimits())
        except (ValueError, KeyError) as exc:  # KeyError: an unknown suffix
            logger.error("%s: %s", arg, exc)
            continue
        logger.info("%s: %r\n%s", arg, extraction.title, extraction.text[:2000])
