"""Recognise text in page images with Tesseract: pages in parallel, a time limit each, a cache.

    python -m index.ocr scan.png            # prints the OCR status and the text of the image

Tesseract runs as a subprocess (the `tesseract` program of Debian's tesseract-ocr package),
one per page, page image on stdin and TSV (words, boxes) on stdout. Not pytesseract: it hands
the child os.environ, so OMP_THREAD_LIMIT=1 could only be set by writing os.environ, and
without it Tesseract's OpenMP threads fight over the cores (5-6x slower with two pages at
once). Not tesserocr: it runs in-process, so a page past its time limit could not be stopped.

The cache keeps each page's text and word boxes under `ReadLimits.ocr_cache_dir`, keyed by the
sha256 of the rendered bitmap, its render scale and the engine version: re-indexing never
recognises an unchanged page twice, and a new Tesseract or language re-reads every page.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from index import ocr_progress
from index.extraction import ReadLimits

logger = logging.getLogger(__name__)

# Tesseract reads text best at about 300 dpi; PDF pages are rendered at this resolution.
RENDER_DPI = 300
CACHE_FORMAT = "ocr-cache-1"
# Tesseract language names: eng, chi_sim, deu+eng; nothing that could read as an option.
_LANGUAGE = re.compile(r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$")
_VERSION = re.compile(r"tesseract\s+v?(\d[\w.\-]*)", re.IGNORECASE)
# Control characters Tesseract should not emit, removed from words (tabs would break TSV).
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_PROBE_SECONDS = 30


@dataclass(frozen=True)
class OcrWord:
    """A recognised word: its span [start, end) in the page text and its box.

    The box is normalised to the page: 0..1 from the left and from the top edge, so it fits
    the page drawn at any scale.
    """

    start: int
    end: int
    left: float
    top: float
    right: float
    bottom: float

    def to_json(self) -> list:
        """Compact JSON form for the cache."""
        return [self.start, self.end, self.left, self.top, self.right, self.bottom]


@dataclass(frozen=True)
class OcrPage:
    """The text recognised on one page and its words, each with offsets and a box."""

    text: str
    words: tuple[OcrWord, ...] = ()

    def to_json(self) -> dict:
        """JSON form for the cache."""
        return {"text": self.text, "words": [word.to_json() for word in self.words]}

    @classmethod
    def from_json(cls, data: dict) -> OcrPage:
        """Read a cached page back; ValueError when it does not hold together."""
        text = data["text"]
        if not isinstance(text, str):
            raise ValueError("cached OCR text is not a string")
        words = []
        for start, end, left, top, right, bottom in data["words"]:
            if not 0 <= int(start) <= int(end) <= len(text):
                raise ValueError(f"cached OCR word [{start}, {end}) outside the text")
            words.append(OcrWord(int(start), int(end), *map(float, (left, top, right, bottom))))
        return cls(text, tuple(words))


def parse_tsv(tsv: str, *, width: int, height: int) -> OcrPage:
    """The page text and word boxes from Tesseract's TSV: words of a line joined by spaces,
    lines by newlines, paragraphs and blocks by blank lines."""
    parts: list[str] = []
    words: list[OcrWord] = []
    length = 0
    previous: tuple[str, str, str] | None = None
    for row in tsv.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) < 12 or cells[0] != "5":
            continue
        word = _CONTROL.sub("", cells[11]).strip()
        if not word:
            continue
        where = (cells[2], cells[3], cells[4])  # block, paragraph, line
        if previous is not None:
            gap = " " if where == previous else "\n" if where[:2] == previous[:2] else "\n\n"
            parts.append(gap)
            length += len(gap)
        left, top, box_w, box_h = (int(value) for value in cells[6:10])
        words.append(
            OcrWord(
                length,
                length + len(word),
                round(left / width, 5),
                round(top / height, 5),
                round((left + box_w) / width, 5),
                round((top + box_h) / height, 5),
            )
        )
        parts.append(word)
        length += len(word)
        previous = where
    return OcrPage("".join(parts), tuple(words))


def _child_env() -> dict[str, str]:
    # One thread per Tesseract: pages already run in parallel, and OpenMP threads on top of
    # that make every page several times slower. Only the child sees this.
    return {**os.environ, "OMP_THREAD_LIMIT": "1"}


def _last_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:200] if lines else "no message"


@dataclass(frozen=True)
class OcrEngine:
    """Tesseract for one language (or several joined by '+'), found by `find_ocr`."""

    binary: str
    language: str
    tesseract: str

    @property
    def version(self) -> str:
        """Engine and language, e.g. 'tesseract-5.3.0 eng' (part of the index fingerprints)."""
        return f"tesseract-{self.tesseract} {self.language}"

    def recognise(self, image: Image.Image, *, seconds: float, dpi: int | None = None) -> OcrPage:
        """Text and word boxes of one page image; TimeoutError after `seconds`, ValueError
        when Tesseract fails."""
        gray = image if image.mode == "L" else image.convert("L")
        buffer = io.BytesIO()
        gray.save(buffer, format="PPM")  # uncompressed PGM: nothing to encode or decode
        command = [self.binary, "stdin", "stdout", "-l", self.language, "--psm", "3"]
        if dpi:
            command += ["--dpi", str(dpi)]
        try:
            done = subprocess.run(
                [*command, "tsv"],
                input=buffer.getvalue(),
                capture_output=True,
                timeout=seconds,
                env=_child_env(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"OCR took longer than {seconds:g} s") from exc
        except OSError as exc:
            raise ValueError(f"could not run tesseract: {exc}") from exc
        if done.returncode != 0:
            raise ValueError(
                f"tesseract failed (exit {done.returncode}: {_last_line(done.stderr)})"
            )
        return parse_tsv(
            done.stdout.decode("utf-8", "replace"), width=gray.width, height=gray.height
        )


def install_hint(language: str) -> str:
    """The Debian/Ubuntu command that installs Tesseract with the language's data."""
    packages = ["tesseract-ocr"] + [
        f"tesseract-ocr-{name.lower().replace('_', '-')}" for name in language.split("+") if name
    ]
    return "apt-get install " + " ".join(packages)


