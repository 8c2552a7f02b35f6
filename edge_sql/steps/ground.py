"""Grounding: whether the values a candidate compares text columns with are stored in them.

A small model asked about customers from Brazil wrote ``WHERE city = 'Bresaille'``: a value in no column, so the
query ran, answered 0, and four candidates out of five agreed. Such a value is found out by looking it up.

Every comparison of a text column with string literals is looked up, in any clause or subquery: ``=``, ``!=``,
``IN`` and ``NOT IN``, ``LIKE``, ``ILIKE`` and ``GLOB`` with or without wildcards, the column bare or inside a function
(``LOWER(city) LIKE 'bra%'``). The column is followed through the query's aliases, CTEs and derived tables to a
table of the database (:func:`comparisons`), and the comparison, as the candidate wrote it, becomes one cheap query on
that table: ``SELECT 1 FROM customers WHERE city = 'Bresaille' LIMIT 1``. The engine's own comparison decides, so its
rules hold (SQLite's ``LIKE`` ignores ASCII case, a ``NOCASE`` column too). A negative comparison is looked up as
the positive one: a value that ``!=`` or ``NOT IN`` names and no row holds excludes nothing, also a mistake. An
``IN`` list is found when any of its values is. Each comparison comes out:

- ``found``: a row matches it;
- ``case``: no row matches, but one does when case is ignored: the comparison filters out the very rows it meant,
  so it counts as not found; the stored spelling is given (``'Paris'`` for ``city = 'paris'``);
- ``missing``: no row matches; the column's stored values closest to it are given (read as value hints read them,
  :mod:`edge_sql.steps.hints`);
- ``unknown``: not looked up (out of time, or the lookup failed): it counts as found.

Lookups run as every candidate does (:func:`edge_sql.steps.execute.execute`: the database's worker, its read-only
connection, its time and memory limits), at most :data:`LOOKUP_SECONDS` each and :data:`BUDGET_SECONDS` for one
candidate's, each with ``LIMIT 1``; their outcomes are kept for the session, per database file and comparison, so a
value that five candidates compare with is looked up once. A query without a string literal is not even parsed.
Numbers are not looked up: a number in a question is more often a threshold than a stored value.
"""

from __future__ import annotations

import difflib
import time
import unicodedata
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema

from edge_sql.errors import QueryFailed, QueryTimeout
from edge_sql.steps.database import Database
from edge_sql.steps.execute import DEFAULT_MEMORY, execute
from edge_sql.steps.hints import file_key, is_hintable, stored_values
from edge_sql.steps.schema import Column, Schema, Table, quote_identifier, quote_value

#: The seconds one lookup may take, and all the lookups of one candidate together.
LOOKUP_SECONDS = 1.0
BUDGET_SECONDS = 2.0
#: Closest stored values named for a value that is not stored.
CLOSEST = 3
#: Outcomes kept per database file, and files kept.
CACHED_LOOKUPS = 10_000
CACHED_FILES = 4

FOUND, CASE, MISSING, UNKNOWN = "found", "case", "missing", "unknown"

#: The comparisons looked up, and how a message names each (a negative one is looked up as its positive).
OPERATORS = {exp.EQ: "=", exp.NEQ: "=", exp.In: "in", exp.Like: "like", exp.ILike: "ilike", exp.Glob: "glob"}


@dataclass(frozen=True)
class Comparison:
    """One comparison of a table's text column with string literals, and the queries that look it up."""

    table: str
    column: str  # the column's name, or the expression over it as written (``LOWER(city)``)
    operator: str  # "=", "in", "like", "ilike" or "glob"
    values: tuple[str, ...]
    query: str  # a row of the table that the comparison matches, if any
    fallback: str | None = None  # the stored spellings that match it when case is ignored (a bare column only)
    stored: str = ""  # the column's own name, to read its stored values


