"""Load test: concurrent clients asking the served chat on loopback, over Gradio or /v1.

    .venv/bin/python -m tests.stress_load [--api gradio|v1] [--clients 16] [--questions 25]

Builds a private index of a copy of corpus/ and serves it in this process on a free 127.0.0.1
port. `--api gradio` (the default) launches the chat app (queue default_concurrency_limit=8, as
`python -m ui` does) and gives each client thread a `gradio_client.Client` asking the `ask` API.
`--api v1` serves what `python -m ui` serves (uvicorn, the chat mounted on the FastAPI app of
ui/openai_api.py, with an API key) and gives each thread an official `openai.OpenAI` client
asking non-streamed chat completions of the model "corpusqa" (earlier questions of a follow-up
go first as user messages, as a chat client sends them; no retries, any exception or non-200
is an error). Warms up with one full round of the same load, then lets every client ask its
share of the questions in eval/queries/corpus.jsonl (answerable and unanswerable, follow-ups
with their history) at once.
Prints a table: errors, answered/cited/abstained, latency p50/p95/max, throughput and the
resident memory (VmRSS) before and after. Exits 1 when a target is missed: zero errors, every
answered question cited, memory growth under 10%.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a loopback test calls nobody

ROOT = Path(__file__).resolve().parent.parent
MAX_GROWTH = 0.10
REQUEST_TIMEOUT_S = 120
MODEL = "corpusqa"  # the default collection's model id on /v1/models


@dataclass
class Tally:
    """What the clients saw."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answered: int = 0
    cited: int = 0
    abstained: int = 0
    answerable_abstained: int = 0
    unanswerable_answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def rss_mb() -> float:
    """Resident set size of this process in MB (VmRSS from /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of values (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_queries(path: Path) -> list[dict]:
    """The evaluation questions, one dict per JSON line."""
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def is_cited(result: dict) -> bool:
    """An answer that did not abstain has citations, and each [n] in its text points to one."""
    numbers = set(range(1, len(result["citations"]) + 1))
    texts = " ".join(c["text"] for c in result["citations"])
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", result["answer"])}
    return (
        bool(numbers) and numbers <= markers and all(f"[{m}]" in texts for m in markers - numbers)
    )


def ask_gradio(client, query: dict) -> dict:
    """The `ask` API's answer: the JSON of `rag ask --json` (answer, abstained, citations)."""
    return client.predict(query["question"], query["history"] or None, api_name="/ask")


def v1_messages(query: dict) -> list[dict]:
    """The question as chat messages: earlier questions of a follow-up first, then it."""
    return [{"role": "user", "content": text} for text in [*query["history"], query["question"]]]


def ask_v1(client, query: dict) -> dict:
    """A non-streamed chat completion as {answer, abstained, citations}; non-200 raises.

    The citations are a field beyond OpenAI's on the message (openai's models keep extras in
    model_extra); a reply abstained when its content is the abstention sentence.
    """
    from rag import ABSTAIN_SENTENCE

    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=v1_messages(query))
    if raw.status_code != 200:
        raise RuntimeError(f"HTTP {raw.status_code}: {raw.text()[:200]}")
    message = raw.parse().choices[0].message
    content = message.content or ""
    citations = (message.model_extra or {}).get("citations") or []
    return {"answer": content, "citations": citations, "abstained": content == ABSTAIN_SENTENCE}


def ask_all(ask, client, share: list[dict], tally: Tally, start: threading.Barrier) -> None:
    """One client thread asking its questions one after another (ask: ask_gradio or ask_v1)."""
    start.wait()
    for query in share:
        started = time.perf_counter()
        try:
            result = ask(client, query)
        except Exception as exc:  # every failure is counted, none stops the run
            with tally.lock:
                tally.errors.append(f"{query['id']}: {type(exc).__name__}: {exc}"[:300])
            continue
        elapsed = (time.perf_counter() - started) * 1000
        with tally.lock:
            tally.latencies_ms.append(elapsed)
            if result["abstained"]:
                tally.abstained += 1
                tally.answerable_abstained += bool(query["answerable"])
            else:
                tally.answered += 1
                tally.cited += is_cited(result)
                tally.unanswerable_answered += not query["answerable"]


