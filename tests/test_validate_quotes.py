"""Small models write SQLite's habits: ``WHERE city = "Madrid"``, a string in double quotes. SQLite reads a
double-quoted word that names no column as a string; DuckDB reads it as a column and fails. edgesql applies SQLite's
rule on both engines, so such a candidate runs on DuckDB too, with the same rows, and the SQL that runs (and is shown)
is the normalised one: ``city = 'Madrid'``. A double-quoted name that IS a column stays that column."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edge_sql.cli import app
from edge_sql.steps import judge as judging
from edge_sql.steps.database import open_database
from edge_sql.steps.generate import Candidate
from edge_sql.steps.judge import judge
from edge_sql.steps.sandbox import isolate
from edge_sql.steps.validate import validate

runner = CliRunner()

MADRID = [["Diego"], ["Javier"], ["Pablo"]]  # the shop's customers in Madrid, on either engine


def ask_json(shop) -> dict:
    result = runner.invoke(app, ["ask", "--db", str(shop), "--model", "fake", "Who lives in Madrid?",
                                 "--candidates", "1", "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_double_quoted_string_runs_on_both_engines_with_the_same_rows(shop, fake_model):
    fake_model('SELECT first_name FROM customers WHERE city = "Madrid" ORDER BY first_name')
    answer = ask_json(shop)
    assert answer["rows"] == MADRID
    assert answer["sql"] == "SELECT first_name FROM customers WHERE city = 'Madrid' ORDER BY first_name"
    assert [entry["verdict"] for entry in answer["ballot"]] == ["valid"]
    assert answer["ballot"][0]["sql"] == answer["sql"]  # the candidate is shown as it ran


def test_a_double_quoted_column_stays_a_column(shop, fake_model):
    fake_model('SELECT "first_name" FROM customers WHERE "city" = \'Madrid\' ORDER BY "first_name"')
    answer = ask_json(shop)
    assert answer["rows"] == MADRID  # "city" compared, not the word 'city'
    assert answer["sql"] == 'SELECT "first_name" FROM customers WHERE "city" = \'Madrid\' ORDER BY "first_name"'


def test_a_double_quoted_as_name_stays_that_name(shop, fake_model):
    fake_model('SELECT city, count(*) AS "people" FROM customers GROUP BY city ORDER BY "people" DESC, city LIMIT 1')
    answer = ask_json(shop)
    assert answer["columns"] == ["city", "people"]
    assert answer["rows"][0][1] > 1  # ordered by the count, not by a constant string


def test_what_runs_is_the_normalised_sql_shown(shop, monkeypatch):
    ran = []

    def spy(db, sql, **limits):
        ran.append(sql)
        return execute(db, sql, **limits)

    execute = judging.execute
    monkeypatch.setattr(judging, "execute", spy)
    candidate = Candidate(text="", sql='SELECT first_name FROM customers WHERE city = "Madrid" ORDER BY 1')
    with isolate(open_database(shop)) as db:  # the worker process the CLI runs queries in
        [entry] = judge([candidate], db)
    normalised = "SELECT first_name FROM customers WHERE city = 'Madrid' ORDER BY 1"
    assert entry.verdict.kind == "valid"
    assert ran == [entry.verdict.sql] == [normalised]
    assert [list(row) for row in entry.result.rows] == MADRID


@pytest.mark.parametrize("sql, expected", [
    ('SELECT name FROM products WHERE category = "Kitchen"', "SELECT name FROM products WHERE category = 'Kitchen'"),
    ('SELECT p."name" FROM products AS p WHERE p.name LIKE "%Lamp%"',
     "SELECT p.\"name\" FROM products AS p WHERE p.name LIKE '%Lamp%'"),
    ('WITH t("n") AS (SELECT count(*) FROM products) SELECT "n" FROM t', 'WITH t("n") AS (SELECT COUNT(*) FROM products) '
                                                                          'SELECT "n" FROM t'),
])
def test_the_rule_on_each_engine(shop, sql, expected):
    with open_database(shop) as db:
        verdict = validate(sql, db.schema)
    assert verdict.kind == "valid"
    assert verdict.sql == expected
