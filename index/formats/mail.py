"""E-mail (.eml) and mailboxes (.mbox) as text: a header block, then the body; attachments apart.

    python -m index.formats.mail message.eml archive.mbox

Each message becomes `Subject: ...`, `From: ...`, `To: ...`, `Cc: ...`, `Date: ...` lines and its
body (text/plain preferred, else the HTML's visible text), one hard "message" segment labelled
with the subject. Attachments of a supported type come back as `Attachment`s with safe names
(in a mailbox prefixed with the message number, "3-report.pdf"), to be indexed as their own
documents; other attachments are named in the notes. Mailboxes are read one message at a time.
"""

from __future__ import annotations

import logging
import mailbox
import mimetypes
import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path

from index.extraction import MESSAGE, Attachment, Extraction, ReadLimits
from index.formats.containers import ReadError, TextBuilder, guarded, one_line
from index.loaders import decode_bytes, html_to_text

logger = logging.getLogger(__name__)

VERSIONS = {".eml": "eml-1 stdlib-email", ".mbox": "mbox-1 stdlib-mailbox"}
SUPPORTED_ATTACHMENTS = (
    ".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".pptx", ".xlsx", ".csv", ".epub", ".odt",
    ".rtf", ".png", ".jpg", ".jpeg", ".tif", ".tiff",
)  # fmt: skip
HEADERS = ("Subject", "From", "To", "Cc", "Date")
# A file with none of these is not a message, whatever its extension says.
IDENTIFYING = ("From", "To", "Subject", "Date", "Message-ID", "Received", "Sender")
MAX_NAME = 120
MAX_LABEL = 200
MAX_FORWARD_DEPTH = 3
_UNSAFE = re.compile(r"[^\w.\- ()]+")


@dataclass
class Collected:
    """Attachments gathered so far, their names (kept unique), the bytes spent, and notes."""

    budget: int
    attachments: list[Attachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    spent: int = 0
    # Set per message of a mailbox: "3-" before names, "message 3: " before notes.
    prefix: str = ""
    where: str = ""


def parse_message(data: bytes) -> EmailMessage:
    """A message parsed with the modern policy (lenient: defects are recorded, not raised)."""
    return BytesParser(policy=policy.default).parsebytes(data)


def header(message: Message, *, name: str) -> str:
    """A header's decoded value on one line; the raw value when decoding it fails."""
    try:
        value = message.get(name)
        return one_line(str(value)) if value is not None else ""
    except Exception:  # malformed headers can trip the decoder in many ways
        raw = next((v for k, v in message.raw_items() if k.lower() == name.lower()), "")
        return one_line(str(raw))


def _content(part: Message) -> str:
    try:
        content = part.get_content()
        if isinstance(content, str):
            return content
    except Exception:  # unknown charset, broken transfer encoding
        pass
    payload = part.get_payload(decode=True)
    return decode_bytes(payload) if isinstance(payload, bytes) else ""


@dataclass(frozen=True)
class Leaf:
    """A leaf part of a message, with its content type and disposition read once."""

    part: Message
    ctype: str
    disposition: str


def _raw(part: Message, name: str) -> str:
    # Raw values: the modern policy re-parses a header on every access, which made the MIME
    # walk the slowest step of reading a mailbox.
    for key, value in part.raw_items():
        if key.lower() == name:
            return str(value)
    return ""


def _leaves(message: Message) -> Iterator[Leaf]:
    """The leaf parts of a message in order; attached messages are leaves (not opened)."""
    stack = [message]
    while stack:
        part = stack.pop()
        ctype = _raw(part, "content-type").split(";", 1)[0].strip().lower() or "text/plain"
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list) and not ctype.startswith("message/"):
            stack.extend(reversed(payload))
        elif part is not message or not part.is_multipart():
            disposition = _raw(part, "content-disposition").split(";", 1)[0].strip().lower()
            yield Leaf(part, ctype, disposition)


