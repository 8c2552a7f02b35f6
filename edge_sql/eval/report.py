"""What ``edgesql eval`` found: a :class:`Record` a question (its :class:`Outcome` for each candidate count), the
:class:`Summary` of each count, the run's :class:`Report`, and the JSON and Spider prediction files written from it."""

from __future__ import annotations

import statistics
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge_sql import __version__
from edge_sql.eval.hardness import LEVELS
from edge_sql.eval.metric import prediction_line
from edge_sql.remedies import Remedies
from edge_sql.steps.generate import Sampling

@dataclass(frozen=True)
class Outcome:
    """What the pipeline answered one question with for one candidate count, and whether it was right."""

    candidates: int
    sql: str  # the prediction line: the chosen query on one line, or metric.NO_ANSWER
    right: bool
    votes: int = 0
    valid: int = 0  # candidates that ran
    invalid: int = 0  # candidates that failed validation (parse or schema errors, refused)
    failed: int = 0  # valid candidates that failed to run (an error or the time limit)
    error: str | None = None  # why the chosen query failed when it was scored
    confidence: float | None = None  # the calibrated chance it is right, as ask shows it
    signals: dict | None = None  # what the calibration weighed (steps.confidence.Signals), to fit another


@dataclass(frozen=True)
class Record:
    """One question of the run: skipped with a reason, or answered once for each candidate count."""

    index: int
    db_id: str
    question: str
    gold: str
    hardness: str | None = None
    outcomes: tuple[Outcome, ...] = ()
    skipped: str | None = None
    error: str | None = None  # the pipeline could not answer (e.g. the schema does not fit the model)
    seconds: float = 0.0
    tokens: dict[str, int] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)  # generate_seconds, and the model's counters if it has them
    gold_empty: bool | None = None  # the gold query returns no rows: any wrong query that returns none scores too
    kind: str | None = None  # the dataset's own tag of the question (a JSONL line's "kind"), if it has one


@dataclass(frozen=True)
class Speed:
    """Tokens per second over the run: from the model's own counters of prompt evaluation and decoding when it has
    them, else generated tokens over the generation step's wall-clock time (prompt speed unknown)."""

    prompt_tokens: int = 0  # tokens in the prompts (a model may evaluate a repeated prefix once)
    generated_tokens: int = 0
    prompt_per_second: float | None = None
    generated_per_second: float | None = None
    source: str = "wall clock"


@dataclass(frozen=True)
class Bin:
    """The answers whose confidence fell in [low, high): how many, how many were right, their mean confidence."""

    low: float
    high: float
    questions: int
    right: int
    confidence: float

    @property
    def label(self) -> str:
        return f"{self.low:.0%}–{min(self.high, 1.0):.0%}"

    @property
    def ex(self) -> float:
        return self.right / self.questions if self.questions else 0.0


#: Where the reliability table's bins begin.
EDGES = (0.0, 0.2, 0.4, 0.6, 0.8)


def reliability(pairs) -> tuple[Bin, ...]:
    """(confidence, right) pairs by bins of confidence, the empty bins left out: when edgesql says 80%, is it right
    80% of the time?

    >>> [(b.label, b.questions, b.right) for b in reliability([(0.9, True), (0.85, False), (0.1, False)])]
    [('0%–20%', 1, 0), ('80%–100%', 2, 1)]
    """
    bins = []
    for low, high in zip(EDGES, (*EDGES[1:], 1.0000001)):
        inside = [(c, r) for c, r in pairs if low <= c < high]
        if inside:
            bins.append(Bin(low, high, len(inside), sum(r for _, r in inside),
                            round(sum(c for c, _ in inside) / len(inside), 4)))
    return tuple(bins)