@dataclass(frozen=True)
class Lookup:
    """What looking a comparison up found: ``found`` (:data:`FOUND`, :data:`CASE`, :data:`MISSING` or
    :data:`UNKNOWN`), and the stored values closest to it when it is not found."""

    table: str
    column: str
    operator: str
    values: tuple[str, ...]
    found: str
    closest: tuple[str, ...] = ()

    @property
    def grounded(self) -> bool:
        """Stored, or not known not to be: only a lookup that found nothing counts against a candidate."""
        return self.found in (FOUND, UNKNOWN)

    @property
    def stored(self) -> bool:
        return self.found == FOUND

    def message(self) -> str:
        """One line for the user about a comparison that matched no row.

        >>> Lookup("customers", "city", "=", ("Bresaille",), MISSING, ("Marseille", "Berlin")).message()
        "no customer has city 'Bresaille'; closest stored values: 'Marseille', 'Berlin'"
        >>> Lookup("orders", "status", "in", ("lost", "gone"), MISSING).message()
        "no order has status in ('lost', 'gone')"
        >>> Lookup("customers", "city", "=", ("paris",), CASE, ("Paris",)).message()
        "no customer has city 'paris'; stored as 'Paris'"
        """
        if self.operator == "in":
            compared = "in (" + ", ".join(quote_value(v) for v in self.values) + ")"
        elif self.operator == "=":
            compared = quote_value(self.values[0])
        else:
            compared = f"{self.operator} {quote_value(self.values[0])}"
        line = f"no {row_of(self.table)} has {self.column} {compared}"
        if self.closest:
            named = ", ".join(quote_value(v) for v in self.closest)
            line += f"; stored as {named}" if self.found == CASE else f"; closest stored values: {named}"
        return line

    def to_dict(self) -> dict:
        return {"table": self.table, "column": self.column, "operator": self.operator, "values": list(self.values),
                "found": self.found, "closest": list(self.closest), "message": self.message()}


def row_of(table: str) -> str:
    """What one row of ``table`` is called in a message.

    >>> [row_of(t) for t in ("customers", "categories", "order_items", "staff", "main.addresses")]
    ['customer', 'category', 'order_item', 'row of staff', 'address']
    """
    name = table.rsplit(".", 1)[-1]
    if name.lower().endswith("ies"):
        return name[:-3] + "y"
    if name.lower().endswith(("sses", "xes", "ches", "shes")):
        return name[:-2]
    if name.lower().endswith("s") and not name.lower().endswith("ss"):
        return name[:-1]
    return f"row of {table}"


def ground(sql: str | None, db: Database, *, timeout: float = LOOKUP_SECONDS,
           memory: int = DEFAULT_MEMORY) -> tuple[Lookup, ...]:
    """Look up each comparison of a text column with string literals in ``sql`` (a query that ran on ``db``)."""
    if not sql or "'" not in sql:
        return ()
    found = comparisons(sql, db.schema)
    if not found:
        return ()
    deadline = time.monotonic() + BUDGET_SECONDS
    cache = lookups_of(db)
    return tuple(look_up(comparison, db, cache, deadline, min(timeout, LOOKUP_SECONDS), memory)
                 for comparison in found)


def comparisons(sql: str, schema: Schema) -> tuple[Comparison, ...]:
    """The comparisons of a text column with string literals in ``sql``, each traced to its table; none when the
    query cannot be followed (a table outside the main schema, a query sqlglot's qualifier cannot read).

    >>> from edge_sql.steps.schema import Column, Schema, Table
    >>> shop = Schema("sqlite", (Table("customers", (Column("id", "INTEGER"), Column("city", "TEXT"))),))
    >>> found = comparisons("SELECT count(*) FROM customers AS c WHERE c.city = 'Bresaille' AND c.id = 3", shop)
    >>> [(c.table, c.column, c.values) for c in found]
    [('customers', 'city', ('Bresaille',))]
    >>> found[0].query
    'SELECT 1 FROM "customers" WHERE "city" = \\'Bresaille\\' LIMIT 1'
    >>> sql = "WITH t AS (SELECT city AS town FROM customers) SELECT * FROM t WHERE LOWER(town) LIKE 'bre%'"
    >>> [(c.column, c.operator, c.values, c.fallback) for c in comparisons(sql, shop)]
    [('LOWER(city)', 'like', ('bre%',), None)]
    """
    dialect = schema.engine
    if any("." in t.name for t in schema.tables):
        return ()
    try:
        tree = qualify(sqlglot.parse_one(sql, dialect=dialect), schema=MappingSchema(schema.mapping(), dialect=dialect),
                       dialect=dialect, validate_qualify_columns=False, quote_identifiers=False)
        scopes = traverse_scope(tree)
    except Exception:  # the qualifier cannot follow this query: nothing is looked up
        return ()
    found = {}
    for scope in scopes:
        for node in scope.find_all(*OPERATORS):
            comparison = compared(node, scope, schema)
            if comparison is not None:
                found.setdefault(comparison.query, comparison)
    return tuple(found.values())


