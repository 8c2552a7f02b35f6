"""Read a database's tables, columns, keys and sample values, and render them for a prompt.

Two renderings, chosen by the model's preset:

- ``ddl``: ``CREATE TABLE`` statements with primary and foreign keys, sample values as comments;
- ``strict``: one line a table, ``Table 'orders' (order_id, customer_id, ...)``, as the strict raw-SQL models
  were trained on.

Both say how dates are stored where the type does not (``-- stored as 'YYYY-MM-DD HH:MM:SS'``, see
:mod:`edge_sql.steps.dates`) and end with a line of the engine's date functions when a date column is shown. A view is
one line, after the tables: its name and its columns (``CREATE VIEW name (a, b);``), no types, keys or samples; the
model may query it, and pruning keeps it only when the question names it.

>>> schema = Schema("sqlite", (Table("products", (Column("product_id", "INTEGER", primary_key=True),
...     Column("name", "TEXT", samples=("Desk Lamp", "Kettle")))),))
>>> print(render_schema(schema, "ddl"))
CREATE TABLE products (
  product_id INTEGER PRIMARY KEY,
  name TEXT -- e.g. 'Desk Lamp', 'Kettle'
);
>>> print(render_schema(schema, "strict", samples=False))
Table 'products' (product_id, name)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from edge_sql.protocols import STYLES
from edge_sql.steps.dates import DATE_NAME, functions_line, is_date_type, is_pattern, readable, storage

#: Sample values per text column, and the longest sample shown.
SAMPLES_PER_COLUMN = 3
SAMPLE_LENGTH = 40
#: Values read from a date column to tell how it is stored.
DATE_VALUES = 20
#: Words a name cannot be written as bare: SQL's keywords (``order``, ``group``, ``from``, …).
RESERVED = frozenset("""
    add all alter and as asc between by case cast check collate column constraint create cross default delete desc
    distinct drop else end escape except exists false foreign from full glob group having ilike in index inner insert
    intersect into is join key left like limit natural not null offset on or order outer primary qualify references
    regexp right select set table then to transaction true union unique update using values view when where window
    with
    """.split())


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    primary_key: bool = False
    samples: tuple[str, ...] = ()
    #: How a date or time is stored where the type does not say (``'YYYY-MM-DD'``, ``unix seconds``; see
    #: :func:`edge_sql.steps.dates.storage`), else "".
    stored: str = ""


@dataclass(frozen=True)
class ForeignKey:
    column: str
    table: str
    target: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    view: bool = False


@dataclass(frozen=True)
class Schema:
    engine: str
    tables: tuple[Table, ...]

    def table(self, name: str) -> Table | None:
        """The table called ``name``, compared case-insensitively as both engines do."""
        lowered = name.lower()
        return next((t for t in self.tables if t.name.lower() == lowered), None)

    def mapping(self) -> dict[str, dict[str, str]]:
        """``{table: {column: type}}`` with lower-cased names, for sqlglot."""
        return {t.name.lower(): {c.name.lower(): c.type or "TEXT" for c in t.columns} for t in self.tables}


def render_schema(schema: Schema, style: str = "ddl", samples: bool = True) -> str:
    """The schema as the model sees it."""
    if style not in STYLES:
        raise ValueError(f"unknown schema style {style!r}; expected one of {', '.join(STYLES)}")
    render_table = render_ddl if style == "ddl" else render_strict
    default = default_storage(schema)
    tables = [render_table(t, samples, default) for t in schema.tables if not t.view]
    views = [render_view(t, style) for t in schema.tables if t.view]
    dates = [functions_line(schema.engine, default)] if shows_dates(schema) else []
    return "\n".join(tables + views + dates)


def default_storage(schema: Schema) -> str:
    """The layout most of the shown date-typed columns store (said once, in the dates line), or "" when none does.

    >>> default_storage(Schema("sqlite", (Table("t", (Column("a", "DATE", stored="'YYYY-MM-DD'"),
    ...     Column("b", "TIMESTAMP", stored="'YYYY-MM-DD HH:MM:SS'"), Column("c", "DATE", stored="'YYYY-MM-DD'"))),)))
    "'YYYY-MM-DD'"
    """
    layouts = Counter(c.stored for t in schema.tables if not t.view for c in t.columns
                      if is_date_type(c.type) and readable(c.stored))
    return layouts.most_common(1)[0][0] if layouts else ""


def shows_dates(schema: Schema) -> bool:
    """A shown column holds dates the engine's date functions can read: a date type (not text of another layout on
    SQLite), or text in ISO 8601."""
    return any(readable(c.stored) or (is_date_type(c.type) and (not c.stored or schema.engine == "duckdb"))
               for t in schema.tables if not t.view for c in t.columns)


def column_note(column: Column, samples: bool, default: str = "") -> str:
    """The comment a column gets: how its dates are stored (none when its type and the dates line say it), else its
    sample values."""
    stored = column.stored
    said = (stored == default and is_date_type(column.type)) or (stored == "year" and "year" in column.name.lower())
    if stored and not said:
        return f"stored as {stored}" if is_pattern(stored) else stored
    if stored and said and not is_date_type(column.type):
        return ""
    return sample_comment(column) if samples else ""


def render_view(table: Table, style: str) -> str:
    """A view as one line: ``CREATE VIEW name (a, b);`` or, in the strict style, ``View 'name' (a, b)``."""
    names = ", ".join(quote_name(c.name) for c in table.columns)
    return f"CREATE VIEW {quote_name(table.name)} ({names});" if style == "ddl" else f"View '{table.name}' ({names})"


def render_ddl(table: Table, samples: bool, default: str = "") -> str:
    lines = []
    for column in table.columns:
        line = f"{quote_name(column.name)} {column.type}".rstrip()
        if column.primary_key and sum(c.primary_key for c in table.columns) == 1:
            line += " PRIMARY KEY"
        lines.append([line, column_note(column, samples, default)])
    keys = [c.name for c in table.columns if c.primary_key]
    if len(keys) > 1:
        lines.append([f"PRIMARY KEY ({', '.join(map(quote_name, keys))})", ""])
    for key in table.foreign_keys:
        lines.append([f"FOREIGN KEY ({quote_name(key.column)}) REFERENCES {quote_name(key.table)}({quote_name(key.target)})", ""])
    body = []
    for index, (line, comment) in enumerate(lines):
        comma = "," if index < len(lines) - 1 else ""
        body.append(f"  {line}{comma}" + (f" -- {comment}" if comment else ""))
    return f"CREATE TABLE {quote_name(table.name)} (\n" + "\n".join(body) + "\n);"


def render_strict(table: Table, samples: bool, default: str = "") -> str:
    parts = []
    for column in table.columns:
        part = quote_name(column.name)
        note = column_note(column, samples, default)
        if note.startswith("e.g. "):
            part += " e.g. " + "|".join(quote_value(v) for v in column.samples)
        elif note:
            part += " " + note
        parts.append(part)
    return f"Table '{table.name}' ({', '.join(parts)})"


def sample_comment(column: Column) -> str:
    return "e.g. " + ", ".join(quote_value(v) for v in column.samples) if column.samples else ""


def quote_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_name(name: str) -> str:
    """Quote a name only when it needs it: not a plain identifier, or a keyword.

    >>> quote_name("OrderID"), quote_name("Order Details"), quote_name("order"), quote_name('a"b')
    ('OrderID', '"Order Details"', '"order"', '"a""b"')
    """
    if name.replace("_", "a").isalnum() and name.isascii() and not name[0].isdigit() and name.lower() not in RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def read_schema(connection, engine: str) -> Schema:
    """Read the schema through an open connection of ``engine``."""
    reader = read_sqlite_tables if engine == "sqlite" else read_duckdb_tables
    return Schema(engine, tuple(reader(connection)))


def read_sqlite_tables(connection):
    names = connection.execute(
        "SELECT name, type = 'view' FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' "
        "ORDER BY type = 'view', rowid"
    ).fetchall()
    for name, view in names:
        info = connection.execute("SELECT name, type, pk FROM pragma_table_info(?)", (name,)).fetchall()
        keys = connection.execute(
            'SELECT "from", "table", "to" FROM pragma_foreign_key_list(?)', (name,)
        ).fetchall()
        columns = tuple(read_column(connection, name, col, (ctype or "").upper(), bool(pk), "sqlite", view)
                        for col, ctype, pk in info)
        foreign = tuple(ForeignKey(src, table, target or primary_key_of(connection, table)) for src, table, target in keys)
        yield Table(name, columns, foreign, bool(view))


def read_column(connection, table: str, name: str, ctype: str, primary_key: bool, engine: str, view: bool) -> Column:
    """A column with its sample values and how its dates are stored; a view's columns are only named (running a
    view to sample it can take as long as its query)."""
    if view:
        return Column(name, ctype, primary_key)
    samples = tuple(sample_values(connection, table, name, ctype, engine))
    if is_text_type(ctype) and not is_date_type(ctype):
        stored = storage(samples, ctype, name)
    elif (is_date_type(ctype) and engine == "sqlite") or (not is_date_type(ctype) and DATE_NAME.search(name)):
        stored = storage(first_values(connection, table, name, engine), ctype, name)
    else:
        stored = ""  # a DuckDB DATE or TIMESTAMP: the type says how it is stored
    return Column(name, ctype, primary_key, samples, stored)


def primary_key_of(connection, table: str) -> str:
    rows = connection.execute("SELECT name FROM pragma_table_info(?) WHERE pk > 0", (table,)).fetchall()
    return rows[0][0] if rows else "rowid"


def read_duckdb_tables(connection):
    tables = connection.execute(
        "SELECT schema_name, table_name, false AS view FROM duckdb_tables() WHERE database_name = current_database() "
        "AND NOT internal UNION ALL SELECT schema_name, view_name, true FROM duckdb_views() "
        "WHERE database_name = current_database() AND NOT internal ORDER BY 3, 1, 2"
    ).fetchall()
    constraints = connection.execute(
        "SELECT table_name, constraint_type, constraint_column_names, referenced_table, referenced_column_names "
        "FROM duckdb_constraints() WHERE database_name = current_database() "
        "AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')"
    ).fetchall()
    for schema_name, table, view in tables:
        name = table if schema_name == "main" else f"{schema_name}.{table}"
        primary = {c for t, kind, cols, _, _ in constraints if t == table and kind == "PRIMARY KEY" for c in cols}
        info = connection.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ? ORDER BY column_index",
            [schema_name, table],
        ).fetchall()
        columns = tuple(read_column(connection, name, col, ctype, col in primary, "duckdb", view)
                        for col, ctype in info)
        foreign = tuple(
            ForeignKey(col, target_table, target)
            for t, kind, cols, target_table, targets in constraints
            if t == table and kind == "FOREIGN KEY"
            for col, target in zip(cols, targets)
        )
        yield Table(name, columns, foreign, view)


def source_of(table: str, engine: str) -> str:
    """The table's name as a query's FROM writes it (a DuckDB ``schema.table`` is two quoted names)."""
    parts = table.split(".", 1) if engine == "duckdb" else [table]
    return ".".join(quote_identifier(part) for part in parts)


def first_values(connection, table: str, column: str, engine: str) -> list:
    """The first :data:`DATE_VALUES` values of a column that are not NULL, as the engine gives them."""
    col = quote_identifier(column)
    try:
        rows = connection.execute(f"SELECT {col} FROM {source_of(table, engine)} WHERE {col} IS NOT NULL "
                                  f"LIMIT {DATE_VALUES}").fetchall()
    except Exception:  # an odd type: the column is shown without a note
        return []
    return [value for (value,) in rows]


def sample_values(connection, table: str, column: str, ctype: str | None, engine: str) -> list[str]:
    """A few distinct non-empty values of a text column, each cut to a readable length."""
    if not is_text_type(ctype):
        return []
    source = source_of(table, engine)
    col = quote_identifier(column)
    query = (
        f"SELECT DISTINCT {col} FROM (SELECT {col} FROM {source} WHERE {col} IS NOT NULL "
        f"AND length(CAST({col} AS TEXT)) > 0 LIMIT 1000) AS sample LIMIT {SAMPLES_PER_COLUMN}"
    )
    try:
        rows = connection.execute(query).fetchall()
    except Exception:  # a view that fails to run, an odd type: the schema still renders without samples
        return []
    return [str(value)[:SAMPLE_LENGTH] for (value,) in rows]


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def is_text_type(ctype: str | None) -> bool:
    lowered = (ctype or "").lower()
    return any(word in lowered for word in ("char", "text", "clob", "string", "varchar")) or lowered == ""
