"""Format readers: Office, OpenDocument, spreadsheets, CSV, e-books, mail, RTF and Markdown.

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests/test_formats.py

Every fixture is built in tmp_path with the format's own library (python-docx, python-pptx,
openpyxl, odfpy, ebooklib, email/mailbox; RTF by hand), each with known sentences, and read
back: text, segments, locators (`index.extraction.locate`), tables, notes and attachments.
"""

from __future__ import annotations

import mailbox
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from index.extraction import CHAPTER, MESSAGE, ROW, SECTION, SLIDE, Extraction, ReadLimits, locate
from index.formats import containers, ebook, mail, markdown, office, rtf, tables
from index.formats.markdown import markdown_sections

LIMITS = ReadLimits()


# --- fixture builders (shared with tests/test_formats_fuzz.py) ------------------------------


def make_docx(path: Path) -> Path:
    """A Word document: title, preamble, two headed sections, lists, a table, a header."""
    import docx

    document = docx.Document()
    document.add_heading("Annual Report", 0)
    document.add_paragraph("This report covers the whole year.")
    document.add_heading("Audit", 1)
    document.add_paragraph("The auditors found three minor issues in the ledger.")
    document.add_paragraph("Receipts were missing", style="List Bullet")
    document.add_paragraph("Two invoices were late", style="List Bullet")
    document.add_paragraph("Collect the receipts", style="List Number")
    document.add_paragraph("Send the reminders", style="List Number")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate((("Item", "Cost", "Owner"), ("Audit fee", "1200", "Ada"),
                             ("Travel", "", "Bob"))):  # fmt: skip
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("The table above lists the costs.")
    document.add_heading("Outlook", 2)
    document.add_paragraph("Next year the budget grows by ten percent.")
    document.sections[0].header.paragraphs[0].text = "CONFIDENTIAL DRAFT"
    document.sections[0].footer.paragraphs[0].text = "Page footer text"
    document.save(path)
    return path


def make_pptx(path: Path) -> Path:
    """A deck of three slides: bullets and notes, a table and a group, a plain text box."""
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Kickoff"
    slide.placeholders[1].text = "Goals for the quarter\nScope of the project"
    slide.notes_slide.notes_text_frame.text = "Welcome everyone warmly."
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Numbers"
    grid = slide.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (r, c), value in {(0, 0): "Region", (0, 1): "Sales", (1, 0): "North", (1, 1): "42"}.items():
        grid.cell(r, c).text = value
    group = slide.shapes.add_group_shape()
    group.shapes.add_textbox(
        Inches(1), Inches(4), Inches(3), Inches(1)
    ).text_frame.text = "Grouped caption text"
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Closing"
    box = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(6), Inches(1))
    box.text_frame.text = "The launch date is the ninth of May."
    deck.save(path)
    return path


def make_xlsx(path: Path) -> Path:
    """A workbook of two sheets: Budget (a blank row, an empty cell, a date) and Staff."""
    import datetime as dt

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Budget"
    sheet.append(["Item", "Cost", "Due"])
    sheet.append(["Audit fee", 1200, dt.datetime(2025, 3, 9)])
    sheet.append(["Travel", 350.5, None])
    sheet.append([])
    sheet.append(["Printing", 80.0, "May", "extra note"])
    staff = book.create_sheet("Staff")
    staff.append(["Name", "Role"])
    staff.append(["Ada", "Auditor"])
    book.properties.title = "Budget 2025"
    book.save(path)
    return path


