"""Read a database's tables, columns, keys and sample values, and render them for a prompt.

Two renderings, chosen by the model's preset:

- ``ddl``: ``CREATE TABLE`` statements with primary and foreign keys, sample values as comments;
- ``strict``: one line a table, ``Table 'orders' (order_id, customer_id, ...)``, as the strict raw-SQL models
  were trained on.

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

from dataclasses import dataclass

from edge_sql.protocols import STYLES

#: Sample values per text column, and the longest sample shown.
SAMPLES_PER_COLUMN = 3
SAMPLE_LENGTH = 40


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    primary_key: bool = False
    samples: tuple[str, ...] = ()


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
    return "\n".join(render_table(table, samples) for table in schema.tables)


def render_ddl(table: Table, samples: bool) -> str:
    lines = []
    for column in table.columns:
        line = f"{quote_name(column.name)} {column.type}".rstrip()
        if column.primary_key and sum(c.primary_key for c in table.columns) == 1:
            line += " PRIMARY KEY"
        lines.append([line, sample_comment(column) if samples else ""])
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


def render_strict(table: Table, samples: bool) -> str:
    parts = []
    for column in table.columns:
        part = column.name
        if samples and column.samples:
            part += " e.g. " + "|".join(quote_value(v) for v in column.samples)
        parts.append(part)
    return f"Table '{table.name}' ({', '.join(parts)})"


def sample_comment(column: Column) -> str:
    return "e.g. " + ", ".join(quote_value(v) for v in column.samples) if column.samples else ""


def quote_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_name(name: str) -> str:
    """Quote a name only when it needs it."""
    if name.replace("_", "a").isalnum() and name.isascii() and not name[0].isdigit():
        return name
    return '"' + name.replace('"', '""') + '"'


def read_schema(connection, engine: str) -> Schema:
    """Read the schema through an open connection of ``engine``."""
    reader = read_sqlite_tables if engine == "sqlite" else read_duckdb_tables
    return Schema(engine, tuple(reader(connection)))


def read_sqlite_tables(connection):
    names = [row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
    )]
    for name in names:
        info = connection.execute("SELECT name, type, pk FROM pragma_table_info(?)", (name,)).fetchall()
        keys = connection.execute(
            'SELECT "from", "table", "to" FROM pragma_foreign_key_list(?)', (name,)
        ).fetchall()
        columns = tuple(
            Column(col, (ctype or "").upper(), bool(pk), tuple(sample_values(connection, name, col, ctype, "sqlite")))
            for col, ctype, pk in info
        )
        foreign = tuple(ForeignKey(src, table, target or primary_key_of(connection, table)) for src, table, target in keys)
        yield Table(name, columns, foreign)


def primary_key_of(connection, table: str) -> str:
    rows = connection.execute("SELECT name FROM pragma_table_info(?) WHERE pk > 0", (table,)).fetchall()
    return rows[0][0] if rows else "rowid"


def read_duckdb_tables(connection):
    tables = connection.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND NOT internal UNION ALL SELECT schema_name, view_name FROM duckdb_views() "
        "WHERE database_name = current_database() AND NOT internal ORDER BY 1, 2"
    ).fetchall()
    constraints = connection.execute(
        "SELECT table_name, constraint_type, constraint_column_names, referenced_table, referenced_column_names "
        "FROM duckdb_constraints() WHERE database_name = current_database() "
        "AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')"
    ).fetchall()
    for schema_name, table in tables:
        name = table if schema_name == "main" else f"{schema_name}.{table}"
        primary = {c for t, kind, cols, _, _ in constraints if t == table and kind == "PRIMARY KEY" for c in cols}
        info = connection.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ? ORDER BY column_index",
            [schema_name, table],
        ).fetchall()
        columns = tuple(
            Column(col, ctype, col in primary, tuple(sample_values(connection, name, col, ctype, "duckdb")))
            for col, ctype in info
        )
        foreign = tuple(
            ForeignKey(col, target_table, target)
            for t, kind, cols, target_table, targets in constraints
            if t == table and kind == "FOREIGN KEY"
            for col, target in zip(cols, targets)
        )
        yield Table(name, columns, foreign)


def sample_values(connection, table: str, column: str, ctype: str | None, engine: str) -> list[str]:
    """A few distinct non-empty values of a text column, each cut to a readable length."""
    if not is_text_type(ctype):
        return []
    parts = table.split(".", 1) if engine == "duckdb" else [table]
    source = ".".join(quote_identifier(part) for part in parts)
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
