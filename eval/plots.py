"""PNG plots of abstention: the answerability score of answerable vs unanswerable questions.

    python -m eval --queries eval/queries/corpus.jsonl --plots eval/reports/

The answerability score is the reader's best margin over "no answer here"; the pipeline
abstains when it is below `Config.min_answerability` (the threshold; between it and
`Config.unsure_margin` also when the retrieval evidence is weak, which the plots do not
show: the reported recall and false abstention count every abstention), and a question the
cheap pre-gate already abstained on is never read: its score is -inf. `write_plots` writes
<stem>-answerability.png (overlaid histograms, the unread questions in their own leftmost
"not read" bin, a line at the threshold) and <stem>-abstention-pr.png (the precision-recall
curve of abstention, the unanswerable questions being the positive class and "abstain"
predicted for a score < t as t sweeps the scores, with the operating point at the
threshold). The curve's points come from `abstention_pr_points`, a pure function.
Matplotlib is imported inside the plotting functions (Agg canvas, no pyplot state).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eval.runner import QueryResult

logger = logging.getLogger(__name__)

HISTOGRAM_BINS = 20
_COLOURS = {"answerable": "tab:blue", "unanswerable": "tab:red"}


@dataclass(frozen=True)
class PRPoint:
    """Abstention at one threshold: precision None when nothing abstains."""

    threshold: float
    precision: float | None
    recall: float | None
    abstained: int


def abstention_point(
    answerable: Sequence[float], unanswerable: Sequence[float], threshold: float
) -> PRPoint:
    """Precision and recall of "abstain when score < threshold" (positive: unanswerable)."""
    true_positive = sum(1 for s in unanswerable if s < threshold)
    predicted = true_positive + sum(1 for s in answerable if s < threshold)
    return PRPoint(
        threshold=threshold,
        precision=true_positive / predicted if predicted else None,
        recall=true_positive / len(unanswerable) if unanswerable else None,
        abstained=predicted,
    )


def abstention_pr_points(
    answerable: Sequence[float], unanswerable: Sequence[float]
) -> list[PRPoint]:
    """The PR curve: a point per distinct finite score as threshold, then +inf (all abstain).

    Points where nothing abstains (precision undefined) are left out; no points without
    unanswerable questions. -inf scores abstain at every threshold.
    """
    if not unanswerable:
        return []
    finite = sorted({s for s in (*answerable, *unanswerable) if math.isfinite(s)})
    points = (abstention_point(answerable, unanswerable, t) for t in (*finite, math.inf))
    return [p for p in points if p.precision is not None]


def histogram_edges(values: Iterable[float], *, bins: int = HISTOGRAM_BINS) -> list[float]:
    """bins + 1 equal-width edges spanning the finite values (a unit span around a single one)."""
    finite = [v for v in values if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    step = (high - low) / bins
    return [low + i * step for i in range(bins)] + [high]


def _figure(width: float, height: float):
    """A matplotlib Figure on an Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    """Lay out and write the figure as PNG; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png")
    logger.info("plot written to %s", path)
    return path


def _draw_not_read(axes, groups: dict[str, Sequence[float]], edges: Sequence[float]) -> None:
    """Bars for the -inf scores, one bin left of the histogram, their tick labelled "not read"."""
    from matplotlib.ticker import MaxNLocator

    unread = {name: sum(1 for v in values if v == -math.inf) for name, values in groups.items()}
    if not any(unread.values()):
        return
    width = edges[1] - edges[0]
    x = edges[0] - 1.5 * width
    for name, count in unread.items():
        axes.bar(x, count, width=width, alpha=0.5, color=_COLOURS[name], edgecolor="black")
    axes.axvline(edges[0] - 0.5 * width, color="grey", linestyle=":", linewidth=1)
    ticks = [t for t in MaxNLocator(nbins=8).tick_values(edges[0], edges[-1])
             if edges[0] - 1e-9 <= t <= edges[-1] + 1e-9]  # fmt: skip
    axes.set_xticks([x, *ticks], ["not read", *(f"{t:g}" for t in ticks)])


def plot_answerability(
    answerable: Sequence[float],
    unanswerable: Sequence[float],
    *,
    threshold: float,
    path: Path,
    title: str,
) -> Path:
    """PNG: overlaid histograms of the answerability score, the threshold as a vertical line."""
    groups = {"answerable": list(answerable), "unanswerable": list(unanswerable)}
    edges = histogram_edges([*groups["answerable"], *groups["unanswerable"], threshold])
    figure = _figure(7.0, 4.2)
    axes = figure.subplots()
    for name, values in groups.items():
        finite = [v for v in values if math.isfinite(v)]
        axes.hist(finite, bins=edges, alpha=0.5, color=_COLOURS[name], edgecolor="black",
                  label=f"{name} (n={len(values)})")  # fmt: skip
    _draw_not_read(axes, groups, edges)
    axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:g}")
    axes.set_xlabel('answerability (reader margin over "no answer here")')
    axes.set_ylabel("questions")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize="small")
    axes.set_title(title)
    return _save(figure, path)


def plot_abstention_pr(
    answerable: Sequence[float],
    unanswerable: Sequence[float],
    *,
    threshold: float,
    path: Path,
    title: str,
) -> Path:
    """PNG: precision-recall curve of abstention, the operating point at the threshold marked."""
    points = abstention_pr_points(answerable, unanswerable)
    figure = _figure(5.6, 4.6)
    axes = figure.subplots()
    if points:
        axes.plot([p.recall for p in points], [p.precision for p in points], marker=".",
                  label="sweep of the threshold")  # fmt: skip
        share = len(unanswerable) / (len(answerable) + len(unanswerable))
        axes.axhline(share, color="grey", linestyle=":", label=f"always abstain ({share:.2f})")
    else:
        axes.text(0.5, 0.5, "no unanswerable questions", ha="center", va="center")
    here = abstention_point(answerable, unanswerable, threshold)
    if here.precision is not None and here.recall is not None:
        axes.plot([here.recall], [here.precision], marker="o", markersize=9, color="black",
                  linestyle="none", label=f"threshold {threshold:g}: P={here.precision:.2f}, "
                  f"R={here.recall:.2f}")  # fmt: skip
    elif points:
        axes.text(0.5, 0.05, f"nothing abstains at threshold {threshold:g}", ha="center")
    axes.set_xlabel("recall (unanswerable questions abstained)")
    axes.set_ylabel("precision (abstentions that were unanswerable)")
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small", loc="best")
    axes.set_title(title)
    return _save(figure, path)


def split_scores(results: Iterable[QueryResult]) -> tuple[list[float], list[float]]:
    """The answerability scores of the answerable and of the unanswerable questions."""
    answerable: list[float] = []
    unanswerable: list[float] = []
    for result in results:
        (answerable if result.query.answerable else unanswerable).append(result.answerability)
    return answerable, unanswerable


def write_plots(
    results: Iterable[QueryResult],
    directory: Path,
    *,
    stem: str,
    threshold: float,
    label: str = "",
) -> list[Path]:
    """Write <stem>-answerability.png and <stem>-abstention-pr.png into directory."""
    answerable, unanswerable = split_scores(results)
    name = label or stem
    return [
        plot_answerability(answerable, unanswerable, threshold=threshold,
                           path=Path(directory) / f"{stem}-answerability.png",
                           title=f"Answerability score: {name}"),
        plot_abstention_pr(answerable, unanswerable, threshold=threshold,
                           path=Path(directory) / f"{stem}-abstention-pr.png",
                           title=f"Abstention precision-recall: {name}"),
    ]  # fmt: skip