def _named(part: Message) -> bool:
    try:
        return bool(part.get_filename())
    except Exception:  # a malformed filename parameter still names a file
        return True


def _text_of(part: Message, *, markup: bool) -> str:
    text = _content(part)
    if markup:
        text = html_to_text(text)[0]
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def body(message: EmailMessage, *, leaves: list[Leaf]) -> tuple[str, set[int]]:
    """The readable body and the ids of the parts it came from: every inline plain-text part
    (mailers split a body around inline pictures), else every inline HTML part."""
    for ctype in ("text/plain", "text/html"):
        parts = [
            leaf.part
            for leaf in leaves
            if leaf.ctype == ctype and leaf.disposition != "attachment" and not _named(leaf.part)
        ]
        texts = [_text_of(part, markup=ctype == "text/html") for part in parts]
        if any(texts):
            return "\n\n".join(t for t in texts if t), {id(part) for part in parts}
    if not message.is_multipart() and leaves and leaves[0].ctype.startswith("multipart/"):
        # A broken boundary leaves the whole MIME body as one text: better than nothing.
        return _text_of(message, markup=False), {id(message)}
    return "", set()


def safe_name(name: str) -> str:
    """A file name without folders, odd characters or hidden dots, the extension lower-cased."""
    base = unicodedata.normalize("NFKC", re.split(r"[\\/]", name)[-1])
    base = _UNSAFE.sub("_", base).strip(" ._")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        return base[:MAX_NAME]
    suffix = suffix.lower()
    return f"{stem[: max(1, MAX_NAME - len(suffix) - 1)]}.{suffix}"


def _unique(name: str, taken: set[str]) -> str:
    stem, dot, suffix = name.rpartition(".")
    candidate, counter = name, 1
    while candidate.lower() in taken:
        counter += 1
        candidate = f"{stem} ({counter}).{suffix}" if dot else f"{name} ({counter})"
    taken.add(candidate.lower())
    return candidate


def _part_name(leaf: Leaf, index: int) -> str:
    try:
        name = leaf.part.get_filename() or ""
    except Exception:  # a malformed filename parameter
        name = ""
    name = safe_name(str(name))
    if "." not in name:
        extension = mimetypes.guess_extension(leaf.ctype) or ""
        name = f"{name or f'attachment-{index}'}{extension}"
    return name


def _is_attachment(leaf: Leaf) -> bool:
    if leaf.disposition == "attachment":
        return True
    # Inline pictures are logos and signatures; other named parts are files sent inline.
    return _named(leaf.part) and not leaf.ctype.startswith("image/")


def _collect(part: Message, name: str, into: Collected) -> None:
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_ATTACHMENTS:
        into.notes.append(
            f"{into.where}attachment {name}: {suffix or 'untyped'} files are not read"
        )
        return
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes) or not data:
        return
    if into.spent + len(data) > into.budget:
        into.notes.append(f"{into.where}attachment {name} skipped: over {into.budget:,} bytes")
        return
    into.spent += len(data)
    into.attachments.append(Attachment(_unique(into.prefix + name, into.names), data))


def _inner(part: Message) -> EmailMessage | None:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    return inner if isinstance(inner, EmailMessage) else None


def _forwarded(leaf: Leaf, into: Collected, depth: int) -> str:
    inner = _inner(leaf.part)
    if inner is None or depth >= MAX_FORWARD_DEPTH:
        return ""
    head, text = render(inner, into=into, depth=depth + 1)
    return "\n\n".join(block for block in ("Forwarded message:\n" + head, text) if block)


