"""``edgesql eval``: the execution accuracy (EX) of the ask pipeline on a text-to-SQL dataset.

Every question goes through the real pipeline (:func:`edge_sql.pipeline.deliberate`, then
:func:`~edge_sql.pipeline.conclude` once for each candidate count: one sampling pass serves greedy, vote@5 and vote@8).
The chosen query is scored against the gold query by :mod:`edge_sql.eval.metric`, the rules of Spider's official
evaluator. A question whose database is missing or whose gold query fails is skipped, with the reason.

Datasets (:func:`load_dataset`):

- Spider: a folder with ``dev.json`` (``question``, ``query``, ``db_id``, ``sql``) and
  ``database/<db_id>/<db_id>.sqlite``, or the path of one such JSON file (``train_spider.json``) beside a
  ``database/`` folder.
- BIRD: a folder with ``dev.json`` (``question``, ``evidence``, ``SQL``, ``db_id``) and
  ``dev_databases/<db_id>/<db_id>.sqlite``; the evidence is added to the question as a hint, and queries are scored
  by BIRD's own rule (equal sets of rows).
- JSONL: one ``{"question": …, "query": …, "db": …}`` object per line, ``db`` a SQLite or DuckDB file (relative to
  the JSONL file's folder).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from edge_sql import __version__
from edge_sql.steps.database import detect_engine, open_database
from edge_sql.errors import DatabaseError, EdgeSQLError, QueryFailed, UsageError
from edge_sql.steps.execute import execute
from edge_sql.steps.generate import Sampling
from edge_sql.eval.hardness import LEVELS, hardness, hardness_of
from edge_sql.eval.metric import SCORE_TIMEOUT, fetch, order_matters, prediction_line, results_match, rewrite, set_match
from edge_sql.backends import Model
from edge_sql.pipeline import Limits, conclude, deliberate
from edge_sql.remedies import Remedies

#: Verdicts of a candidate that did not pass validation, and of one that passed but failed to run.
INVALID = frozenset({"empty", "parse_error", "refused", "unknown_table", "unknown_column"})
FAILED = frozenset({"execution_error", "timeout"})
#: The most rows of a DuckDB result that are scored (SQLite results are read whole, as the official script does).
MAX_SCORED_ROWS = 1_000_000


# --- datasets ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One question of a dataset, with its gold query and where its database is."""

    index: int  # position in the dataset file, from 0
    question: str
    gold: str
    db_id: str
    db_path: Path  # the database the pipeline asks
    sql: dict | None = field(default=None, repr=False, compare=False)  # Spider's parse of the gold query, if given


@dataclass(frozen=True)
class Dataset:
    path: Path
    layout: str  # "spider", "bird" or "jsonl"
    examples: tuple[Example, ...]

    @property
    def metric(self) -> str:
        """How a prediction is compared with the gold query: Spider's rules, or BIRD's set equality."""
        return "bird" if self.layout == "bird" else "spider"


