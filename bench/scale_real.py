"""The real system at size: production indexing and questions over a generated SQuAD corpus.

    python -m bench.scale --real [--sizes 100000 1000000] [--stores faiss milvus] [--quick]

The corpus (cached under data/bench/real/) holds every SQuAD v1.1 dev paragraph as one .txt
file (article title line, then the paragraph: the needles) and distractor documents made of
SQuAD sentences recombined with a seeded RNG, about ten chunks each. The sentences of the
questions' gold paragraphs never go into distractors, so a question's answer is not copied
into hundreds of other documents; distractors of an article draw on its other paragraphs, so
they are on topic.

Embedding a million chunks would take hours on two cores, so builds use `RecordedEmbedder`:
every distinct source sentence and every needle chunk is embedded once with the real model
(cached in data/bench/real/vectors-<backend>.npy + keys), and a distractor chunk's vector is
the length-weighted mean of its sentences' recorded vectors plus seeded noise (sized so that
questions see distractors as close as real vectors would be: see NOISE), normalised, computed
without the model. Token counts, one-document updates and questions use the real model.

Each (engine, size) is built through `index.update_index` and asked through `rag.Pipeline` (in
a fresh chat-like process) and `python -m rag ask`; the table goes to stdout, JSON to
bench/results/scale_real.json, a log-log PNG beside it, and a markdown snippet for
BENCHMARKS.md is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.metrics import distinct_in_order, first_rank
from eval.queries import Query
from eval.squad import Paragraph, load_squad, parse_squad, slug
from index import IndexConfig, embedder_for, update_index
from index.build import chunk_text
from index.cleaning import line_key, normalize_text, segment

logger = logging.getLogger("bench.scale_real")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQUAD = ROOT.parent / "shared" / "data" / "squad-dev-v1.1.json"
DATA = Path("data/bench/real")
RESULTS = Path("bench/results")
ENGINES = ("faiss", "milvus")
SERVED_LITE = "milvus (Lite served)"  # the row label of --milvus-lite-server
QUICK_SIZES = (5_000, 20_000)
# Noise (sigma per dimension) on composed vectors. A mean of sentence vectors is smoother than
# the model's vector of the chunk and sits closer to every question on its topic. Measured on
# the 20,000-chunk corpus with every chunk also embedded for real (500 questions): a question's
# best distractor similarity averaged 0.554 with real vectors; 0.578 / 0.554 / 0.521 with
# sigma 0.01 / 0.02 / 0.03, dense hit@5 0.656 / 0.732 / 0.818 against 0.762 real, hybrid
# hit@5 0.828 (sigma 0.01) against 0.878 real. 0.02 matches the similarity.
NOISE = 0.02
# A child process (cold start) taking longer than this is stuck or rebuilding the index.
CHILD_TIMEOUT_S = 900
# The question process may take this much longer per question: Milvus Lite at 1M chunks
# answers in about 1.1 s (exact search), and 2,300 questions ran past a fixed 45 minutes.
CHILD_SECONDS_PER_QUESTION = 3
# Bump when the generated text changes, so cached corpora are rewritten.
GENERATOR_VERSION = 1
# Every figure a measured row carries (the test checks them).
FIGURE_KEYS = (
    "chunks", "files", "build_s", "build_embed_s", "build_minus_embed_s", "update_s",
    "update_embed_s", "update_minus_embed_s", "update_chunks_embedded", "cold_start_s",
    "cold_start_first_s", "rss_mb", "engine_process_rss_mb", "peak_rss_mb", "retrieve_p50_ms",
    "retrieve_p95_ms", "question_p50_ms", "question_p95_ms", "hit@5", "hit@5_sources",
    "questions_scored",
)  # fmt: skip


def percentile_ms(samples: Sequence[float], q: float) -> float:
    """q-th percentile of samples given in milliseconds."""
    return float(np.percentile(np.asarray(samples, dtype=float), q)) if samples else float("nan")


def status_kb(field: str, path: str = "/proc/self/status") -> int:
    """A VmRSS/VmHWM line of /proc/<pid>/status in kB (0 when absent)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def children_rss_kb(pid: int) -> int:
    """Summed VmRSS (kB) of every descendant process of pid."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        todo += parents.get(child, [])
        try:
            total += status_kb("VmRSS", f"/proc/{child}/status")
        except OSError:
            continue
    return total


# --- SQuAD: needles, questions, sentence pools ----------------------------------------------


@dataclass(frozen=True)
class Squad:
    """Needle paragraphs (sources prefixed with needles/), their titles and all questions."""

    paragraphs: list[Paragraph]
    titles: dict[str, str]  # needle source -> article title
    queries: list[Query]


def read_squad(data: dict, *, articles: int | None = None, per_article: int | None = None) -> Squad:
    """The SQuAD paragraphs as needles under needles/; optionally only the first few."""
    paragraphs, queries = parse_squad(data)
    titles = {}
    for pos, article in enumerate(data["data"]):
        folder = f"{pos:02d}_{slug(str(article.get('title', 'article')))}"
        titles[folder] = str(article.get("title", "article")).replace("_", " ")

    def wanted(source: str) -> bool:
        folder, name = source.split("/")
        return (articles is None or int(folder.split("_")[0]) < articles) and (
            per_article is None or int(name.split(".")[0]) < per_article
        )

    kept = [Paragraph("needles/" + p.source, p.text) for p in paragraphs if wanted(p.source)]
    present = {p.source for p in kept}
    chosen = []
    for q in queries:
        sources = tuple("needles/" + s for s in q.sources if "needles/" + s in present)
        if q.answerable and sources:
            chosen.append(dataclasses.replace(q, sources=sources))
    return Squad(
        paragraphs=kept,
        titles={p.source: titles[p.source.split("/")[1]] for p in kept},
        queries=chosen,
    )


def select_questions(queries: Sequence[Query], n: int, seed: int) -> list[Query]:
    """n questions: all questions of seeded-random paragraphs, paragraph after paragraph.

    Taking whole paragraphs keeps the gold paragraphs few (about 400 for 2,000 questions), so
    the others can feed the distractors.
    """
    by_paragraph: dict[str, list[Query]] = {}
    for q in queries:
        by_paragraph.setdefault(q.sources[0], []).append(q)
    order = sorted(by_paragraph)
    random.Random(seed).shuffle(order)
    picked: list[Query] = []
    for source in order:
        picked += by_paragraph[source][: n - len(picked)]
        if len(picked) >= n:
            break
    return picked


def sentences_of(text: str) -> list[str]:
    """The paragraph's sentences as the indexer segments them (original characters)."""
    return [text[s.start : s.end] for s in segment(text, set())]


