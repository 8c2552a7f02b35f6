"""A SQLite database copied into a new DuckDB file: the same tables, rows and keys, to ask the same questions on the
other engine (``benchmarks/duckdb_dev.py`` measures Spider dev there; ``edgesql train --pairs`` writes DuckDB
training pairs on copies of the training databases).

The tables are copied through Python's ``sqlite3`` (DuckDB's sqlite extension would have to be downloaded) and
inserted a table at a time (see :func:`insert`). Each column gets the DuckDB type of the type SQLite gives it (its
affinity: ``INT`` → BIGINT, ``TEXT`` / ``CHAR`` → VARCHAR, ``REAL`` / ``FLOAT`` → DOUBLE); a column of NUMERIC or
no affinity (``bool``, ``DATETIME``, ``NUMBER``) gets the narrowest of BIGINT, DOUBLE and VARCHAR that holds its
values, and a column whose values do not fit its affinity's type (text in an INT column) becomes VARCHAR, which is
noted. ``types`` may name another type for some columns (``DATE`` or ``TIMESTAMP`` for ISO text dates: DuckDB reads
the text as it inserts it). Primary and foreign keys are kept where DuckDB accepts them over the data (they show in
the prompt); the ones it refuses are dropped, and noted.

>>> duckdb_type("INT", {"integer"}), duckdb_type("DATETIME", {"text"}), duckdb_type("INT", {"integer", "text"})
('BIGINT', 'VARCHAR', 'VARCHAR')
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Mapping

import duckdb

#: Small blocks keep a small database's file small (DuckDB's default is 256 KiB a block), as examples/build.py does.
BLOCK_SIZE = 16_384
#: Values bound in one INSERT statement without NumPy (a statement of many rows is ~30x faster than ``executemany``).
VALUES_PER_INSERT = 5_000


def affinity(declared: str) -> str:
    """SQLite's type affinity of a declared column type (https://sqlite.org/datatype3.html, section 3.1).

    >>> [affinity(t) for t in ("VARCHAR(20)", "bigint", "DATETIME", "", "double")]
    ['TEXT', 'INTEGER', 'NUMERIC', 'BLOB', 'REAL']
    """
    declared = declared.upper()
    if "INT" in declared:
        return "INTEGER"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in declared or not declared:
        return "BLOB"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def duckdb_type(declared: str, stored: set[str]) -> str:
    """The DuckDB type of a column of SQLite type ``declared`` whose values have the SQLite storage classes
    ``stored`` (``typeof()``: integer, real, text, blob; null left out)."""
    kind = affinity(declared)
    if "blob" in stored:
        return "BLOB"
    fits = {"INTEGER": {"integer"}, "REAL": {"integer", "real"}, "TEXT": {"text"}}
    if kind in fits and stored <= fits[kind]:
        return {"INTEGER": "BIGINT", "REAL": "DOUBLE", "TEXT": "VARCHAR"}[kind]
    if kind == "TEXT":
        return "VARCHAR"  # numbers kept as numbers by a TEXT column cannot happen; anything else reads as text
    if stored <= {"integer"}:
        return "BIGINT"
    if stored <= {"integer", "real"}:
        return "DOUBLE"
    return "VARCHAR"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_table(source: sqlite3.Connection, table: str, types: Mapping[tuple[str, str], str]) -> dict:
    info = source.execute("SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid", (table,)).fetchall()
    columns = []
    for name, declared, _ in info:
        stored = {row[0] for row in source.execute(
            f"SELECT DISTINCT typeof({quote(name)}) FROM {quote(table)}")} - {"null"}
        chosen = types.get((table.lower(), name.lower())) or duckdb_type(declared or "", stored)
        columns.append((name, declared or "", chosen, stored))
    primary = [name for name, _, pk in sorted(info, key=lambda c: c[2]) if pk]
    keys: dict[int, list] = {}
    for ident, _, target, src, dst, *_ in source.execute(f"PRAGMA foreign_key_list({quote(table)})"):
        keys.setdefault(ident, []).append((target, src, dst))
    foreign = []
    for parts in keys.values():
        target = parts[0][0]
        targets = [dst for _, _, dst in parts]
        if any(dst is None for dst in targets):  # REFERENCES t: its primary key
            targets = [row[0] for row in source.execute(
                "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", (target,))]
        foreign.append((target, [src for _, src, _ in parts], targets))
    rows = source.execute(f"SELECT * FROM {quote(table)}").fetchall()
    return {"name": table, "columns": columns, "primary": primary, "foreign": foreign, "rows": rows}


def convert(sqlite_path: Path, duckdb_path: Path, types: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """Copy every table of ``sqlite_path`` into a new DuckDB file ``duckdb_path`` (replaced, once the copy is whole,
    if it exists); the notes on what could not be kept. ``types`` maps (table, column), both lower case, to the
    DuckDB type to give it."""
    source = sqlite3.connect(f"{Path(sqlite_path).resolve().as_uri()}?mode=ro", uri=True)
    source.text_factory = lambda b: b.decode("utf-8", errors="replace")  # as Spider's evaluator reads text
    names = [row[0] for row in source.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
    tables = {name.lower(): read_table(source, name, types or {}) for name in names}
    source.close()
    notes = []
    for table in tables.values():
        for name, declared, chosen, stored in table["columns"]:
            natural = {"INTEGER": "BIGINT", "REAL": "DOUBLE", "TEXT": "VARCHAR"}.get(affinity(declared))
            if natural and chosen != natural:
                notes.append(f"{table['name']}.{name}: declared {declared}, holds {'/'.join(sorted(stored))}: "
                             f"{chosen}")
    duckdb_path = Path(duckdb_path)
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    partial = duckdb_path.with_name(f".{duckdb_path.name}.partial")  # renamed when whole: never a half-made copy
    partial.unlink(missing_ok=True)
    connection = duckdb.connect()
    try:
        connection.execute(f"ATTACH '{str(partial).replace(chr(39), chr(39) * 2)}' AS target "
                           f"(BLOCK_SIZE {BLOCK_SIZE})")
        connection.execute("USE target")
        created: dict[str, set] = {}  # table (lower case) -> its primary key's columns (lower case), as created
        for table in ordered(tables):
            create(connection, table, tables, created, notes)
        connection.execute("CHECKPOINT")
    except BaseException:
        connection.close()
        partial.unlink(missing_ok=True)
        Path(f"{partial}.wal").unlink(missing_ok=True)
        raise
    connection.close()
    os.replace(partial, duckdb_path)
    return notes


def ordered(tables: dict) -> list[dict]:
    """The tables, each after the tables its foreign keys name (where there is no cycle), else in file order."""
    done, out = set(), []

    def visit(key, path=()):
        if key in done or key in path or key not in tables:
            return
        for target, _, _ in tables[key]["foreign"]:
            visit(target.lower(), path + (key,))
        done.add(key)
        out.append(tables[key])

    for key in tables:
        visit(key)
    return out


def create(connection, table: dict, tables: dict, created: dict, notes: list[str]) -> None:
    """Create and fill one table, with its keys where DuckDB accepts them; fewer keys after each refusal."""
    columns = [f"{quote(name)} {chosen}" for name, _, chosen, _ in table["columns"]]
    foreign = []
    for target, sources, targets in table["foreign"]:
        key = ", ".join(map(quote, sources))
        if target.lower() not in created or {t.lower() for t in targets} != created[target.lower()]:
            notes.append(f"{table['name']}: foreign key ({key}) -> {target} dropped (not a primary key there)")
            continue
        foreign.append(f"FOREIGN KEY ({key}) REFERENCES {quote(tables[target.lower()]['name'])} "
                       f"({', '.join(map(quote, targets))})")
    primary = [f"PRIMARY KEY ({', '.join(map(quote, table['primary']))})"] if table["primary"] else []
    attempts = [primary + foreign]
    if foreign:
        attempts.append(primary)
    if primary:
        attempts.append([])
    for number, constraints in enumerate(attempts):
        name = quote(table["name"])
        try:
            connection.execute("BEGIN")
            connection.execute(f"CREATE TABLE {name} ({', '.join(columns + constraints)})")
            insert(connection, name, [chosen for _, _, chosen, _ in table["columns"]], table["rows"])
            connection.execute("COMMIT")
        except duckdb.Error as error:
            connection.execute("ROLLBACK")
            message = str(error).splitlines()[0]
            if number + 1 == len(attempts):
                raise
            dropped = "foreign keys" if attempts[number + 1] == primary and foreign else "primary key"
            notes.append(f"{table['name']}: {dropped} dropped ({message})")
            continue
        created[table["name"].lower()] = ({c.lower() for c in table["primary"]} if primary and primary[0] in
                                          constraints else set())
        return


def insert(connection, name: str, types: list[str], rows: list[tuple]) -> None:
    """The rows into table ``name`` (whose columns have DuckDB ``types``): scanned by DuckDB from a NumPy array a
    column where NumPy is installed (the ``train`` extra: 200,000 rows in a tenth of a second), else many rows to an
    INSERT statement. Both give the same table: a value of a VARCHAR column that is not text is written as the text
    DuckDB's cast writes, a number of a DOUBLE column as a float."""
    if not rows:
        return
    try:
        import numpy
    except ImportError:
        numpy = None
    if numpy is None:
        step = max(1, VALUES_PER_INSERT // max(len(types), 1))
        row = "(" + ", ".join("?" for _ in types) + ")"
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            connection.execute(f"INSERT INTO {name} VALUES {', '.join(row for _ in chunk)}",
                               [value for values in chunk for value in values])
        return
    columns = {}
    for index, kind in enumerate(types):
        same = {"VARCHAR": lambda v: v if v is None or isinstance(v, str) else str(v),
                "DOUBLE": lambda v: v if v is None else float(v)}.get(kind, lambda v: v)
        column = numpy.empty(len(rows), dtype=object)
        column[:] = [same(row[index]) for row in rows]
        columns[f"c{index}"] = column
    connection.register("edgesql_copied_rows", columns)  # a failed INSERT leaves it registered: the next replaces it
    connection.execute(f"INSERT INTO {name} SELECT * FROM edgesql_copied_rows")
    connection.unregister("edgesql_copied_rows")
