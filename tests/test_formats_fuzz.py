"""Bad input for the format readers: damaged zips, zip bombs, OLE2 files, broken mail, garbage.

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests/test_formats_fuzz.py

Whatever the bytes, a reader returns an Extraction or raises ValueError with a reason, and a
zip bomb is refused before anything is decompressed.
"""

from __future__ import annotations

import io
import random
import struct
import tracemalloc
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.extraction import Extraction, ReadLimits
from index.formats import containers, ebook, mail, office, rtf, tables
from index.formats.markdown import markdown_sections
from tests.test_formats import (
    RTF_SAMPLE,
    assert_sound,
    make_docx,
    make_epub,
    make_message,
    make_odt,
    make_pptx,
    make_xlsx,
)

LIMITS = ReadLimits()
ZIP_READERS = {
    ".docx": (make_docx, office.read_docx),
    ".pptx": (make_pptx, office.read_pptx),
    ".xlsx": (make_xlsx, office.read_xlsx),
    ".odt": (make_odt, office.read_odt),
    ".epub": (make_epub, ebook.read_epub),
}
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
INSERTS = (b"<w:p>", b"</w:t>", b"&#0;", b"<a:t>", b"\xc3", b"]]>", b"<!DOCTYPE x [",
           b'<text:s text:c="99999999999"/>', b"&bogus;")  # fmt: skip


def read_or_refuse(reader, path: Path, limits: ReadLimits = LIMITS) -> Extraction | None:
    """The extraction, or None when the reader refused with a ValueError (nothing else allowed)."""
    try:
        extraction = reader(path, limits=limits)
    except ValueError as exc:
        assert str(exc)
        return None
    assert_sound(extraction)
    return extraction


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of one sound file of each zip-based format."""
    folder = tmp_path_factory.mktemp("samples")
    return {
        suffix: build(folder / f"s{suffix}").read_bytes()
        for suffix, (build, _) in ZIP_READERS.items()
    }


def _mutate_member(data: bytes, rng: random.Random) -> bytes:
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not damaged:
            break
        at = rng.randrange(len(damaged))
        choice = rng.random()
        if choice < 0.5:
            damaged[at] = rng.choice(b"<>/\"'&;=x0 \x00\xff")
        elif choice < 0.8:
            del damaged[at : at + rng.randint(1, 30)]
        else:
            damaged[at:at] = rng.choice(INSERTS)
    return bytes(damaged)


def _rezip_damaged(data: bytes, rng: random.Random) -> bytes:
    """The same zip with one member's XML damaged (so the parsers, not the CRC, see it)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    members = source.infolist()
    target = rng.randrange(len(members))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, info in enumerate(members):
            content = source.read(info)
            archive.writestr(
                info.filename, _mutate_member(content, rng) if index == target else content
            )
    return out.getvalue()


@pytest.mark.parametrize("suffix", sorted(ZIP_READERS))
def test_flipped_and_cut_zips_raise_only_value_error(suffix, samples, tmp_path):
    rng = random.Random(suffix)
    reader = ZIP_READERS[suffix][1]
    path = tmp_path / f"damaged{suffix}"
    for round_ in range(80):
        data = bytearray(samples[suffix])
        if round_ % 2:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        read_or_refuse(reader, path)


@pytest.mark.parametrize("suffix", sorted(ZIP_READERS))
def test_damaged_xml_inside_zips_raises_only_value_error(suffix, samples, tmp_path, capsys):
    rng = random.Random(f"xml{suffix}")
    reader = ZIP_READERS[suffix][1]
    path = tmp_path / f"damaged{suffix}"
    for _ in range(60):
        path.write_bytes(_rezip_damaged(samples[suffix], rng))
        read_or_refuse(reader, path)
    # odfpy prints a damaged part to stdout and carries on; the reader must refuse it first.
    assert "SAX FAILED" not in capsys.readouterr().out