def _run_probe(binary: str, flag: str) -> str:
    done = subprocess.run(
        [binary, flag], capture_output=True, timeout=_PROBE_SECONDS, env=_child_env(), check=False
    )
    # Tesseract 4 writes these to stderr, 5 to stdout.
    return (done.stdout + b"\n" + done.stderr).decode("utf-8", "replace")


def _probe(language: str) -> tuple[OcrEngine | None, str]:
    """The engine, or None and why not."""
    if not _LANGUAGE.match(language):
        return None, f"bad OCR language {language!r} (Tesseract names such as eng or deu+eng)"
    binary = shutil.which("tesseract")
    if binary is None:
        return None, "the tesseract program is not installed"
    try:
        version = _VERSION.search(_run_probe(binary, "--version"))
        listed = _run_probe(binary, "--list-langs").split()
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"tesseract does not run ({exc})"
    if version is None:
        return None, "tesseract does not report its version"
    missing = [name for name in language.split("+") if name not in listed]
    if missing:
        return None, f"Tesseract has no language data for {', '.join(missing)}"
    return OcrEngine(binary, language, version.group(1)), ""


def find_ocr(*, language: str) -> OcrEngine | None:
    """Tesseract for the language, or None when the program or the language data is missing."""
    engine, problem = _probe(language)
    if engine is None:
        logger.info("OCR unavailable: %s", problem)
    return engine


def ocr_status(*, language: str = "eng") -> str:
    """One line on OCR: the engine in use, or what is missing and the command to install it."""
    engine, problem = _probe(language)
    if engine is not None:
        return f"OCR: {engine.version}"
    return (
        f"OCR unavailable ({problem}): scanned pages and images are skipped; install it with: "
        f"{install_hint(language)}"
    )


