"""The statement check: the first layer between untrusted SQL and a database.

Generated SQL is attacker-controlled text. :func:`check` parses it with sqlglot and refuses, with the rule it broke
and the part of the query that broke it, anything but one read-only query: one statement, a SELECT (or WITH … SELECT,
or a set operation of them), no write or DDL anywhere inside it, only allow-listed functions and table functions,
no string literal used as a table (DuckDB's replacement scans read files that way).

The rules a refusal names: ``length`` (over :data:`MAX_SQL_LENGTH`), ``characters`` (a NUL or invalid UTF-8),
``parse``, ``nesting`` (too deep for the parser), ``one statement``, ``read-only``, ``function allow-list``,
``file access`` and ``size limit`` (padding or a formatted field too wide to build in time).

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
import re

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

#: Names allowed only where sqlglot reads them as its own function class, never as a call it does not know:
#: ``x GLOB 'a*'`` is SQLite's pattern match, DuckDB's ``glob('/etc/*')`` lists files.
OPERATOR_ONLY = frozenset({"glob"})

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

#: The widest padding or formatted field a query may ask for. DuckDB builds such a string in one uninterruptible
#: call outside its memory limit (``lpad('', 2000000000, 'x')`` took 35 s and 3.9 GB against a 2 s limit), and
#: SQLite's ``printf('%.*c', 2000000000, 'x')`` loops 12 s before its length limit answers NULL.
MAX_WIDTH = 999

#: A field wider than :data:`MAX_WIDTH` (four digits or more) or whose width comes from an argument: in a printf
#: conversion (``%2000000000d``, ``%.*c``) or in a DuckDB ``format`` field (``{:>2000000000}``, ``{:{}}``).
WIDE_FORMAT = re.compile(r"%[-+ #0,!']*(?:\*|\d{4,}|\d*\.(?:\*|\d{4,}))|\{[^}]*(?:\{|\d{4,})")


def check(sql: str, dialect: str) -> exp.Expression:
    """Return the parsed tree of ``sql`` if it is one read-only query, else raise :class:`QueryRefused`."""
    if len(sql) > MAX_SQL_LENGTH:
        raise QueryRefused("length", f"the query is {len(sql):,} characters; at most {MAX_SQL_LENGTH:,} are read")
    bad = next((ch for ch in sql if ch == "\x00" or "\ud800" <= ch <= "\udfff"), None)
    if bad is not None:
        where = sql.index(bad)
        raise QueryRefused("characters", f"the query holds {bad!r} at character {where + 1}, which is not text "
                                         "(invalid UTF-8 or a NUL byte)")
    tree = parse_single(sql, dialect)
    while isinstance(tree, exp.Subquery) and not any(v for key, v in tree.args.items() if key != "this"):
        tree = tree.this  # (SELECT …) runs as SELECT …: SQLite accepts no parentheses around a whole statement
    root = tree
    while isinstance(root, exp.Subquery):
        root = root.this
    if not isinstance(root, QUERY_ROOTS):
        raise QueryRefused("read-only", f"{describe(root)} is not a query; only SELECT may run")
    for node in tree.walk():
        check_node(node)
    return tree


def parse_single(sql: str, dialect: str) -> exp.Expression:
    """Parse exactly one statement, refusing none, several, or text sqlglot cannot read — even text its parser trips
    over (validation retries a candidate in MySQL's dialect):

    >>> parse_single("SELECT DATE_SUB(order_date) FROM orders", "mysql")
    Traceback (most recent call last):
    edge_sql.errors.QueryRefused: refused (parse): sqlglot cannot read the query (AttributeError)
    """
    try:
        statements = split_statements(sql, dialect)
    except sqlglot.errors.ParseError as error:
        raise QueryRefused("parse", first_line(error)) from None
    except RecursionError:
        raise QueryRefused("nesting", "the query is nested too deeply to read; write it with fewer levels") from None
    except (sqlglot.errors.SqlglotError, ValueError) as error:
        raise QueryRefused("parse", first_line(error) or "sqlglot cannot read the query") from None
    except Exception as error:  # sqlglot's own bugs on odd input (MySQL's DATE_SUB(x), VAR_MAP(x)): unreadable text
        raise QueryRefused("parse", f"sqlglot cannot read the query ({type(error).__name__})") from None
    if not statements:
        raise QueryRefused("one statement", "the query is empty")
    if len(statements) > 1:
        raise QueryRefused("one statement", f"found {len(statements)} statements; only one query may run")
    return statements[0]


def split_statements(sql: str, dialect: str) -> list[exp.Expression]:
    """The statements of ``sql``, without the empty ones: what only a ``;`` or a comment stands for (sqlglot reads
    a comment after the last ``;`` as a statement of its own, an ``exp.Semicolon``). A ``;`` inside a string, a quoted
    name or a comment splits nothing:

    >>> [s.sql() for s in split_statements("SELECT ';' AS s; -- trailing note", "sqlite")]
    ["SELECT ';' AS s"]
    >>> [s.sql() for s in split_statements("SELECT 1; /* note */ DELETE FROM t", "sqlite")]
    ['SELECT 1', 'DELETE FROM t']
    """
    return [s for s in sqlglot.parse(sql, read=dialect) if s is not None and not isinstance(s, exp.Semicolon)]


def check_node(node: exp.Expression) -> None:
    if isinstance(node, FORBIDDEN):
        raise QueryRefused("read-only", f"{describe(node)} is not allowed inside a query")
    if isinstance(node, exp.Table):
        check_table(node)
    elif isinstance(node, exp.Func) and not in_table_position(node):
        name = function_name(node)
        if name not in ALLOWED_FUNCTIONS or (isinstance(node, exp.Anonymous) and name in OPERATOR_ONLY):
            raise QueryRefused("function allow-list", f"{display_name(node)}(...) is not an allowed function")
        check_width(node, name)


def check_width(node: exp.Func, name: str) -> None:
    """Padding to a literal width of at most :data:`MAX_WIDTH`; format strings that are literals without wide fields."""
    if name == "pad":
        width = node.args.get("expression")
        if not (isinstance(width, exp.Literal) and width.is_int and int(width.name) <= MAX_WIDTH):
            raise QueryRefused("size limit", f"{display_name(node)}(...) must pad to a literal width from 0 to "
                                             f"{MAX_WIDTH}, not {width.sql() if width else 'nothing'}")
    elif name in ("format", "printf"):
        pattern = node.this if name == "format" else (node.expressions or [None])[0]
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise QueryRefused("size limit", f"{display_name(node)}(...) needs a string literal as its format")
        if WIDE_FORMAT.search(pattern.name):
            raise QueryRefused("size limit", f"{display_name(node)}(...) format {pattern.sql()} asks for a field "
                                             f"wider than {MAX_WIDTH} or takes its width from an argument")


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
    """sqlglot's name for ``node``; an unknown name lower-cased, unless it is not ASCII (look-alike letters such as
    the Kelvin sign lower-case to ASCII in Python but name no engine function): then it stays as written."""
    if isinstance(node, exp.Anonymous):
        name = str(node.this)
        return name.lower() if name.isascii() else name
    return node.key


def display_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this)
    if isinstance(node, exp.Pad):
        return "lpad" if node.args.get("is_left") else "rpad"
    return node.sql_name().lower()


def describe(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return node.key.upper().replace("_", " ")


def first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else ""