@dataclass(frozen=True)
class Summary:
    """EX for one candidate count over the questions that were scored."""

    candidates: int
    questions: int
    right: int
    valid: int
    invalid: int
    failed: int
    no_answer: int  # questions where no candidate ran
    by_hardness: dict[str, tuple[int, int]]  # level -> (questions, right)
    nonempty: tuple[int, int] = (0, 0)  # (questions, right) among those whose gold result is not empty
    reliability: tuple["Bin", ...] = ()  # answered questions by the confidence edgesql gave them
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)  # a question's kind -> (questions, right)

    @property
    def ex(self) -> float | None:
        return self.right / self.questions if self.questions else None

    @property
    def ex_nonempty(self) -> float | None:
        """EX on the questions whose gold result has rows: two empty results are equal, so a wrong query that
        returns nothing is right on every empty-gold question, and EX over all questions flatters a weak model."""
        return self.nonempty[1] / self.nonempty[0] if self.nonempty[0] else None

    @property
    def label(self) -> str:
        return "greedy" if self.candidates == 1 else f"vote@{self.candidates}"

    def share(self, count: int) -> float | None:
        total = self.valid + self.invalid + self.failed
        return count / total if total else None


@dataclass(frozen=True)
class Report:
    dataset: str
    layout: str
    metric: str
    model: str
    counts: tuple[int, ...]
    sampling: Sampling
    selection: dict
    records: tuple[Record, ...]
    wall_seconds: float
    peak_rss_mib: float | None
    speed: Speed
    interrupted: bool = False
    remedies: Remedies = Remedies()
    merge_model: str | None = None  # the model that settled split votes, when not the model itself

    @property
    def scored(self) -> tuple[Record, ...]:
        return tuple(r for r in self.records if r.skipped is None)

    @property
    def skipped(self) -> tuple[Record, ...]:
        return tuple(r for r in self.records if r.skipped is not None)

    @property
    def summaries(self) -> tuple[Summary, ...]:
        return tuple(summarize(self.scored, k) for k in self.counts)

    def latency(self, quantile: float) -> float | None:
        return percentile([r.seconds for r in self.scored if r.error is None], quantile)


def summarize(records, candidates: int) -> Summary:
    totals, questions, right, kinds = Counter(), Counter(), Counter(), {}
    for record in records:
        outcome = next(o for o in record.outcomes if o.candidates == candidates)
        if record.gold_empty is False:
            totals.update(nonempty=1, nonempty_right=int(outcome.right))
        totals.update(valid=outcome.valid, invalid=outcome.invalid, failed=outcome.failed, right=int(outcome.right),
                      no_answer=int(outcome.valid == 0))
        level = record.hardness or "unknown"
        questions[level] += 1
        right[level] += outcome.right
        if record.kind is not None:
            count, hits = kinds.get(record.kind, (0, 0))
            kinds[record.kind] = (count + 1, hits + int(outcome.right))
    levels = [lv for lv in LEVELS if questions[lv]] + (["unknown"] if questions["unknown"] else [])
    pairs = [(o.confidence, o.right) for o in (next(o for o in r.outcomes if o.candidates == candidates)
                                                for r in records) if o.confidence is not None]
    return Summary(candidates, len(records), totals["right"], totals["valid"], totals["invalid"], totals["failed"],
                   totals["no_answer"], {lv: (questions[lv], right[lv]) for lv in levels},
                   (totals["nonempty"], totals["nonempty_right"]), reliability(pairs), dict(sorted(kinds.items())))


def percentile(values: list[float], quantile: float) -> float | None:
    """The ``quantile`` (0-1) of ``values``, interpolated between the nearest ranks.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([5.0], 0.95), percentile([], 0.5)
    (2.5, 5.0, None)
    """
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(quantile * 100) - 1]


def measure_speed(records: list[Record]) -> Speed:
    answered = [r for r in records if r.tokens]
    prompt = sum(r.tokens.get("prompt", 0) for r in answered)
    generated = sum(r.tokens.get("generated", 0) for r in answered)
    counted = [r for r in answered if "decode_seconds" in r.costs]
    if counted and len(counted) == len(answered):
        evaluated = sum(r.costs["prompt_evaluated"] for r in counted)
        prompt_seconds = sum(r.costs["prompt_seconds"] for r in counted)
        decode_seconds = sum(r.costs["decode_seconds"] for r in counted)
        return Speed(prompt, generated, round(evaluated / prompt_seconds, 1) if prompt_seconds > 0 else None,
                     round(generated / decode_seconds, 1) if decode_seconds > 0 else None, "model counters")
    seconds = sum(r.costs.get("generate_seconds", 0.0) for r in answered)
    return Speed(prompt, generated, None, round(generated / seconds, 1) if seconds > 0 else None, "wall clock")


