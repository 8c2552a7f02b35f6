"""The schema the model sees for one question, pruned as the mode says (value hints go after the question).

Modes (``prune``):

- ``never``: every table and column;
- ``always``: pruned to :data:`ALWAYS` (the caps measured best by ``benchmarks/pruning.py``);
- ``auto``: not pruned unless the prompt does not fit the model; then the pipeline tries :func:`schema_ladder`'s
  schemas in turn, each smaller than the one before, and takes the first that fits.

>>> from edge_sql.steps.schema import Column, ForeignKey, Schema, Table
>>> schema = Schema("sqlite", (
...     Table("singer", (Column("singer_id", "INT", True), Column("name", "TEXT"), Column("age", "INT"))),
...     Table("stadium", (Column("stadium_id", "INT", True), Column("capacity", "INT"))),
... ))
>>> [[t.name for t in s.tables] for s in schema_ladder(schema, "How old is each singer?")]
[['singer', 'stadium'], ['singer']]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from edge_sql.steps.database import Database
from edge_sql.errors import UsageError
from edge_sql.steps.prune import describe_pruning, prune_schema
from edge_sql.remedies import PRUNE_MODES
from edge_sql.steps.schema import Schema


@dataclass(frozen=True)
class Caps:
    """At most ``tables`` tables (beside those the question names) and ``columns`` non-key columns a table."""

    tables: int | None = None
    columns: int | None = None


#: ``always`` mode's caps. On the Spider dev half (benchmarks/pruning.py) 3 tables keep every question's gold tables
#: and 8 non-key columns keep 99.8% of questions' gold columns (6: 98.8%, 4: 94.1%); 4 tables leave a table of room
#: for larger schemas, where the ranking has more to tell apart.
ALWAYS = Caps(tables=4, columns=8)
#: The caps ``auto`` mode tries in turn once the whole schema does not fit, loosest first: each step costs the
#: fewest questions' gold tables and columns for its saving on the Spider dev half (``benchmarks/pruning.py``: tables
#: go before columns, since a capped table keeps the columns its question names less often than a ranking keeps the
#: tables; the steps from 12 tables down keep a large schema as whole as its budget allows).
LADDER = (Caps(None, None), Caps(12, None), Caps(10, None), Caps(8, None), Caps(6, 12), Caps(5, 10), Caps(4, 8),
          Caps(3, 8), Caps(3, 6), Caps(2, 6), Caps(2, 4), Caps(1, 4), Caps(1, 2))


def focus_schema(db: Database, question: str, *, prune: str = "auto") -> Schema:
    """The schema to show the model for ``question``: pruned when ``prune`` is ``always`` (``auto`` returns it whole:
    the pipeline prunes only when it must, with :func:`schema_ladder`)."""
    check_mode(prune)
    schema = db.schema
    if prune == "always":
        return prune_schema(schema, question, max_tables=ALWAYS.tables, max_columns=ALWAYS.columns)
    return schema


def focus_schemas(db: Database, question: str, *, prune: str = "auto") -> Iterator[Schema]:
    """The schemas to try in turn until the prompt fits: one for ``never`` and ``always``, the ladder for ``auto``."""
    check_mode(prune)
    if prune != "auto":
        yield focus_schema(db, question, prune=prune)
        return
    yield from schema_ladder(db.schema, question)


def schema_ladder(schema: Schema, question: str, ladder: tuple[Caps, ...] = LADDER) -> Iterator[Schema]:
    """``schema`` whole, then pruned with each of ``ladder``'s caps in turn, skipping any that is not smaller than
    the one before. Tables the question names are in every one, so the last may still be too large."""
    yield schema
    previous = size_of(schema)
    for caps in ladder:
        pruned = prune_schema(schema, question, max_tables=caps.tables, max_columns=caps.columns)
        size = size_of(pruned)
        if size < previous:
            yield pruned
            previous = size


def fit_note(full: Schema, shown: Schema, samples: bool = True, prune: str = "auto") -> str:
    """A short line that says how much of the schema the model was not shown, and why (no names: ``edgesql schema
    --question`` lists them); "" when it was shown whole.

    >>> from edge_sql.steps.schema import Column, Table
    >>> full = Schema("sqlite", tuple(Table(n, (Column("id", "INT"), Column("x", "TEXT"))) for n in "abcdef")
    ...     + (Table("v", (Column("id", "INT"),), view=True),))
    >>> fit_note(full, Schema("sqlite", full.tables[:2]))
    "schema pruned to 2 of 6 tables and 0 of 1 views to fit the model's context"
    >>> fit_note(full, full, samples=False)
    "sample values left out of the schema to fit the model's context"
    >>> fit_note(full, Schema("sqlite", full.tables[:3]), prune="always")
    'schema pruned to 3 of 6 tables and 0 of 1 views for the question (--prune always)'
    >>> fit_note(full, full)
    ''
    """
    def counted(schema: Schema, view: bool) -> int:
        return sum(1 for t in schema.tables if t.view == view)

    what = ""
    if counted(shown, False) != counted(full, False) or counted(shown, True) != counted(full, True):
        what = f"pruned to {counted(shown, False)} of {counted(full, False)} tables"
        what += f" and {counted(shown, True)} of {counted(full, True)} views" if counted(full, True) else ""
    elif size_of(shown) != size_of(full):
        what = f"pruned to {size_of(shown)[0]} of {size_of(full)[0]} columns"
    if not what and samples:
        return ""
    said = f"schema {what}" + ("" if samples else " and its sample values left out") if what else \
        "sample values left out of the schema"
    why = " to fit the model's context" if prune == "auto" or not samples else f" for the question (--prune {prune})"
    return said + why


def pruning_note(full: Schema, shown: Schema, prune: str) -> str:
    """The line that says what the model is not shown, and why, naming every table and column left out."""
    note = describe_pruning(full, shown)
    if size_of(shown) != size_of(full):
        return note
    return note + {"auto": " (auto prunes only a schema too large for the model; --prune always shows it pruned)",
                   "never": " (--prune never)", "always": " (nothing to leave out)"}[prune]


def size_of(schema: Schema) -> tuple[int, int]:
    """Columns, then tables: what a rendering's length mostly follows."""
    return (sum(len(t.columns) for t in schema.tables), len(schema.tables))


def check_mode(prune: str) -> None:
    if prune not in PRUNE_MODES:
        raise UsageError(f"unknown pruning mode {prune!r}; expected one of {', '.join(PRUNE_MODES)}")