def sentence_pools(squad: Squad, gold: set[str]) -> dict[str, list[str]]:
    """Per article title: the sentences of its paragraphs that no question asked is about."""
    pools: dict[str, list[str]] = {}
    for p in squad.paragraphs:
        if p.source not in gold:
            pools.setdefault(squad.titles[p.source], []).extend(sentences_of(p.text))
    return {title: pool for title, pool in pools.items() if pool}


# --- corpus generation -----------------------------------------------------------------------


def needle_text(title: str, text: str) -> str:
    """A needle file: the article title line, a blank line, the paragraph."""
    return f"{title}\n\n{text.strip()}\n"


def distractor_text(rng: np.random.Generator, pools: dict[str, list[str]], n_sentences: int) -> str:
    """A document on one article's topic: its title line, then paragraphs of 2-6 sentences."""
    titles = sorted(pools)
    title = titles[int(rng.integers(len(titles)))]
    pool = pools[title]
    if len(pool) < n_sentences:  # a small article: draw on every article
        pool = [s for t in titles for s in pools[t]]
    picks = rng.choice(len(pool), size=min(n_sentences, len(pool)), replace=False)
    lines, i = [], 0
    while i < len(picks):
        size = int(rng.integers(2, 7))
        lines.append(" ".join(pool[j].strip() for j in picks[i : i + size]))
        i += size
    return title + "\n\n" + "\n\n".join(lines) + "\n"


def distractor(seed: int, number: int, pools: dict[str, list[str]], n_sentences: int) -> str:
    """Distractor number `number`: the same text whatever the corpus size."""
    return distractor_text(np.random.default_rng([seed, number]), pools, n_sentences)


def distractor_path(number: int) -> str:
    """Corpus-relative path of distractor number `number` (1,000 files per folder)."""
    return f"docs/{number // 1000:04d}/{number:07d}.txt"


def chunk_texts(text: str, embedder, config: IndexConfig) -> list[str]:
    """Searchable texts of the chunks the production chunker cuts from one .txt document."""
    title = text.split("\n", 1)[0]
    # The title line is page chrome in the corpus (every needle and distractor starts so).
    spans = chunk_text(text, {line_key(title)}, config=config, embedder=embedder)
    return [s.search_text for s in spans]


def calibrate(
    pools: dict[str, list[str]],
    embedder,
    config: IndexConfig,
    *,
    chunks_per_file: float,
    seed: int,
    samples: int = 120,
) -> tuple[int, float, list[str]]:
    """Sentences per distractor for chunks_per_file chunks; the mean reached and sample chunks."""
    n_sentences, mean, texts = 30, 0.0, []
    for _ in range(4):
        counts, texts = [], []
        for i in range(samples):
            chunks = chunk_texts(distractor(seed + 1, i, pools, n_sentences), embedder, config)
            counts.append(len(chunks))
            texts += chunks
        mean = float(np.mean(counts))
        better = max(2, round(n_sentences * chunks_per_file / mean))
        logger.info(
            "a distractor of %d sentences becomes %.2f chunks on average (%d sampled)",
            n_sentences, mean, samples,
        )  # fmt: skip
        if better == n_sentences or abs(mean - chunks_per_file) < 0.25:
            break
        n_sentences = better
    return n_sentences, mean, texts


@dataclass(frozen=True)
class Corpus:
    """A generated corpus folder: needles, distractor files, and how it was made."""

    folder: Path
    needles: list[str]
    distractors: int
    sentences_per_distractor: int

    def distractor_file(self, number: int) -> Path:
        """Path of one distractor file."""
        return self.folder / distractor_path(number)


def generate_corpus(
    folder: Path,
    squad: Squad,
    pools: dict[str, list[str]],
    *,
    distractors: int,
    sentences_per_distractor: int,
    seed: int,
    progress: bool = True,
) -> Corpus:
    """Write (or reuse) a corpus of every needle and `distractors` generated documents."""
    from tqdm import tqdm

    settings = {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "distractors": distractors,
        "sentences": sentences_per_distractor,
        "needles": len(squad.paragraphs),
        "pool_sentences": sum(len(p) for p in pools.values()),
        "pools": zlib.crc32(json.dumps(pools, sort_keys=True).encode()),
    }
    corpus = Corpus(folder, [p.source for p in squad.paragraphs], distractors,
                    sentences_per_distractor)  # fmt: skip
    marker = folder / ".generated.json"
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        logger.info("corpus %s: reused (%d needles, %d distractors)", folder, len(corpus.needles),
                    distractors)  # fmt: skip
        return corpus
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    for p in squad.paragraphs:
        path = folder / p.source
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(needle_text(squad.titles[p.source], p.text), encoding="utf-8")
    for i in tqdm(range(distractors), desc="distractors", unit="file", disable=not progress):
        path = corpus.distractor_file(i)
        if i % 1000 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(distractor(seed + 1, i, pools, sentences_per_distractor), encoding="utf-8")
    marker.write_text(json.dumps(settings))
    logger.info(
        "corpus %s: %d needles and %d distractors written in %.1fs",
        folder, len(corpus.needles), distractors, time.perf_counter() - started,
    )  # fmt: skip
    return corpus


# --- recorded vectors ------------------------------------------------------------------------