def run_clients(ask, clients: list, shares: list[list[dict]]) -> tuple[Tally, float]:
    """One thread per client, all released at once; returns the tally and the wall time (s)."""
    tally = Tally()
    start = threading.Barrier(len(clients) + 1)
    threads = [
        threading.Thread(target=ask_all, args=(ask, client, share, tally, start), daemon=True)
        for client, share in zip(clients, shares, strict=True)
    ]
    for thread in threads:
        thread.start()
    start.wait(timeout=120)
    began = time.perf_counter()
    deadline = began + REQUEST_TIMEOUT_S * max(len(s) for s in shares)
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.perf_counter()))
    if any(thread.is_alive() for thread in threads):
        tally.errors.append("some clients did not finish before the deadline")
    return tally, time.perf_counter() - began


def launch_gradio(pipeline, *, limit: int, port: int) -> tuple[str, object]:
    """The chat app launched on port (queue limit 8); its URL and the app (for close())."""
    from ui.app import build_app, launch_kwargs

    app = build_app(pipeline, upload_limit_bytes=limit)
    app.queue(default_concurrency_limit=8)
    app.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
        **launch_kwargs(upload_limit_bytes=limit),
    )  # fmt: skip
    return f"http://127.0.0.1:{port}/", app


class UvicornThread:
    """What `python -m ui` serves (the chat on the FastAPI app with /v1), in a thread."""

    def __init__(self, pipeline, *, api_key: str, limit: int, port: int) -> None:
        """Start uvicorn on 127.0.0.1:port and wait until it accepts requests."""
        import uvicorn

        from ui.openai_api import serve_app

        app = serve_app(pipeline, api_key=api_key, upload_limit_bytes=limit)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=30)


def v1_clients(server: str, *, api_key: str, count: int) -> list:
    """count openai clients of server/v1 (no retries: every failure counts), model checked."""
    from openai import OpenAI

    clients = [
        OpenAI(base_url=f"{server}/v1", api_key=api_key, timeout=REQUEST_TIMEOUT_S, max_retries=0)
        for _ in range(count)
    ]
    served = [model.id for model in clients[0].models.list()]
    if MODEL not in served:
        raise RuntimeError(f"/v1/models lists {served}, not {MODEL!r}")
    return clients