def _bomb(path: Path, source: bytes, *, member: str, megabytes: int) -> Path:
    """source with `member` padded by megabytes of spaces (a few hundred kB compressed)."""
    original = zipfile.ZipFile(io.BytesIO(source))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in original.infolist():
            if info.filename != member:
                archive.writestr(info.filename, original.read(info))
        with archive.open(member, "w", force_zip64=True) as handle:
            handle.write(original.read(member))
            chunk = b" " * (1 << 20)
            for _ in range(megabytes):
                handle.write(chunk)
    return path


def test_zip_bomb_refused_before_decompressing(samples, tmp_path):
    path = _bomb(
        tmp_path / "bomb.docx", samples[".docx"], member="word/document.xml", megabytes=220
    )
    assert path.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="zip bomb"):
            office.read_docx(path, limits=LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


def test_absurd_ratio_refused_under_a_generous_limit(samples, tmp_path):
    path = _bomb(
        tmp_path / "bomb.xlsx", samples[".xlsx"], member="xl/worksheets/sheet1.xml", megabytes=40
    )
    with pytest.raises(ValueError, match="expands .* times"):
        office.read_xlsx(path, limits=ReadLimits(max_unzipped_bytes=2**40))


def test_understated_sizes_cannot_inflate_past_them(samples, tmp_path):
    """A central directory that lies about a member's size: zipfile stops there and fails."""
    data = bytearray(samples[".docx"])
    name = b"word/document.xml"
    at = data.find(b"PK\x01\x02")
    while at >= 0 and data[at + 46 : at + 46 + len(name)] != name:
        at = data.find(b"PK\x01\x02", at + 1)
    assert at > 0
    struct.pack_into("<I", data, at + 24, 10)  # uncompressed size: 10 bytes
    path = tmp_path / "liar.docx"
    path.write_bytes(bytes(data))
    assert read_or_refuse(office.read_docx, path) is None


def test_too_many_entries_refused(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("word/document.xml", "<x/>")
    data = bytearray(out.getvalue())
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 60_000, 60_000)
    with pytest.raises(ValueError, match="60,000 parts"):
        containers.check_zip(bytes(data), expected=".docx", limits=LIMITS)


@pytest.mark.parametrize("suffix", [".docx", ".xlsx", ".pptx"])
def test_password_protected_office_file(suffix, tmp_path):
    # Encrypted OOXML is an OLE2 compound file holding EncryptionInfo and EncryptedPackage.
    path = tmp_path / f"secret{suffix}"
    path.write_bytes(containers.OLE2_MAGIC + b"\x3e\x00\x03\x00\xfe\xff" + b"\x00" * 2000)
    reader = {".docx": office.read_docx, ".xlsx": office.read_xlsx, ".pptx": office.read_pptx}[
        suffix
    ]
    with pytest.raises(ValueError, match="password-protected or legacy Office file"):
        reader(path, limits=LIMITS)


def test_encrypted_zip_refused(samples):
    data = bytearray(samples[".docx"])
    at = data.find(b"PK\x01\x02")
    data[at + 8] |= 0x1  # the central directory's "encrypted" flag
    with pytest.raises(ValueError, match="encrypted zip"):
        containers.check_zip(bytes(data), expected=".docx", limits=LIMITS)


def test_wrong_format_and_missing_parts(samples):
    with pytest.raises(ValueError, match=r"Excel workbook \(.xlsx\) named .docx: rename it"):
        containers.check_zip(samples[".xlsx"], expected=".docx", limits=LIMITS)
    with pytest.raises(ValueError, match=r"e-book \(.epub\) named .pptx"):
        containers.check_zip(samples[".epub"], expected=".pptx", limits=LIMITS)
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ValueError, match="ppt/presentation.xml is missing"):
        containers.check_zip(plain.getvalue(), expected=".pptx", limits=LIMITS)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        containers.check_zip(samples[".odt"][:-30], expected=".odt", limits=LIMITS)


# --- mail ------------------------------------------------------------------------------------

