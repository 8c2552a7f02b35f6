"""A schema's check, built once and shared by every candidate's cursor; and the validator's second opinion."""

from __future__ import annotations

from functools import lru_cache

from edge_sql.steps.constrain.cursor import Cursor
from edge_sql.steps.constrain.scopes import Refused, Unknown
from edge_sql.steps.constrain.words import FUNCTIONS, KEYWORDS, SOFT_KEYWORDS, SORTING, Names
from edge_sql.steps.database import SQLITE_FUNCTIONS
from edge_sql.steps.schema import Schema


class Check:
    """What a schema allows: built once per schema shown, shared by every candidate's cursor.

    ``prefix`` is the answer's start the prompt writes for the model; with ``reasoning`` the SQL is what the answer's
    ``<answer>`` holds. ``judge(sql)`` says whether a whole query may be the answer (the pipeline passes the
    validator); without it, a query the tracker finds whole may end.
    """

    def __init__(self, schema: Schema, prefix: str = "", reasoning: bool = False, judge=None):
        self.schema = schema
        self.prefix = prefix
        self.reasoning = reasoning
        self.judge = judge
        self.columns = {t.name.lower(): Names(c.name for c in t.columns) for t in schema.tables}
        self.tables = Names(self.columns)
        self.all_columns = Names(c.name for t in schema.tables for c in t.columns)
        # the functions the engine has: SQLite's are what its authorizer lets a query call
        self.functions = SQLITE_FUNCTIONS | {"cast"} if schema.engine == "sqlite" else FUNCTIONS
        self.words = Names(KEYWORDS | SOFT_KEYWORDS | self.functions)
        self.keywords = Names(KEYWORDS | SORTING)  # what may follow a whole operand
        self.having = {}  # column -> the tables that have it
        for table, names in self.columns.items():
            for name in names.set:
                self.having.setdefault(name, set()).add(table)
        self.verdicts: dict[str, bool] = {}

    def start(self) -> Cursor:
        """The cursor of an answer that holds only the prompt's prefix."""
        cursor = Cursor(self)
        if self.reasoning:
            cursor.mode = "think"
        return cursor.feed(self.prefix) or cursor

    def valid(self, sql: str) -> bool:
        """Whether the whole query may be the answer (``judge``), remembered by text."""
        if self.judge is None:
            return True
        verdict = self.verdicts.get(sql)
        if verdict is None:
            verdict = self.verdicts[sql] = bool(self.judge(sql))
        return verdict


@lru_cache(maxsize=16)
def check_of(schema: Schema) -> Check:
    """The check of a schema, kept for the next query over it."""
    return Check(schema)


def scope_error(sql: str, schema: Schema) -> tuple[str, str] | None:
    """The validator's second opinion on a whole query: a column no table in its scope has, or an alias no FROM
    binds, as ``(message, name)``; None when the tracker finds none (or cannot follow the query: then the validator's
    own verdict stands). It sees what sqlglot's qualifier lets pass and the engines refuse: a subquery's ORDER BY
    or GROUP BY naming an outer column, a HAVING over a column of a table not in the query.

    >>> from edge_sql.steps.schema import Column, Schema, Table
    >>> world = Schema("sqlite", (Table("country", (Column("Name", "TEXT"), Column("Continent", "TEXT"))),
    ...                           Table("city", (Column("Name", "TEXT"), Column("District", "TEXT")))))
    >>> scope_error("SELECT Continent FROM country GROUP BY Continent HAVING count(District) > 2", world)
    ('no table in scope has a column district', 'district')
    >>> scope_error("SELECT Continent FROM country GROUP BY Continent", world) is None
    True
    """
    cursor = Cursor(check_of(schema))
    try:
        cursor.take(sql)
        cursor.finish()
    except Unknown as error:
        return str(error), error.name
    except Refused:
        return None
    return None
