"""The bundled example database: ``examples/shop.sqlite`` and ``examples/shop.duckdb``.

Both files are written by ``examples/build.py`` from a single definition (one
list of CREATE TABLE statements and rows drawn from a fixed random seed).  These
tests pin down what that promises:

* a build writes the same rows into SQLite and DuckDB;
* the committed files are exactly what the script builds today (they cannot
  drift from it);
* the foreign keys are declared in both engines and actually hold;
* the data has the NULLs a text-to-SQL demo needs (``customers.email``,
  ``orders.shipped_date``).

The committed files are only ever opened read-only, and each test that opens
them checks that their bytes are unchanged afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import sqlite3
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
COMMITTED_SQLITE = EXAMPLES / "shop.sqlite"
COMMITTED_DUCKDB = EXAMPLES / "shop.duckdb"


def _load_builder():
    """Import examples/build.py (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "edgesql_examples_build", EXAMPLES / "build.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = _load_builder()
TABLES = builder.TABLES  # ("customers", "products", "orders", "order_items")

#: (table, column, referenced table, referenced column)
FOREIGN_KEYS = {
    ("orders", "customer_id", "customers", "customer_id"),
    ("order_items", "order_id", "orders", "order_id"),
    ("order_items", "product_id", "products", "product_id"),
}


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


@contextlib.contextmanager
def open_sqlite(path: Path):
    """Open a SQLite file read-only (it cannot be modified through this)."""
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def open_duckdb(path: Path):
    """Open a DuckDB file read-only."""
    conn = duckdb.connect(str(path), read_only=True)
    try:
        yield conn
    finally:
        conn.close()


OPENERS = {"sqlite": open_sqlite, "duckdb": open_duckdb}


def _normalise(value):
    # SQLite stores dates as ISO text, DuckDB as DATE: compare them as text.
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def table_contents(conn, table: str) -> tuple[list[str], list[tuple]]:
    """Column names and sorted rows of *table*, with dates as ISO strings."""
    cursor = conn.execute(f"SELECT * FROM {table}")
    columns = [d[0] for d in cursor.description]
    rows = sorted(tuple(_normalise(v) for v in row) for row in cursor.fetchall())
    return columns, rows


def database_contents(conn) -> dict[str, tuple[list[str], list[tuple]]]:
    return {table: table_contents(conn, table) for table in TABLES}


def table_names(conn) -> set[str]:
    # information_schema exists in DuckDB, sqlite_master in SQLite.
    if isinstance(conn, sqlite3.Connection):
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT table_name FROM information_schema.tables"
    return {name for (name,) in conn.execute(sql).fetchall()}


@contextlib.contextmanager
def committed_files_untouched():
    """Fail if the committed files' bytes change, or a sidecar file appears."""
    paths = (COMMITTED_SQLITE, COMMITTED_DUCKDB)
    before = {path: path.read_bytes() for path in paths}
    yield
    for path in paths:
        assert path.read_bytes() == before[path], f"{path.name} was modified"
    for sidecar in ("shop.sqlite-journal", "shop.sqlite-wal", "shop.sqlite-shm",
                    "shop.duckdb.wal"):
        assert not (EXAMPLES / sidecar).exists(), f"{sidecar} was left behind"


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict[str, Path]:
    """A brand-new build of both files in a temporary directory."""
    sqlite_path, duckdb_path = builder.build(tmp_path_factory.mktemp("shop"))
    return {"sqlite": sqlite_path, "duckdb": duckdb_path}


@pytest.fixture(scope="module")
def fresh_contents(fresh) -> dict[str, dict]:
    with open_sqlite(fresh["sqlite"]) as conn:
        sqlite_contents = database_contents(conn)
    with open_duckdb(fresh["duckdb"]) as conn:
        duckdb_contents = database_contents(conn)
    return {"sqlite": sqlite_contents, "duckdb": duckdb_contents}


# --------------------------------------------------------------------------
# A build writes the same data into both engines
# --------------------------------------------------------------------------


def test_build_writes_both_files_and_nothing_else(tmp_path):
    # Building twice into the same directory simply overwrites the files.
    builder.build(tmp_path)
    sqlite_path, duckdb_path = builder.build(tmp_path)

    assert (sqlite_path, duckdb_path) == (tmp_path / "shop.sqlite", tmp_path / "shop.duckdb")
    # No temporary file, write-ahead log or rollback journal is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.duckdb", "shop.sqlite"]
    with open_sqlite(sqlite_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_both_engines_have_exactly_the_four_tables(fresh):
    with open_sqlite(fresh["sqlite"]) as conn:
        assert table_names(conn) == set(TABLES)
    with open_duckdb(fresh["duckdb"]) as conn:
        assert table_names(conn) == set(TABLES)


@pytest.mark.parametrize("table", TABLES)
def test_sqlite_and_duckdb_hold_identical_rows(fresh_contents, table):
    sqlite_columns, sqlite_rows = fresh_contents["sqlite"][table]
    duckdb_columns, duckdb_rows = fresh_contents["duckdb"][table]

    assert sqlite_columns == duckdb_columns
    assert sqlite_rows == duckdb_rows


def test_the_shop_has_a_few_hundred_rows(fresh_contents):
    counts = {table: len(rows) for table, (_, rows) in fresh_contents["sqlite"].items()}

    assert counts["customers"] == 40
    assert counts["products"] == 25
    assert counts["orders"] == 150
    assert 300 <= counts["order_items"] <= 400


def test_dates_are_iso_text_in_sqlite_and_date_in_duckdb(fresh):
    with open_sqlite(fresh["sqlite"]) as conn:
        assert conn.execute("SELECT DISTINCT typeof(order_date) FROM orders").fetchall() == [
            ("text",)
        ]
        (bad,) = conn.execute(
            "SELECT count(*) FROM orders WHERE date(order_date) IS NOT order_date"
        ).fetchone()
        assert bad == 0  # every value is a valid YYYY-MM-DD date
    with open_duckdb(fresh["duckdb"]) as conn:
        types = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'orders'"
        ).fetchall())
        assert types["order_date"] == "DATE"
        assert types["shipped_date"] == "DATE"
        first, last = conn.execute("SELECT min(order_date), max(order_date) FROM orders").fetchone()
        assert dt.date(2023, 1, 1) <= first and last <= dt.date(2025, 12, 31)


