"""Spreadsheet rows as text: `header: value; header: value` lines, one row segment each; CSV reader.

    python -m index.formats.tables budget.csv     # prints the rows as they are indexed

The first non-empty row of a sheet is its header; each later row becomes one line of the pairs
whose cell is not empty, a column without a header named by its letter ("C: 12"). A sheet starts
with a `Sheet: <name>` line (not for CSV, whose one sheet has no name); the first row of a sheet
is a hard segment, so no chunk mixes two sheets. Segments carry the row number a spreadsheet
shows (1-based, blank rows counted).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from index.extraction import ROW, Extraction, ReadLimits
from index.formats.containers import ReadError, TextBuilder, guarded, one_line
from index.loaders import decode_bytes, looks_binary

logger = logging.getLogger(__name__)

VERSIONS = {".csv": "csv-1 stdlib"}
SNIFF_BYTES = 16 * 1024
DELIMITERS = ",;\t|"


@dataclass(frozen=True)
class SheetResult:
    """How much of a sheet was read: the rows consumed and whether more remained."""

    rows_read: int
    cut: bool


def column_letter(index: int) -> str:
    """The spreadsheet letter of a 0-based column index: 0 -> A, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def cell_text(value: object) -> str:
    """A cell value as a spreadsheet shows it: 1200 not 1200.0, TRUE, dates as ISO."""
    if value is None:
        return ""
    if isinstance(value, str):
        return one_line(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return one_line(str(value))


def render_row(cells: Sequence[str], *, header: Sequence[str]) -> str:
    """`header: value; header: value` for the non-empty cells of a row."""
    pairs = []
    for index, cell in enumerate(cells):
        if cell:
            name = header[index] if index < len(header) and header[index] else ""
            pairs.append(f"{name or column_letter(index)}: {cell}")
    return "; ".join(pairs)


def _emit(builder: TextBuilder, *, sheet: str, number: int, line: str, first: bool) -> None:
    builder.begin(ROW, number=number, label=sheet, hard=first)
    if first and sheet:
        builder.add(f"Sheet: {sheet}")
        builder.add(line, sep="\n")
    else:
        builder.add(line, sep="\n\n" if first else "\n")
    builder.end()


def write_sheet(
    builder: TextBuilder, *, sheet: str, rows: Iterable[Sequence[object]], max_rows: int
) -> SheetResult:
    """Write one sheet's rows (row 1 first) into builder; stop after max_rows rows."""
    header: list[str] | None = None
    header_number = 0
    first = True
    number = 0
    for number, values in enumerate(rows, 1):
        if number > max_rows:
            return SheetResult(max_rows, True)
        cells = [cell_text(value) for value in values]
        if not any(cells):
            continue
        if header is None:
            header, header_number = cells, number
            continue
        _emit(
            builder, sheet=sheet, number=number, line=render_row(cells, header=header), first=first
        )
        first = False
        if builder.full:
            break
    if header is not None and first:
        # A sheet of one row is all header: keep its words rather than lose them.
        line = " | ".join(cell for cell in header if cell)
        _emit(builder, sheet=sheet, number=header_number, line=line, first=True)
    return SheetResult(number, False)


def cut_note(sheet: str, *, total: int | None, read: int) -> str:
    """The note for a sheet cut at `read` rows ("sheet Budget: 1,000,000 rows, the first ...")."""
    name = f"sheet {sheet}" if sheet else "the table"
    size = f"{total:,} rows" if total else f"more than {read:,} rows"
    return f"{name}: {size}, the first {read:,} read"


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    sample = text[:SNIFF_BYTES]
    if len(text) > SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rfind("\n")]
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
    except csv.Error:
        return csv.excel


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReadError(f"cannot read the file: {exc.strerror or exc}") from exc
    if looks_binary(data):
        raise ReadError("binary content, not a CSV table")
    return decode_bytes(data).replace("\x00", "")


def _records(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    try:
        yield from reader
    except csv.Error as exc:
        raise ReadError(f"malformed CSV near record {reader.line_num:,}: {exc}") from exc


@guarded("CSV table")
def read_csv(path: Path, *, limits: ReadLimits) -> Extraction:
    """A CSV file (sniffed dialect, lenient decoding) as row lines, one row segment each."""
    text = _decode(path)
    records = _records(csv.reader(io.StringIO(text, newline=""), _dialect(text)))
    builder = TextBuilder(max_chars=limits.max_chars)
    result = write_sheet(builder, sheet="", rows=records, max_rows=limits.max_sheet_rows)
    if result.cut:
        total = result.rows_read + 1 + sum(1 for _ in records)
        builder.note(cut_note("", total=total, read=result.rows_read))
    if not builder.length:
        raise ReadError("the CSV file has no cells with text")
    return builder.build()


READERS = {".csv": read_csv}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for arg in sys.argv[1:]:
        try:
            extraction = read_csv(Path(arg), limits=ReadLimits())
        except ValueError as exc:
            logger.error("%s: %s", arg, exc)
            continue
        logger.info("%s\n%s", extraction.text[:2000], "\n".join(extraction.notes))
