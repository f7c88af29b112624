"""Summary table, Markdown report and PNG plots of an evaluation run.

    python -m eval --queries eval/queries/corpus.jsonl --compare --report eval/reports/corpus.md

The report holds the summary table (one column per method), the breakdown by kind of
question of the primary method (n, share abstained with its 95% Wilson interval: for an
unanswerable kind its abstain recall, for answerable questions the false abstention rate;
for answerable questions also the short answer's contains-gold, EM and F1), the PNG plots of
hit@k per method and of the latency distribution (written next to the report as
<name>-hit-at-k.png and <name>-latency.png, and linked from it, as are any extra plots such
as eval/plots.py's), and the failed questions of the primary method with what was expected,
what came back and which sources were retrieved.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from eval.metrics import HIT_KS, distinct_in_order
from eval.runner import EvalRun, QueryResult, json_score

logger = logging.getLogger(__name__)

# (metric key, label) in table order; a key missing from a run's metrics is left out.
TABLE_ROWS = (
    ("queries", "queries"),
    ("answerable", "answerable"),
    ("unanswerable", "unanswerable"),
    ("retrieval_only", "retrieval only"),
    *((f"hit@{k}", f"hit@{k}") for k in HIT_KS),
    ("mrr", "MRR"),
    ("ndcg@10", "nDCG@10"),
    ("recall@100", "recall@100"),
    ("mrr@10", "MRR@10"),
    ("answer_contains", "answer contains gold"),
    ("exact_match", "exact match"),
    ("f1", "token F1"),
    ("short_contains", "short answer contains gold"),
    ("short_exact_match", "short answer EM"),
    ("short_f1", "short answer F1"),
    ("citation_precision", "citation precision"),
    ("citation_support", "citation support"),
    ("abstain_recall", "abstain recall"),
    ("abstain_recall_ci", "abstain recall 95% CI"),
    ("false_abstain", "false abstain"),
    ("false_abstain_ci", "false abstain 95% CI"),
    ("retrieve_p50_ms", "retrieve p50 ms"),
    ("retrieve_p95_ms", "retrieve p95 ms"),
    ("answer_p50_ms", "answer p50 ms"),
    ("answer_p95_ms", "answer p95 ms"),
)
MAX_FAILURES = 100
_ANSWER_CHARS = 500


def format_value(key: str, value: object) -> str:
    """A metric as shown in tables: counts as integers, ms with one decimal, rates with 3."""
    if value is None:
        return "-"
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.1f}" if key.endswith("_ms") else f"{value:.3f}"
    return str(value)


def _rows(metrics_by_method: Mapping[str, Mapping]) -> list[list[str]]:
    methods = list(metrics_by_method.values())
    return [
        [label] + [format_value(key, m.get(key)) for m in methods]
        for key, label in TABLE_ROWS
        if any(key in m for m in methods)
    ]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    table = [list(header), *map(list, rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for n, row in enumerate(table):
        cells = [
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table: first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def format_summary(metrics_by_method: Mapping[str, Mapping]) -> str:
    """The summary as plain text: one row per metric, one column per method."""
    return text_table(["metric", *metrics_by_method], _rows(metrics_by_method))


def markdown_summary(metrics_by_method: Mapping[str, Mapping]) -> str:
    """The summary as a Markdown table."""
    return markdown_table(["metric", *metrics_by_method], _rows(metrics_by_method))


KIND_HEADER = ("kind", "n", "abstained", "95% CI", "short contains gold", "short EM", "short F1")
ALL_UNANSWERABLE = "unanswerable (all)"


def by_kind_rows(metrics: Mapping) -> list[list[str]]:
    """Rows of the breakdown by kind, then one for all unanswerable questions together."""
    rows = []
    for kind, row in (metrics.get("by_kind") or {}).items():
        cells = [kind, str(row["n"]), format_value("abstained_share", row["abstained_share"])]
        cells.append(format_value("abstained_ci", row["abstained_ci"]))
        names = ("short_contains", "short_exact_match", "short_f1")
        rows.append(cells + [format_value(name, row.get(name)) for name in names])
    if metrics.get("unanswerable"):
        recall = [format_value(k, metrics.get(k)) for k in ("abstain_recall", "abstain_recall_ci")]
        rows.append([ALL_UNANSWERABLE, str(metrics["unanswerable"]), *recall, "-", "-", "-"])
    return rows


def format_by_kind(metrics: Mapping) -> str:
    """The breakdown by kind as plain text ('' when the metrics have none)."""
    rows = by_kind_rows(metrics)
    return text_table(KIND_HEADER, rows) if rows else ""


def markdown_by_kind(metrics: Mapping, *, method: str = "") -> str:
    """The breakdown by kind as a Markdown section ('' when the metrics have none)."""
    rows = by_kind_rows(metrics)
    if not rows:
        return ""
    return (
        f"## By kind of question{f' ({method})' if method else ''}\n\n"
        "abstained: share of the kind's questions the system abstained on, with its 95% Wilson "
        "interval; for the unanswerable kinds this is the abstain recall, for answerable "
        "questions (with gold answers) the false abstention rate. The short answer (the "
        "reader's exact span) counts as containing gold when a normalised gold answer occurs "
        "in it; EM and F1 are SQuAD's; a missing short answer or an abstention scores 0.\n\n"
        + markdown_table(KIND_HEADER, rows)
    )


def _one_line(text: str, limit: int = _ANSWER_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _quote(items: Sequence[str]) -> str:
    return ", ".join(f"`{_one_line(item, 200)}`" for item in items) or "-"


def markdown_failure(result: QueryResult) -> str:
    """One failed question: question, history, expected, got, retrieved sources."""
    query = result.query
    lines = [f"### {query.id}: {_one_line(query.question, 200)}", "", f"- kind: {query.kind}"]
    if query.history:
        lines.append(f"- history: {' / '.join(_one_line(h, 200) for h in query.history)}")
    if query.retrieval_only:
        lines.append(f"- expected: a passage from {_quote(query.sources)} (retrieval only)")
    elif query.answerable:
        lines.append(f"- expected: {_quote(query.answers)} from {_quote(query.sources)}")
    else:
        lines.append("- expected: abstention (the corpus does not answer this)")
    got = "abstained" if result.abstained else _one_line(result.answer)
    lines.append(f"- got: {got}")
    if result.short_answer is not None:
        lines.append(f"- short answer: {_quote([result.short_answer.text])}")
    score = json_score(result.answerability)
    lines.append(f"- answerability: {'not read' if score is None else f'{score:.3f}'}")
    cited = _quote(distinct_in_order(c.source for c in result.citations))
    lines.append(f"- cited: {cited}")
    rank = "not retrieved" if result.hit_rank is None else f"first gold at {result.hit_rank}"
    rank = "" if not query.answerable else f" ({rank})"
    lines.append(f"- retrieved sources{rank}: {_quote(result.retrieved_sources[:10])}")
    return "\n".join(lines) + "\n"


def plot_hit_at_k(
    metrics_by_method: Mapping[str, Mapping],
    path: str | Path,
    *,
    reference: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """PNG line plot of hit@k against k, one line per method (dashed: reference figures)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), dpi=110)
    axes = figure.subplots()
    for method, metrics in metrics_by_method.items():
        ks = [k for k in HIT_KS if metrics.get(f"hit@{k}") is not None]
        axes.plot(ks, [metrics[f"hit@{k}"] for k in ks], marker="o", label=method)
    for label, values in (reference or {}).items():
        ks = [k for k in HIT_KS if f"hit@{k}" in values]
        axes.plot(ks, [values[f"hit@{k}"] for k in ks], linestyle="--", marker="x", label=label)
    axes.set_xscale("log")
    axes.set_xticks(list(HIT_KS), [str(k) for k in HIT_KS])
    axes.set_xlabel("k (passages)")
    axes.set_ylabel("hit@k (answerable questions)")
    axes.set_ylim(0, 1.02)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    axes.set_title("Gold source among the first k retrieved passages")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path