def load_dataset(path: Path | str) -> Dataset:
    """Read a Spider or BIRD folder (or one of their JSON files) or a JSONL file; :class:`UsageError` if unreadable."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / "dev.json").is_file():
            raise UsageError(f"{path} has no dev.json; give a Spider or BIRD folder, one of their JSON files, or a "
                             "JSONL file of {question, query, db}")
        path = path / "dev.json"
    if not path.is_file():
        raise UsageError(f"no such dataset: {path}")
    if path.suffix == ".jsonl":
        return Dataset(path, "jsonl", tuple(read_jsonl(path)))
    items = read_json(path)
    if items and isinstance(items[0], dict) and "SQL" in items[0]:
        databases = path.parent / "dev_databases"
        examples = (
            Example(i, bird_question(item), item.get("SQL", ""), item.get("db_id", ""),
                    databases / item.get("db_id", "") / f"{item.get('db_id', '')}.sqlite")
            for i, item in enumerate(items)
        )
        return Dataset(path, "bird", tuple(examples))
    databases = path.parent / "database"
    examples = (
        Example(i, item.get("question", ""), item.get("query", ""), item.get("db_id", ""),
                databases / item.get("db_id", "") / f"{item.get('db_id', '')}.sqlite", item.get("sql"))
        for i, item in enumerate(items)
    )
    return Dataset(path, "spider", tuple(examples))


def read_json(path: Path) -> list[dict]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise UsageError(f"{path} is not a list of questions")
    return items


def read_jsonl(path: Path):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    index = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}, line {number}: not JSON ({error})") from None
        if not isinstance(item, dict):
            raise UsageError(f"{path}, line {number}: not a JSON object")
        db = Path(str(item.get("db", "")))
        db = db if db.is_absolute() else path.parent / db
        yield Example(index, str(item.get("question", "")), str(item.get("query", "")), db.stem, db)
        index += 1


def bird_question(item: dict) -> str:
    evidence = str(item.get("evidence") or "").strip()
    question = str(item.get("question", ""))
    return f"{question} Hint: {evidence}" if evidence else question


def select_examples(examples, *, db: tuple[str, ...] = (), limit: int | None = None, shuffle: bool = False,
                    seed: int = 42) -> list[Example]:
    """The questions to run: those on the named databases, shuffled with ``seed`` if asked, the first ``limit``.

    >>> chosen = select_examples([Example(i, "q", "SELECT 1", f"db{i % 2}", Path("x")) for i in range(6)],
    ...                          db=("db1",), limit=2)
    >>> [e.index for e in chosen]
    [1, 3]
    """
    chosen = [e for e in examples if not db or e.db_id in db]
    if shuffle:
        random.Random(seed).shuffle(chosen)
    return chosen[:limit] if limit is not None else chosen


def comparison_files(example: Example, layout: str) -> tuple[Path, ...]:
    """The database files a prediction is compared on: for Spider, as its evaluator does, every file with
    ``.sqlite`` in its name in the question's database folder (a test suite); otherwise the database itself."""
    if layout != "spider" or not example.db_path.parent.is_dir():
        return (example.db_path,)
    found = sorted(p for p in example.db_path.parent.iterdir() if ".sqlite" in p.name and p.is_file())
    return tuple(found) or (example.db_path,)


# --- scoring -------------------------------------------------------------------------------------------------------


def run_for_score(path: Path, sql: str, open_db: Callable) -> list[tuple]:
    """Every row of ``sql`` on ``path``: SQLite as the official evaluator reads it; DuckDB on the run's own read-only,
    locked-down connection from ``open_db(path)`` (DuckDB allows one configuration of a file per process)."""
    try:
        if detect_engine(path) == "sqlite":
            return fetch(path, sql)
        result = execute(open_db(path), sql, max_rows=MAX_SCORED_ROWS, timeout=SCORE_TIMEOUT)
    except (DatabaseError, QueryFailed) as error:
        raise QueryFailed(str(error)) from None
    return [tuple(freeze(value) for value in row) for row in result.rows]


def freeze(value):
    """A value that can be counted in a set (DuckDB lists and structs become tuples)."""
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, freeze(v)) for k, v in value.items())
    return value


@dataclass(frozen=True)
class Gold:
    """The gold query's results on each comparison file, and whether their row order counts."""

    results: tuple[tuple[Path, list], ...]
    ordered: bool


def run_gold(example: Example, files: tuple[Path, ...], metric: str, open_db: Callable) -> Gold:
    """Run the gold query on every comparison file; :class:`QueryFailed` if it fails on any."""
    sql = rewrite(prediction_line(example.gold)) if metric == "spider" else example.gold
    return Gold(tuple((path, run_for_score(path, sql, open_db)) for path in files),
                order_matters(sql) if metric == "spider" else False)


def is_right(line: str, gold: Gold, metric: str, open_db: Callable) -> tuple[bool, str | None]:
    """Score one prediction line: (right, why it failed to run)."""
    sql = rewrite(line, predicted=True) if metric == "spider" else line
    for path, gold_rows in gold.results:
        try:
            rows = run_for_score(path, sql, open_db)
        except QueryFailed as error:
            return False, str(error)
        same = set_match(gold_rows, rows) if metric == "bird" else results_match(gold_rows, rows, ordered=gold.ordered)
        if not same:
            return False, None
    return True, None


