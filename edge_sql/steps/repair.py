"""Repair on error: when every candidate failed, ask again with the failing SQL, the error and the valid names.

Small models fail in predictable ways — a column on the wrong table, a table that does not exist, a function of
another dialect. The repair request is the original question followed by what went wrong, written so that a model
trained on "question → SQL" still reads it as a question. The unknown table or column comes from the failing
candidate's :class:`~edge_sql.steps.validate.Verdict` (its ``kind`` and ``name``), not from its error's text:

>>> from edge_sql.steps.schema import Column, Schema, Table
>>> from edge_sql.steps.validate import validate
>>> shop = Schema("sqlite", (
...     Table("customers", (Column("customer_id", "INTEGER"), Column("name", "TEXT"), Column("country", "TEXT"))),
...     Table("orders", (Column("order_id", "INTEGER"), Column("customer_id", "INTEGER"), Column("total", "REAL")))))
>>> sql = "SELECT COUNT(*) FROM customers WHERE land = 'DE'"
>>> verdict = validate(sql, shop)
>>> verdict.error
"Column 'land' could not be resolved. Line: 1, Col: 41"
>>> print(repair_request("How many customers are in Germany?", sql, verdict.error, shop, kind=verdict.kind,
...                      name=verdict.name))
How many customers are in Germany?
This query failed: SELECT COUNT(*) FROM customers WHERE land = 'DE'
Error: no such column: land
Valid names: customers(customer_id, name, country)
Write a corrected query.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp

from edge_sql.steps.schema import Schema, quote_name
from edge_sql.steps.validate import UNKNOWN_COLUMN, UNKNOWN_TABLE

#: The most tables whose columns a repair request lists (a query rarely needs more; the prompt stays short).
MAX_TABLES = 6
#: The most characters of the failing SQL repeated back to the model.
MAX_SQL = 400

#: SQLite's own message for a missing table, in an execution error: the engine gives no structured name.
ENGINE_NO_SUCH_TABLE = re.compile(r"no such table: ([^\s(]+)")


def repair_request(question: str, sql: str, error: str, schema: Schema, *, kind: str | None = None,
                   name: str | None = None) -> str:
    """The question again, with the failing query, its error in plain words, and the names that do exist.

    ``kind`` and ``name`` are the failing verdict's: the table or column it found missing, if any.
    """
    sql = " ".join(sql.split())[:MAX_SQL] or "(nothing)"
    lines = [question, f"This query failed: {sql}", f"Error: {plain_error(error, kind, name)}"]
    names = valid_names(sql, schema, name if kind == UNKNOWN_COLUMN else None)
    if names:
        lines.append(f"Valid names: {names}")
    lines.append("Write a corrected query.")
    return "\n".join(lines)


def plain_error(error: str, kind: str | None = None, name: str | None = None) -> str:
    """The error a model can act on: a missing column or table as the engines say it, positions and lists dropped.

    >>> plain_error("Column 'land' could not be resolved. Line: 1, Col: 38", UNKNOWN_COLUMN, "land")
    'no such column: land'
    >>> plain_error("no such table: client (tables: customers, orders)", UNKNOWN_TABLE, "client")
    'no such table: client'
    >>> from edge_sql.steps.validate import EXECUTION_ERROR
    >>> plain_error("the database refused the query: no such table: client", EXECUTION_ERROR)
    'no such table: client'
    """
    if name and kind == UNKNOWN_COLUMN:
        return f"no such column: {name}"
    if name and kind == UNKNOWN_TABLE:
        return f"no such table: {name}"
    error = " ".join((error or "unknown error").split())
    table = ENGINE_NO_SUCH_TABLE.search(error)
    if table:
        return f"no such table: {table.group(1)}"
    return error[:200]


def valid_names(sql: str, schema: Schema, column: str | None = None) -> str:
    """The tables the query meant, with their columns: those it names that exist, the tables that have the
    ``column`` it could not find, and every table when it names none that exists (a wrong table name, or SQL that
    does not parse).

    >>> from edge_sql.steps.schema import Column, Schema, Table
    >>> shop = Schema("sqlite", (Table("customers", (Column("customer_id", "INTEGER"), Column("name", "TEXT"))),
    ...                          Table("orders", (Column("order_id", "INTEGER"), Column("customer_id", "INTEGER")))))
    >>> valid_names("SELECT order_id FROM customers", shop, "order_id")
    'customers(customer_id, name); orders(order_id, customer_id)'
    >>> valid_names("SELECT * FROM clients", shop)
    'customers(customer_id, name); orders(order_id, customer_id)'
    >>> print(valid_names("SELECT x FROM t", Schema("sqlite", (Table("Order Details", (Column("Unit Price", "REAL"),)),))))
    "Order Details"("Unit Price")
    """
    wanted = [t for t in named_tables(sql, schema.engine) if schema.table(t) is not None]
    if column:
        missing = column.split(".")[-1].strip('"`').lower()  # a quoted "table.column" names its column last
        wanted += [t.name for t in schema.tables if any(c.name.lower() == missing for c in t.columns)]
    if not wanted:
        wanted = [t.name for t in schema.tables]
    chosen = {name.lower() for name in wanted}
    tables = [t for t in schema.tables if t.name.lower() in chosen][:MAX_TABLES]
    return "; ".join(f"{quote_name(t.name)}({', '.join(quote_name(c.name) for c in t.columns)})" for t in tables)


def named_tables(sql: str, dialect: str) -> list[str]:
    """The table names a query mentions, in order; none when it does not parse."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except Exception:  # sqlglot cannot read it (or trips over it): the request lists every table instead
        return []
    if tree is None:
        return []
    return list(dict.fromkeys(t.name for t in tree.find_all(exp.Table) if t.name))
