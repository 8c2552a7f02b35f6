"""`edgesql ask --explain`: the chosen SQL pretty-printed and read out clause by clause, without a model call."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edge_sql.cli import app
from edge_sql.errors import UsageError
from edge_sql.steps.explain import explain

runner = CliRunner()

JOINED = ("SELECT c.country, count(*) AS n FROM customers c JOIN orders o ON o.customer_id = c.customer_id "
          "WHERE o.status = 'cancelled' GROUP BY c.country ORDER BY n DESC LIMIT 3")


@pytest.mark.parametrize("sql, expected", [
    ("SELECT count(*) FROM customers", ["Reads the table customers.", "Shows COUNT(*)."]),
    ("SELECT DISTINCT country FROM customers", ["Reads the table customers.", "Shows each distinct value of country."]),
    ("SELECT * FROM orders LEFT JOIN customers USING (customer_id) LIMIT 1 OFFSET 5",
     ["Reads the table orders.", "Joins (left join) customers on the same customer_id.", "Skips the first 5 rows.",
      "Keeps the first row only.", "Shows every column."]),
    ("SELECT name FROM products UNION SELECT name FROM customers ORDER BY name",
     ["Combines the results of two queries with UNION.", "Left: Reads the table products.", "Left: Shows name.",
      "Right: Reads the table customers.", "Right: Shows name.", "Sorts by name (lowest first)."]),
    ("WITH big AS (SELECT * FROM orders) SELECT count(*) FROM big",
     ["First defines big as the result of a subquery.", "Reads the table big.", "Shows COUNT(*)."]),
])
def test_each_clause_is_read_out(sql, expected):
    assert list(explain(sql).lines) == expected


def test_the_sql_is_pretty_printed():
    assert explain(JOINED).sql.splitlines()[:4] == ["SELECT", "  c.country,", "  COUNT(*) AS n", "FROM customers AS c"]


def test_unparseable_sql_is_a_usage_error():
    with pytest.raises(UsageError):
        explain("SELECT FROM WHERE (")


def ask(shop, *args):
    return runner.invoke(app, ["ask", "--db", str(shop), "--model", "fake", "Cancelled orders by country?", *args])


def test_ask_explain_prints_the_explanation_after_the_answer(shop, fake_model):
    model = fake_model(JOINED)
    result = ask(shop, "--explain", "-n", "1")
    assert result.exit_code == 0, result.output
    answer, explanation = result.stdout.split("Explanation\n")
    assert "United States" in answer
    assert "JOIN orders AS o\n  ON o.customer_id = c.customer_id" in explanation
    assert "• Joins orders (as o) on o.customer_id = c.customer_id." in explanation
    assert "• Groups the rows by c.country." in explanation
    assert len(model.calls) == 1  # no extra model call


def test_json_has_an_explanation_only_with_explain(shop, fake_model):
    fake_model(JOINED)
    plain = json.loads(ask(shop, "-f", "json", "-n", "1").stdout)
    assert "explanation" not in plain
    explained = json.loads(ask(shop, "-f", "json", "-n", "1", "--explain").stdout)
    assert explained["explanation"]["clauses"][0] == "Reads the table customers (as c)."
    assert explained["explanation"]["sql"].startswith("SELECT\n")
    assert {k: v for k, v in explained.items() if k not in ("explanation", "timings")} == \
        {k: v for k, v in plain.items() if k != "timings"}


def test_csv_keeps_stdout_to_the_rows(shop, fake_model):
    fake_model(JOINED)
    result = ask(shop, "-f", "csv", "-n", "1", "--explain")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "country,n"
    assert "Explanation" in result.stderr and "Explanation" not in result.stdout
