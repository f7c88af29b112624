"""Pure metric functions: retrieval ranks, graded (BEIR) rankings, SQuAD answer scores, citations,
abstention (per kind of question, with Wilson intervals), latency.

    python -m eval --queries eval/queries/corpus.jsonl

Answer text is compared after SQuAD v1.1 normalisation (`normalize_answer`, the official
evaluation script's: lower case, punctuation removed, articles a/an/the removed, whitespace
collapsed), with the answer's citation markers ("[1]") removed first. The short answer (the
reader's exact span) gets the same three scores: "contains" means some normalised gold
answer occurs in the normalised span on word bounds (`contains_answer`), one way only: a
span that is a mere fragment of a gold answer ("Texas" of "Eagle Pass, Texas") does not
count, while EM and F1 grade the span's length. No short answer, or an abstention, scores 0.
Nothing here touches the pipeline, files or the clock, so every function is tested against
hand-computed cases.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from eval.queries import ANSWERABLE_KIND, UNANSWERABLE_KINDS, default_kind

HIT_KS = (1, 3, 5, 10, 20)

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CITATION_MARKER = re.compile(r"\s*\[\d+\]")
# Before `contains_answer` compares (not for EM/F1): curly quotes to ASCII, and hyphens and
# dashes to spaces, so "gold" is found in "gold-themed" (SQuAD's normalisation would glue it).
_TYPOGRAPHY = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "-": " ", "\u2013": " ",
     "\u2014": " "}
)  # fmt: skip


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def strip_citation_markers(text: str) -> str:
    """Answer text without its '[n]' citation markers."""
    return _CITATION_MARKER.sub("", text)


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when prediction and gold are equal after normalisation, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 between prediction and gold (bag of normalised tokens)."""
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(gold).split()
    common = Counter(predicted) & Counter(expected)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(
    score: Callable[[str, str], float], prediction: str, golds: Sequence[str]
) -> float:
    """The best score of prediction against any gold string (0.0 without golds)."""
    return max((score(prediction, gold) for gold in golds), default=0.0)


def contains_answer(text: str, golds: Sequence[str]) -> bool:
    """True when some normalised gold string occurs in the normalised text, on word bounds.

    Curly quotes count as straight ones ("wasn’t" matches "wasn't") and hyphens as spaces
    ("gold" occurs in "gold-themed", "three-hour" in "three hour").
    """
    haystack = f" {normalize_answer(text.translate(_TYPOGRAPHY))} "
    needles = (normalize_answer(gold.translate(_TYPOGRAPHY)) for gold in golds)
    return any(needle and f" {needle} " in haystack for needle in needles)


def distinct_in_order(items: Iterable[str]) -> list[str]:
    """Items without repeats, in order of first appearance."""
    return list(dict.fromkeys(items))


def first_rank(ranked: Sequence[str], gold: Iterable[str]) -> int | None:
    """1-based position of the first item of ranked that is in gold, or None."""
    wanted = set(gold)
    return next((i for i, item in enumerate(ranked, start=1) if item in wanted), None)


def hit_at(ranks: Sequence[int | None], k: int) -> float | None:
    """Share of ranks that are at most k (None when there are no ranks to judge)."""
    if not ranks:
        return None
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def mean_reciprocal_rank(ranks: Sequence[int | None]) -> float | None:
    """Mean of 1/rank, a missing rank counting 0 (None when there are no ranks)."""
    if not ranks:
        return None
    return sum(1.0 / r for r in ranks if r is not None) / len(ranks)


def _relevant(qrels: Mapping[str, int]) -> dict[str, int]:
    """The judged documents with a positive grade."""
    return {doc: grade for doc, grade in qrels.items() if grade > 0}


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def ndcg_at_k(*, ranked: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> float | None:
    """nDCG@k as trec_eval/BEIR compute it: gain = grade, discount log2(rank + 1).

    The ideal ranking is the qrels' positive grades sorted descending; None without any.
    """
    _check_k(k)
    relevant = _relevant(qrels)
    if not relevant:
        return None
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 1) for i, doc in enumerate(ranked[:k], 1))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    return dcg / sum(grade / math.log2(i + 1) for i, grade in enumerate(ideal, 1))