def make_odt(path: Path) -> Path:
    """An OpenDocument text: preamble, a heading, spaces, a numbered and a bullet list, a table."""
    from odf import dc
    from odf.opendocument import OpenDocumentText
    from odf.table import Table, TableCell, TableColumn, TableRow
    from odf.text import H, List, ListItem, ListLevelStyleNumber, ListStyle, P, S

    document = OpenDocumentText()
    numbered = ListStyle(name="Numbered")
    numbered.addElement(ListLevelStyleNumber(level=1, numformat="1", numsuffix="."))
    document.automaticstyles.addElement(numbered)
    document.meta.addElement(dc.Title(text="Field Notes"))
    document.text.addElement(P(text="Written before any heading."))
    document.text.addElement(H(outlinelevel=1, text="Audit"))
    paragraph = P(text="The audit")
    paragraph.addElement(S(c=1))
    paragraph.addText("passed without findings.")
    document.text.addElement(paragraph)
    for style, words in (("Numbered", ("alpha step", "beta step")), ("", ("loose bullet",))):
        items = List(stylename=style) if style else List()
        for word in words:
            item = ListItem()
            item.addElement(P(text=word))
            items.addElement(item)
        document.text.addElement(items)
    table = Table(name="Costs")
    table.addElement(TableColumn(numbercolumnsrepeated=2))
    for row in (("Item", "Cost"), ("Audit fee", "1200")):
        line = TableRow()
        for value in row:
            cell = TableCell()
            cell.addElement(P(text=value))
            line.addElement(cell)
        line.addElement(TableCell(numbercolumnsrepeated=1000))
        table.addElement(line)
    document.text.addElement(table)
    document.text.addElement(H(outlinelevel=2, text="Next steps"))
    document.text.addElement(P(text="File the report by June."))
    document.save(str(path))
    return path


def make_epub(path: Path) -> Path:
    """An e-book of three chapters; the spine order differs from the manifest order."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("book-1")
    book.set_title("The Storm Book")
    book.set_language("en")
    one = epub.EpubHtml(title="Beginnings", file_name="one.xhtml", lang="en")
    one.content = "<h1>Beginnings</h1><p>It was a dark and quiet night.</p>"
    two = epub.EpubHtml(title="The Middle", file_name="two.xhtml", lang="en")
    two.content = "<h1>Middle</h1><p>Then came the storm &amp; rain.</p><script>hidden()</script>"
    three = epub.EpubHtml(title="", file_name="three.xhtml", lang="en")
    three.content = "<h2>Aftermath</h2><p>The sun rose over the flooded fields.</p>"
    cover = epub.EpubHtml(title="", file_name="cover.xhtml", lang="en")
    cover.content = "<div><img src='x.png' alt=''/></div>"
    for item in (three, two, one, cover):
        book.add_item(item)
    book.toc = (epub.Link("one.xhtml", "Beginnings", "one"), (epub.Section("Part Two"), (two,)))
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = [cover, "nav", one, two, three]
    epub.write_epub(str(path), book)
    return path


def make_message(subject: str = "Quarterly audit", *, attach: bool = True) -> EmailMessage:
    """A message with plain and HTML bodies and (optionally) four attachments."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "Ada Lovelace <ada@example.com>"
    message["To"] = "bob@example.com"
    message["Cc"] = "carol@example.com"
    message["Date"] = "Mon, 3 Mar 2025 10:00:00 +0000"
    message.set_content("The audit is due on Friday.\nRegards, Ada")
    message.add_alternative("<p>The HTML audit body.</p>", subtype="html")
    if attach:
        message.add_attachment(b"%PDF-1.4 report", maintype="application", subtype="pdf",
                               filename="../../etc/report.pdf")  # fmt: skip
        message.add_attachment(b"PK\x03\x04", maintype="application", subtype="zip",
                               filename="data.zip")  # fmt: skip
        message.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="n.csv")
        message.add_attachment(b"\x89PNG\r\n\x1a\nlogo", maintype="image", subtype="png",
                               filename="logo.png", disposition="inline")  # fmt: skip
    return message


def make_eml(path: Path) -> Path:
    """An .eml of make_message()."""
    path.write_bytes(bytes(make_message()))
    return path


def make_mbox(path: Path, messages: list[EmailMessage] | None = None) -> Path:
    """An .mbox of three messages: attachments, HTML only, and a forward."""
    if messages is None:
        html = EmailMessage()
        html["Subject"] = "Picnic plans"
        html["From"] = "carol@example.com"
        html.set_content("<html><body><p>Bring <b>lemonade</b>.</p><style>p{}</style></body></html>",
                         subtype="html")  # fmt: skip
        forward = EmailMessage()
        forward["Subject"] = "Fwd: Quarterly audit"
        forward["From"] = "bob@example.com"
        forward.set_content("See the message below.")
        forward.add_attachment(make_message(attach=False))
        messages = [make_message(), html, forward]
    box = mailbox.mbox(str(path))
    for message in messages:
        box.add(message)
    box.flush()
    box.close()
    return path