def peak_rss_mib() -> float | None:
    """The most memory this process has held, in MiB (None where the system does not say: Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def report_to_dict(report: Report) -> dict:
    """The report as the JSON that ``--report`` writes."""
    def rate(value):
        return None if value is None else round(value, 4)

    results = []
    for s in report.summaries:
        results.append({
            "candidates": s.candidates, "label": s.label, "questions": s.questions, "right": s.right,
            "ex": rate(s.ex), "nonempty_questions": s.nonempty[0], "nonempty_right": s.nonempty[1],
            "ex_nonempty": rate(s.ex_nonempty), "valid": s.valid, "invalid": s.invalid, "failed": s.failed,
            "valid_share": rate(s.share(s.valid)), "invalid_share": rate(s.share(s.invalid)),
            "failed_share": rate(s.share(s.failed)), "no_answer": s.no_answer,
            "hardness": {level: {"questions": n, "right": r, "ex": rate(r / n if n else None)}
                         for level, (n, r) in s.by_hardness.items()},
            "kind": {kind: {"questions": n, "right": r, "ex": rate(r / n)} for kind, (n, r) in s.by_kind.items()},
            "reliability": [{"confidence": b.label, "questions": b.questions, "right": b.right, "ex": rate(b.ex),
                             "mean_confidence": b.confidence} for b in s.reliability],
        })
    return {
        "edgesql": __version__,
        "dataset": {"path": report.dataset, "layout": report.layout, "metric": report.metric, **report.selection},
        "model": report.model,
        "sampling": {"candidates": report.sampling.candidates, "temperature": report.sampling.temperature,
                     "seed": report.sampling.seed, "max_tokens": report.sampling.max_tokens,
                     "early_stop": report.sampling.early_stop},
        "remedies": asdict(report.remedies),
        "merge_model": report.merge_model,
        "questions": len(report.records),
        "scored": len(report.scored),
        "skipped": len(report.skipped),
        "interrupted": report.interrupted,
        "results": results,
        "latency": {"p50": rate(report.latency(0.50)), "p95": rate(report.latency(0.95)),
                    "candidates": report.sampling.candidates},
        "tokens": {"prompt": report.speed.prompt_tokens, "generated": report.speed.generated_tokens,
                   "prompt_per_second": report.speed.prompt_per_second,
                   "generated_per_second": report.speed.generated_per_second, "source": report.speed.source},
        "peak_rss_mib": report.peak_rss_mib,
        "wall_seconds": report.wall_seconds,
        "skipped_questions": [{"index": r.index, "db_id": r.db_id, "question": r.question, "reason": r.skipped}
                              for r in report.skipped],
        "records": [record_to_dict(r) for r in report.records],
    }


def record_to_dict(record: Record) -> dict:
    return {
        "index": record.index, "db_id": record.db_id, "question": record.question, "gold": record.gold,
        "hardness": record.hardness, "kind": record.kind, "gold_empty": record.gold_empty, "skipped": record.skipped,
        "error": record.error, "seconds": record.seconds,
        "tokens": record.tokens, "costs": record.costs,
        "answers": [{"candidates": o.candidates, "sql": o.sql, "right": o.right, "votes": o.votes, "valid": o.valid,
                     "invalid": o.invalid, "failed": o.failed, "error": o.error, "confidence": o.confidence,
                     "signals": o.signals} for o in record.outcomes],
    }


def write_predictions(report: Report, path: Path) -> list[Path]:
    """Spider's prediction files: the chosen query of every scored question, one per line, in the run's order, for
    each candidate count (``pred.txt`` for one count; ``pred.1.txt``, ``pred.5.txt`` for several), and beside them
    the gold file of the same questions (``pred.gold.txt``: ``<gold SQL><TAB><db_id>``) for the official evaluator."""
    path = Path(path)
    written = []
    for k in report.counts:
        target = path if len(report.counts) == 1 else path.with_name(f"{path.stem}.{k}{path.suffix}")
        lines = [next(o for o in r.outcomes if o.candidates == k).sql for r in report.scored]
        target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        written.append(target)
    gold = path.with_name(f"{path.stem}.gold{path.suffix}")
    gold.write_text("".join(f"{prediction_line(r.gold)}\t{r.db_id}\n" for r in report.scored), encoding="utf-8")
    return written + [gold]
