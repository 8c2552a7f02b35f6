"""Judge each candidate before it runs: one read-only query, over tables and columns that exist.

A :class:`Verdict` says what became of a candidate. ``validate`` gives ``valid``, ``empty``, ``parse_error``,
``refused`` (the guard's statement check), ``unknown_table`` or ``unknown_column``; running it later may add
``execution_error`` or ``timeout``. A valid verdict carries the SQL to run: the checked syntax tree written in the
engine's dialect (transpiled when the model wrote another dialect), so what runs is exactly what was checked.

>>> from edge_sql.steps.schema import Column, Schema, Table
>>> shop = Schema("sqlite", (Table("products", (Column("name", "TEXT"), Column("price", "REAL"))),))
>>> validate("SELECT name FROM products WHERE price > 10", shop).kind
'valid'
>>> validate("SELECT colour FROM products", shop).error
"Column 'colour' could not be resolved. Line: 1, Col: 13"
>>> validate("SELECT name FROM customers", shop).kind
'unknown_table'
>>> validate('SELECT price FROM products WHERE name = "Kettle"', shop).sql
"SELECT price FROM products WHERE name = 'Kettle'"
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from edge_sql.steps import guard
from edge_sql.errors import QueryRefused
from edge_sql.steps.schema import Schema

#: Dialects tried, in order, when a candidate does not parse in the engine's own (small models write MySQL-isms).
OTHER_DIALECTS = ("sqlite", "duckdb", "mysql", "postgres")

VALID = "valid"


@dataclass(frozen=True)
class Verdict:
    kind: str
    error: str | None = None
    sql: str | None = None  # the SQL to run, for a valid candidate
    ordered: bool = False  # the query's result order is part of its answer (a top-level ORDER BY)

    @property
    def ok(self) -> bool:
        return self.kind == VALID

    def failed(self, kind: str, error: str) -> "Verdict":
        """The same candidate, judged again after it failed to run."""
        return replace(self, kind=kind, error=error)


def validate(sql: str, schema: Schema) -> Verdict:
    dialect = schema.engine
    if not sql.strip():
        return Verdict("empty", "the model produced no SQL")
    try:
        tree = parse_checked(sql, dialect)
    except QueryRefused as refusal:
        kind = "parse_error" if refusal.rule == "parse" else "refused"
        return Verdict(kind, str(refusal))
    if dialect == "sqlite":
        tree = unquote_strings(tree, schema)
    missing = unknown_tables(tree, schema)
    if missing:
        known = ", ".join(t.name for t in schema.tables)
        return Verdict("unknown_table", f"no such table: {missing} (tables: {known})")
    problem = unknown_column(tree, schema)
    if problem:
        return Verdict("unknown_column", problem)
    return Verdict(VALID, sql=tree.sql(dialect=dialect), ordered=is_ordered(tree))


def parse_checked(sql: str, dialect: str) -> exp.Expression:
    """The guard's tree for ``sql``; when it does not parse in ``dialect``, the first other dialect that reads it."""
    try:
        return guard.check(sql, dialect)
    except QueryRefused as refusal:
        if refusal.rule != "parse":
            raise
        for other in OTHER_DIALECTS:
            if other == dialect:
                continue
            try:
                return guard.check(sql, other)
            except QueryRefused as again:
                if again.rule != "parse":
                    raise
        raise refusal


def unquote_strings(tree: exp.Expression, schema: Schema) -> exp.Expression:
    """SQLite reads a double-quoted word that names no column as a string (``name = "Bob"``): write it as one."""
    names = {c.name.lower() for t in schema.tables for c in t.columns}
    names |= {a.alias.lower() for a in tree.find_all(exp.Alias)}

    def fix(node):
        if (isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier)
                and node.this.quoted and node.name.lower() not in names):
            return exp.Literal.string(node.name)
        return node

    return tree.transform(fix)


def unknown_tables(tree: exp.Expression, schema: Schema) -> str | None:
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # an allow-listed table function such as range(10)
        name = table.name if not table.db or table.db.lower() == "main" else f"{table.db}.{table.name}"
        if name.lower() not in ctes and schema.table(name) is None:
            return name
    return None


def unknown_column(tree: exp.Expression, schema: Schema) -> str | None:
    """sqlglot's qualifier resolves every column against the schema; its complaint, if any."""
    if any("." in t.name for t in schema.tables):
        return None  # tables outside the main schema: leave columns to the engine
    try:
        qualify(tree.copy(), schema=MappingSchema(schema.mapping(), dialect=schema.engine), dialect=schema.engine,
                validate_qualify_columns=True, quote_identifiers=False)
    except OptimizeError as error:
        return str(error)
    except Exception:  # the qualifier cannot follow this query; the engine will judge its columns
        return None
    return None


def is_ordered(tree: exp.Expression) -> bool:
    while isinstance(tree, exp.Subquery):
        tree = tree.this
    return tree.args.get("order") is not None