def score(gold: str, predicted: str, files, metric: str = "spider") -> bool | None:
    """Whether ``predicted`` answers like ``gold`` on every database in ``files``; None when the gold query fails
    (the question is skipped). The whole metric in one call, as :func:`evaluate` applies it."""
    example = Example(0, "", gold, "", Path(files[0]))
    with Databases() as open_db:
        try:
            reference = run_gold(example, tuple(Path(f) for f in files), metric, open_db)
        except QueryFailed:
            return None
        return is_right(prediction_line(predicted), reference, metric, open_db)[0]


class Databases:
    """The databases a run has opened (read-only, locked down), each opened once and closed at the end."""

    def __enter__(self) -> Callable:
        self.stack, self.opened = ExitStack(), {}
        return self.open

    def open(self, path: Path):
        if path not in self.opened:
            self.opened[path] = self.stack.enter_context(open_database(path))
        return self.opened[path]

    def __exit__(self, *exc) -> None:
        self.stack.close()


# --- the run -------------------------------------------------------------------------------------------------------


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

    @property
    def ex(self) -> float | None:
        return self.right / self.questions if self.questions else None

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
    totals, questions, right = Counter(), Counter(), Counter()
    for record in records:
        outcome = next(o for o in record.outcomes if o.candidates == candidates)
        totals.update(valid=outcome.valid, invalid=outcome.invalid, failed=outcome.failed, right=outcome.right,
                      no_answer=outcome.valid == 0)
        level = record.hardness or "unknown"
        questions[level] += 1
        right[level] += outcome.right
    levels = [lv for lv in LEVELS if questions[lv]] + (["unknown"] if questions["unknown"] else [])
    return Summary(candidates, len(records), totals["right"], totals["valid"], totals["invalid"], totals["failed"],
                   totals["no_answer"], {lv: (questions[lv], right[lv]) for lv in levels})


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


def evaluate_example(example: Example, layout: str, metric: str, model: Model, sampling: Sampling,
                     counts: tuple[int, ...], limits: Limits, open_db: Callable,
                     remedies: Remedies = Remedies()) -> Record:
    """Run one question through the pipeline and score its answer for each candidate count; never raises for a bad
    example (a missing database, a gold query that fails, an empty question): it is skipped with the reason."""
    return evaluate_variants(example, layout, metric, model, sampling, counts, limits, open_db, (remedies,))[0]


def evaluate_variants(example: Example, layout: str, metric: str, model: Model, sampling: Sampling,
                      counts: tuple[int, ...], limits: Limits, open_db: Callable,
                      variants: tuple[Remedies, ...]) -> list[Record]:
    """:func:`evaluate_example` for several remedies that prompt the model alike (the same grammar, pruning and
    hints; they differ in their second rounds): one deliberation serves them all. One record each, in order; each
    record's seconds are the deliberation's plus its own conclusion's."""
    first = variants[0]
    if any((v.grammar, v.prune, v.hints) != (first.grammar, first.prune, first.hints) for v in variants):
        raise ValueError("variants must share grammar, prune and hints: they would prompt the model differently")
    record = Record(example.index, example.db_id, example.question, example.gold)
    if not example.db_path.is_file():
        return [replace(record, skipped=f"database missing: {example.db_path}")] * len(variants)
    record = replace(record, hardness=hardness(example.sql) if example.sql else hardness_of(example.gold))
    try:
        db = open_db(example.db_path)
    except EdgeSQLError as error:
        return [replace(record, skipped=f"database cannot be opened: {error}")] * len(variants)
    try:
        gold = run_gold(example, comparison_files(example, layout), metric, open_db)
    except QueryFailed as error:
        return [replace(record, skipped=f"gold query failed: {error}")] * len(variants)
    started = time.perf_counter()
    try:
        deliberation = deliberate(example.question, db, model, sampling, limits, remedies=first)
    except UsageError as error:
        return [replace(record, skipped=f"question refused: {error}")] * len(variants)
    except EdgeSQLError as error:  # the pipeline cannot answer at all: every count is wrong
        outcomes = tuple(Outcome(k, prediction_line(None), False, error=str(error)) for k in counts)
        return [replace(record, outcomes=outcomes, error=str(error))] * len(variants)
    costs = {"generate_seconds": deliberation.timings.get("generate", 0.0), **(model_counters(model) or {})}
    deliberated = time.perf_counter() - started
    scored: dict[str, tuple[bool, str | None]] = {}
    records = []
    for remedies in variants:
        seconds = deliberated
        outcomes = []
        for k in counts:
            clock = time.perf_counter()
            answer = conclude(deliberation, db, model, sampling, limits, remedies, candidates=k)
            if k == counts[-1]:  # the latency of asking with the most candidates: scoring not included
                seconds += time.perf_counter() - clock
            line = prediction_line(answer.sql)
            if line not in scored:
                scored[line] = is_right(line, gold, metric, open_db)
            kinds = Counter(entry.verdict.kind for entry in answer.ballot.entries)
            outcomes.append(Outcome(
                candidates=k, sql=line, right=scored[line][0], votes=answer.votes, valid=answer.ballot.valid,
                invalid=sum(kinds[kind] for kind in INVALID), failed=sum(kinds[kind] for kind in FAILED),
                error=scored[line][1] if answer.sql is not None else "no valid candidate",
            ))
        records.append(replace(record, outcomes=tuple(outcomes), seconds=round(seconds, 4),
                               tokens=dict(deliberation.tokens), costs=costs))
    return records