RTF_SAMPLE = (
    r"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Arial;}}{\info{\title Memo to staff}}"
    r"\f0\pard The caf\'e9 opens at nine.\par Prices are in \u8364? euro.\par"
    r"{\b Bold words} stay as text.\par}"
)


def make_rtf(path: Path) -> Path:
    """An RTF memo with an accented letter, a Unicode escape and an \\info title."""
    path.write_bytes(RTF_SAMPLE.encode("ascii"))
    return path


def where(extraction: Extraction, needle: str) -> str:
    """The locator of the first occurrence of needle in the extraction's text."""
    start = extraction.text.index(needle)
    return locate(extraction.text, extraction.segments, start, start + len(needle)).locator


def assert_sound(extraction: Extraction) -> None:
    """Segments lie inside the text, in order, and the text holds no NUL."""
    assert "\x00" not in extraction.text
    previous = 0
    for segment in extraction.segments:
        assert 0 <= segment.start <= segment.end <= len(extraction.text)
        assert segment.start >= previous
        previous = segment.end


# --- Word ------------------------------------------------------------------------------------


def test_docx_keeps_structure_in_body_order(tmp_path):
    extraction = office.read_docx(make_docx(tmp_path / "report.docx"), limits=LIMITS)
    text = extraction.text
    assert_sound(extraction)
    assert extraction.title == "Annual Report"
    assert "- Receipts were missing\n- Two invoices were late" in text
    assert "1. Collect the receipts\n2. Send the reminders" in text
    assert "Item | Cost | Owner\nAudit fee | 1200 | Ada\nTravel |  | Bob" in text
    # The table stays between the paragraphs around it.
    assert text.index("Send the reminders") < text.index("Item | Cost") < text.index("table above")
    assert "CONFIDENTIAL" not in text and "footer" not in text


def test_docx_sections_give_locators(tmp_path):
    extraction = office.read_docx(make_docx(tmp_path / "report.docx"), limits=LIMITS)
    assert [s.label for s in extraction.segments] == ["Annual Report", "Audit", "Outlook"]
    assert all(s.kind == SECTION and not s.hard for s in extraction.segments)
    assert where(extraction, "three minor issues") == "§ Audit"
    assert where(extraction, "Audit fee | 1200") == "§ Audit"
    assert where(extraction, "budget grows") == "§ Outlook"


def test_docx_text_before_first_heading_has_no_section(tmp_path):
    import docx

    document = docx.Document()
    document.add_paragraph("Opening words without a heading.")
    document.add_heading("Later", 1)
    document.add_paragraph("Body of the later part.")
    document.core_properties.title = "Core Title"
    document.save(tmp_path / "pre.docx")
    extraction = office.read_docx(tmp_path / "pre.docx", limits=LIMITS)
    assert extraction.title == "Core Title"
    assert where(extraction, "Opening words") == "line 1"
    assert where(extraction, "Body of the later") == "§ Later"


# --- PowerPoint -------------------------------------------------------------------------------


def test_pptx_one_hard_segment_per_slide(tmp_path):
    extraction = office.read_pptx(make_pptx(tmp_path / "deck.pptx"), limits=LIMITS)
    assert_sound(extraction)
    assert [(s.kind, s.number, s.label, s.hard) for s in extraction.segments] == [
        (SLIDE, 1, "Kickoff", True), (SLIDE, 2, "Numbers", True), (SLIDE, 3, "Closing", True),
    ]  # fmt: skip
    assert extraction.title == "Kickoff"
    assert where(extraction, "ninth of May") == "slide 3"
    assert where(extraction, "Welcome everyone") == "slide 1"
    first = extraction.text[: extraction.segments[0].end]
    assert (
        first
        == "Kickoff\n\nGoals for the quarter\nScope of the project\n\nNotes: Welcome everyone warmly."
    )


def test_pptx_tables_and_groups(tmp_path):
    extraction = office.read_pptx(make_pptx(tmp_path / "deck.pptx"), limits=LIMITS)
    second = extraction.segments[1]
    slide = extraction.text[second.start : second.end]
    assert "Region | Sales\nNorth | 42" in slide
    assert "Grouped caption text" in slide
    assert slide.startswith("Numbers\n\n")


# --- Excel and CSV ----------------------------------------------------------------------------