BROKEN_MAIL = [
    b"",
    b"\x00\x01\x02 garbage \xff\xfe",
    b"just a line of text without any headers\n",
    b"Subject: only a subject\n",
    b'From: a@b\nContent-Type: multipart/mixed; boundary="XX"\n\n--XX\nContent-Type: text/plain\n\nhi',
    b"From: a@b\nContent-Type: multipart/mixed\n\nno boundary parameter at all",
    b'From: a@b\nContent-Type: multipart/alternative; boundary=""\n\n----\n--',
    b"From: a@b\nContent-Type: text/plain; charset=klingon-8\n\nq\xe9lj\xfe",
    b"From: a@b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n!!!notbase64",
    b"From: a@b\nContent-Transfer-Encoding: quoted-printable\n\n=ZZ=\n=",
    b"Subject: =?utf-8?B?broken?= =?x-unknown?Q?=FF?=\nFrom: =?utf-8?q?=E2=28?=\n\nbody",
    b'From: a@b\nTo: <<<>>>@@@, "unclosed\nDate: yesterday-ish\n\nbody',
    b"From: a@b\nContent-Type: message/rfc822\n\nnot really a message",
    b"From: a@b\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Disposition: attachment; "
    b"filename*=utf-8''%ff%fe..%2F..%2Fx.pdf\nContent-Transfer-Encoding: base64\n\n%%%%\n--b--",
    b"From: a@b\nSubject: " + b"x" * 100_000 + b"\n\nbody",
]


@pytest.mark.parametrize("data", BROKEN_MAIL, ids=range(len(BROKEN_MAIL)))
def test_malformed_eml_raises_only_value_error(data, tmp_path):
    path = tmp_path / "broken.eml"
    path.write_bytes(data)
    extraction = read_or_refuse(mail.read_eml, path)
    if extraction is not None:
        for attachment in extraction.attachments:
            assert "/" not in attachment.name and not attachment.name.startswith(".")


def test_broken_boundary_keeps_the_words(tmp_path):
    path = tmp_path / "b.eml"
    path.write_bytes(BROKEN_MAIL[5])
    assert "no boundary parameter" in mail.read_eml(path, limits=LIMITS).text


def test_garbage_eml_is_refused(tmp_path):
    path = tmp_path / "g.eml"
    path.write_bytes(BROKEN_MAIL[2])
    with pytest.raises(ValueError, match="not an e-mail message"):
        mail.read_eml(path, limits=LIMITS)


@FAST
@given(st.binary(max_size=3000))
def test_random_bytes_as_eml(tmp_path, data):
    path = tmp_path / "r.eml"
    path.write_bytes(b"From: fuzz@example.com\n" + data)
    read_or_refuse(mail.read_eml, path)


@FAST
@given(st.lists(st.sampled_from(BROKEN_MAIL[1:]), min_size=1, max_size=5), st.binary(max_size=200))
def test_malformed_mbox_raises_only_value_error(tmp_path, messages, noise):
    path = tmp_path / "r.mbox"
    path.write_bytes(
        b"".join(b"From x@y Mon Mar  3 10:00:00 2025\n" + m + b"\n\n" for m in messages) + noise
    )
    read_or_refuse(mail.read_mbox, path)


def test_mbox_that_is_not_a_mailbox(tmp_path):
    path = tmp_path / "x.mbox"
    path.write_bytes(b"\x00\xff garbage")
    with pytest.raises(ValueError, match="not a mailbox"):
        mail.read_mbox(path, limits=LIMITS)


def test_mbox_with_one_broken_message_keeps_the_others(tmp_path):
    good = bytes(make_message(attach=False))
    path = tmp_path / "mixed.mbox"
    path.write_bytes(b"From a Mon Mar  3 10:00:00 2025\n" + BROKEN_MAIL[10] + b"\n\n"
                     b"From b Mon Mar  3 10:00:00 2025\n" + good + b"\n")  # fmt: skip
    extraction = mail.read_mbox(path, limits=LIMITS)
    assert "due on Friday" in extraction.text
    assert [s.number for s in extraction.segments] == [1, 2]


def test_attachment_budget(tmp_path):
    message = EmailMessage()
    message["Subject"] = "Big files"
    message["From"] = "a@example.com"
    message.set_content("See attached.")
    for index in range(3):
        message.add_attachment(
            b"x" * 1000, maintype="text", subtype="plain", filename=f"f{index}.txt"
        )
    path = tmp_path / "big.eml"
    path.write_bytes(bytes(message))
    extraction = mail.read_eml(path, limits=ReadLimits(max_unzipped_bytes=2500))
    assert [a.name for a in extraction.attachments] == ["f0.txt", "f1.txt"]
    assert extraction.notes == ("attachment f2.txt skipped: over 2,500 bytes",)


