"""Value hints: the stored values a question's words point at are shown to the model first, on both engines."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from conftest import ENGINES, snapshot
from edge_sql.cli import app
from edge_sql.steps.database import open_database
from edge_sql.steps.hints import SCAN_ROWS, add_value_hints

runner = CliRunner()

STAFF = [
    "CREATE TABLE department (dept_id INTEGER PRIMARY KEY, name TEXT, city TEXT)",
    "INSERT INTO department VALUES (1, 'Marketing', 'Paris'), (2, 'Research', 'Lyon'), (3, 'Support', NULL), "
    "(4, 'Sales', 'New York City'), (5, NULL, 'Nantes')",
    "CREATE TABLE staff (staff_id INTEGER PRIMARY KEY, name TEXT, dept_id INTEGER REFERENCES department(dept_id))",
    "INSERT INTO staff VALUES (1, 'Ada Lovelace', 4), (2, 'Alan Turing', 2), (3, 'Grace Hopper', 1)",
    "CREATE VIEW sales_staff AS SELECT s.name FROM staff s JOIN department d USING (dept_id) WHERE d.name = 'Sales'",
]


def make_database(tmp_path, engine: str, statements: list[str]):
    """A database file of ``engine`` built from ``statements``."""
    path = tmp_path / f"test.{engine}"
    if engine == "sqlite":
        connection = sqlite3.connect(path)
        for statement in statements:
            connection.execute(statement)
        connection.commit()
    else:
        import duckdb

        connection = duckdb.connect(str(path))
        for statement in statements:
            connection.execute(statement)
    connection.close()
    return path


def samples(schema, table: str, column: str) -> tuple[str, ...]:
    return next(c for c in schema.table(table).columns if c.name == column).samples


@pytest.fixture(params=ENGINES)
def staff(request, tmp_path):
    return make_database(tmp_path, request.param, STAFF)


def test_sales_department_shows_the_stored_value_sales_first(staff):
    with open_database(staff) as db:
        hinted = add_value_hints(db.schema, db, "How many people work in the sales department?")
    assert samples(hinted, "department", "name")[0] == "Sales"


def test_quoted_strings_come_first(staff):
    with open_database(staff) as db:
        hinted = add_value_hints(db.schema, db, "Is 'research' bigger than support?")
    assert samples(hinted, "department", "name")[:2] == ("Research", "Support")


def test_a_phrase_inside_a_longer_value_is_found(staff):
    with open_database(staff) as db:
        hinted = add_value_hints(db.schema, db, "Which departments are in New York?")
    assert samples(hinted, "department", "city")[0] == "New York City"


def test_hints_replace_samples_rather_than_growing_the_prompt(staff):
    with open_database(staff) as db:
        before = samples(db.schema, "department", "name")
        after = samples(add_value_hints(db.schema, db, "sales department"), "department", "name")
    assert len(after) == len(before) and set(after) - set(before) <= {"Sales"}


def test_columns_without_a_match_keep_their_samples(staff):
    with open_database(staff) as db:
        hinted = add_value_hints(db.schema, db, "How many people work in the sales department?")
        assert samples(hinted, "staff", "name") == samples(db.schema, "staff", "name")
        assert add_value_hints(db.schema, db, "How many?") == db.schema


def test_views_are_read_too(staff):
    with open_database(staff) as db:
        hinted = add_value_hints(db.schema, db, "Is Ada Lovelace in sales?")
    assert samples(hinted, "sales_staff", "name")[0] == "Ada Lovelace"


def test_nothing_is_written(staff):
    before = snapshot(staff.parent)
    with open_database(staff) as db:
        add_value_hints(db.schema, db, "sales department in Paris")
    assert snapshot(staff.parent) == before


@pytest.mark.parametrize("engine", ENGINES)
def test_only_the_first_rows_of_a_big_table_are_read(tmp_path, engine):
    rows = SCAN_ROWS + 5000
    big = {  # item 1 … item N, then 'Needle' past the rows a column's scan reads
        "sqlite": "CREATE TABLE big AS WITH RECURSIVE n(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM n "
                  f"WHERE value < {rows}) SELECT value AS id, 'item ' || value AS label FROM n",
        "duckdb": f"CREATE TABLE big AS SELECT range AS id, 'item ' || range AS label FROM range(1, {rows + 1})",
    }
    statements = [big[engine], "INSERT INTO big VALUES (0, 'Needle')", "CREATE TABLE tail (label TEXT)",
                  "INSERT INTO tail VALUES ('Needle')"]
    path = make_database(tmp_path, engine, statements)
    with open_database(path) as db:
        hinted = add_value_hints(db.schema, db, "Where is the needle? Is item 7 there?")
    assert "item 7" in samples(hinted, "big", "label")
    assert "Needle" not in samples(hinted, "big", "label")  # it lies past the rows read
    assert samples(hinted, "tail", "label") == ("Needle",)


def test_odd_text_on_sqlite_does_not_break_hints(tmp_path):
    path = make_database(tmp_path, "sqlite", [
        "CREATE TABLE t (label TEXT, other)",
        "INSERT INTO t VALUES (CAST(x'ff00fe' AS TEXT), 1), (x'0102', 2.5), (NULL, NULL), ('Blue', 'blue'), (42, '')",
    ])
    with open_database(path) as db:
        hinted = add_value_hints(db.schema, db, "Which rows are blue or 42?")
    assert samples(hinted, "t", "label")[:2] == ("42", "Blue")
    assert samples(hinted, "t", "other")[0] == "blue"


def test_odd_types_on_duckdb_do_not_break_hints(tmp_path):
    path = make_database(tmp_path, "duckdb", [
        "CREATE TYPE mood AS ENUM ('happy', 'sad')",
        "CREATE TABLE t (feeling mood, tags VARCHAR[], point STRUCT(x INT), label VARCHAR)",
        "INSERT INTO t VALUES ('happy', ['a'], {'x': 1}, 'Happy Hour'), (NULL, NULL, NULL, NULL)",
    ])
    with open_database(path) as db:
        hinted = add_value_hints(db.schema, db, "Who is happy?")
    assert samples(hinted, "t", "feeling") == ("happy",)
    assert samples(hinted, "t", "label")[0] == "Happy Hour"


def test_schema_question_shows_what_the_model_sees_and_what_was_pruned(shop):
    args = ["schema", "--db", str(shop), "--model", "smollm2-135m", "--question", "How many customers live in germany?"]
    always = runner.invoke(app, [*args, "--prune", "always", "--hints"])
    assert always.exit_code == 0, always.output
    assert "CREATE TABLE customers (" in always.stdout and "CREATE TABLE products" not in always.stdout
    assert always.stdout.splitlines()[-1] == "Values in the database: customers.country 'Germany'"  # after the schema
    assert always.stderr.startswith("pruned to 2 of 4 tables") and "products" in always.stderr
    never = runner.invoke(app, [*args, "--prune", "never", "--no-hints"])
    assert never.stdout == runner.invoke(app, ["schema", "--db", str(shop), "--model", "smollm2-135m"]).stdout
    assert "not pruned" in never.stderr


def test_schema_question_refuses_an_unknown_mode(shop):
    result = runner.invoke(app, ["schema", "--db", str(shop), "--question", "x", "--prune", "sometimes"])
    assert result.exit_code == 2 and "sometimes" in result.output