def recall_at_k(*, ranked: Sequence[str], qrels: Mapping[str, int], k: int = 100) -> float | None:
    """Share of the positively graded documents among the first k (None without any)."""
    _check_k(k)
    relevant = _relevant(qrels)
    if not relevant:
        return None
    return len(relevant.keys() & set(ranked[:k])) / len(relevant)


def mrr_at_k(*, ranked: Sequence[str], qrels: Mapping[str, int], k: int = 10) -> float | None:
    """1/rank of the first positively graded document within the first k, else 0."""
    _check_k(k)
    relevant = _relevant(qrels)
    if not relevant:
        return None
    rank = first_rank(ranked[:k], relevant)
    return 0.0 if rank is None else 1.0 / rank


def citation_precision(cited: Sequence[str], gold: Iterable[str]) -> float | None:
    """Share of cited sources that are gold sources (None for an answer without citations)."""
    if not cited:
        return None
    wanted = set(gold)
    return sum(1 for source in cited if source in wanted) / len(cited)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default does."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Sequence[float]) -> float | None:
    """Arithmetic mean, None for no values."""
    return sum(values) / len(values) if values else None


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (z=1.96: 95%); (0, 1) when n is 0."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Outcome:
    """What the metrics need to know of one scored question."""

    answerable: bool
    abstained: bool
    answer: str
    golds: tuple[str, ...]
    gold_sources: tuple[str, ...]
    # Rank of the first retrieved passage from a gold source (1-based), None when absent.
    passage_rank: int | None
    cited_sources: tuple[str, ...]
    cited_texts: tuple[str, ...]
    retrieve_ms: float
    answer_ms: float
    # One of eval.queries.KINDS; empty: "answerable" or "unanswerable" as `answerable` says.
    kind: str = ""
    # The text of the reader's short answer (None: there was none).
    short_answer: str | None = None
    # The reader's best margin over "no answer here" (-inf: nothing was read).
    answerability: float = float("-inf")

    @property
    def kind_or_default(self) -> str:
        """The question's kind, defaulted from `answerable` when not given."""
        return self.kind or default_kind(self.answerable)


def has_golds(outcome: Outcome) -> bool:
    """True for an answerable question with gold answers (not a retrieval-only one)."""
    return outcome.answerable and bool(outcome.golds)


def answer_scores(outcome: Outcome) -> dict[str, float]:
    """answer_contains, exact_match and f1 of one answerable question; abstaining scores 0."""
    if outcome.abstained or not outcome.golds:
        return {"answer_contains": 0.0, "exact_match": 0.0, "f1": 0.0}
    text = strip_citation_markers(outcome.answer)
    return {
        "answer_contains": float(contains_answer(text, outcome.golds)),
        "exact_match": best_over_golds(exact_match, text, outcome.golds),
        "f1": best_over_golds(token_f1, text, outcome.golds),
    }


def short_answer_scores(outcome: Outcome) -> dict[str, float]:
    """short_contains, short_exact_match and short_f1 of the short answer (none or abstained: 0)."""
    text = outcome.short_answer
    if outcome.abstained or not text or not outcome.golds:
        return {"short_contains": 0.0, "short_exact_match": 0.0, "short_f1": 0.0}
    return {
        "short_contains": float(contains_answer(text, outcome.golds)),
        "short_exact_match": best_over_golds(exact_match, text, outcome.golds),
        "short_f1": best_over_golds(token_f1, text, outcome.golds),
    }


def is_correct(outcome: Outcome) -> bool | None:
    """Answerable: the answer contains a gold string. Unanswerable: the system abstained.

    None for a retrieval-only question (no gold answers to judge the answer by).
    """
    if not outcome.answerable:
        return outcome.abstained
    if not has_golds(outcome):
        return None
    return answer_scores(outcome)["answer_contains"] == 1.0


def supported(outcome: Outcome) -> bool:
    """True when some cited passage contains a gold string."""
    return any(contains_answer(text, outcome.golds) for text in outcome.cited_texts)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


RETRIEVAL_ONLY_KIND = "retrieval-only"
# Row order of the breakdown by kind; kinds not listed here follow in order of appearance.
KIND_ORDER = (ANSWERABLE_KIND, RETRIEVAL_ONLY_KIND, *UNANSWERABLE_KINDS)