# --- text formats ------------------------------------------------------------------------------


@FAST
@given(st.text(alphabet=st.sampled_from(list(',;\t|"\n\r ab1é\x00')), max_size=400))
def test_random_csv(tmp_path, text):
    path = tmp_path / "r.csv"
    path.write_text(text, encoding="utf-8")
    read_or_refuse(tables.read_csv, path)


@FAST
@given(st.lists(st.sampled_from(["{", "}", "\\", "'", "a", "u", "0", "9", " ", "\n", "*", "\\par",
                                  "\\u", "\\'e9", "\\bin5 ", "\\pict", "\xe9"]), max_size=200))  # fmt: skip
def test_random_rtf(tmp_path, pieces):
    path = tmp_path / "r.rtf"
    path.write_text("{\\rtf1 " + "".join(pieces), encoding="latin-1")
    read_or_refuse(rtf.read_rtf, path)


def test_rtf_with_damaged_bytes(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "d.rtf"
    for _ in range(40):
        data = bytearray(RTF_SAMPLE.encode("ascii"))
        for _ in range(rng.randint(1, 10)):
            data[rng.randrange(6, len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        read_or_refuse(rtf.read_rtf, path)


@FAST
@given(st.text(alphabet=st.sampled_from(list("#`~=- \nab\t>*1.")), max_size=300))
def test_markdown_sections_always_lie_in_the_text(text):
    sections = markdown_sections(text)
    assert_sound(Extraction(text=text, segments=sections))
    assert all(s.label for s in sections)


def test_too_many_entries_refused_in_zip64(tmp_path):
    path = tmp_path / "many.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/document.xml", "<x/>")
        for index in range(containers.MAX_ZIP_ENTRIES + 1):
            archive.writestr(f"p/{index}", "")
    with pytest.raises(ValueError, match="50,002 parts"):
        office.read_docx(path, limits=LIMITS)


def _with_entity(source: bytes, member: str, *, marker: bytes, tmp: Path) -> Path:
    """source with `member` declaring an external entity to a local file and using it."""
    secret = tmp / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    original = zipfile.ZipFile(io.BytesIO(source))
    path = tmp / f"xxe{Path(member).suffix}{len(marker)}"
    with zipfile.ZipFile(path, "w") as archive:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == member:
                declaration = f'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret}">]>'.encode()
                head, _, rest = data.partition(b"?>")
                data = head + b"?>" + declaration + rest.replace(marker, marker + b"&xxe;", 1)
            archive.writestr(info.filename, data)
    return path


@pytest.mark.parametrize(
    ("suffix", "member", "marker"),
    [
        (".docx", "word/document.xml", b"<w:t>"),
        (".odt", "content.xml", b"<text:p>"),
        (".xlsx", "xl/workbook.xml", b"<sheets>"),
    ],  # fmt: skip
)
def test_external_entities_are_not_read(suffix, member, marker, samples, tmp_path):
    path = _with_entity(samples[suffix], member, marker=marker, tmp=tmp_path)
    extraction = read_or_refuse(ZIP_READERS[suffix][1], path.rename(path.with_suffix(suffix)))
    assert extraction is None or "TOP-SECRET" not in extraction.text


def test_odt_missing_namespace_declaration_is_repaired(samples, tmp_path, capsys):
    """Some generators leave out xmlns:table; odfpy repairs that, so the reader lets it."""
    original = zipfile.ZipFile(io.BytesIO(samples[".odt"]))
    path = tmp_path / "nons.odt"
    with zipfile.ZipFile(path, "w") as archive:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == "content.xml":
                data = data.replace(
                    b' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"', b""
                )
            archive.writestr(info, data)
    assert "Audit fee | 1200" in office.read_odt(path, limits=LIMITS).text
    assert capsys.readouterr().out == ""