def compared(node: exp.Expression, scope: Scope, schema: Schema) -> Comparison | None:
    """The comparison ``node`` makes, when one side is over one text column of a table and the other string
    literals."""
    if isinstance(node, exp.In):
        if node.args.get("query") or node.args.get("unnest") or not node.expressions:
            return None
        side, literals = node.this, list(node.expressions)
    elif isinstance(node.parent, exp.Escape):
        return None  # LIKE … ESCAPE: left to the engine
    else:
        side, literals = node.this, [node.expression]
        if isinstance(node, (exp.EQ, exp.NEQ)) and is_string(side):
            side, literals = node.expression, [node.this]
    if not all(is_string(literal) for literal in literals) or side is None:
        return None
    columns = list(side.find_all(exp.Column))
    if len(columns) != 1 or side.find(exp.Select, exp.AggFunc, exp.Window):
        return None
    base = base_column(scope, columns[0], schema)
    if base is None or not is_hintable(base[1].type):
        return None
    table, column = base
    stored = exp.column(column.name, quoted=True)
    # the column side first, the column named as the table names it, and a negative comparison made positive
    positive = node.copy() if isinstance(node, exp.In) or not isinstance(node, (exp.EQ, exp.NEQ)) else \
        exp.EQ(this=side.copy(), expression=literals[0].copy())
    for found in list(positive.find_all(exp.Column)):
        found.replace(stored.copy())
    source = ".".join(quote_identifier(part) for part in table.name.split(".", 1))
    query = f"SELECT 1 FROM {source} WHERE {positive.sql(dialect=schema.engine)} LIMIT 1"
    fallback = None
    if isinstance(side, exp.Column):
        lowered = positive.copy()
        lowered.this.replace(exp.Lower(this=stored.copy()))
        for literal in lowered.find_all(exp.Literal):
            if literal.is_string:
                literal.replace(exp.Lower(this=literal.copy()))
        fallback = (f"SELECT DISTINCT {stored.sql(dialect=schema.engine)} FROM {source} "
                    f"WHERE {lowered.sql(dialect=schema.engine)} LIMIT {CLOSEST}")
    shown = column.name if isinstance(side, exp.Column) else side.copy().transform(
        lambda n: exp.column(column.name) if isinstance(n, exp.Column) else n).sql(dialect=schema.engine)
    return Comparison(table.name, shown, OPERATORS[type(node)], tuple(literal.this for literal in literals), query,
                      fallback, column.name)


def is_string(node: exp.Expression) -> bool:
    return isinstance(node, exp.Literal) and node.is_string


