"""Repair on error: when every candidate failed, ask again with the failing SQL, the error and the valid names.

Small models fail in predictable ways — a column on the wrong table, a table that does not exist, a function of
another dialect. The repair request is the original question followed by what went wrong, written so that a model
trained on "question → SQL" still reads it as a question:

>>> from edge_sql.steps.schema import Column, Schema, Table
>>> shop = Schema("sqlite", (
...     Table("customers", (Column("customer_id", "INTEGER"), Column("name", "TEXT"), Column("country", "TEXT"))),
...     Table("orders", (Column("order_id", "INTEGER"), Column("customer_id", "INTEGER"), Column("total", "REAL")))))
>>> print(repair_request("How many customers are in Germany?", "SELECT COUNT(*) FROM customers WHERE land = 'DE'",
...                      "Column 'land' could not be resolved. Line: 1, Col: 38", shop))
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

from edge_sql.steps.schema import Schema

#: The most tables whose columns a repair request lists (a query rarely needs more; the prompt stays short).
MAX_TABLES = 6
#: The most characters of the failing SQL repeated back to the model.
MAX_SQL = 400

UNRESOLVED_COLUMN = re.compile(r"Column '([^']+)' could not be resolved")
NO_SUCH_TABLE = re.compile(r"no such table: ([^\s(]+)")


def repair_request(question: str, sql: str, error: str, schema: Schema) -> str:
    """The question again, with the failing query, its error in plain words, and the names that do exist."""
    sql = " ".join(sql.split())[:MAX_SQL] or "(nothing)"
    lines = [question, f"This query failed: {sql}", f"Error: {plain_error(error)}"]
    names = valid_names(sql, error, schema)
    if names:
        lines.append(f"Valid names: {names}")
    lines.append("Write a corrected query.")
    return "\n".join(lines)


def plain_error(error: str) -> str:
    """The error a model can act on: sqlglot's "could not be resolved" as the engines say it, positions dropped.

    >>> plain_error("Column 'land' could not be resolved. Line: 1, Col: 38")
    'no such column: land'
    >>> plain_error("no such table: client (tables: customers, orders)")
    'no such table: client'
    """
    error = " ".join((error or "unknown error").split())
    column = UNRESOLVED_COLUMN.search(error)
    if column:
        return f"no such column: {column.group(1)}"
    table = NO_SUCH_TABLE.search(error)
    if table:
        return f"no such table: {table.group(1)}"
    return error[:200]


def valid_names(sql: str, error: str, schema: Schema) -> str:
    """The tables the query meant, with their columns: those it names that exist, the tables that have the column
    it could not find, and every table when it names none that exists (a wrong table name, or SQL that does not
    parse).

    >>> from edge_sql.steps.schema import Column, Schema, Table
    >>> shop = Schema("sqlite", (Table("customers", (Column("customer_id", "INTEGER"), Column("name", "TEXT"))),
    ...                          Table("orders", (Column("order_id", "INTEGER"), Column("customer_id", "INTEGER")))))
    >>> valid_names("SELECT order_id FROM customers", "Column 'order_id' could not be resolved", shop)
    'customers(customer_id, name); orders(order_id, customer_id)'
    >>> valid_names("SELECT * FROM clients", "no such table: clients", shop)
    'customers(customer_id, name); orders(order_id, customer_id)'
    """
    wanted = [t for t in named_tables(sql, schema.engine) if schema.table(t) is not None]
    column = UNRESOLVED_COLUMN.search(error or "")
    if column:
        missing = column.group(1).split(".")[-1].strip('"`').lower()
        wanted += [t.name for t in schema.tables if any(c.name.lower() == missing for c in t.columns)]
    if not wanted:
        wanted = [t.name for t in schema.tables]
    chosen = {name.lower() for name in wanted}
    tables = [t for t in schema.tables if t.name.lower() in chosen][:MAX_TABLES]
    return "; ".join(f"{t.name}({', '.join(c.name for c in t.columns)})" for t in tables)


def named_tables(sql: str, dialect: str) -> list[str]:
    """The table names a query mentions, in order; none when it does not parse."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except Exception:  # sqlglot cannot read it (or trips over it): the request lists every table instead
        return []
    if tree is None:
        return []
    return list(dict.fromkeys(t.name for t in tree.find_all(exp.Table) if t.name))