def test_xlsx_rows_as_header_value_pairs(tmp_path):
    extraction = office.read_xlsx(make_xlsx(tmp_path / "budget.xlsx"), limits=LIMITS)
    text = extraction.text
    assert_sound(extraction)
    assert extraction.title == "Budget 2025"
    assert text.startswith("Sheet: Budget\nItem: Audit fee; Cost: 1200; Due: 2025-03-09\n")
    assert "Item: Travel; Cost: 350.5\n" in text  # the empty cell is left out
    assert "Item: Printing; Cost: 80; Due: May; D: extra note" in text
    assert "\n\nSheet: Staff\nName: Ada; Role: Auditor" in text


def test_xlsx_row_segments_and_locators(tmp_path):
    extraction = office.read_xlsx(make_xlsx(tmp_path / "budget.xlsx"), limits=LIMITS)
    rows = [(s.kind, s.number, s.label, s.hard) for s in extraction.segments]
    assert rows == [
        (ROW, 2, "Budget", True), (ROW, 3, "Budget", False), (ROW, 5, "Budget", False),
        (ROW, 2, "Staff", True),
    ]  # fmt: skip
    start = extraction.text.index("Item: Audit")
    end = extraction.text.index("350.5") + 5
    assert (
        locate(extraction.text, extraction.segments, start, end).locator == "sheet Budget, rows 2–3"
    )
    assert where(extraction, "Sheet: Budget") == "sheet Budget, row 2"
    assert where(extraction, "Role: Auditor") == "sheet Staff, row 2"


def test_xlsx_huge_sheet_is_cut_with_a_note(tmp_path):
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Big")
    sheet.append(["id", "name"])
    for index in range(100_000):
        sheet.append([index, f"person {index}"])
    book.save(tmp_path / "big.xlsx")
    started = time.perf_counter()
    extraction = office.read_xlsx(tmp_path / "big.xlsx", limits=ReadLimits(max_sheet_rows=2_000))
    assert time.perf_counter() - started < 10
    assert extraction.notes == ("sheet Big: more than 2,000 rows, the first 2,000 read",)
    assert extraction.segments[-1].number == 2_000
    assert "id: 1998; name: person 1998" in extraction.text


