"""Training pairs written by rule from the training databases' own values: ``edgesql train --pairs dates``.

Spider's training questions rarely filter on a date, and a model trained on them writes ``payment_date =
'2005-06-15'`` against timestamps, ``LIKE '2005%'`` for a month, ``'1920-12-19'`` for "December 19, 2020". The
``dates`` pairs ask about the date columns :func:`~edge_sql.train.date_columns.find_date_columns` finds, by templates
with varied wording (:mod:`edge_sql.train.wording`), each with its gold query in both engines' SQL (here on a column
``c`` of ISO timestamps; a column of ISO days compares itself: ``c = '2020-12-19'``, ``c = DATE '2020-12-19'``):

- ``year``: "How many guests were born in 1995?" ``strftime('%Y', c) = '1995'``; DuckDB ``year(c) = 1995``
- ``month``: "… in March of 2010?" ``strftime('%Y-%m', c) = '2010-03'``; DuckDB ``strftime(c, '%Y-%m') =
  '2010-03'``, ``date_trunc('month', c) = DATE '2010-03-01'`` or ``year(c) = 2010 AND month(c) = 3``
- ``day``: "… on 19 Dec 2020?", "on the 19th of December 2020", "on 2020-12-19": ``date(c) = '2020-12-19'``;
  DuckDB ``CAST(c AS DATE) = DATE '2020-12-19'``
- ``before``, ``after``, ``since``, ``between`` (days included): ``date(c) < '2016-03-01'``, ``date(c) BETWEEN '…'
  AND '…'``; DuckDB ``CAST(c AS DATE) < DATE '2016-03-01'``
- ``before_year``, ``after_year``, ``between_years``: "… before 2010?" ``strftime('%Y', c) < '2010'``; DuckDB
  ``year(c) < 2010``
- ``per_year``, ``per_month``: "How many … in each year?", "… in each month of 2022?" ``GROUP BY strftime('%Y',
  c)``; DuckDB ``GROUP BY year(c)``, ``month(c)``
- ``latest``, ``earliest``: "What is the latest …?" ``max(c)``; "Which … has the earliest …? Give its name."
  ``ORDER BY c ASC LIMIT 1``

A column of years compares numbers (``c = 1995``, ``c BETWEEN 2005 AND 2010``); a column of dates written for
people (``'October 21, 2011'``) is asked about by year, month and day only, compared as text (``c LIKE '%2011%'``,
``c = 'October 21, 2011'``). A filter's question counts the rows or, when the table has a name or title column,
lists it.

Only values the column holds are asked about. A pair is kept only when its gold query passes the checks ``ask``'s
candidates pass (:func:`~edge_sql.steps.validate.validate`, and the decoding-time check: the model can write it),
runs read-only, returns rows, and returns what the values read in Python say it must (the number of rows in that
year, the latest value, …). A SQLite database also gets a DuckDB copy in ``folder`` whose date columns are ``DATE``
or ``TIMESTAMP`` (:mod:`edge_sql.eval.duckdb_copy`), and each of its pairs a DuckDB twin kept only when its result
equals the SQLite gold's. The same seed writes the same pairs.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from edge_sql.errors import EdgeSQLError
from edge_sql.eval.datasets import Example
from edge_sql.eval.duckdb_copy import convert
from edge_sql.steps.constrain import Check
from edge_sql.steps.database import open_database
from edge_sql.steps.execute import execute
from edge_sql.steps.validate import validate
from edge_sql.train.date_columns import DateColumn, find_date_columns
from edge_sql.train.date_drafts import MAX_ROWS, MIN_DISTINCT, Draft, canonical, column_drafts

#: The families of pairs ``--pairs`` writes.
KINDS = ("dates",)


@dataclass(frozen=True)
class Mix:
    """What ``edgesql train --pairs`` adds to the training pairs: pairs of ``kind``, as many as ``share`` of them."""

    kind: str
    share: float = 0.1


@dataclass(frozen=True)
class Pair:
    """A question and its gold query on one database, and the template that wrote it."""

    question: str
    query: str
    db: Path
    template: str
    engine: str  # the engine of ``db``: "sqlite" or "duckdb"


@dataclass(frozen=True)
class Written:
    """Every pair written from some databases, the number of databases that have one, and why the other drafts
    were dropped (reason -> count)."""

    pairs: tuple[Pair, ...]
    databases: int
    dropped: dict = field(default_factory=dict)


def write_pairs(kind: str, databases: Iterable[Path], folder: Path, seed: int = 42, count: int | None = None,
                say: Callable[[str], None] = lambda line: None) -> Written:
    """The ``kind`` pairs of the databases (SQLite or DuckDB files), verified as the module says: every pair that
    can be written, database by database; or, with ``count``, that many drawn with ``seed`` (fewer when there are
    not as many), only those verified. A SQLite database's DuckDB copy is written in ``folder``/database when one of
    its DuckDB pairs is verified."""
    if kind not in KINDS:
        raise ValueError(f"no pairs of kind {kind!r}: {', '.join(KINDS)}")
    dropped: Counter = Counter()
    sources, names = [], set()
    for path in sorted({Path(p) for p in databases}, key=str):
        name = path.stem
        while name in names:  # two databases of one name (in other folders): their copies must not collide
            name += "_"
        names.add(name)
        source = Source.read(path, folder / "database" / name / f"{name}.duckdb", seed, dropped)
        if source is not None:
            sources.append(source)
    wanted = [(source, index, engine) for source in sources for index in range(len(source.drafts))
              for engine in source.engines]
    if count is not None:
        random.Random(seed).shuffle(wanted)
    pairs: list[Pair] = []
    while wanted and (count is None or len(pairs) < count):
        batch = wanted if count is None else wanted[:count - len(pairs)]
        wanted = wanted[len(batch):]
        for source in {id(s): s for s, _, _ in batch}.values():
            source.verify({(index, engine) for s, index, engine in batch if s is source})
        pairs.extend(source.pair(index, engine) for source, index, engine in batch
                     if source.verified.get((index, engine)) is not None)
    used = len({pair.db.stem for pair in pairs})
    say(f"{len(pairs):,} {kind} pairs written by rule from {used} of the databases")
    return Written(tuple(pairs), used, dict(dropped))


@dataclass
class Source:
    """One database's drafts and what running them said: ``verified`` maps (draft, engine) to its rows, or None
    when the draft was dropped there."""

    path: Path
    engine: str
    copy: Path
    columns: list[DateColumn]
    drafts: list[Draft]
    dropped: Counter
    verified: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path, copy: Path, seed: int, dropped: Counter) -> "Source | None":
        try:
            columns = [c for c in find_date_columns(path) if distinct(c) >= MIN_DISTINCT]
            with open_database(path) as db:
                schema, engine = db.schema, db.engine
        except EdgeSQLError:
            dropped["database cannot be opened"] += 1
            return None
        drafts = [d for column in columns for d in column_drafts(column, schema, seed, path.stem)]
        return cls(path, engine, copy, columns, drafts, dropped) if drafts else None

    @property
    def engines(self) -> tuple[str, ...]:
        """The engines its pairs are written for: its own, and DuckDB (on a copy) for a SQLite database."""
        return ("sqlite", "duckdb") if self.engine == "sqlite" else (self.engine,)

    def verify(self, wanted: set[tuple[int, str]]) -> None:
        """Run the wanted (draft, engine) queries not run yet. A DuckDB twin runs on the copy (written the first
        time one is wanted) only when its SQLite draft was kept, and must return the same rows."""
        own = sorted({index for index, engine in wanted if engine == self.engine or self.engine == "sqlite"})
        self.run([i for i in own if (i, self.engine) not in self.verified], self.path, self.engine)
        twins = sorted(index for index, engine in wanted if engine == "duckdb" and self.engine == "sqlite"
                       and (index, engine) not in self.verified and self.verified[(index, "sqlite")] is not None)
        if twins:
            if not self.copy.is_file():
                convert(self.path, self.copy, {(c.table.lower(), c.column.lower()): c.storage.upper()
                                               for c in self.columns if c.storage in ("date", "timestamp")})
            self.run(twins, self.copy, "duckdb")
        for key in wanted:
            self.verified.setdefault(key, None)

    def run(self, indexes: list[int], path: Path, engine: str) -> None:
        ran = run_drafts([self.drafts[i] for i in indexes], path, engine, self.dropped)
        for position, index in enumerate(indexes):
            rows = ran.get(position)
            if rows is not None and engine != self.engine:  # a twin: the rows of the original
                if Counter(rows) != Counter(self.verified[(index, self.engine)]):
                    self.dropped[f"{engine}: result differs from {self.engine}'s"] += 1
                    rows = None
            self.verified[(index, engine)] = rows

    def pair(self, index: int, engine: str) -> Pair:
        draft = self.drafts[index]
        return Pair(draft.question, draft.sql[engine], self.copy if engine != self.engine else self.path,
                    draft.template, engine)


def distinct(column: DateColumn) -> int:
    return len(column.years if column.storage == "year" else column.days)


def run_drafts(drafts: list[Draft], path: Path, engine: str, dropped: Counter) -> dict[int, tuple]:
    """The rows (as :func:`canonical` reads them) of each draft, by its position, whose ``engine`` query ask's checks
    let through and that returns what it must; the others are counted in ``dropped``."""
    kept = {}
    with open_database(path) as db:
        check = Check(db.schema, judge=lambda sql: validate(sql, db.schema).ok)
        for position, draft in enumerate(drafts):
            sql = draft.sql[engine]
            cursor = check.start().feed(sql)
            if cursor is None or not cursor.can_end():  # can_end: the whole query passes validate
                dropped[f"{engine}: refused by ask's checks"] += 1
                continue
            try:
                result = execute(db, sql, max_rows=MAX_ROWS, timeout=10.0)
            except EdgeSQLError:
                dropped[f"{engine}: fails"] += 1
                continue
            rows = tuple(tuple(canonical(v) for v in row) for row in result.rows)
            if not rows or result.truncated:
                dropped[f"{engine}: no rows" if not rows else f"{engine}: too many rows"] += 1
            elif len(rows) != draft.size or (draft.rows is not None and Counter(rows) != Counter(draft.rows)):
                dropped[f"{engine}: not the result the values say"] += 1
            else:
                kept[position] = rows
    return kept


def as_examples(pairs: list[Pair], first_index: int) -> list[Example]:
    """The pairs as training examples, numbered from ``first_index``, each tagged ``dates/<template>``."""
    return [Example(first_index + i, p.question, p.query, p.db.stem, p.db, kind=f"dates/{p.template}")
            for i, p in enumerate(pairs)]


def write_jsonl(pairs: Iterable[Pair], path: Path) -> None:
    """The pairs as a JSONL file ``edgesql eval`` and ``edgesql train`` read (``db`` relative to the file where it
    can be), each with its ``kind`` tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for pair in pairs:
        try:
            db = os.path.relpath(pair.db.resolve(), path.parent.resolve())
        except ValueError:  # another drive
            db = str(pair.db.resolve())
        lines.append(json.dumps({"question": pair.question, "query": pair.query, "db": db,
                                 "kind": f"dates/{pair.template}"}, ensure_ascii=False) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