def plot_latency(run: EvalRun, path: str | Path) -> Path:
    """PNG box plots of retrieval and answer latency (ms) per method."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4), dpi=110)
    axes = figure.subplots(1, 2)
    names = list(run.runs)
    for ax, stage in zip(axes, ("retrieve", "answer"), strict=True):
        data = [[r.latency_ms[stage] for r in run.runs[m].results] for m in names]
        ax.boxplot(data, tick_labels=names, whis=(5, 95), showfliers=True)
        ax.set_title(f"{stage} latency")
        ax.set_ylabel("milliseconds")
        ax.grid(True, axis="y", alpha=0.3)
    figure.suptitle("Latency per question (whiskers: p5-p95)")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path


def _link(target: Path, folder: Path) -> str:
    """target as a link relative to folder (POSIX separators)."""
    return Path(os.path.relpath(Path(target).resolve(), Path(folder).resolve())).as_posix()


def write_report(
    run: EvalRun,
    path: str | Path,
    *,
    title: str = "Evaluation report",
    extra_markdown: str = "",
    reference: Mapping[str, Mapping[str, float]] | None = None,
    max_failures: int = MAX_FAILURES,
    plots: Sequence[Path] = (),
) -> list[Path]:
    """Write the Markdown report and its two PNG plots; return the paths written.

    plots: PNGs written elsewhere (eval/plots.py) to link from the report's Plots section.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hit_png = plot_hit_at_k(
        run.metrics_by_method(), path.with_name(f"{path.stem}-hit-at-k.png"), reference=reference
    )
    latency_png = plot_latency(run, path.with_name(f"{path.stem}-latency.png"))
    config = run.config
    primary = run.primary
    failures = primary.failures()
    parts = [
        f"# {title}\n",
        f"Queries: `{config.get('queries_file', '?')}` ({primary.metrics.get('queries')}); "
        f"corpus `{config.get('corpus')}` ({config.get('documents')} documents, "
        f"{config.get('chunks')} passages); index `{config.get('index')}`; "
        f"answer mode {config.get('mode')}; run {config.get('created')}.\n",
        "## Summary\n",
        markdown_summary(run.metrics_by_method()),
        "hit@k and MRR count the rank of the first retrieved passage from a gold source; "
        "answer metrics are over answerable questions with gold answers (an abstention counts "
        "as wrong); citation metrics over those that were answered.\n",
    ]
    retrieval_only = primary.metrics.get("retrieval_only")
    if retrieval_only:
        parts.append(
            f"{retrieval_only} retrieval-only questions (sources, no answers) are scored on "
            "retrieval metrics only and left out of the answer and citation metrics.\n"
        )
    if by_kind := markdown_by_kind(primary.metrics, method=primary.method):
        parts.append(by_kind)
    if extra_markdown:
        parts.append(extra_markdown.rstrip() + "\n")
    parts += [
        "## Plots\n",
        f"![hit@k per method]({hit_png.name})\n",
        f"![latency distribution]({latency_png.name})\n",
        *(f"![{png.stem}]({_link(png, path.parent)})\n" for png in plots),
        f"## Failed questions ({primary.method}): {len(failures)} of {len(primary.results)}\n",
    ]
    if len(failures) > max_failures:
        parts.append(f"The first {max_failures} are listed; the JSON output has them all.\n")
    parts += [markdown_failure(r) for r in failures[:max_failures]]
    path.write_text("\n".join(parts), encoding="utf-8")
    logger.info("report written to %s", path)
    return [path, hit_png, latency_png]
