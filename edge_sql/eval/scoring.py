"""Scoring one prediction: run it and the gold query on every comparison database and compare the results by the
rules of Spider's official evaluator (or BIRD's set equality); see :mod:`edge_sql.eval.metric`."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge_sql.errors import DatabaseError, QueryFailed
from edge_sql.eval.datasets import Example
from edge_sql.eval.metric import SCORE_TIMEOUT, fetch, order_matters, prediction_line, results_match, rewrite, set_match
from edge_sql.steps.database import detect_engine, open_database
from edge_sql.steps.execute import execute
from edge_sql.steps.sandbox import isolate

#: The most rows of a DuckDB result that are scored (SQLite results are read whole, as the official script does).
MAX_SCORED_ROWS = 1_000_000



def run_for_score(path: Path, sql: str, open_db: Callable, limit: int | None = None) -> list[tuple]:
    """Every row of ``sql`` on ``path`` (at most ``limit + 1`` of them, with ``limit``): SQLite as the official
    evaluator reads it; DuckDB on the run's own read-only, locked-down connection from ``open_db(path)`` (DuckDB
    allows one configuration of a file per process)."""
    try:
        if detect_engine(path) == "sqlite":
            return fetch(path, sql, limit=limit)
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
            # Spider's rule: more rows than the gold result cannot match (BIRD compares sets: it reads them all)
            rows = run_for_score(path, sql, open_db, limit=len(gold_rows) if metric == "spider" else None)
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
    """The databases a run has opened (read-only, locked down), each opened once and closed at the end. Queries run
    in each database's worker process (``steps/sandbox.py``); only the last database used keeps its worker running,
    the others start theirs again when next used."""

    def __enter__(self) -> Callable:
        self.stack, self.opened, self.last = ExitStack(), {}, None
        return self.open

    def open(self, path: Path):
        if path not in self.opened:
            self.opened[path] = self.stack.enter_context(isolate(open_database(path)))
        if self.last not in (None, path):
            self.opened[self.last].worker.close()
        self.last = path
        return self.opened[path]

    def __exit__(self, *exc) -> None:
        self.stack.close()