class VectorCache:
    """Real embeddings keyed by their exact (normalised) text, with a prefix index for matching."""

    PREFIX = 24

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.keys: list[str] = []
        self.row: dict[str, int] = {}
        self._parts: list[np.ndarray] = []
        self._matrix = np.zeros((0, dimension), dtype=np.float32)
        self._long: dict[str, list[str]] = {}  # first PREFIX chars -> keys, longest first
        self._short: set[str] = set()
        self.dirty = False

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def matrix(self) -> np.ndarray:
        """All vectors, row i for keys[i]."""
        if self._parts:
            self._matrix = np.concatenate([self._matrix, *self._parts])
            self._parts = []
        return self._matrix

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Record real vectors of texts (known keys keep their first vector)."""
        fresh = [(k, v) for k, v in zip(keys, vectors, strict=True) if k not in self.row]
        seen: set[str] = set()
        rows = []
        for key, vector in fresh:
            if key in seen:
                continue
            seen.add(key)
            self.row[key] = len(self.keys)
            self.keys.append(key)
            rows.append(vector)
            if len(key) >= self.PREFIX:
                bucket = self._long.setdefault(key[: self.PREFIX], [])
                bucket.append(key)
                bucket.sort(key=len, reverse=True)
            else:
                self._short.add(key)
        if rows:
            self._parts.append(np.asarray(rows, dtype=np.float32).reshape(-1, self.dimension))
            self.dirty = True

    def match(self, text: str, pos: int) -> tuple[str, int] | None:
        """The longest recorded text at text[pos:] that ends at a space or the end, and its end."""
        n = len(text)
        for key in self._long.get(text[pos : pos + self.PREFIX], ()):
            end = pos + len(key)
            if (end == n or (end < n and text[end] == " ")) and text.startswith(key, pos):
                return key, end
        best = None
        end = pos
        while True:  # short keys: every word boundary within PREFIX characters
            end = text.find(" ", end + 1)
            end = n if end < 0 or end - pos >= self.PREFIX else end
            if text[pos:end] in self._short:
                best = (text[pos:end], end)
            if end >= n or end - pos >= self.PREFIX:
                return best

    def save(self, stem: Path) -> None:
        """Write stem.npy and stem.keys.json (atomically)."""
        stem.parent.mkdir(parents=True, exist_ok=True)
        matrix = self.matrix
        tmp_v, tmp_k = stem.with_suffix(".tmp.npy"), stem.with_suffix(".tmp.json")
        np.save(tmp_v, matrix)
        tmp_k.write_text(json.dumps(self.keys, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp_v, stem.with_suffix(".npy"))
        os.replace(tmp_k, stem.with_suffix(".keys.json"))
        self.dirty = False

    @classmethod
    def load(cls, stem: Path, dimension: int) -> VectorCache:
        """The cache saved at stem, or an empty one."""
        cache = cls(dimension)
        vectors, keys = stem.with_suffix(".npy"), stem.with_suffix(".keys.json")
        if vectors.is_file() and keys.is_file():
            matrix = np.load(vectors)
            names = json.loads(keys.read_text(encoding="utf-8"))
            if matrix.shape == (len(names), dimension):
                cache.add(names, matrix)
                cache.dirty = False
            else:
                logger.warning("vector cache %s does not match its keys: starting over", stem)
        return cache


class RecordedEmbedder:
    """The Embedder protocol over recorded real vectors: the model runs only for misses.

    A text recorded exactly (a needle chunk) gets its real vector. Any other text is split into
    recorded texts (its sentences) and gets their length-weighted mean plus seeded Gaussian
    noise (sigma `noise` per dimension), normalised; a part recorded nowhere (a piece of a long
    sentence, a title line that was not page chrome) is embedded with the real model once and
    recorded. record=True embeds and records every text not recorded exactly (for needles).
    Name, backend, dimension and token counts are the real embedder's.
    """

    def __init__(
        self, base, cache: VectorCache, *, noise: float = NOISE, seed: int = 0, record: bool = False
    ) -> None:
        self.base = base
        self.cache = cache
        self.record = record
        self.name = base.name
        self.backend = base.backend
        self.max_seq_length = base.max_seq_length
        self.dimension = base.dimension
        self.counts_add_up = base.counts_add_up
        self.tokenizer = getattr(base, "tokenizer", None)
        self.noise = noise
        self._noise = np.random.default_rng(seed).normal(0, 1, (16384, base.dimension))
        self._noise = self._noise.astype(np.float32)
        self.stats: Counter[str] = Counter()

    def __getattr__(self, name: str):
        # Anything else of the protocol (private helpers included) is the real embedder's.
        base = self.__dict__.get("base")
        if base is None:
            raise AttributeError(name)
        return getattr(base, name)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces per text, from the real tokenizer."""
        return self.base.count_tokens(texts)

    def decompose(self, text: str) -> list[str]:
        """text as a sequence of recorded texts and unrecorded pieces, in order."""
        parts, pos, n, unknown = [], 0, len(text), None
        while pos < n:
            found = self.cache.match(text, pos)
            if found is None:
                unknown = pos if unknown is None else unknown
                space = text.find(" ", pos)
                pos = n if space < 0 else space + 1
                continue
            if unknown is not None:
                parts.append(text[unknown:pos].strip())
                unknown = None
            parts.append(found[0])
            pos = found[1] + 1
        if unknown is not None:
            parts.append(text[unknown:].strip())
        return [p for p in parts if p]

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, from recorded real vectors."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        row = self.cache.row
        if self.record:
            missing = list(dict.fromkeys(t for t in texts if t not in row))
            if missing:
                self.cache.add(missing, self.base.encode(missing, batch_size=batch_size))
            self.stats["live"] += len(missing)
            self.stats["exact"] += len(texts) - len(missing)
            matrix = self.cache.matrix
            return np.ascontiguousarray(matrix[[row[t] for t in texts]])
        plans = [None if t in row else self.decompose(t) for t in texts]
        unknown = list(dict.fromkeys(p for plan in plans if plan for p in plan if p not in row))
        if unknown:
            self.cache.add(unknown, self.base.encode(unknown, batch_size=batch_size))
            self.stats["live_parts"] += len(unknown)
        matrix = self.cache.matrix
        for i, (text, plan) in enumerate(zip(texts, plans, strict=True)):
            if plan is None:
                out[i] = matrix[row[text]]
                self.stats["exact"] += 1
                continue
            weights = np.array([len(p) for p in plan], dtype=np.float32)
            mean = weights @ matrix[[row[p] for p in plan]] / weights.sum()
            mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
            vector = mean + self.noise * self._noise[zlib.crc32(text.encode()) % len(self._noise)]
            out[i] = vector / np.linalg.norm(vector)
            self.stats["composed"] += 1
            self.stats["composed_with_live_part"] += any(p in unknown for p in plan)
        return out


def embed_missing(base, cache: VectorCache, texts: Iterable[str], *, progress: bool) -> int:
    """Embed with the real model the texts the cache lacks; how many there were."""
    from tqdm import tqdm

    missing = [t for t in dict.fromkeys(texts) if t not in cache.row]
    step = 256
    for i in tqdm(range(0, len(missing), step), desc="recording", unit="batch",
                  disable=not progress or not missing):  # fmt: skip
        batch = missing[i : i + step]
        cache.add(batch, base.encode(batch))
    return len(missing)


def fidelity(recorded: RecordedEmbedder, base, texts: Sequence[str], questions: np.ndarray) -> dict:
    """Composed against really embedded vectors of the same chunk texts.

    Besides their cosine: each question's best similarity among the sample, averaged, with
    real and with composed vectors (composed vectors that sit closer to questions than real
    ones would make distractors harder than they are).
    """
    if not texts:
        return {}
    composed = RecordedEmbedder(recorded.base, recorded.cache, noise=recorded.noise)
    exact = sum(t in recorded.cache.row for t in texts)
    mine, real = composed.encode(texts), base.encode(list(texts))
    cos = np.sum(mine * real, axis=1)
    return {
        "chunks": len(texts),
        "recorded_exactly": exact,
        "cosine_mean": float(cos.mean()),
        "cosine_p5": float(np.percentile(cos, 5)),
        "cosine_min": float(cos.min()),
        "questions": len(questions),
        "question_best_sim_real": float((questions @ real.T).max(axis=1).mean()),
        "question_best_sim_recorded": float((questions @ mine.T).max(axis=1).mean()),
    }


