"""`edgesql ask` end to end with a fake model, on SQLite and on DuckDB."""

from __future__ import annotations

import csv
import io
import json

from typer.testing import CliRunner

from conftest import snapshot
from edge_sql.cli import app

runner = CliRunner()


def ask(shop, *args):
    return runner.invoke(app, ["ask", "--db", str(shop), "--model", "fake", *args])


def test_the_answer_agreed_by_most_candidates_wins(shop, fake_model):
    fake_model(
        "SELECT count(*) FROM customers WHERE customer_id = 1",
        "SELECT count(*) FROM customers",
        "SELECT COUNT(customer_id) FROM customers",
        "SELECT count(*) FROM orders",
        "SELECT count(*) AS n FROM customers",
    )
    result = ask(shop, "How many customers are there?", "--format", "json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["rows"] == [[40]]
    assert answer["votes"] == 3
    assert answer["candidates"] == 5
    agreeing = {"SELECT COUNT(*) FROM customers", "SELECT COUNT(customer_id) FROM customers",
                "SELECT COUNT(*) AS n FROM customers"}
    assert answer["sql"] in agreeing


def test_json_carries_the_whole_ballot(shop, fake_model):
    fake_model("SELECT name FROM products ORDER BY price DESC LIMIT 3", "DROP TABLE products",
               "SELECT colour FROM products", "I think the answer is 3", "SELECT name FROM nowhere")
    result = ask(shop, "What are the 3 most expensive products?", "--format", "json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert set(answer) >= {"question", "sql", "columns", "rows", "votes", "candidates", "ballot", "model", "dialect",
                           "timings", "tokens"}
    assert answer["columns"] == ["name"]
    assert [row[0] for row in answer["rows"]] == ["27-inch 4K Monitor", "Espresso Machine", "Noise-Cancelling Headphones"]
    assert answer["dialect"] == shop.suffix.lstrip(".")
    assert answer["model"] == "fake"
    assert set(answer["tokens"]) == {"prompt", "generated"}
    verdicts = [entry["verdict"] for entry in answer["ballot"]]
    assert verdicts == ["valid", "refused", "unknown_column", "parse_error", "unknown_table"]
    assert [entry["votes"] for entry in answer["ballot"]] == [1, 0, 0, 0, 0]
    assert all(set(entry) >= {"sql", "verdict", "error", "votes"} for entry in answer["ballot"])


def test_no_valid_candidate_exits_5_and_says_why(shop, fake_model):
    fake_model("SELECT colour FROM products", "DELETE FROM products")
    before = snapshot(shop.parent)
    result = ask(shop, "What colour are the products?", "--candidates", "2")
    assert result.exit_code == 5
    assert "none of the 2 candidates" in result.stderr
    assert "colour" in result.stderr and "unknown_column" in result.stderr
    assert snapshot(shop.parent) == before


def test_no_valid_candidate_still_prints_json(shop, fake_model):
    fake_model("SELECT colour FROM products")
    result = ask(shop, "What colour?", "--candidates", "1", "--format", "json")
    assert result.exit_code == 5
    answer = json.loads(result.stdout)
    assert answer["sql"] is None and answer["rows"] == [] and "error" in answer
    assert answer["ballot"][0]["verdict"] == "unknown_column"


def test_csv_prints_header_and_rows_only(shop, fake_model):
    fake_model("SELECT country, count(*) AS customers FROM customers GROUP BY country ORDER BY customers DESC, country")
    result = ask(shop, "Customers per country?", "--format", "csv", "-n", "1")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["country", "customers"]
    assert rows[1] == ["United States", "9"]
    assert len(rows) == 9


def test_table_shows_sql_rows_and_agreement(shop, fake_model):
    fake_model("SELECT count(*) FROM orders WHERE status = 'cancelled'")
    result = ask(shop, "How many orders were cancelled?", "-n", "3")
    assert result.exit_code == 0, result.output
    assert "SELECT COUNT(*) FROM orders WHERE status = 'cancelled'" in result.stdout
    assert "21" in result.stdout
    assert "3 of 3 candidates agreed" in result.stdout


def test_show_candidates_prints_the_ballot(shop, fake_model):
    fake_model("SELECT count(*) FROM customers", "SELECT nope FROM customers")
    result = ask(shop, "How many customers?", "-n", "2", "--show-candidates")
    assert result.exit_code == 0, result.output
    assert "Candidates" in result.stdout and "unknown_column" in result.stdout


def test_max_rows_caps_the_rows_and_says_so(shop, fake_model):
    fake_model("SELECT * FROM order_items")
    result = ask(shop, "All order items", "-n", "1", "--max-rows", "5", "--format", "json")
    answer = json.loads(result.stdout)
    assert len(answer["rows"]) == 5 and answer["truncated"] is True


def test_first_candidate_is_greedy_and_seeds_are_explicit(shop, fake_model):
    model = fake_model("SELECT count(*) FROM customers")
    result = ask(shop, "How many customers?", "-n", "4", "--seed", "7", "--temperature", "0.9")
    assert result.exit_code == 0, result.output
    (call,) = model.calls
    assert call["temperatures"] == [0.0, 0.9, 0.9, 0.9]  # candidate i is seeded with seed + i
    assert call["seed"] == 7
    assert "<|im_end|>" in call["stop"] and ";" in call["stop"]
    assert call["prompt"].startswith(call["cache_prefix"]) and call["cache_prefix"].endswith("<|im_start|>user\n")


def test_the_prompt_is_the_strict_protocol_with_schema_and_dialect(shop, fake_model):
    model = fake_model("SELECT 1")
    ask(shop, "How many customers?", "-n", "1")
    prompt = model.calls[0]["prompt"]
    assert prompt.startswith("<|im_start|>system\nYou are a SQL translation engine. Return ONLY raw SQL. Schema: ")
    assert "CREATE TABLE customers" in prompt
    assert ("Dialect: SQLite." if shop.suffix == ".sqlite" else "Dialect: DuckDB.") in prompt
    assert prompt.endswith("<|im_start|>user\nHow many customers?<|im_end|>\n<|im_start|>assistant\n")


def test_small_model_noise_around_the_sql_is_stripped(shop, fake_model):
    fake_model("```sql\nSELECT count(*) FROM products\n```\nThis counts the products.")
    result = ask(shop, "How many products?", "-n", "1", "--format", "json")
    assert json.loads(result.stdout)["rows"] == [[25]]


def test_mysql_style_sql_is_transpiled_to_the_engine(shop, fake_model):
    fake_model("SELECT `name` FROM `products` WHERE `price` > 300")
    result = ask(shop, "Which products cost more than 300?", "-n", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == [["27-inch 4K Monitor"]]


def test_the_database_is_never_changed(shop, fake_model):
    fake_model("SELECT count(*) FROM customers", "DROP TABLE customers", "ATTACH 'x.db' AS x",
               "WITH a AS (SELECT 1) DELETE FROM orders", "SELECT 1; DROP TABLE orders")
    before = snapshot(shop.parent)
    result = ask(shop, "How many customers?")
    assert result.exit_code == 0, result.output
    assert snapshot(shop.parent) == before


def test_schema_prints_what_the_model_sees(shop, fake_model):
    model = fake_model("SELECT 1")
    ask(shop, "How many customers?", "-n", "1")
    result = runner.invoke(app, ["schema", "--db", str(shop)])
    assert result.exit_code == 0
    assert "CREATE TABLE order_items (" in result.stdout
    assert "FOREIGN KEY (customer_id) REFERENCES customers(customer_id)" in result.stdout
    assert result.stdout.strip() in model.calls[0]["prompt"]


def test_run_executes_checked_sql(shop):
    result = runner.invoke(app, ["run", "--db", str(shop), "SELECT count(*) AS n FROM products", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == [[25]]


def test_unknown_model_is_a_model_problem(shop):
    result = ask(shop, "How many customers?")  # nothing registered as "fake" here
    assert result.exit_code == 4
    assert "unknown model 'fake'" in result.stderr


def test_missing_database_is_a_database_problem(tmp_path, fake_model):
    fake_model("SELECT 1")
    result = runner.invoke(app, ["ask", "--db", str(tmp_path / "nope.sqlite"), "--model", "fake", "Anything?"])
    assert result.exit_code == 3
    assert "no such database file" in result.stderr
    assert not (tmp_path / "nope.sqlite").exists()


def test_early_stop_ends_sampling_once_a_majority_agrees(shop, fake_model):
    fake_model("SELECT count(*) FROM customers", "SELECT count(customer_id) FROM customers",
               "SELECT count(*) AS n FROM customers", "SELECT count(*) FROM orders", "SELECT 1")
    result = ask(shop, "How many customers?", "-n", "5", "--early-stop", "--format", "json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["rows"] == [[40]] and answer["votes"] == 3
    assert [entry["verdict"] for entry in answer["ballot"]] == ["valid", "valid", "valid", "stopped", "stopped"]


def test_early_stop_ends_sampling_once_no_other_result_can_catch_up(shop, fake_model):
    model = fake_model("SELECT count(*) FROM customers", "SELECT count(customer_id) FROM customers",
                       "SELECT name FROM nowhere", "SELECT nothing FROM customers", "SELECT count(*) FROM orders")
    result = ask(shop, "How many customers?", "-n", "5", "--early-stop", "--format", "json")
    answer = json.loads(result.stdout)
    assert answer["rows"] == [[40]] and answer["votes"] == 2  # 2 against none, one running: it cannot tie
    assert [entry["verdict"] for entry in answer["ballot"]] == ["valid", "valid", "unknown_table", "unknown_column",
                                                                "stopped"]
    assert model.served == 4


def test_early_stop_waits_while_the_last_candidate_could_tie(shop, fake_model):
    model = fake_model("SELECT count(*) FROM customers", "SELECT count(customer_id) FROM customers",
                       "SELECT name FROM nowhere", "SELECT count(*) FROM orders", "SELECT count(*) FROM products")
    ask(shop, "How many customers?", "-n", "5", "--early-stop", "--format", "json")
    assert model.served == 5  # 2 against 1 with one running: it could make 2 against 2


def test_without_a_majority_early_stop_samples_everything(shop, fake_model):
    fake_model("SELECT count(*) FROM customers", "SELECT count(*) FROM orders", "SELECT count(*) FROM products")
    result = ask(shop, "How many customers?", "-n", "3", "--early-stop", "--format", "json")
    assert [entry["verdict"] for entry in json.loads(result.stdout)["ballot"]] == ["valid"] * 3


def test_markdown_prints_the_sql_and_a_table(shop, fake_model):
    fake_model("SELECT name, price FROM products ORDER BY price DESC LIMIT 2")
    result = ask(shop, "Two most expensive products?", "-n", "1", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("```sql\nSELECT name, price FROM products ORDER BY price DESC LIMIT 2\n```\n")
    assert "| name | price |\n| --- | --- |\n| 27-inch 4K Monitor | 329.0 |\n| Espresso Machine | 249.0 |" in result.stdout


def test_output_writes_the_answer_to_a_file_not_stdout(shop, fake_model, tmp_path):
    fake_model("SELECT count(*) AS n FROM customers")
    target = tmp_path / "answer.json"
    result = ask(shop, "How many customers?", "-n", "1", "--format", "json", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert json.loads(target.read_text())["rows"] == [[40]]


def test_output_to_an_unwritable_place_is_a_usage_error(shop, fake_model, tmp_path):
    fake_model("SELECT 1")
    result = ask(shop, "Anything?", "-n", "1", "--output", str(tmp_path / "no" / "such" / "dir" / "x.txt"))
    assert result.exit_code == 2
    assert "cannot write" in result.stderr


def test_the_question_log_is_opt_in_and_holds_no_rows_unless_asked(shop, fake_model, tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("EDGESQL_LOG", str(log))
    fake_model("SELECT count(*) FROM customers")
    ask(shop, "How many customers?", "-n", "1")
    assert not log.exists()
    ask(shop, "How many customers?", "-n", "1", "--log")
    ask(shop, "How many customers?", "-n", "1", "--log", "--log-rows")
    first, second = [json.loads(line) for line in log.read_text().splitlines()]
    assert first["question"] == "How many customers?" and first["sql"] == "SELECT COUNT(*) FROM customers"
    assert "rows" not in first
    assert second["rows"] == [[40]]