def test_xlsx_note_gives_the_declared_row_count(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Budget"
    for index in range(50):
        sheet.append([f"row {index}"])
    book.save(tmp_path / "b.xlsx")
    extraction = office.read_xlsx(tmp_path / "b.xlsx", limits=ReadLimits(max_sheet_rows=10))
    assert extraction.notes == ("sheet Budget: 50 rows, the first 10 read",)


@pytest.mark.slow
def test_xlsx_million_rows_default_limit(tmp_path):
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Budget")
    sheet.append(["id", "amount"])
    for index in range(1_000_000):
        sheet.append([index, index * 2])
    book.save(tmp_path / "million.xlsx")
    extraction = office.read_xlsx(tmp_path / "million.xlsx", limits=LIMITS)
    assert extraction.notes == ("sheet Budget: more than 20,000 rows, the first 20,000 read",)


def test_xlsx_one_row_sheet_keeps_its_words(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["Only", "a", "header"])
    book.save(tmp_path / "h.xlsx")
    extraction = office.read_xlsx(tmp_path / "h.xlsx", limits=LIMITS)
    assert extraction.text == "Sheet: Sheet\nOnly | a | header"
    assert extraction.segments[0].number == 1


def test_csv_sniffs_dialect_and_decodes_cp1252(tmp_path):
    path = tmp_path / "costs.csv"
    path.write_bytes('Item;Cost;Note\nCaf\xe9;3,50;"two\nlines"\n\nTea;2;\n'.encode("cp1252"))
    extraction = tables.read_csv(path, limits=LIMITS)
    assert_sound(extraction)
    assert extraction.text == "Item: Café; Cost: 3,50; Note: two lines\nItem: Tea; Cost: 2"
    assert [(s.number, s.label) for s in extraction.segments] == [(2, ""), (4, "")]
    assert (
        locate(extraction.text, extraction.segments, 0, len(extraction.text)).locator == "rows 2–4"
    )


def test_csv_utf8_bom_and_tabs(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("\ufeffName\tCity\nZoë\tKöln\n".encode())
    extraction = tables.read_csv(path, limits=LIMITS)
    assert extraction.text == "Name: Zoë; City: Köln"


def test_csv_million_rows_cut_with_count(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("id,value\n" + "".join(f"{i},{i * 3}\n" for i in range(1_000_000)))
    started = time.perf_counter()
    extraction = tables.read_csv(path, limits=LIMITS)
    assert time.perf_counter() - started < 15
    assert extraction.notes == ("the table: 1,000,001 rows, the first 20,000 read",)
    assert len(extraction.segments) == 19_999


def test_csv_refuses_binary(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(ValueError, match="binary"):
        tables.read_csv(path, limits=LIMITS)


def test_cell_text_renders_like_a_spreadsheet():
    import datetime as dt

    assert [tables.cell_text(v) for v in (1200.0, 0.1, True, None, dt.date(2025, 1, 2))] == [
        "1200", "0.1", "TRUE", "", "2025-01-02",
    ]  # fmt: skip
    assert tables.cell_text(dt.datetime(2025, 1, 2, 9, 30)) == "2025-01-02 09:30:00"
    assert [tables.column_letter(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]


# --- OpenDocument -----------------------------------------------------------------------------


def test_odt_headings_lists_tables(tmp_path):
    extraction = office.read_odt(make_odt(tmp_path / "notes.odt"), limits=LIMITS)
    text = extraction.text
    assert_sound(extraction)
    assert extraction.title == "Field Notes"
    assert text.startswith(
        "Written before any heading.\n\nAudit\n\nThe audit passed without findings."
    )
    assert "1. alpha step\n2. beta step\n- loose bullet" in text
    assert "Item | Cost\nAudit fee | 1200" in text
    assert "|  |" not in text  # a thousand repeated empty cells are not written out
    assert where(extraction, "alpha step") == "§ Audit"
    assert where(extraction, "by June") == "§ Next steps"
    assert where(extraction, "Written before") == "line 1"


def test_odt_bounds_a_crafted_space_count(tmp_path):
    from odf.opendocument import OpenDocumentText
    from odf.text import P, S

    document = OpenDocumentText()
    paragraph = P(text="wide")
    paragraph.addElement(S(c=1_000_000_000))
    paragraph.addText("gap")
    document.text.addElement(paragraph)
    document.save(str(tmp_path / "wide.odt"))
    extraction = office.read_odt(tmp_path / "wide.odt", limits=LIMITS)
    assert extraction.text == "wide" + " " * office.MAX_SPACES + "gap"


# --- EPUB -------------------------------------------------------------------------------------


def test_epub_chapters_in_reading_order(tmp_path):
    extraction = ebook.read_epub(make_epub(tmp_path / "book.epub"), limits=LIMITS)
    assert_sound(extraction)
    assert extraction.title == "The Storm Book"
    chapters = [(s.kind, s.number, s.label) for s in extraction.segments]
    # The cover (no text) and the table of contents page are not chapters.
    assert chapters == [
        (CHAPTER, 1, "Beginnings"),
        (CHAPTER, 2, "The Middle"),
        (CHAPTER, 3, "Aftermath"),
    ]
    text = extraction.text
    assert text.index("dark and quiet") < text.index("storm & rain") < text.index("sun rose")
    assert "hidden()" not in text
    assert where(extraction, "storm & rain") == "chapter 2 (The Middle)"
    assert where(extraction, "flooded fields") == "chapter 3 (Aftermath)"


def test_epub_with_encrypted_chapters_is_refused(tmp_path):
    import zipfile

    path = make_epub(tmp_path / "drm.epub")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("META-INF/encryption.xml", '<encryption><EncryptedData><CipherData>'
                         '<CipherReference URI="EPUB/one.xhtml"/></CipherData></EncryptedData>'
                         "</encryption>")  # fmt: skip
    with pytest.raises(ValueError, match="DRM"):
        ebook.read_epub(path, limits=LIMITS)


# --- mail -------------------------------------------------------------------------------------


def test_eml_header_block_body_and_segment(tmp_path):
    extraction = mail.read_eml(make_eml(tmp_path / "audit.eml"), limits=LIMITS)
    assert_sound(extraction)
    assert extraction.text == (
        "Subject: Quarterly audit\nFrom: Ada Lovelace <ada@example.com>\nTo: bob@example.com\n"
        "Cc: carol@example.com\nDate: Mon, 03 Mar 2025 10:00:00 +0000\n\n"
        "The audit is due on Friday.\nRegards, Ada"
    )
    assert extraction.title == "Quarterly audit"
    assert [(s.kind, s.label, s.hard) for s in extraction.segments] == [
        (MESSAGE, "Quarterly audit", True)
    ]
    assert where(extraction, "due on Friday") == "Quarterly audit"


def test_eml_attachments_safe_names_and_notes(tmp_path):
    extraction = mail.read_eml(make_eml(tmp_path / "audit.eml"), limits=LIMITS)
    assert [(a.name, a.data) for a in extraction.attachments] == [
        ("report.pdf", b"%PDF-1.4 report"), ("n.csv", b"a,b\n1,2\n"),
    ]  # fmt: skip
    # The zip is named in the notes; the inline logo is a picture in the body, not a document.
    assert extraction.notes == ("attachment data.zip: .zip files are not read",)


def test_eml_html_only_body_is_visible_text(tmp_path):
    message = EmailMessage()
    message["Subject"] = "Newsletter"
    message["From"] = "news@example.com"
    message.set_content("<html><head><title>T</title></head><body><p>Big <b>sale</b> today.</p>"
                        "<script>track()</script></body></html>", subtype="html")  # fmt: skip
    (tmp_path / "n.eml").write_bytes(bytes(message))
    extraction = mail.read_eml(tmp_path / "n.eml", limits=LIMITS)
    assert extraction.text.endswith("\n\nBig sale today.")
    assert "track" not in extraction.text


def test_mbox_messages_are_hard_segments(tmp_path):
    extraction = mail.read_mbox(make_mbox(tmp_path / "inbox.mbox"), limits=LIMITS)
    assert_sound(extraction)
    assert [(s.number, s.label, s.hard) for s in extraction.segments] == [
        (1, "Quarterly audit", True), (2, "Picnic plans", True), (3, "Fwd: Quarterly audit", True),
    ]  # fmt: skip
    assert where(extraction, "Bring lemonade") == "Picnic plans"
    forwarded = extraction.text[extraction.segments[2].start : extraction.segments[2].end]
    assert "See the message below.\n\nForwarded message:\nSubject: Quarterly audit" in forwarded
    assert forwarded.endswith("Regards, Ada")
    assert [a.name for a in extraction.attachments] == ["1-report.pdf", "1-n.csv"]
    assert extraction.notes == ("message 1: attachment data.zip: .zip files are not read",)


def test_mbox_message_limit_and_missing_subject(tmp_path):
    messages = []
    for index in range(5):
        message = EmailMessage()
        message["From"] = "x@example.com"
        message.set_content(f"Body number {index}.")
        messages.append(message)
    path = make_mbox(tmp_path / "many.mbox", messages)
    extraction = mail.read_mbox(path, limits=ReadLimits(max_messages=3))
    assert [s.label for s in extraction.segments] == ["message 1", "message 2", "message 3"]
    assert "Body number 3" not in extraction.text
    assert extraction.notes == ("mailbox: 5 messages, the first 3 read",)


def test_attachment_names_are_safe():
    assert mail.safe_name("../../etc/passwd.PDF") == "passwd.pdf"
    assert mail.safe_name("C:\\Users\\a\\..\\.hidden.docx") == "hidden.docx"
    assert mail.safe_name("r\u00e9sum\u00e9 <final>?.docx") == "r\u00e9sum\u00e9 _final_.docx"
    assert len(mail.safe_name("x" * 500 + ".pdf")) == mail.MAX_NAME


# --- RTF and Markdown ---------------------------------------------------------------------------


def test_rtf_plain_text_and_title(tmp_path):
    extraction = rtf.read_rtf(make_rtf(tmp_path / "memo.rtf"), limits=LIMITS)
    assert (
        extraction.text
        == "The café opens at nine.\nPrices are in € euro.\nBold words stay as text."
    )
    assert extraction.title == "Memo to staff"
    assert extraction.segments == ()


def test_rtf_survives_a_crafted_unicode_escape(tmp_path):
    path = tmp_path / "bad.rtf"
    path.write_bytes(rb"{\rtf1 before \u99999999999 after\par}")
    assert "before" in rtf.read_rtf(path, limits=LIMITS).text


def test_rtf_refuses_other_files(tmp_path):
    path = tmp_path / "fake.rtf"
    path.write_text("just text")
    with pytest.raises(ValueError, match="not an RTF"):
        rtf.read_rtf(path, limits=LIMITS)


MARKDOWN = """---
title: front matter
---
Intro paragraph.

# Setup

Install it.

```bash
# not a heading
```

## Usage ##

Run it.

Troubleshooting
---------------

Ask for help.
"""


def test_markdown_sections_from_headings():
    sections = markdown_sections(MARKDOWN)
    assert [s.label for s in sections] == ["Setup", "Usage", "Troubleshooting"]
    assert all(s.kind == SECTION for s in sections)
    extraction = Extraction(text=MARKDOWN, segments=sections)
    assert where(extraction, "Install it") == "§ Setup"
    assert where(extraction, "not a heading") == "§ Setup"
    assert where(extraction, "Run it") == "§ Usage"
    assert where(extraction, "Ask for help") == "§ Troubleshooting"
    assert sections[-1].end == len(MARKDOWN)
    assert where(extraction, "Intro") == "line 4"


def test_markdown_non_headings():
    assert markdown_sections("#hashtag\n####### seven\n    # indented code\n") == ()
    assert [s.label for s in markdown_sections("# C#\n# [Link](http://x) `code` #\n")] == [
        "C#", "Link code",
    ]  # fmt: skip


# --- shared: caps, versions, upload checks --------------------------------------------------------


def test_max_chars_cuts_with_a_note(tmp_path):
    extraction = office.read_docx(make_docx(tmp_path / "r.docx"), limits=ReadLimits(max_chars=60))
    assert len(extraction.text) == 60
    assert extraction.notes == ("text cut at 60 characters; the rest not read",)
    assert_sound(extraction)


def test_versions_name_format_and_library():
    versions = {**office.VERSIONS, **tables.VERSIONS, **ebook.VERSIONS, **mail.VERSIONS,
                **rtf.VERSIONS, **markdown.VERSIONS}  # fmt: skip
    assert set(versions) == {".docx", ".pptx", ".xlsx", ".odt", ".csv", ".epub", ".eml",
                             ".mbox", ".rtf", ".md"}  # fmt: skip
    assert versions[".docx"] == "docx-1 python-docx-1.2.0"
    assert "missing" not in " ".join(versions.values())


def test_upload_check_accepts_real_files(tmp_path):
    builders = {"a.docx": make_docx, "a.pptx": make_pptx, "a.xlsx": make_xlsx, "a.odt": make_odt,
                "a.epub": make_epub, "a.eml": make_eml, "a.mbox": make_mbox, "a.rtf": make_rtf}  # fmt: skip
    for name, build in builders.items():
        containers.check_upload_content(name, build(tmp_path / name).read_bytes())
    containers.check_upload_content("a.csv", b"a,b\n1,2\n")
    for name, data in (("a.png", b"\x89PNG\r\n\x1a\n...."), ("a.jpg", b"\xff\xd8\xff\xe0.."),
                       ("a.tif", b"II*\x00...."), ("a.tiff", b"MM\x00*....")):  # fmt: skip
        containers.check_upload_content(name, data)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("photo.png", b"<html>not an image</html>", "not a PNG, JPEG or TIFF"),
        ("photo.jpg", b"GIF89a....", "not a PNG, JPEG or TIFF"),
        ("report.docx", b"plain words", "no zip header"),
        ("report.docx", containers.OLE2_MAGIC + b"\x00" * 504, "password-protected"),
        ("memo.rtf", b"hello", "not an RTF"),
        ("t.csv", b"\x00\x01\x02\x03" * 64, "binary"),
        ("m.eml", b"no headers here at all\n", "not an e-mail"),
        ("box.mbox", b"Subject: x\n\nbody", "must start with a 'From ' line"),
        ("empty.xlsx", b"   ", "empty"),
        ("x.exe", b"MZ....", "no content check"),
    ],
)
def test_upload_check_refuses(name, data, reason):
    with pytest.raises(ValueError, match=reason):
        containers.check_upload_content(name, data)


def test_readers_are_fast_enough(tmp_path):
    """A rough floor, far below the measured speeds, so a quadratic slip shows up."""
    paths = [make_docx(tmp_path / "a.docx"), make_pptx(tmp_path / "a.pptx"),
             make_xlsx(tmp_path / "a.xlsx"), make_odt(tmp_path / "a.odt"),
             make_epub(tmp_path / "a.epub"), make_eml(tmp_path / "a.eml"),
             make_mbox(tmp_path / "a.mbox"), make_rtf(tmp_path / "a.rtf")]  # fmt: skip
    readers = {**office.READERS, **ebook.READERS, **mail.READERS, **rtf.READERS}
    started = time.perf_counter()
    for _ in range(5):
        for path in paths:
            readers[path.suffix](path, limits=LIMITS)
    assert time.perf_counter() - started < 10


def _numbered_list(document, levels: list[tuple[int, str]]) -> None:
    """Paragraphs numbered by a two-level list ("1." then "1.1.") added to a python-docx document."""
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.oxml import parse_xml

    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    numbering = document.part.part_related_by(RT.NUMBERING).element
    numbering.append(parse_xml(
        f'<w:abstractNum {w} w:abstractNumId="90">'
        '<w:lvl w:ilvl="0"><w:start w:val="1"/><w:numFmt w:val="decimal"/><w:lvlText w:val="%1."/></w:lvl>'
        '<w:lvl w:ilvl="1"><w:start w:val="1"/><w:numFmt w:val="decimal"/><w:lvlText w:val="%1.%2."/></w:lvl>'
        "</w:abstractNum>"
    ))  # fmt: skip
    numbering.append(parse_xml(f'<w:num {w} w:numId="90"><w:abstractNumId w:val="90"/></w:num>'))
    for level, text in levels:
        paragraph = document.add_paragraph(text)
        paragraph._p.get_or_add_pPr().append(parse_xml(
            f'<w:numPr {w}><w:ilvl w:val="{level}"/><w:numId w:val="90"/></w:numPr>'
        ))  # fmt: skip


def test_docx_multilevel_numbering(tmp_path):
    import docx

    document = docx.Document()
    _numbered_list(document, [(0, "Plan"), (1, "Budget"), (1, "People"), (0, "Do"), (1, "Build")])
    document.save(tmp_path / "levels.docx")
    text = office.read_docx(tmp_path / "levels.docx", limits=LIMITS).text
    assert text == "1. Plan\n  1.1. Budget\n  1.2. People\n2. Do\n  2.1. Build"


W_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
MC_NS = 'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'


def test_docx_links_tracked_changes_text_boxes_and_controls(tmp_path):
    import docx
    from docx.oxml import parse_xml

    document = docx.Document()
    body = document.element.body
    paragraphs = [
        f'<w:p {W_NS}><w:r><w:t xml:space="preserve">See </w:t></w:r><w:hyperlink><w:r>'
        "<w:t>the site</w:t></w:r></w:hyperlink><w:ins><w:r><w:t> now</w:t></w:r></w:ins>"
        "<w:del><w:r><w:delText> never</w:delText></w:r></w:del><w:r><w:tab/><w:t>done</w:t></w:r></w:p>",
        f"<w:sdt {W_NS}><w:sdtContent><w:p><w:r><w:t>Inside a content control.</w:t></w:r></w:p>"
        "</w:sdtContent></w:sdt>",
        f"<w:p {W_NS} {MC_NS}><w:r><w:t>Anchor words.</w:t></w:r><w:r><mc:AlternateContent>"
        "<mc:Choice><w:drawing><w:txbxContent><w:p><w:r><w:t>Boxed note.</w:t></w:r></w:p>"
        "</w:txbxContent></w:drawing></mc:Choice><mc:Fallback><w:pict><w:txbxContent><w:p><w:r>"
        "<w:t>Boxed note.</w:t></w:r></w:p></w:txbxContent></w:pict></mc:Fallback>"
        "</mc:AlternateContent></w:r></w:p>",
    ]
    for xml in paragraphs:
        body.insert(len(body) - 1, parse_xml(xml))  # before the final sectPr
    document.save(tmp_path / "runs.docx")
    text = office.read_docx(tmp_path / "runs.docx", limits=LIMITS).text
    assert (
        text
        == "See the site now\tdone\n\nInside a content control.\n\nAnchor words.\n\nBoxed note."
    )


def test_markdown_crlf_and_front_matter():
    text = "---\r\ntitle: not a heading\r\n---\r\nIntro\r\n\r\n# Alpha\r\nbody\r\n"
    sections = markdown_sections(text)
    assert [(s.label, text[s.start : s.end]) for s in sections] == [
        ("Alpha", "# Alpha\r\nbody\r\n")
    ]