# --- engines and configs ---------------------------------------------------------------------


def engine_settings(engine: str, index_dir: Path, milvus_uri: str = "") -> dict | None:
    """IndexConfig fields choosing the engine, or None when this version has no such engine."""
    names = {f.name for f in dataclasses.fields(IndexConfig)}
    if "store" not in names:
        return {} if engine == "faiss" else None
    settings: dict = {"store": engine}
    if engine == "milvus" and "milvus_uri" in names:
        settings["milvus_uri"] = milvus_uri or str((index_dir / "milvus.db").resolve())
    return settings


def index_config(corpus: Path, index_dir: Path, settings: dict) -> IndexConfig:
    """The IndexConfig of one measured index."""
    return IndexConfig(
        corpus_dir=corpus, index_dir=index_dir, trash_dir=index_dir.parent / "trash", **settings
    )


def config_kwargs(config: IndexConfig) -> dict:
    """JSON-safe IndexConfig fields that differ from the defaults (for child processes)."""
    default = IndexConfig()
    out = {}
    for f in dataclasses.fields(IndexConfig):
        value = getattr(config, f.name)
        if value != getattr(default, f.name):
            out[f.name] = str(value) if isinstance(value, Path) else value
    return out


def live_generation(index_dir: Path) -> str:
    """Name of the generation CURRENT points at ('' when there is none)."""
    pointer = index_dir / "CURRENT"
    return pointer.read_text().strip() if pointer.is_file() else ""


def cli_store_flag() -> bool:
    """True when `python -m rag ask` takes --store (the engine choice on the command line)."""
    out = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    return "--store" in out.stdout


# --- measurements ----------------------------------------------------------------------------


def cold_start(config: IndexConfig, engine: str, question: str, *, store_flag: bool) -> dict:
    """Wall seconds of a fresh `python -m rag ask QUESTION` until it exits with its answer."""
    command = [
        sys.executable, "-m", "rag", "ask", question, "--json", "-q",
        "--corpus", str(config.corpus_dir), "--index", str(config.index_dir),
        "--embedding-backend", config.embedding_backend,
    ]  # fmt: skip
    if engine != "faiss" or store_flag:
        if not store_flag:
            return {"seconds": None, "note": "rag ask has no --store flag"}
        command += ["--store", engine]
        if getattr(config, "milvus_uri", ""):
            command += ["--milvus-uri", config.milvus_uri]
    env = {k: v for k, v in os.environ.items() if k not in ("RAG_MODEL", "RAG_INDEX", "RAG_CORPUS")}
    before = live_generation(Path(config.index_dir))
    started = time.perf_counter()
    out = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S
    )
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"rag ask failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    if live_generation(Path(config.index_dir)) != before:
        raise RuntimeError("rag ask rebuilt the index instead of loading it: " + out.stderr[-500:])
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, "mode": answer.get("mode"), "abstained": answer.get("abstained")}


def question_process(spec_path: str) -> None:
    """Child process: open the pipeline like a chat server, answer, time and score questions.

    The spec (JSON) names the index settings, the questions and where to write the figures.
    A fresh process measures what a chat process holds, free of the benchmark's own objects.
    """
    from eval.queries import Query
    from rag import Config, Pipeline
    from rag.logs import configure_logging

    configure_logging(logging.WARNING)
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    questions = [
        Query(id=q["id"], question=q["question"], answers=tuple(q["answers"]),
              sources=tuple(q["sources"]))
        for q in spec["questions"]
    ]  # fmt: skip
    started = time.perf_counter()
    pipeline = Pipeline(Config(index=IndexConfig(**spec["index"])))
    out: dict = {"chat_open_s": time.perf_counter() - started}
    for q in questions[: spec["memory_questions"]]:
        pipeline.ask(q.question)
    out["rss_mb"] = status_kb("VmRSS") / 1024  # after opening and answering, as a chat would
    # An engine's own server (Milvus Lite runs one per .db file) is a child process.
    out["engine_process_rss_mb"] = children_rss_kb(os.getpid()) / 1024
    out.update(time_questions(pipeline, [q.question for q in questions[: spec["latency"]]]))
    # Kept if the scoring below runs out of time: the figures so far are measured.
    Path(spec["out"]).write_text(json.dumps(out), encoding="utf-8")
    out.update(score_questions(pipeline, questions))
    import ui.app  # noqa: F401  (the chat's own libraries)

    out["rss_with_ui_mb"] = status_kb("VmRSS") / 1024
    out["peak_rss_mb"] = status_kb("VmHWM") / 1024
    Path(spec["out"]).write_text(json.dumps(out), encoding="utf-8")