# --------------------------------------------------------------------------
# The committed files are what the script builds
# --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite", "duckdb"])
def test_committed_file_matches_a_fresh_build(fresh_contents, engine):
    committed = {"sqlite": COMMITTED_SQLITE, "duckdb": COMMITTED_DUCKDB}[engine]
    assert committed.exists(), f"run `python examples/build.py` to create {committed.name}"

    with committed_files_untouched():
        with OPENERS[engine](committed) as conn:
            contents = database_contents(conn)

    assert contents == fresh_contents[engine], (
        f"{committed.name} is out of date: run `python examples/build.py`"
    )


# --------------------------------------------------------------------------
# Foreign keys: declared, and they hold
# --------------------------------------------------------------------------


def test_sqlite_declares_the_foreign_keys():
    with committed_files_untouched(), open_sqlite(COMMITTED_SQLITE) as conn:
        declared = set()
        for table in TABLES:
            # columns: id, seq, table, from, to, on_update, on_delete, match
            for row in conn.execute(f"PRAGMA foreign_key_list({table})").fetchall():
                declared.add((table, row[3], row[2], row[4]))
        violations = conn.execute("PRAGMA foreign_key_check").fetchall()

    assert declared == FOREIGN_KEYS
    assert violations == []


def test_duckdb_declares_the_foreign_keys():
    with committed_files_untouched(), open_duckdb(COMMITTED_DUCKDB) as conn:
        rows = conn.execute(
            "SELECT table_name, constraint_column_names, referenced_table,"
            " referenced_column_names FROM duckdb_constraints()"
            " WHERE constraint_type = 'FOREIGN KEY'"
        ).fetchall()

    declared = {
        (table, column, ref_table, ref_column)
        for table, columns, ref_table, ref_columns in rows
        for column, ref_column in zip(columns, ref_columns)
    }
    assert declared == FOREIGN_KEYS


@pytest.mark.parametrize("engine", ["sqlite", "duckdb"])
@pytest.mark.parametrize("table, column, ref_table, ref_column", sorted(FOREIGN_KEYS))
def test_every_reference_points_at_an_existing_row(engine, table, column, ref_table, ref_column):
    # e.g. every order_items.order_id exists in orders.
    committed = {"sqlite": COMMITTED_SQLITE, "duckdb": COMMITTED_DUCKDB}[engine]
    with committed_files_untouched(), OPENERS[engine](committed) as conn:
        (dangling,) = conn.execute(
            f"SELECT count(*) FROM {table} AS child"
            f" LEFT JOIN {ref_table} AS parent ON parent.{ref_column} = child.{column}"
            f" WHERE parent.{ref_column} IS NULL"
        ).fetchone()

    assert dangling == 0


# --------------------------------------------------------------------------
# NULLs worth asking about
# --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite", "duckdb"])
def test_some_emails_and_shipped_dates_are_null(engine):
    committed = {"sqlite": COMMITTED_SQLITE, "duckdb": COMMITTED_DUCKDB}[engine]
    with committed_files_untouched(), OPENERS[engine](committed) as conn:
        (null_emails,) = conn.execute(
            "SELECT count(*) FROM customers WHERE email IS NULL"
        ).fetchone()
        (null_shipped,) = conn.execute(
            "SELECT count(*) FROM orders WHERE shipped_date IS NULL"
        ).fetchone()
        # An order has a shipped_date exactly when it has shipped.
        (inconsistent,) = conn.execute(
            "SELECT count(*) FROM orders WHERE (shipped_date IS NULL)"
            " <> (status IN ('pending', 'cancelled'))"
        ).fetchone()

    assert 0 < null_emails < 40
    assert 0 < null_shipped < 150
    assert inconsistent == 0
