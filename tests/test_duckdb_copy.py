"""A SQLite database copied to DuckDB (``edge_sql/eval/duckdb_copy.py``): the example shop, whose two files are built
from one definition (``examples/build.py``), is the check: its SQLite file copied, dates typed as DATE, holds what its
DuckDB file holds, whichever way the rows are inserted."""

from __future__ import annotations

import sys

import duckdb
import pytest

from conftest import EXAMPLES
from edge_sql.eval import duckdb_copy

DATES = {("customers", "signup_date"): "DATE", ("orders", "order_date"): "DATE", ("orders", "shipped_date"): "DATE"}
TABLES = ("customers", "products", "orders", "order_items")


def contents(path) -> dict:
    with duckdb.connect(str(path), read_only=True) as db:
        return {table: (db.execute(f"SELECT column_name, data_type FROM information_schema.columns WHERE "
                                   f"table_name = '{table}' ORDER BY ordinal_position").fetchall(),
                        db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()) for table in TABLES}


@pytest.mark.parametrize("numpy", [True, False], ids=["through NumPy", "INSERT statements"])
def test_the_copy_of_the_example_database_holds_what_its_duckdb_file_holds(tmp_path, monkeypatch, numpy):
    if not numpy:
        monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy fails: the path without the train extra
    assert duckdb_copy.convert(EXAMPLES / "shop.sqlite", tmp_path / "shop.duckdb", DATES) == []  # all kept
    copied, built = contents(tmp_path / "shop.duckdb"), contents(EXAMPLES / "shop.duckdb")
    for table in TABLES:
        assert copied[table][1] == built[table][1], table
        assert [t for _, t in copied[table][0]] == [t.replace("INTEGER", "BIGINT") for _, t in built[table][0]]


def test_a_copy_that_fails_leaves_no_file(tmp_path, monkeypatch):
    made = []

    def fail_on_the_third_table(connection, table, *args):
        made.append(table["name"])
        if len(made) == 3:
            raise duckdb.IOException("disk full")
        return create(connection, table, *args)

    create = duckdb_copy.create
    monkeypatch.setattr(duckdb_copy, "create", fail_on_the_third_table)
    with pytest.raises(duckdb.IOException):
        duckdb_copy.convert(EXAMPLES / "shop.sqlite", tmp_path / "shop.duckdb")
    assert list(tmp_path.iterdir()) == []