def breakdown_kind(outcome: Outcome) -> str:
    """The row of the by-kind breakdown: the kind, or "retrieval-only" for those without golds."""
    if outcome.answerable and not outcome.golds:
        return RETRIEVAL_ONLY_KIND
    return outcome.kind_or_default


def abstention_rate(outcomes: Sequence[Outcome]) -> dict:
    """n, abstained count, its share and the share's 95% Wilson interval (None when n is 0)."""
    n = len(outcomes)
    k = sum(1 for o in outcomes if o.abstained)
    low, high = wilson_interval(k, n)
    return {
        "n": n,
        "abstained": k,
        "abstained_share": _round(k / n, 4) if n else None,
        "abstained_ci": [round(low, 4), round(high, 4)] if n else None,
    }


def kind_metrics(outcomes: Sequence[Outcome]) -> dict:
    """One row of the by-kind breakdown; short-answer scores too for questions with golds."""
    row = abstention_rate(outcomes)
    judged = [o for o in outcomes if has_golds(o)]
    if judged:
        scores = [short_answer_scores(o) for o in judged]
        for name in ("short_contains", "short_exact_match", "short_f1"):
            row[name] = _round(mean([s[name] for s in scores]), 4)
    return row


def by_kind(outcomes: Sequence[Outcome]) -> dict[str, dict]:
    """kind_metrics per breakdown kind, in KIND_ORDER (for unanswerable kinds: abstain recall)."""
    groups: dict[str, list[Outcome]] = {kind: [] for kind in KIND_ORDER}
    for outcome in outcomes:
        groups.setdefault(breakdown_kind(outcome), []).append(outcome)
    return {kind: kind_metrics(group) for kind, group in groups.items() if group}


def aggregate(outcomes: Sequence[Outcome], *, ks: Sequence[int] = HIT_KS) -> dict:
    """All metrics of a run: retrieval, answers, citations, abstention, latency.

    Retrieval is over answerable questions; answer metrics and false_abstain over answerable
    questions with gold answers (retrieval-only ones, counted in "retrieval_only", are left
    out); abstain_recall over unanswerable ones; citation_precision and citation_support over
    those with gold answers that were answered (abstentions are counted by false_abstain);
    latency over all questions.
    A metric without any question to judge is None.
    """
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]
    judged = [o for o in answerable if has_golds(o)]
    answered = [o for o in judged if not o.abstained]
    ranks = [o.passage_rank for o in answerable]
    scores = [answer_scores(o) for o in judged]
    metrics: dict[str, object] = {
        "queries": len(outcomes),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "retrieval_only": len(answerable) - len(judged),
    }
    for k in ks:
        metrics[f"hit@{k}"] = hit_at(ranks, k)
    metrics["mrr"] = mean_reciprocal_rank(ranks)
    for name in ("answer_contains", "exact_match", "f1"):
        metrics[name] = mean([s[name] for s in scores])
    precisions = [citation_precision(o.cited_sources, o.gold_sources) for o in answered]
    metrics["citation_precision"] = mean([p for p in precisions if p is not None])
    metrics["citation_support"] = mean([float(supported(o)) for o in answered])
    short = [short_answer_scores(o) for o in judged]
    for name in ("short_contains", "short_exact_match", "short_f1"):
        metrics[name] = mean([s[name] for s in short])
    for name, group in (("abstain_recall", unanswerable), ("false_abstain", judged)):
        rate = abstention_rate(group)
        metrics[name] = rate["abstained_share"]
        metrics[f"{name}_ci"] = rate["abstained_ci"]
    for stage in ("retrieve", "answer"):
        values = [getattr(o, f"{stage}_ms") for o in outcomes]
        metrics[f"{stage}_p50_ms"] = _round(percentile(values, 50), 2)
        metrics[f"{stage}_p95_ms"] = _round(percentile(values, 95), 2)
    rounded = {
        k: _round(v, 4) if isinstance(v, float) and not k.endswith("_ms") else v
        for k, v in metrics.items()
    }
    return {**rounded, "by_kind": by_kind(outcomes)}