def base_column(scope: Scope, column: exp.Column, schema: Schema, depth: int = 0) -> tuple[Table, Column] | None:
    """The table of the database and its column that ``column`` (qualified by sqlglot) reads, followed through
    CTEs and derived tables whose column is a column of theirs; None for anything else."""
    source = scope.sources.get(column.table)
    if isinstance(source, exp.Table):
        if not isinstance(source.this, exp.Identifier):
            return None  # a table function
        table = schema.table(source.name if not source.db or source.db.lower() == "main"
                             else f"{source.db}.{source.name}")
        if table is None:
            return None
        stored = next((c for c in table.columns if c.name.lower() == column.name.lower()), None)
        return None if stored is None else (table, stored)
    if isinstance(source, Scope) and isinstance(source.expression, exp.Select) and depth < 8:
        for projection in source.expression.expressions:
            inner = projection.unalias()
            if projection.alias_or_name.lower() == column.name.lower() and isinstance(inner, exp.Column):
                return base_column(source, inner, schema, depth + 1)
    return None


def look_up(comparison: Comparison, db: Database, cache: dict, deadline: float, timeout: float,
            memory: int) -> Lookup:
    """The comparison's outcome: from the session's cache, else from the database (cached unless it ran out of
    time for want of budget)."""
    key = (comparison.query, comparison.fallback)
    if key not in cache:
        left = min(timeout, deadline - time.monotonic())
        if left <= 0.01:
            return outcome(comparison, UNKNOWN)
        found, closest = probe(comparison, db, left, memory, deadline)
        if found == UNKNOWN and left < timeout:
            return outcome(comparison, found)
        while len(cache) >= CACHED_LOOKUPS:
            cache.pop(next(iter(cache)))
        cache[key] = found, closest
    return outcome(comparison, *cache[key])


def outcome(comparison: Comparison, found: str, closest: tuple[str, ...] = ()) -> Lookup:
    return Lookup(comparison.table, comparison.column, comparison.operator, comparison.values, found, closest)


def probe(comparison: Comparison, db: Database, timeout: float, memory: int,
          deadline: float) -> tuple[str, tuple[str, ...]]:
    """Run the comparison's lookup, then, when no row matches, its case-blind one; then read the closest values."""
    try:
        if execute(db, comparison.query, max_rows=1, timeout=timeout, memory=memory).rows:
            return FOUND, ()
        if comparison.fallback is not None:
            left = min(timeout, deadline - time.monotonic())
            spellings = execute(db, comparison.fallback, max_rows=CLOSEST, timeout=max(left, 0.01),
                                memory=memory).rows
            if spellings:
                return CASE, tuple(str(row[0]) for row in spellings)
    except (QueryFailed, QueryTimeout):
        return UNKNOWN, ()
    table = db.schema.table(comparison.table)
    column = next(c for c in table.columns if c.name == comparison.stored)
    values = stored_values(db).get(db, table.name, column.name, column.type, deadline).values
    return MISSING, closest_values(comparison.values, values)


def closest_values(wanted, values, limit: int = CLOSEST) -> tuple[str, ...]:
    """The stored values most like any of ``wanted`` (case, accents and wildcards aside), best first.

    >>> closest_values(["Bresaille"], ["Madrid", "Paris", "Marseille", "Berlin", "Barcelona"])
    ('Marseille', 'Barcelona', 'Berlin')
    >>> closest_values(["%brasil%"], ["Brazil", "Spain"], limit=1)
    ('Brazil',)
    """
    keys = [plain(w) for w in wanted]
    scored = []
    for value in dict.fromkeys(values):
        seen = plain(value)
        ratio = max(difflib.SequenceMatcher(None, key, seen).ratio() for key in keys)
        if ratio >= 0.3:
            scored.append((-ratio, len(value), value))
    return tuple(value for *_, value in sorted(scored)[:limit])


def plain(text: str) -> str:
    """``text`` without case, accents or wildcards: how closeness is judged."""
    stripped = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(stripped.casefold().replace("%", " ").replace("*", " ").split())


_CACHES: dict[tuple, dict] = {}


def lookups_of(db: Database) -> dict:
    """The outcomes looked up on ``db``'s file so far, shared by every question asked of the same unchanged file."""
    key = file_key(db)
    if key is None:
        return {}
    if key not in _CACHES:
        while len(_CACHES) >= CACHED_FILES:
            _CACHES.pop(next(iter(_CACHES)))
        _CACHES[key] = {}
    return _CACHES[key]