def evaluate(dataset: Dataset, examples: list[Example], model: Model, sampling: Sampling, counts: tuple[int, ...],
             limits: Limits = Limits(), *, selection: dict | None = None,
             progress: Callable[[Record], None] | None = None, remedies: Remedies = Remedies()) -> Report:
    """Evaluate ``model`` on ``examples``: one sampling pass of ``max(counts)`` candidates a question, scored for
    each count. Ctrl-C ends the run early with a report of the questions done (``interrupted``)."""
    counts = tuple(sorted(set(counts)))
    sampling = replace(sampling, candidates=max(counts))
    records, interrupted = [], False
    started = time.perf_counter()
    with Databases() as open_db:
        try:
            for example in examples:
                record = evaluate_example(example, dataset.layout, dataset.metric, model, sampling, counts, limits,
                                          open_db, remedies)
                records.append(record)
                if progress:
                    progress(record)
        except KeyboardInterrupt:
            interrupted = True
    wall = time.perf_counter() - started
    speed = measure_speed(records)
    return Report(
        dataset=str(dataset.path), layout=dataset.layout, metric=dataset.metric, model=model.name, counts=counts,
        sampling=sampling, selection=dict(selection or {}), records=tuple(records), wall_seconds=round(wall, 2),
        peak_rss_mib=peak_rss_mib(), speed=speed, interrupted=interrupted, remedies=remedies,
    )


def model_counters(model: Model) -> dict[str, float] | None:
    """What the model says its last ``sample`` call cost (``Model.last_cost``); None for a model that does not count
    (a test double)."""
    cost = model.last_cost
    return None if cost is None else asdict(cost)


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


# --- output --------------------------------------------------------------------------------------------------------


def report_to_dict(report: Report) -> dict:
    """The report as the JSON that ``--report`` writes."""
    def rate(value):
        return None if value is None else round(value, 4)

    results = []
    for s in report.summaries:
        results.append({
            "candidates": s.candidates, "label": s.label, "questions": s.questions, "right": s.right,
            "ex": rate(s.ex), "valid": s.valid, "invalid": s.invalid, "failed": s.failed,
            "valid_share": rate(s.share(s.valid)), "invalid_share": rate(s.share(s.invalid)),
            "failed_share": rate(s.share(s.failed)), "no_answer": s.no_answer,
            "hardness": {level: {"questions": n, "right": r, "ex": rate(r / n if n else None)}
                         for level, (n, r) in s.by_hardness.items()},
        })
    return {
        "edgesql": __version__,
        "dataset": {"path": report.dataset, "layout": report.layout, "metric": report.metric, **report.selection},
        "model": report.model,
        "sampling": {"candidates": report.sampling.candidates, "temperature": report.sampling.temperature,
                     "seed": report.sampling.seed, "max_tokens": report.sampling.max_tokens},
        "remedies": asdict(report.remedies),
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
        "hardness": record.hardness, "skipped": record.skipped, "error": record.error, "seconds": record.seconds,
        "tokens": record.tokens,
        "answers": [{"candidates": o.candidates, "sql": o.sql, "right": o.right, "votes": o.votes, "valid": o.valid,
                     "invalid": o.invalid, "failed": o.failed, "error": o.error} for o in record.outcomes],
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