def render(message: EmailMessage, *, into: Collected, depth: int = 0) -> tuple[str, str]:
    """(header block, body with forwarded messages) of a message; attachments go to `into`."""
    lines = [f"{name}: {value}" for name in HEADERS if (value := header(message, name=name))]
    leaves = list(_leaves(message))
    text, used = body(message, leaves=leaves)
    blocks = [text]
    for index, leaf in enumerate(leaves, 1):
        if leaf.ctype == "message/rfc822":
            blocks.append(_forwarded(leaf, into, depth))
        elif id(leaf.part) not in used and _is_attachment(leaf):
            _collect(leaf.part, _part_name(leaf, index), into)
    return "\n".join(lines), "\n\n".join(block for block in blocks if block)


def _write_message(
    builder: TextBuilder, message: EmailMessage, into: Collected, *, number: int, label: str
) -> None:
    head, text = render(message, into=into)
    builder.begin(MESSAGE, number=number, label=label[:MAX_LABEL], hard=True)
    builder.add(head)
    builder.add(text)
    builder.end()


def _is_message(message: Message) -> bool:
    try:
        return any(message.get(name) is not None for name in IDENTIFYING)
    except Exception:  # a header that fails to decode is still a header
        return True


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ReadError(f"cannot read the file: {exc.strerror or exc}") from exc


@guarded("e-mail message")
def read_eml(path: Path, *, limits: ReadLimits) -> Extraction:
    """An .eml: header block and body, one hard "message" segment; attachments returned apart."""
    message = parse_message(_read_bytes(path))
    if not _is_message(message):
        raise ReadError("not an e-mail message: it has no From, To, Subject or Date header")
    builder = TextBuilder(max_chars=limits.max_chars)
    into = Collected(budget=limits.max_unzipped_bytes)
    subject = header(message, name="Subject")
    _write_message(builder, message, into, number=0, label=subject)
    for note in into.notes:
        builder.note(note)
    return builder.build(title=subject, attachments=tuple(into.attachments))


def _check_mbox(path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise ReadError(f"cannot read the file: {exc.strerror or exc}") from exc
    if not head.lstrip(b"\xef\xbb\xbf\r\n").startswith(b"From "):
        raise ReadError("not a mailbox: an .mbox file starts with a 'From ' line")


def _mbox_message(
    builder: TextBuilder, box: mailbox.mbox, key: str, into: Collected, number: int
) -> None:
    into.prefix, into.where = f"{number}-", f"message {number}: "
    try:
        message = parse_message(box.get_bytes(key))
        subject = header(message, name="Subject") or f"message {number}"
        _write_message(builder, message, into, number=number, label=subject)
    except Exception as exc:  # one broken message must not cost the rest of the mailbox
        builder.end()
        into.notes.append(f"message {number}: not read ({type(exc).__name__}: {exc})"[:300])


@guarded("mailbox")
def read_mbox(path: Path, *, limits: ReadLimits) -> Extraction:
    """An .mbox, message by message (at most limits.max_messages), one hard segment each."""
    _check_mbox(path)
    builder = TextBuilder(max_chars=limits.max_chars)
    into = Collected(budget=limits.max_unzipped_bytes)
    box = mailbox.mbox(str(path), create=False)
    try:
        for number, key in enumerate(box.iterkeys(), 1):
            if number > limits.max_messages:
                into.notes.append(
                    f"mailbox: {len(box):,} messages, the first {limits.max_messages:,} read"
                )
                break
            _mbox_message(builder, box, key, into, number)
            if builder.full:
                break
    finally:
        box.close()
    for note in into.notes:
        builder.note(note)
    if not builder.length:
        raise ReadError("the mailbox has no messages with text")
    return builder.build(title=path.stem, attachments=tuple(into.attachments))


READERS = {".eml": read_eml, ".mbox": read_mbox}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for arg in sys.argv[1:]:
        try:
            extraction = READERS[Path(arg).suffix.lower()](Path(arg), limits=ReadLimits())
        except (ValueError, KeyError) as exc:  # KeyError: an unknown suffix
            logger.error("%s: %s", arg, exc)
            continue
        logger.info("%s\n%s", extraction.text[:2000], [a.name for a in extraction.attachments])