def cache_key(image: Image.Image, *, scale: float, version: str) -> str:
    """sha256 of the rendered page bitmap, its render scale and the engine version."""
    digest = hashlib.sha256()
    head = f"{CACHE_FORMAT}\0{version}\0{scale!r}\0{image.mode}\0{image.width}x{image.height}\0"
    digest.update(head.encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class OcrCache:
    """OCR results on disk, one JSON file per page key (two-character fan-out folders)."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self._warned = False

    def path(self, key: str) -> Path:
        """The file holding the page with this key."""
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> OcrPage | None:
        """The cached page, or None when there is none (or it is unreadable: recognised again)."""
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
            if data.get("format") != CACHE_FORMAT:
                return None
            return OcrPage.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.info("OCR cache entry %s unreadable (%s); recognising again", key[:12], exc)
            return None

    def put(self, key: str, page: OcrPage, *, engine: str, scale: float) -> None:
        """Store the page atomically (temporary file, then os.replace); a failure only logs."""
        target = self.path(key)
        record = {"format": CACHE_FORMAT, "engine": engine, "scale": scale, **page.to_json()}
        tmp_name = ""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w",
                encoding="utf-8",
                dir=target.parent,
                prefix=".tmp-",
                suffix=".json",
                delete=False,
            ) as tmp:
                tmp_name = tmp.name
                json.dump(record, tmp, ensure_ascii=False, separators=(",", ":"))
            os.replace(tmp_name, target)
        except OSError as exc:
            self._warn(exc)
            if tmp_name:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)

    def _warn(self, exc: OSError) -> None:
        if not self._warned:
            # Once per read: a read-only cache folder must not flood the log page by page.
            logger.warning(
                "OCR cache %s not writable (%s); its pages are recognised again next time",
                self.folder,
                exc,
            )
            self._warned = True


@dataclass(frozen=True)
class Rendered:
    """A page drawn for OCR: the grayscale bitmap, the scale it was drawn at, and its dpi."""

    image: Image.Image
    scale: float
    dpi: int | None = None


@dataclass(frozen=True)
class PageImage:
    """A page to recognise: its 1-based number and how to draw it (called in a worker thread)."""

    number: int
    render: Callable[[], Rendered]


@dataclass(frozen=True)
class OcrResult:
    """Recognised pages by number, and notes on the pages that were not."""

    pages: dict[int, OcrPage]
    notes: tuple[str, ...] = ()


def _cores() -> int:
    # The cores this process may run on (a container's CPU set), not the machine's.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def recognise_one(job: PageImage, *, engine: OcrEngine, cache: OcrCache, seconds: float) -> OcrPage:
    """One page from the cache, or recognised and cached."""
    try:
        rendered = job.render()
    except (OSError, RuntimeError) as exc:  # pdfium and Pillow errors: the page, not the run
        raise ValueError(f"could not draw the page ({exc})") from exc
    key = cache_key(rendered.image, scale=rendered.scale, version=engine.version)
    cached = cache.get(key)
    if cached is not None:
        return cached
    page = engine.recognise(rendered.image, seconds=seconds, dpi=rendered.dpi)
    cache.put(key, page, engine=engine.version, scale=rendered.scale)
    return page


def recognise_pages(
    jobs: Sequence[PageImage], *, engine: OcrEngine, limits: ReadLimits
) -> OcrResult:
    """Recognise the pages in parallel (at most limits.ocr_workers, and the cores), each within
    limits.ocr_page_seconds; a page that fails or times out is left out with a note."""
    from tqdm import tqdm

    cache = OcrCache(limits.ocr_cache_dir)
    workers = max(1, min(limits.ocr_workers, _cores(), len(jobs)))
    seconds = limits.ocr_page_seconds
    pages: dict[int, OcrPage] = {}
    notes: dict[int, str] = {}
    with (
        ThreadPoolExecutor(workers, thread_name_prefix="cqa-ocr") as pool,
        tqdm(total=len(jobs), desc="OCR", unit="page", disable=None, leave=False) as bar,
    ):
        futures = {
            pool.submit(recognise_one, job, engine=engine, cache=cache, seconds=seconds): job.number
            for job in jobs
        }
        for future in as_completed(futures):
            number = futures[future]
            try:
                pages[number] = future.result()
            except TimeoutError:
                notes[number] = f"page {number}: OCR took longer than {seconds:g} s; skipped"
            except ValueError as exc:
                notes[number] = f"page {number}: OCR failed ({exc}); skipped"
            bar.update(1)
            # Here, not in the workers: the listener writes to a pipe shared by the process.
            ocr_progress.page_done()
    return OcrResult(pages, tuple(notes[number] for number in sorted(notes)))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.stdout.write(ocr_status() + "\n")
    found = find_ocr(language="eng")
    if found is not None and len(sys.argv) > 1:
        with Image.open(sys.argv[1]) as picture:
            sys.stdout.write(found.recognise(picture, seconds=120).text + "\n")