def ask_in_child(
    config: IndexConfig, questions: Sequence[Query], *, latency: int, memory: int, work: Path
) -> dict:
    """Run question_process in a fresh interpreter and return its figures."""
    work.mkdir(parents=True, exist_ok=True)
    spec = {
        "index": config_kwargs(config),
        "questions": [
            {"id": q.id, "question": q.question, "answers": list(q.answers),
             "sources": list(q.sources)}
            for q in questions
        ],
        "latency": latency,
        "memory_questions": memory,
        "out": str((work / "questions.out.json").resolve()),
    }  # fmt: skip
    path = work / "questions.spec.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    Path(spec["out"]).unlink(missing_ok=True)
    code = (
        "import sys; from bench.scale_real import question_process; question_process(sys.argv[1])"
    )
    timeout = CHILD_TIMEOUT_S * 3 + CHILD_SECONDS_PER_QUESTION * (len(questions) + latency)
    try:
        subprocess.run(
            [sys.executable, "-c", code, str(path.resolve())], cwd=ROOT, check=True,
            timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        if not Path(spec["out"]).is_file():
            raise
        logger.warning("questions timed out after %.0f s: hit@5 not measured", timeout)
        partial = json.loads(Path(spec["out"]).read_text(encoding="utf-8"))
        return {**partial, "questions_note": f"scoring timed out after {timeout:.0f} s"}
    return json.loads(Path(spec["out"]).read_text(encoding="utf-8"))


def one_document_update(config: IndexConfig, path: Path, base) -> dict:
    """Rewrite one document, update (real embedder), then restore it and update again.

    A no-op update runs first: files written within two seconds of the build's scan are read
    again by the next scan (the loader's racy-stat rule), which a freshly generated corpus
    would charge to the measured update.
    """
    noop = update_index(config, embedder=base, progress=False)
    original = path.read_text(encoding="utf-8")
    changed = original.rstrip("\n") + "\n\nAn extra paragraph written by the scale benchmark.\n"
    try:
        path.write_text(changed, encoding="utf-8")
        report = update_index(config, embedder=base, progress=False)
    finally:
        path.write_text(original, encoding="utf-8")
    restore = update_index(config, embedder=base, progress=False)
    if report.changed != [path.relative_to(config.corpus_dir).as_posix()]:
        raise RuntimeError(f"the update saw {report.changed} changed, expected {path}")
    return {
        "noop_update_s": noop.total_seconds,
        "update_s": report.total_seconds,
        "update_embed_s": report.embed_seconds,
        "update_minus_embed_s": report.total_seconds - report.embed_seconds,
        "update_chunks_embedded": report.chunks_embedded,
        "update_stages": dict(report.stage_seconds),
        "restore_s": restore.total_seconds,
        "restore_stages": dict(restore.stage_seconds),
    }


def score_questions(pipeline, questions: Sequence[Query]) -> dict:
    """hit@k of the pipeline's retrieval (as eval counts it) and its latency per question."""
    from tqdm import tqdm

    config = pipeline.config
    for q in questions[:20]:  # warm-up
        pipeline.retriever.retrieve(
            q.question, top_k=config.report_depth, method=config.retrieval,
            stuffing_limit=config.stuffing_limit,
        )  # fmt: skip
    passage_ranks, source_ranks, wall = [], [], []
    stages: dict[str, list[float]] = {}
    for q in tqdm(questions, desc="hit@5", unit="q", leave=False):
        started = time.perf_counter()
        result = pipeline.retriever.retrieve(
            q.question, top_k=config.report_depth, method=config.retrieval,
            stuffing_limit=config.stuffing_limit,
        )  # fmt: skip
        wall.append((time.perf_counter() - started) * 1000)
        for key, value in result.timings_ms.items():
            stages.setdefault(key, []).append(value)
        sources = [hit.chunk.source for hit in result.hits]
        passage_ranks.append(first_rank(sources, q.sources))
        source_ranks.append(first_rank(distinct_in_order(sources), q.sources))
    n = max(1, len(questions))

    def hit(ranks: list, k: int) -> float:
        return sum(r is not None and r <= k for r in ranks) / n

    out = {f"hit@{k}": hit(passage_ranks, k) for k in (1, 5, 20)}
    out["hit@5_sources"] = hit(source_ranks, 5)
    out["questions_scored"] = len(questions)
    out["retrieve_p50_ms"] = percentile_ms(wall, 50)
    out["retrieve_p95_ms"] = percentile_ms(wall, 95)
    for key, values in stages.items():
        out[f"retrieve_{key}_p50_ms"] = percentile_ms(values, 50)
        out[f"retrieve_{key}_p95_ms"] = percentile_ms(values, 95)
    return out


def time_questions(pipeline, questions: Sequence[str]) -> dict:
    """Whole-question wall time through Pipeline.ask (retrieval, reader, extractive answer)."""
    from tqdm import tqdm

    for q in questions[:10]:  # warm-up
        pipeline.ask(q)
    wall, modes = [], Counter()
    for q in tqdm(questions, desc="questions", unit="q", leave=False):
        started = time.perf_counter()
        answer = pipeline.ask(q)
        wall.append((time.perf_counter() - started) * 1000)
        modes[answer.mode] += 1
    return {
        "question_p50_ms": percentile_ms(wall, 50),
        "question_p95_ms": percentile_ms(wall, 95),
        "questions_timed": len(questions),
        "answer_modes": dict(modes),
    }


def live_manifest(index_dir: Path) -> dict:
    """The live generation's manifest ({} when unreadable)."""
    try:
        path = index_dir / live_generation(index_dir) / "manifest.json"
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def dense_kind(manifest: dict) -> str:
    """The dense index kind a manifest records ('flat', 'hnsw', Milvus's 'FLAT', ...)."""
    store = manifest.get("store") or {}
    return str(store.get("dense_index") or (manifest.get("dense") or {}).get("type", "?"))


def release_engine_connections() -> int:
    """Close Milvus connections that update_index left open in this process; how many.

    Workaround: update_index never closes the previous generation's store, so each update of a
    Milvus index leaves one user on the shared connection, and a Lite file stays locked by
    this process (any other process, `rag ask` included, is then refused). Private API of
    index.milvus_store, used by the benchmark only.
    """
    module = sys.modules.get("index.milvus_store")
    connections = getattr(module, "_CONNECTIONS", None)
    release = getattr(module, "_release", None)
    if not connections or release is None:
        return 0
    closed = 0
    for key in list(connections):
        while key in connections:
            release(key)
            closed += 1
    return closed


def measure(
    engine: str,
    corpus: Corpus,
    *,
    target: int,
    recorded: RecordedEmbedder,
    base,
    questions: Sequence[Query],
    latency_questions: int,
    memory_questions: int,
    store_flag: bool,
    data_dir: Path,
    milvus_uri: str = "",
    progress: bool = True,
    reuse: bool = False,
    served: bool = False,
) -> dict:
    """Every figure for one engine at one size (the index is built from scratch, unless
    reuse and it exists: then its build figures are those of the run that built it)."""
    # Other jobs on the machine slow everything down: the load average says when they ran.
    row: dict = {"engine": engine, "chunks_target": target, "load_avg_start": os.getloadavg()[0]}
    # A served run's collection lives in its own .db: it never reuses a file run's index.
    index_dir = data_dir / f"index-{engine}{'-served' if served else ''}-{target}"
    settings = engine_settings(engine, index_dir, milvus_uri)
    if settings is None:
        logger.info("milvus: engine not available (IndexConfig has no store field)")
        return {**row, "error": "engine not available"}
    config = index_config(corpus.folder, index_dir, settings)
    if reuse and (index_dir / "CURRENT").is_file():
        logger.info("[%s %d] reusing the index in %s (build figures: earlier run)", engine,
                    target, index_dir)  # fmt: skip
        row["build_reused"] = True
    else:
        row.update(full_build(engine, target, config, corpus, recorded, progress=progress))
    if recorded.cache.dirty:
        recorded.cache.save(data_dir / f"vectors-{base.backend}")
    row.update(measure_built(engine, target, config, corpus, base, questions=questions,
                             latency_questions=latency_questions,
                             memory_questions=memory_questions, store_flag=store_flag))  # fmt: skip
    return row


def full_build(
    engine: str, target: int, config: IndexConfig, corpus: Corpus, recorded, *, progress: bool
) -> dict:
    """Build figures: the index built from nothing through update_index."""
    index_dir = config.index_dir
    shutil.rmtree(index_dir, ignore_errors=True)
    recorded.stats.clear()
    logger.info("[%s %d] full build of %s ...", engine, target, corpus.folder)
    report = update_index(config, embedder=recorded, progress=progress)
    row: dict = {}
    row.update(
        chunks=report.chunks_total,
        files=len(report.added),
        build_s=report.total_seconds,
        build_embed_s=report.embed_seconds,
        build_minus_embed_s=report.total_seconds - report.embed_seconds,
        build_stages=dict(report.stage_seconds),
        vectors=dict(recorded.stats),
        dense=dense_kind(live_manifest(index_dir)),
        segments=len((live_manifest(index_dir).get("store") or {}).get("segments", [])) or None,
        skipped=len(report.skipped),
    )
    logger.info("[%s %d] built: %s; vectors %s", engine, target, report.summary(),
                dict(recorded.stats))  # fmt: skip
    return row


def measure_built(
    engine: str,
    target: int,
    config: IndexConfig,
    corpus: Corpus,
    base,
    *,
    questions: Sequence[Query],
    latency_questions: int,
    memory_questions: int,
    store_flag: bool,
) -> dict:
    """Update, cold start, memory, latency and hit@5 figures of a built index."""
    index_dir = config.index_dir
    row: dict = {}
    logger.info("[%s %d] one-document update ...", engine, target)
    changed = (
        corpus.distractor_file(corpus.distractors // 2)
        if corpus.distractors
        else corpus.folder / corpus.needles[0]
    )
    row.update(one_document_update(config, changed, base))
    segments = (live_manifest(index_dir).get("store") or {}).get("segments")
    row["segments_after_updates"] = len(segments) if segments else None
    leaked = release_engine_connections()
    if leaked:
        logger.warning("[%s %d] closed %d store connection(s) update_index left open",
                       engine, target, leaked)  # fmt: skip
        row["leaked_connections_closed"] = leaked
    logger.info("[%s %d] update %.2fs (embedding %.2fs of %d chunks)", engine, target,
                row["update_s"], row["update_embed_s"], row["update_chunks_embedded"])  # fmt: skip
    logger.info("[%s %d] cold start of rag ask (twice) ...", engine, target)
    first = cold_start(config, engine, questions[0].question, store_flag=store_flag)
    second = cold_start(config, engine, questions[0].question, store_flag=store_flag)
    row.update(cold_start_first_s=first["seconds"], cold_start_s=second["seconds"],
               cold_start_mode=second.get("mode") or second.get("note"))  # fmt: skip
    logger.info("[%s %d] questions in a fresh chat process ...", engine, target)
    row.update(
        ask_in_child(config, questions, latency=latency_questions, memory=memory_questions,
                     work=index_dir.parent / "work")
    )  # fmt: skip
    row["bench_process_peak_rss_mb"] = status_kb("VmHWM") / 1024
    row["load_avg_end"] = os.getloadavg()[0]
    logger.info("[%s %d] %s", engine, target, {k: _short(row.get(k)) for k in FIGURE_KEYS})
    return row


def _short(value):
    return round(value, 3) if isinstance(value, float) else value


# --- output ----------------------------------------------------------------------------------

TABLE = (
    ("engine", "engine", "{}"),
    ("chunks", "chunks", "{:,}"),
    ("files", "files", "{:,}"),
    ("dense", "dense", "{}"),
    ("build s", "build_s", "{:.1f}"),
    ("build - embed s", "build_minus_embed_s", "{:.1f}"),
    ("no-op update s", "noop_update_s", "{:.2f}"),
    ("update s", "update_s", "{:.2f}"),
    ("update - embed s", "update_minus_embed_s", "{:.2f}"),
    ("cold start s", "cold_start_s", "{:.1f}"),
    ("RSS MB + engine server", ("rss_mb", "engine_process_rss_mb"), "{:,.0f} + {:,.0f}"),
    ("retrieve p50 / p95 ms", ("retrieve_p50_ms", "retrieve_p95_ms"), "{:.1f} / {:.1f}"),
    ("question p50 / p95 ms", ("question_p50_ms", "question_p95_ms"), "{:.1f} / {:.1f}"),
    ("hit@5", "hit@5", "{:.3f}"),
)


def cells(row: dict) -> list[str]:
    """The table cells of one row ('-' for a figure not measured)."""
    if "error" in row:
        rest = ["-"] * (len(TABLE) - 3)
        return [row["engine"], f"({row['chunks_target']:,})", row["error"], *rest]
    out = []
    for _, key, fmt in TABLE:
        values = [row.get(k) for k in (key if isinstance(key, tuple) else (key,))]
        out.append("-" if any(v is None for v in values) else fmt.format(*values))
    return out


def markdown(rows: Sequence[dict]) -> str:
    """A markdown table of the rows, for BENCHMARKS.md."""
    head = [name for name, _, _ in TABLE]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def text_table(rows: Sequence[dict]) -> str:
    """A plain-text table of the rows."""
    grid = [[name for name, _, _ in TABLE]] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(grid[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True))
                     for line in grid) + "\n"  # fmt: skip


def plot(rows: Sequence[dict], path: Path) -> None:
    """Log-log plots of build time, update time, chat RSS and p50 latencies against chunks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = (
        (("build_s", "full build"), ("build_minus_embed_s", "build - embedding")),
        (("update_s", "one-document update"), ("update_minus_embed_s", "update - embedding")),
        (("rss_mb", "chat RSS"), ("peak_rss_mb", "chat peak RSS")),
        (("retrieve_p50_ms", "retrieval p50"), ("question_p50_ms", "question p50")),
    )
    labels = ("seconds", "seconds", "MB", "ms")
    titles = ("Full build", "One-document update", "Chat process memory", "Latency (p50)")
    for ax, panel, ylabel, title in zip(axes.flat, panels, labels, titles, strict=True):
        for engine in sorted({r["engine"] for r in rows if "error" not in r}):
            mine = sorted((r for r in rows if r["engine"] == engine and "error" not in r),
                          key=lambda r: r["chunks"])  # fmt: skip
            for key, name in panel:
                points = [(r["chunks"], r[key]) for r in mine if r.get(key)]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.loglog(xs, ys, marker="o", label=f"{engine}: {name}")
        ax.set(xlabel="chunks", ylabel=ylabel, title=title)
        if ax.has_data():
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lite_server(data_dir: Path, target: int):
    """A Milvus Lite file of this size served on a free local port (index.milvus_serve)."""
    from index.milvus_serve import LiteServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = data_dir / "lite-served"
    folder.mkdir(parents=True, exist_ok=True)
    return LiteServer(folder / f"served-{target}.db", port=port)


def merge_rows(old: Sequence[dict], new: Sequence[dict]) -> list[dict]:
    """Rows of an earlier run with those measured again replaced (key: engine, size)."""
    fresh = {(r["engine"], r["chunks_target"]) for r in new}
    earlier = {(r.get("engine"), r.get("chunks_target")): r for r in old}
    kept = [r for r in old if (r.get("engine"), r.get("chunks_target")) not in fresh]
    # A row measured on a reused index keeps the build figures of the run that built it.
    new = [
        {**{k: v for k, v in earlier.get((r["engine"], r["chunks_target"]), {}).items()
            if k.startswith(("build_", "chunks", "files", "vectors", "dense"))}, **r}
        if r.get("build_reused") else r
        for r in new
    ]  # fmt: skip
    return sorted([*kept, *new], key=lambda r: (r["engine"], r["chunks_target"]))


# --- preparation and main --------------------------------------------------------------------


@dataclass
class Prepared:
    """Everything shared by the sizes: questions, pools, vectors, calibration."""

    squad: Squad
    questions: list[Query]
    pools: dict[str, list[str]]
    base: object
    recorded: RecordedEmbedder
    needle_chunks: int
    sentences_per_distractor: int
    chunks_per_distractor: float
    info: dict


def prepare(
    squad: Squad,
    *,
    data_dir: Path,
    n_questions: int,
    seed: int,
    chunks_per_file: float,
    noise: float,
    progress: bool = True,
    base=None,
) -> Prepared:
    """Pick questions, record real vectors of sentences and needle chunks, size distractors."""
    questions = select_questions(squad.queries, n_questions, seed)
    gold = {s for q in questions for s in q.sources}
    pools = sentence_pools(squad, gold)
    logger.info(
        "%d questions about %d gold paragraphs; %d sentences of %d other paragraphs feed the "
        "distractors", len(questions), len(gold), sum(len(p) for p in pools.values()),
        len(squad.paragraphs) - len(gold),
    )  # fmt: skip
    base_config = IndexConfig()
    base = base or embedder_for(base_config)
    stem = data_dir / f"vectors-{base.backend}"
    cache = VectorCache.load(stem, base.dimension)
    started = time.perf_counter()
    units = [normalize_text(s) for pool in pools.values() for s in pool]
    n_units = embed_missing(base, cache, units, progress=progress)
    unit_s = time.perf_counter() - started
    logger.info("sentences: %d recorded before, %d embedded now in %.1fs", len(set(units)) -
                n_units, n_units, unit_s)  # fmt: skip
    # Needle chunks: the production build of the needles alone, every text embedded for real.
    needles = generate_corpus(data_dir / "needles-corpus", squad, {}, distractors=0,
                              sentences_per_distractor=0, seed=seed, progress=False)  # fmt: skip
    needle_config = IndexConfig(corpus_dir=needles.folder, index_dir=data_dir / "needles-index")
    recorder = RecordedEmbedder(base, cache, noise=noise, seed=seed, record=True)
    shutil.rmtree(needle_config.index_dir, ignore_errors=True)
    report = update_index(needle_config, embedder=recorder, progress=progress)
    logger.info("needles: %s; recorded %s", report.summary(), dict(recorder.stats))
    info: dict = {
        "sentences_recorded": len(set(units)),
        "sentences_embedded_now": n_units,
        "sentences_embed_s": unit_s,
        "needle_files": len(report.added),
        "needle_chunks": report.chunks_total,
        "needle_chunks_embedded_now": recorder.stats["live"],
        "needle_build_s": report.total_seconds,
    }
    if recorder.stats["live"]:
        info["real_chunks_per_s"] = recorder.stats["live"] / max(report.embed_seconds, 1e-9)
    cache.save(stem)
    recorded = RecordedEmbedder(base, cache, noise=noise, seed=seed)
    n_sentences, mean, samples = calibrate(
        pools, base, base_config, chunks_per_file=chunks_per_file, seed=seed
    )
    sample = random.Random(seed).sample(samples, min(200, len(samples)))
    asked = base.encode([q.question for q in questions[:500]])
    info["fidelity"] = fidelity(recorded, base, sample, asked)
    logger.info("composed vs real vectors of %d distractor chunks: %s", len(sample),
                {k: _short(v) for k, v in info["fidelity"].items()})  # fmt: skip
    if cache.dirty:
        cache.save(stem)
    return Prepared(
        squad=squad, questions=questions, pools=pools, base=base, recorded=recorded,
        needle_chunks=report.chunks_total, sentences_per_distractor=n_sentences,
        chunks_per_distractor=mean, info=info,
    )  # fmt: skip


def baseline(prepared: Prepared, data_dir: Path) -> dict:
    """hit@k and retrieval latency on the needles alone (real vectors), for comparison."""
    from rag import Config, Pipeline

    config = IndexConfig(
        corpus_dir=data_dir / "needles-corpus", index_dir=data_dir / "needles-index"
    )
    pipeline = Pipeline(Config(index=config), embedder=prepared.base)
    return {"chunks": prepared.needle_chunks, **score_questions(pipeline, prepared.questions)}


def distractors_for(target: int, prepared: Prepared) -> int:
    """Distractor files that bring the corpus to about target chunks."""
    return max(0, round((target - prepared.needle_chunks) / prepared.chunks_per_distractor))


def run(args: argparse.Namespace) -> dict:
    """Prepare once, then measure every (engine, size); returns the results document."""
    started = time.perf_counter()
    data_dir = Path(args.data)
    squad = read_squad(load_squad(Path(args.squad)))
    prepared = prepare(
        squad, data_dir=data_dir, n_questions=args.questions, seed=args.seed,
        chunks_per_file=args.chunks_per_file, noise=args.noise, progress=not args.quiet,
    )  # fmt: skip
    results: dict = {
        "machine": {"cpus": os.cpu_count()},
        "settings": {
            "squad": str(args.squad),
            "questions": len(prepared.questions),
            "latency_questions": args.latency_questions,
            "memory_questions": args.memory_questions,
            "seed": args.seed,
            "noise_sigma": args.noise,
            "backend": prepared.base.backend,
            "sentences_per_distractor": prepared.sentences_per_distractor,
            "pool_sentences": sum(len(p) for p in prepared.pools.values()),
            "chunks_per_distractor": prepared.chunks_per_distractor,
        },
        "vectors": {
            "needle chunks": "real embeddings (recorded once, by the production build of the "
            "needles alone)",
            "distractor chunks": "RECORDED: length-weighted mean of real sentence embeddings "
            f"+ noise (sigma {args.noise}/dim), normalised; not the model's vector of the chunk",
            "questions, one-document updates": "real model at question / update time",
            **prepared.info,
        },
    }
    logger.info("needles alone: hit@k ...")
    results["needles_only"] = baseline(prepared, data_dir)
    store_flag = cli_store_flag()
    rows = []
    for target in args.sizes:
        n_docs = distractors_for(target, prepared)
        corpus = generate_corpus(
            data_dir / f"corpus-{target}", prepared.squad, prepared.pools, distractors=n_docs,
            sentences_per_distractor=prepared.sentences_per_distractor, seed=args.seed,
            progress=not args.quiet,
        )  # fmt: skip
        pooled = sum(len(p) for p in prepared.pools.values())
        copies = n_docs * prepared.sentences_per_distractor / max(1, pooled)
        logger.info("%d distractors: each pool sentence appears in about %.0f of them", n_docs,
                    copies)  # fmt: skip
        for engine in args.stores:
            size_started = time.perf_counter()
            served = engine == "milvus" and args.milvus_lite_server
            try:
                with lite_server(data_dir, target) if served else contextlib.nullcontext() as lite:
                    row = measure(
                        engine, corpus, target=target, recorded=prepared.recorded,
                        base=prepared.base, questions=prepared.questions,
                        latency_questions=args.latency_questions,
                        memory_questions=args.memory_questions, store_flag=store_flag,
                        data_dir=data_dir, milvus_uri=lite.uri if lite else args.milvus_uri,
                        progress=not args.quiet, reuse=args.reuse_index, served=served,
                    )  # fmt: skip
                    if lite is not None:
                        # The served core is no child of the chat: its memory is read here.
                        row["engine_process_rss_mb"] = (
                            status_kb("VmRSS", f"/proc/{lite.pid}/status") / 1024
                        )
                        row["engine"] = SERVED_LITE
            except Exception as exc:  # one engine failing must not lose the others' figures
                logger.exception("[%s %d] failed", engine, target)
                row = {"engine": engine, "chunks_target": target, "error": f"failed: {exc}"}
            row["measure_wall_s"] = time.perf_counter() - size_started
            row["copies_per_pool_sentence"] = copies
            rows.append(row)
    results["rows"] = rows
    results["wall_s"] = time.perf_counter() - started
    return results


def write_outputs(results: dict, *, quick: bool) -> tuple[Path, str]:
    """JSON (rows merged with earlier runs) and PNG under bench/results; the markdown table."""
    name = "scale_real_quick" if quick else "scale_real"
    path = RESULTS / f"{name}.json"
    old = []
    if path.is_file():
        try:
            old = json.loads(path.read_text()).get("rows", [])
        except (OSError, ValueError):
            old = []
    merged = {**results, "rows": merge_rows(old, results["rows"])}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2, default=str))
    plot(merged["rows"], RESULTS / f"{name}.png")
    results["rows"] = merged["rows"]  # the table below shows earlier runs' rows too
    return path, markdown(merged["rows"])


def vector_note(results: dict) -> str:
    """What in the run was embedded for real and what was recorded, in two sentences."""
    v, f = results["vectors"], results["vectors"].get("fidelity", {})
    sigma = results["settings"]["noise_sigma"]
    return (
        f"\nVectors: the {v.get('needle_chunks')} needle chunks have their real embeddings "
        f"(recorded once); distractor chunks have RECORDED vectors, the mean of real sentence "
        f"vectors plus noise (sigma {sigma}), never the model's vector of the chunk: on "
        f"{f.get('chunks', 0)} sampled chunks cosine to the real vector "
        f"{f.get('cosine_mean', 0):.3f} mean / {f.get('cosine_p5', 0):.3f} p5, a question's "
        f"best similarity {f.get('question_best_sim_recorded', 0):.3f} recorded vs "
        f"{f.get('question_best_sim_real', 0):.3f} real. Questions and the one-document "
        "updates use the real model.\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m bench.scale --real`."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale --real", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="target chunk counts")  # fmt: skip
    parser.add_argument("--stores", nargs="+", choices=ENGINES, default=["faiss"])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="development run: 5,000 and 20,000 chunks, fewer questions",
    )
    parser.add_argument("--squad", type=Path, default=DEFAULT_SQUAD)
    parser.add_argument("--data", default=str(DATA), help="cache of corpora, vectors, indexes")
    parser.add_argument("--questions", type=int, default=2000, help="questions scored for hit@5")
    parser.add_argument("--latency-questions", type=int, default=300)
    parser.add_argument("--memory-questions", type=int, default=20)
    parser.add_argument("--chunks-per-file", type=float, default=10.0)
    parser.add_argument("--noise", type=float, default=NOISE, help="sigma per dimension")
    parser.add_argument("--milvus-uri", default="", help="default: a Milvus Lite file per index")
    parser.add_argument(
        "--milvus-lite-server", action="store_true",
        help="serve each Milvus Lite file on a port (rag milvus-lite) and connect by URI",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reuse-index", action="store_true",
        help="measure an index already built by an earlier run (its build figures are kept)",
    )  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.quick:
        if "--sizes" not in (argv if argv is not None else sys.argv[1:]):
            args.sizes = list(QUICK_SIZES)
        args.questions, args.latency_questions = min(args.questions, 500), 100
    from rag.logs import configure_logging

    configure_logging(logging.INFO, fmt="%(asctime)s %(message)s")
    try:
        results = run(args)
    except (ValueError, OSError, ImportError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    path, table = write_outputs(results, quick=args.quick)
    sys.stdout.write(vector_note(results))
    base = results["needles_only"]
    sys.stdout.write(
        f"Needles alone ({base['chunks']:,} chunks, real vectors): hit@5 {base['hit@5']:.3f}, "
        f"retrieve p50 {base['retrieve_p50_ms']:.1f} ms\n\n"
    )
    this_run = [(r["engine"], r["chunks_target"]) for r in results["rows"]]
    sys.stdout.write(text_table(results["rows"]))
    for row in results["rows"]:
        if "error" in row:
            sys.stdout.write(f"{row['engine']}: {row['error']}\n")
    for row in results["rows"]:
        if "hit@5" in row and (row["engine"], row["chunks_target"]) in this_run:
            sys.stdout.write(
                f"{row['engine']} {row['chunks']:,} chunks: hit@5 {row['hit@5']:.3f} against "
                f"{base['hit@5']:.3f} on the needles alone; each distractor sentence is in about "
                f"{row['copies_per_pool_sentence']:.0f} distractor files (a real corpus would not "
                "repeat it), so the drop is an upper bound.\n"
            )
    sys.stdout.write(f"\nmarkdown for BENCHMARKS.md:\n\n{table}\n")
    sys.stdout.write(f"wrote {path} and its .png; this run: {this_run}, "
                     f"{results['wall_s'] / 60:.1f} min\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
