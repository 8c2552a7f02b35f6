"""The statement check: the first layer between untrusted SQL and a database.

Generated SQL is attacker-controlled text. :func:`check` parses it with sqlglot and refuses, with the rule it broke
and the part of the query that broke it, anything but one read-only query: one statement, a SELECT (or WITH … SELECT,
or a set operation of them), no write or DDL anywhere inside it, only allow-listed functions and table functions,
no string literal used as a table (DuckDB's replacement scans read files that way).

The connection layer (``database.py``) and the resource limits (``execute.py``) each stop attacks on their own too.

>>> check("SELECT name FROM products ORDER BY price DESC LIMIT 3", "sqlite").sql("sqlite")
'SELECT name FROM products ORDER BY price DESC LIMIT 3'
>>> check("SELECT 1; DROP TABLE products", "sqlite")
Traceback (most recent call last):
...
edge_sql.errors.QueryRefused: refused (one statement): found 2 statements; only one query may run
>>> check("SELECT * FROM read_csv('/etc/passwd')", "duckdb")
Traceback (most recent call last):
...
edge_sql.errors.QueryRefused: refused (function allow-list): read_csv(...) is not an allowed table function
"""

from __future__ import annotations

import logging

import sqlglot
from sqlglot import exp

from edge_sql.errors import QueryRefused

logging.getLogger("sqlglot").setLevel(logging.ERROR)

#: Longest query text the guard reads at all (a generated query is a few hundred bytes).
MAX_SQL_LENGTH = 100_000

#: Functions a query may call, by sqlglot's name for them: the class key of a function sqlglot knows, or the
#: lower-cased name of one it does not. Everything else (file, network, environment, extension, sleep, blob
#: bombs, engine introspection) is refused.
ALLOWED_FUNCTIONS = frozenset(
    """
    count sum avg min max total groupconcat string_agg arrayagg median mode stddev stddevsamp stddevpop variance
    variancepop countif anyvalue argmax argmin logicaland logicalor percentilecont percentiledisc approxdistinct
    abs round ceil floor sign sqrt pow exp ln log mod pi trunc round_even
    lower upper length substring trim replace strposition concat concatws left right pad reverse initcap
    contains startswith endswith splitpart split regexplike regexpreplace regexpextract chr unicode hex
    typeof format printf like glob
    coalesce nullif if case cast trycast greatest least
    date datetime time julianday unixepoch timetostr tsordstotimestamp strtotime strptime tochar timetounix epoch
    timestamptrunc datetrunc date_part extract year month day dayofweek dayofyear week quarter hour minute second
    dayname monthname lastday datefromparts make_date datediff date_diff dateadd datesub age
    currentdate currenttime currenttimestamp
    rownumber rank denserank ntile lag lead firstvalue lastvalue nthvalue percentrank cumedist
    likely unlikely likelihood
    and or xor exists collate
    """.split()
)

#: Table-valued functions a FROM clause may use: generated rows only, never files.
ALLOWED_TABLE_FUNCTIONS = frozenset({"generateseries", "range", "unnest", "explode"})

#: Statement and clause types that write, change state or reach outside the database, wherever they appear.
FORBIDDEN = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Command, exp.Pragma,
    exp.Set, exp.Copy, exp.Use, exp.Transaction, exp.Commit, exp.Rollback, exp.Into, exp.LoadData, exp.Attach,
    exp.Detach, exp.Install, exp.TruncateTable, exp.Describe, exp.Cache, exp.Uncache, exp.Refresh, exp.Kill,
    exp.Grant, exp.Summarize, exp.Lock,
)

QUERY_ROOTS = (exp.Select, exp.SetOperation)


def check(sql: str, dialect: str) -> exp.Expression:
    """Return the parsed tree of ``sql`` if it is one read-only query, else raise :class:`QueryRefused`."""
    if len(sql) > MAX_SQL_LENGTH:
        raise QueryRefused("length", f"the query is {len(sql):,} characters; at most {MAX_SQL_LENGTH:,} are read")
    tree = parse_single(sql, dialect)
    root = tree
    while isinstance(root, exp.Subquery):
        root = root.this
    if not isinstance(root, QUERY_ROOTS):
        raise QueryRefused("read-only", f"{describe(root)} is not a query; only SELECT may run")
    for node in tree.walk():
        check_node(node)
    return tree


def parse_single(sql: str, dialect: str) -> exp.Expression:
    """Parse exactly one statement, refusing none, several, or text sqlglot cannot read."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.ParseError as error:
        raise QueryRefused("parse", first_line(error)) from None
    except (sqlglot.errors.SqlglotError, RecursionError, ValueError) as error:
        raise QueryRefused("parse", first_line(error) or "the query is too deeply nested to read") from None
    if not statements:
        raise QueryRefused("one statement", "the query is empty")
    if len(statements) > 1:
        raise QueryRefused("one statement", f"found {len(statements)} statements; only one query may run")
    return statements[0]


def check_node(node: exp.Expression) -> None:
    if isinstance(node, FORBIDDEN):
        raise QueryRefused("read-only", f"{describe(node)} is not allowed inside a query")
    if isinstance(node, exp.Table):
        check_table(node)
    elif isinstance(node, exp.Func) and not in_table_position(node):
        name = function_name(node)
        if name not in ALLOWED_FUNCTIONS:
            raise QueryRefused("function allow-list", f"{display_name(node)}(...) is not an allowed function")


def check_table(table: exp.Table) -> None:
    source = table.this
    if isinstance(source, exp.Literal) or (isinstance(source, exp.Identifier) and looks_like_path(source)):
        raise QueryRefused("file access", f"{source.sql()} names a file, not a table")
    if isinstance(source, exp.Func):
        name = function_name(source)
        if name not in ALLOWED_TABLE_FUNCTIONS:
            raise QueryRefused("function allow-list", f"{display_name(source)}(...) is not an allowed table function")
        for argument in source.args.values():
            for child in argument if isinstance(argument, list) else [argument]:
                if isinstance(child, exp.Expression):
                    for inner in child.walk():
                        check_node(inner)


def in_table_position(node: exp.Func) -> bool:
    """A table function is judged by :func:`check_table` against its own allow-list."""
    return isinstance(node.parent, exp.Table) and node.arg_key == "this"


def looks_like_path(identifier: exp.Identifier) -> bool:
    """DuckDB reads ``FROM "data.csv"`` (a quoted name with a dot or slash) as a file: refuse those names."""
    name = identifier.name
    return identifier.quoted and any(mark in name for mark in ("/", "\\", ".")) or name.startswith("~")


def function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.key


def display_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this)
    return node.sql_name().lower()


def describe(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return node.key.upper().replace("_", " ")


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else ""
