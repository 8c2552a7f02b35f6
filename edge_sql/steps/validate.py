"""Judge each candidate before it runs: one read-only query, over tables and columns that exist.

A :class:`Verdict` says what became of a candidate; its kind is one of the :data:`KINDS` named below. ``validate``
gives ``valid``, ``empty``, ``parse_error``, ``refused`` (the guard's statement check), ``unknown_table`` or
``unknown_column``; running it later may add ``execution_error`` or ``timeout``, and a candidate cut short by an
early stop is ``stopped``. A valid verdict carries the SQL to run: the checked syntax tree written in the engine's
dialect (transpiled when the model wrote another dialect), so what runs is exactly what was checked. A verdict for an
unknown table, or a column sqlglot could not resolve, names it:

>>> from edge_sql.steps.schema import Column, Schema, Table
>>> shop = Schema("sqlite", (Table("products", (Column("name", "TEXT"), Column("price", "REAL"))),))
>>> validate("SELECT name FROM products WHERE price > 10", shop).kind
'valid'
>>> validate("SELECT colour FROM products", shop).error
"Column 'colour' could not be resolved. Line: 1, Col: 13"
>>> validate("SELECT colour FROM products", shop).name
'colour'
>>> validate("SELECT name FROM customers", shop).kind, validate("SELECT name FROM customers", shop).name
('unknown_table', 'customers')

Small models write SQLite's habits whatever the engine: a double-quoted word that names no column (nor an ``AS``
name) is a string, as SQLite reads it, on DuckDB too (where it would be read as a column, and fail). The SQL to run,
and shown, is written with the string quoted as a string; a double-quoted name that is a column stays that column:

>>> validate("SELECT", shop).kind
'parse_error'
>>> validate('SELECT price FROM products WHERE name = "Kettle"', shop).sql
"SELECT price FROM products WHERE name = 'Kettle'"
>>> on_duckdb = Schema("duckdb", shop.tables)
>>> validate('SELECT price FROM products WHERE name = "Kettle"', on_duckdb).sql
"SELECT price FROM products WHERE name = 'Kettle'"
>>> validate('SELECT "name" FROM products WHERE "price" > 10', on_duckdb).sql
'SELECT "name" FROM products WHERE "price" > 10'
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.qualify_columns import validate_qualify_columns
from sqlglot.optimizer.scope import traverse_scope
from sqlglot.schema import MappingSchema

from edge_sql.steps import guard
from edge_sql.errors import QueryRefused
from edge_sql.steps.schema import Schema, quote_name

#: Dialects tried, in order, when a candidate does not parse in the engine's own (small models write MySQL-isms).
OTHER_DIALECTS = ("sqlite", "duckdb", "mysql", "postgres")

#: The kinds of verdict. Their values appear in JSON output and reports: they must not change.
VALID = "valid"
EMPTY = "empty"
PARSE_ERROR = "parse_error"
REFUSED = "refused"
UNKNOWN_TABLE = "unknown_table"
UNKNOWN_COLUMN = "unknown_column"
EXECUTION_ERROR = "execution_error"
TIMEOUT = "timeout"
STOPPED = "stopped"
KINDS = (VALID, EMPTY, PARSE_ERROR, REFUSED, UNKNOWN_TABLE, UNKNOWN_COLUMN, EXECUTION_ERROR, TIMEOUT, STOPPED)


@dataclass(frozen=True)
class Verdict:
    kind: str
    error: str | None = None
    sql: str | None = None  # the SQL to run, for a valid candidate
    ordered: bool = False  # the query's result order is part of its answer (a top-level ORDER BY)
    name: str | None = None  # the table (unknown_table) or column (unknown_column) that does not exist, when known

    @property
    def ok(self) -> bool:
        return self.kind == VALID

    def failed(self, kind: str, error: str) -> "Verdict":
        """The same candidate, judged again after it failed to run."""
        return replace(self, kind=kind, error=error)


def validate(sql: str, schema: Schema) -> Verdict:
    dialect = schema.engine
    if not sql.strip():
        return Verdict(EMPTY, "the model produced no SQL")
    try:
        tree = parse_checked(sql, dialect)
    except QueryRefused as refusal:
        kind = PARSE_ERROR if refusal.rule == "parse" else REFUSED
        return Verdict(kind, str(refusal))
    if any(not select.expressions for select in tree.find_all(exp.Select)):
        return Verdict(PARSE_ERROR, "a SELECT with nothing to select")
    tree = unquote_strings(tree, schema)  # SQLite's rule, on both engines
    missing = unknown_tables(tree, schema)
    if missing:
        known = ", ".join(quote_name(t.name) for t in schema.tables)
        return Verdict(UNKNOWN_TABLE, f"no such table: {missing} (tables: {known})", name=missing)
    problem = unknown_column(tree, schema) or second_opinion(sql, schema)
    if problem:
        error, column = problem
        return Verdict(UNKNOWN_COLUMN, error, name=column)
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
    """SQLite reads a double-quoted word that names no column as a string (``name = "Bob"``): write it as one.

    Applied on every engine (DuckDB would read the word as a column, and fail): a name of a column of the schema, of
    an ``AS`` name, of a column a table alias lists (``WITH t("n") AS ...``) or of a table function (DuckDB's
    ``range(3)`` has a column ``range``) stays a column; a qualified name (``p."name"``) is always a column."""
    names = known_names(tree, schema)

    def fix(node):
        return exp.Literal.string(node.name) if reads_as_string(node, names) else node

    return tree.transform(fix)


def quoted_strings(tree: exp.Expression, schema: Schema) -> set[str]:
    """The double-quoted words of ``tree`` that SQLite reads as strings (:func:`unquote_strings`' rule)."""
    names = known_names(tree, schema)
    return {node.name for node in tree.find_all(exp.Column) if reads_as_string(node, names)}


def known_names(tree: exp.Expression, schema: Schema) -> set[str]:
    """The lower-cased names a double-quoted word of ``tree`` can be: columns of the schema, ``AS`` names, columns a
    table alias lists, table functions."""
    names = {c.name.lower() for t in schema.tables for c in t.columns}
    names |= {a.alias.lower() for a in tree.find_all(exp.Alias)}
    names |= {c.name.lower() for alias in tree.find_all(exp.TableAlias) for c in alias.columns}
    names |= {t.this.sql(dialect=schema.engine).split("(", 1)[0].lower() for t in tree.find_all(exp.Table)
              if not isinstance(t.this, exp.Identifier)}
    return names


def reads_as_string(node: exp.Expression, names: set[str]) -> bool:
    return (isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier)
            and node.this.quoted and node.name.lower() not in names)