class RssSampler(threading.Thread):
    """Samples VmRSS every interval seconds; keeps the peak."""

    def __init__(self, interval: float = 0.25) -> None:
        """Start with one sample taken now."""
        super().__init__(daemon=True)
        self.interval, self.stop = interval, threading.Event()
        self.samples = [rss_mb()]

    @property
    def peak(self) -> float:
        """Highest sample so far (MB)."""
        return max(self.samples)

    def run(self) -> None:
        """Sample until stopped."""
        while not self.stop.wait(self.interval):
            self.samples.append(rss_mb())


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m tests.stress_load`."""
    parser = argparse.ArgumentParser(prog="python -m tests.stress_load", description=__doc__)
    parser.add_argument(
        "--api",
        choices=("gradio", "v1"),
        default="gradio",
        help="gradio: gradio_client on the `ask` API; v1: openai clients on /v1/chat/completions",
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--questions", type=int, default=25, help="questions per client")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--warmup", type=int, help="warm-up questions per client (default: as many as --questions)"
    )
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--queries", type=Path, default=ROOT / "eval/queries/corpus.jsonl")
    args = parser.parse_args(argv)

    from index import IndexConfig, embedder_for, update_index
    from rag import Config, Pipeline

    workdir = Path(tempfile.mkdtemp(prefix="stress-"))
    app = None
    try:
        shutil.copytree(args.corpus, workdir / "corpus")
        config = Config(
            index=IndexConfig(corpus_dir=workdir / "corpus", index_dir=workdir / "index")
        )
        embedder = embedder_for(config.index)
        update_index(config.index, progress=False, embedder=embedder)
        pipeline = Pipeline(config, embedder=embedder)
        limit = 20 * 1024 * 1024
        port = free_port()
        if args.api == "v1":
            api_key = secrets.token_urlsafe(16)
            app = UvicornThread(pipeline, api_key=api_key, limit=limit, port=port)
            url = f"http://127.0.0.1:{port}"
        else:
            url, app = launch_gradio(pipeline, limit=limit, port=port)

        queries = load_queries(args.queries)
        rng = random.Random(args.seed)
        shares = []
        for _ in range(args.clients):
            order = queries[:]
            rng.shuffle(order)
            shares.append([order[i % len(order)] for i in range(args.questions)])

        if args.api == "v1":
            ask = ask_v1
            clients = v1_clients(url, api_key=api_key, count=args.clients)
        else:
            from gradio_client import Client

            ask = ask_gradio
            clients = [
                Client(
                    url,
                    verbose=False,
                    analytics_enabled=False,
                    httpx_kwargs={"timeout": REQUEST_TIMEOUT_S},
                )
                for _ in range(args.clients)
            ]
        # Warm-up: one full round of the same load on the same clients, then the baseline. The
        # first rounds fill malloc arenas, thread pools and tokenizer/BLAS caches (RSS went
        # 983 -> 1048 -> 1069 -> 1082 -> 1089 MB over rounds of 400 questions, then +0-1%).
        cold = rss_mb()
        warmup = args.questions if args.warmup is None else args.warmup
        warm, _ = run_clients(ask, clients, [(share * 2)[:warmup] for share in shares])
        gc.collect()
        before = rss_mb()
        sampler = RssSampler()
        sampler.start()
        tally, wall = run_clients(ask, clients, shares)
        sampler.stop.set()
        sampler.join()
        gc.collect()
        after = rss_mb()
        for client in clients:
            client.close()
    finally:
        if app is not None:
            app.close()
        shutil.rmtree(workdir, ignore_errors=True)

    requests = args.clients * args.questions
    growth = (after - before) / before
    p50, p95 = percentile(tally.latencies_ms, 50), percentile(tally.latencies_ms, 95)
    failures = []
    if tally.errors or warm.errors:
        failures.append(f"{len(tally.errors) + len(warm.errors)} errors")
    if tally.cited != tally.answered:
        failures.append(
            f"{tally.answered - tally.cited} answered questions without valid citations"
        )
    if len(tally.latencies_ms) != requests:
        failures.append(f"{requests - len(tally.latencies_ms)} questions without an answer")
    if growth >= MAX_GROWTH:
        failures.append(f"memory grew {growth:.1%} (limit {MAX_GROWTH:.0%})")
    rows = [
        ("clients x questions", f"{args.clients} x {args.questions}", ""),
        ("requests", f"{requests}", ""),
        ("errors", f"{len(tally.errors)}", "0"),
        ("answered", f"{tally.answered}", ""),
        ("answered with valid citations", f"{tally.cited}", f"{tally.answered}"),
        ("abstained", f"{tally.abstained}", ""),
        ("  answerable but abstained", f"{tally.answerable_abstained}", "(quality, not a target)"),
        (
            "  unanswerable but answered",
            f"{tally.unanswerable_answered}",
            "(quality, not a target)",
        ),
        ("latency p50", f"{p50:.0f} ms", "reported"),
        ("latency p95", f"{p95:.0f} ms", "reported"),
        ("latency max", f"{max(tally.latencies_ms, default=float('nan')):.0f} ms", ""),
        ("throughput", f"{len(tally.latencies_ms) / wall:.1f} req/s", ""),
        ("wall time", f"{wall:.1f} s", ""),
        ("RSS before the first question", f"{cold:.0f} MB", ""),
        ("RSS after warm-up", f"{before:.0f} MB", f"({warmup} questions per client)"),
        ("RSS after run", f"{after:.0f} MB", ""),
        ("RSS peak during run", f"{sampler.peak:.0f} MB", ""),
        ("RSS growth", f"{growth:+.1%}", f"< {MAX_GROWTH:.0%}"),
    ]
    out = sys.stdout
    if args.api == "v1":
        out.write(f"\nLoad test over /v1/chat/completions (model {MODEL}) on {url}\n")
    else:
        out.write(f"\nLoad test over /ask on {url} (queue concurrency limit 8)\n")
    out.write(f"{'metric':32s} {'value':>14s}   target\n{'-' * 66}\n")
    for name, value, target in rows:
        out.write(f"{name:32s} {value:>14s}   {target}\n")
    for error in (warm.errors + tally.errors)[:10]:
        out.write(f"error: {error}\n")
    out.write(("FAIL: " + "; ".join(failures)) if failures else "PASS: all targets met")
    out.write("\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
