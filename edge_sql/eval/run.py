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

import time
from collections import Counter
from dataclasses import asdict, replace
from typing import Callable

from edge_sql.backends import Model
from edge_sql.errors import EdgeSQLError, QueryFailed, UsageError
from edge_sql.eval.datasets import Dataset, Example, comparison_files
from edge_sql.eval.hardness import hardness, hardness_of
from edge_sql.eval.metric import prediction_line
from edge_sql.eval.report import Outcome, Record, Report, measure_speed, peak_rss_mib
from edge_sql.eval.scoring import Databases, is_right, run_gold
from edge_sql.pipeline import Limits, Merger, Setup, conclude, deliberate
from edge_sql.remedies import Remedies
from edge_sql.steps.database import open_database
from edge_sql.steps.generate import Sampling
from edge_sql.steps.sandbox import isolate
from edge_sql.steps.validate import (EMPTY, EXECUTION_ERROR, PARSE_ERROR, REFUSED, TIMEOUT, UNKNOWN_COLUMN,
                                     UNKNOWN_TABLE)

#: Verdicts of a candidate that did not pass validation, and of one that passed but failed to run.
INVALID = frozenset({EMPTY, PARSE_ERROR, REFUSED, UNKNOWN_TABLE, UNKNOWN_COLUMN})
FAILED = frozenset({EXECUTION_ERROR, TIMEOUT})


def evaluate_example(example: Example, layout: str, metric: str, model: Model, sampling: Sampling,
                     counts: tuple[int, ...], limits: Limits, open_db: Callable,
                     remedies: Remedies = Remedies(), merger: Merger = Merger()) -> Record:
    """Run one question through the pipeline and score its answer for each candidate count; never raises for a bad
    example (a missing database, a gold query that fails, an empty question): it is skipped with the reason."""
    return evaluate_variants(example, layout, metric, model, sampling, counts, limits, open_db, (remedies,),
                             merger=merger)[0]


def evaluate_variants(example: Example, layout: str, metric: str, model: Model, sampling: Sampling,
                      counts: tuple[int, ...], limits: Limits, open_db: Callable,
                      variants: tuple[Remedies, ...], merger: Merger = Merger()) -> list[Record]:
    """:func:`evaluate_example` for several remedies that prompt the model alike (the same grammar, pruning and
    hints; they differ in their second rounds): one deliberation serves them all. One record each, in order; each
    record's seconds are the deliberation's plus its own conclusion's."""
    first = variants[0]
    if any((v.constrain, v.grammar, v.prune, v.hints) != (first.constrain, first.grammar, first.prune, first.hints)
           for v in variants):
        raise ValueError("variants must share constrain, grammar, prune and hints: they would prompt the model "
                         "differently")
    record = Record(example.index, example.db_id, example.question, example.gold, kind=example.kind)
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
    record = replace(record, gold_empty=not any(rows for _, rows in gold.results))
    started = time.perf_counter()
    try:
        setup = Setup(db, model, sampling, limits, first, merger)
        deliberation = deliberate(example.question, setup)
    except UsageError as error:
        return [replace(record, skipped=f"question refused: {error}")] * len(variants)
    except EdgeSQLError as error:  # the pipeline cannot answer at all (a model that failed): every count is wrong
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
            try:
                answer = conclude(deliberation, replace(setup, remedies=remedies), candidates=k)
            except EdgeSQLError as error:  # a second round that failed (the model): this count is wrong, go on
                outcomes.append(Outcome(k, prediction_line(None), False, error=str(error)))
                continue
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
                confidence=None if answer.confidence is None else round(answer.confidence, 4),
                signals=None if answer.signals is None else answer.signals.to_dict(),
            ))
        records.append(replace(record, outcomes=tuple(outcomes), seconds=round(seconds, 4),
                               tokens=dict(deliberation.tokens), costs=costs))
    return records


def evaluate(dataset: Dataset, examples: list[Example], model: Model, sampling: Sampling, counts: tuple[int, ...],
             limits: Limits = Limits(), *, selection: dict | None = None,
             progress: Callable[[Record], None] | None = None, remedies: Remedies = Remedies(),
             workers: int = 1, merger: Merger = Merger()) -> Report:
    """Evaluate ``model`` on ``examples``: one sampling pass of ``max(counts)`` candidates a question, scored for
    each count. Ctrl-C ends the run early with a report of the questions done (``interrupted``).

    With ``workers`` > 1, that many questions are in flight together (a model that may be asked from several threads
    at once: a server); each worker opens its own connections, and the records keep the questions' order, so the
    report is the sequential run's."""
    counts = tuple(sorted(set(counts)))
    sampling = replace(sampling, candidates=max(counts))
    records, interrupted = [], False
    started = time.perf_counter()

    def one(example: Example, open_db: Callable) -> Record:
        return evaluate_example(example, dataset.layout, dataset.metric, model, sampling, counts, limits, open_db,
                                remedies, merger)

    if workers > 1:
        records, interrupted = evaluate_together(examples, one, workers, progress)
    else:
        with Databases() as open_db:
            try:
                for example in examples:
                    record = one(example, open_db)
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
        merge_model=merger.model.name if remedies.merge and merger.model is not None else None,
    )


def evaluate_together(examples: list[Example], one: Callable, workers: int,
                      progress: Callable[[Record], None] | None) -> tuple[list[Record], bool]:
    """``one(example, open_db)`` for every example, ``workers`` at a time, each worker thread with its own
    connections; the records in the examples' order, and whether Ctrl-C cut the run short."""
    import threading
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
    from contextlib import ExitStack

    local, guard, done, interrupted = threading.local(), threading.Lock(), {}, False
    with ExitStack() as stack:
        shared = stack.enter_context(Databases())

        def open_db(path):
            """This thread's connection to ``path``: SQLite opens the file again; DuckDB opens a file once a process,
            so a thread gets a cursor of that one connection (the same locked-down, read-only database). Each thread's
            queries run in its own worker process; only the database it used last keeps its worker running."""
            views = local.__dict__.setdefault("views", {})
            if path not in views:
                with guard:
                    database = shared(path)
                    if database.engine == "duckdb":
                        views[path] = replace(database, connection=database.connection.cursor(), worker=None)
                        stack.callback(views[path].close)
                    else:
                        views[path] = stack.enter_context(open_database(path))
                    isolate(views[path])
            last = getattr(local, "last", None)
            if last not in (None, path):
                views[last].worker.close()
            local.last = path
            return views[path]

        def run(position: int, example: Example) -> tuple[int, Record]:
            return position, one(example, open_db)

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgesql-eval")
        pending = {pool.submit(run, position, example) for position, example in enumerate(examples)}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    position, record = future.result()
                    done[position] = record
                    if progress:
                        progress(record)
        except KeyboardInterrupt:
            interrupted = True
        pool.shutdown(wait=not interrupted, cancel_futures=True)
    return [done[position] for position in sorted(done)], interrupted


def model_counters(model: Model) -> dict[str, float] | None:
    """What the model says its last ``sample`` call cost (``Model.last_cost``); None for a model that does not count
    (a test double)."""
    cost = model.last_cost
    return None if cost is None else asdict(cost)