def unknown_tables(tree: exp.Expression, schema: Schema) -> str | None:
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # an allow-listed table function such as range(10)
        name = table.name if not table.db or table.db.lower() == "main" else f"{table.db}.{table.name}"
        if name.lower() not in ctes and schema.table(name) is None:
            return name
    return None


def unknown_column(tree: exp.Expression, schema: Schema) -> tuple[str, str | None] | None:
    """sqlglot's qualifier resolves every column against the schema; its complaint, if any, with the column it could
    not resolve (None for its other complaints: an ambiguous column, an unknown qualified column, a bad join).

    The qualifier runs without its final check, which then runs on the qualified tree: sqlglot's error is what it
    always was, and the column it names is read from the same tree, not from the error's text.
    """
    if any("." in t.name for t in schema.tables):
        return None  # tables outside the main schema: leave columns to the engine
    try:
        qualified = qualify(tree.copy(), schema=MappingSchema(schema.mapping(), dialect=schema.engine),
                            dialect=schema.engine, validate_qualify_columns=False, quote_identifiers=False)
    except OptimizeError as error:
        return str(error), None
    except Exception:  # the qualifier cannot follow this query; the engine will judge its columns
        return None
    try:
        validate_qualify_columns(qualified)
    except OptimizeError as error:
        return str(error), unresolved_column(qualified)
    except Exception:  # as above
        return None
    return None


def second_opinion(sql: str, schema: Schema) -> tuple[str, str] | None:
    """What the decoding-time check's scope tracker finds that sqlglot's qualifier lets pass (``constrain.scope_error``):
    names the engines would refuse. Tables outside the main schema are left to the engine, as above."""
    if any("." in t.name for t in schema.tables):
        return None
    from edge_sql.steps.constrain import scope_error

    return scope_error(sql, schema)


def unresolved_column(qualified: exp.Expression) -> str | None:
    """The column sqlglot's ``validate_qualify_columns`` reports as "could not be resolved": the first column of a
    SELECT's scope (in sqlglot's scope order) that no source of that scope provides; None when there is none."""
    for scope in traverse_scope(qualified):
        if (isinstance(scope.expression, exp.Select) and scope.external_columns and not scope.is_correlated_subquery
                and not scope.pivots):
            return scope.external_columns[0].name
    return None


def is_ordered(tree: exp.Expression) -> bool:
    while isinstance(tree, exp.Subquery):
        tree = tree.this
    return tree.args.get("order") is not None
