"""Second rounds: repair when no candidate runs, merge when the vote is split — switchable, bounded, and visible in
the ballot. A fake model answers each call with the next queued texts, so each test reads as a conversation."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edge_sql.cli import app
from edge_sql.cli.options import chosen_remedies
from edge_sql.remedies import Remedies
from edge_sql.steps.database import open_database
from edge_sql.steps.repair import repair_request
from edge_sql.steps.validate import UNKNOWN_COLUMN, UNKNOWN_TABLE, validate

runner = CliRunner()


def ask(shop, *args):
    return runner.invoke(app, ["ask", "--db", str(shop), "--model", "fake", "--format", "json", *args])


def user_turn(prompt: str) -> str:
    return prompt.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]


# -- repair -------------------------------------------------------------------------------------------------------------

def test_when_every_candidate_fails_a_repair_round_feeds_back_the_sql_the_error_and_the_valid_names(shop, fake_model):
    model = fake_model("SELECT colour FROM products", "SELECT colour FROM products", "SELECT colour FROM products",
                       "SELECT count(*) FROM products", "SELECT count(*) FROM products", "SELECT name FROM nowhere")
    result = ask(shop, "How many products are there?", "-n", "3", "--repair")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["rows"] == [[25]]
    assert [entry["round"] for entry in answer["ballot"]] == ["sample"] * 3 + ["repair 1"] * 3
    assert len(model.calls) == 2
    request = user_turn(model.calls[1]["prompt"])
    assert request.splitlines() == [
        "How many products are there?",
        "This query failed: SELECT colour FROM products",
        "Error: no such column: colour",
        "Valid names: products(product_id, name, category, price)",
        "Write a corrected query.",
    ]


def test_the_repair_round_keeps_the_schema_prompt_so_its_cached_state_serves_again(shop, fake_model):
    model = fake_model("SELECT colour FROM products", "SELECT count(*) FROM products")
    assert ask(shop, "How many products are there?", "-n", "1", "--repair").exit_code == 0
    first, second = model.calls
    assert first["cache_prefix"] == second["cache_prefix"]
    assert second["prompt"].startswith(second["cache_prefix"])


def test_a_wrong_table_name_is_answered_with_every_table(shop, fake_model):
    model = fake_model("SELECT count(*) FROM clients", "SELECT count(*) FROM customers")
    assert ask(shop, "How many clients?", "-n", "1", "--repair").exit_code == 0
    names = user_turn(model.calls[1]["prompt"]).splitlines()[3]
    assert names.startswith("Valid names: customers(") and "orders(" in names and "products(" in names


def test_repair_stops_after_the_rounds_it_may_take(shop, fake_model):
    model = fake_model("SELECT colour FROM products")
    result = ask(shop, "Which colours?", "-n", "2", "--repair", "--repair-rounds", "2")
    assert result.exit_code == 5
    assert len(model.calls) == 3
    assert [entry["round"] for entry in json.loads(result.stdout)["ballot"]] == (
        ["sample"] * 2 + ["repair 1"] * 2 + ["repair 2"] * 2)


def test_no_repair_means_one_round(shop, fake_model):
    model = fake_model("SELECT colour FROM products")
    assert ask(shop, "Which colours?", "-n", "2", "--no-repair").exit_code == 5
    assert len(model.calls) == 1


def test_a_question_some_candidate_answers_needs_no_repair(shop, fake_model):
    model = fake_model("SELECT colour FROM products", "SELECT count(*) FROM products")
    assert ask(shop, "How many products?", "-n", "2", "--repair").exit_code == 0
    assert len(model.calls) == 1


@pytest.mark.parametrize("sql, kind, name, error", [
    ("SELECT colour FROM products", UNKNOWN_COLUMN, "colour", "no such column: colour"),
    ("SELECT name FROM products WHERE Colour = 'red'", UNKNOWN_COLUMN, "colour", "no such column: colour"),
    ("SELECT order_id FROM customers", UNKNOWN_COLUMN, "order_id", "no such column: order_id"),
    ("SELECT count(*) FROM clients", UNKNOWN_TABLE, "clients", "no such table: clients"),
    ('SELECT * FROM "order items"', UNKNOWN_TABLE, "order items", "no such table: order items"),
    # sqlglot's other complaints name no column: the request repeats the error as it is
    ("SELECT p.colour FROM products AS p", UNKNOWN_COLUMN, None, "Unknown column: colour"),
], ids=["column", "column-in-where", "column-of-another-table", "table", "table-with-a-space", "qualified-column"])
def test_a_verdict_names_the_missing_table_or_column_and_the_repair_request_says_it(shop, sql, kind, name, error):
    with open_database(shop) as db:
        verdict = validate(sql, db.schema)
        assert (verdict.kind, verdict.name) == (kind, name)
        request = repair_request("Q?", sql, verdict.error, db.schema, kind=verdict.kind, name=verdict.name)
    lines = request.splitlines()
    assert lines[2] == f"Error: {error}"
    if kind == UNKNOWN_COLUMN and name:  # the tables that have the column are offered
        tables = [t.split("(")[0] for t in lines[3].removeprefix("Valid names: ").split("; ")]
        assert tables == [t.name for t in db.schema.tables
                          if t.name in sql.split() or any(c.name == name for c in t.columns)]


def test_a_repair_round_names_the_table_that_does_not_exist(shop, fake_model):
    model = fake_model("SELECT count(*) FROM clients", "SELECT count(*) FROM customers")
    assert ask(shop, "How many clients?", "-n", "1", "--repair").exit_code == 0
    assert user_turn(model.calls[1]["prompt"]).splitlines()[2] == "Error: no such table: clients"


# -- merge --------------------------------------------------------------------------------------------------------------

def test_a_split_vote_is_settled_by_a_merge_round_that_sees_both_queries_and_results(shop, fake_model):
    model = fake_model("SELECT count(*) FROM products", "SELECT count(*) FROM customers",
                       "SELECT count(*) FROM products", "SELECT count(*) FROM customers",
                       "SELECT count(*) FROM customers")
    result = ask(shop, "How many customers are there?", "-n", "4", "--merge")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["rows"] == [[40]]
    assert answer["ballot"][-1]["round"] == "merge"
    assert answer["votes"] == 3  # the merged query and the two candidates that agree with it
    assert model.calls[1]["temperatures"] == [0.0]
    request = user_turn(model.calls[1]["prompt"]).splitlines()
    assert request[:2] == ["How many customers are there?", "Two queries disagree."]
    assert request[-1] == "Write the one correct query."
    assert [line.split(":", 1)[0] for line in request[2:-1]] == ["Query A", "Result A", "Query B", "Result B"]
    assert sorted(line.rsplit(" ", 1)[1] for line in request if line.startswith("Result ")) == ["25", "40"]


def test_without_merge_a_tied_vote_goes_to_the_first_group(shop, fake_model):
    fake_model("SELECT count(*) FROM products", "SELECT count(*) FROM customers")
    answer = json.loads(ask(shop, "How many customers are there?", "-n", "2", "--no-merge").stdout)
    assert answer["rows"] == [[25]]


def test_a_clear_majority_needs_no_merge(shop, fake_model):
    model = fake_model("SELECT count(*) FROM customers", "SELECT count(*) FROM customers", "SELECT 1")
    assert ask(shop, "How many customers are there?", "-n", "3", "--merge").exit_code == 0
    assert len(model.calls) == 1


def test_a_merged_query_that_fails_leaves_the_vote_standing(shop, fake_model):
    fake_model("SELECT count(*) FROM products", "SELECT count(*) FROM customers", "SELECT colour FROM products")
    answer = json.loads(ask(shop, "How many customers are there?", "-n", "2", "--merge").stdout)
    assert answer["rows"] == [[25]]
    assert answer["ballot"][-1]["round"] == "merge" and answer["ballot"][-1]["verdict"] == "unknown_column"


# -- options ------------------------------------------------------------------------------------------------------------

def test_flags_left_out_keep_the_measured_defaults():
    assert chosen_remedies(None, None, None, None, None, None) == Remedies()


def test_the_config_file_sets_the_remedies_and_flags_override_it(shop, fake_model, tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('grammar = false\nrepair = 2\nprune = "never"\nhints = true\nmerge = false\n')
    monkeypatch.setenv("EDGESQL_CONFIG", str(config))
    assert chosen_remedies(None, None, None, None, None, None) == Remedies(grammar=False, repair=2, merge=False,
                                                                         prune="never", hints=True)
    assert chosen_remedies(None, False, None, None, "always", None).repair == 0
    shown = runner.invoke(app, ["config", "show"]).stdout
    assert f"repair = 2  ({config})" in shown and f"prune = never  ({config})" in shown
    model = fake_model("SELECT colour FROM products")
    assert ask(shop, "Which colours?", "-n", "1").exit_code == 5
    assert len(model.calls) == 3  # the first round and the config file's two repair rounds


@pytest.mark.parametrize("line, message", [
    ('prune = "sometimes"', "prune in the config file"),
    ("grammar = 1", "grammar in the config file"),
    ("repair = 9", "repair in the config file"),
])
def test_a_bad_remedy_in_the_config_file_is_one_line(shop, fake_model, tmp_path, monkeypatch, line, message):
    config = tmp_path / "config.toml"
    config.write_text(line + "\n")
    monkeypatch.setenv("EDGESQL_CONFIG", str(config))
    fake_model("SELECT 1")
    result = ask(shop, "How many?")
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize("args, message", [
    (["--prune", "sometimes"], "'sometimes' is not one of auto, always, never"),
    (["--repair-rounds", "9"], "--repair-rounds"),
])
def test_bad_remedy_options_are_usage_errors(shop, fake_model, args, message):
    fake_model("SELECT 1")
    result = ask(shop, "How many?", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_eval_reports_the_remedies_and_repairs_each_candidate_count(shop, fake_model, tmp_path):
    data = shop.parent / "mine.jsonl"
    data.write_text(json.dumps({"question": "How many products are there?", "query": "SELECT count(*) FROM products",
                                "db": shop.name}) + "\n", encoding="utf-8")
    model = fake_model("SELECT colour FROM products", "SELECT colour FROM products",
                       "SELECT count(*) FROM products",  # repairs greedy (k = 1)
                       "SELECT count(*) FROM products", "SELECT count(*) FROM products")  # repairs the vote of 2
    report_path = tmp_path / "r.json"
    result = runner.invoke(app, ["eval", "--data", str(data), "--model", "fake", "-n", "1,2", "--repair",
                                 "--report", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["remedies"]["repair"] == 1
    assert [answer["right"] for answer in report["records"][0]["answers"]] == [True, True]
    assert len(model.calls) == 3
    assert "repair×1" in result.output


# -- pruning in the pipeline ----------------------------------------------------------------------------------------------

def test_auto_pruning_shows_a_model_with_a_short_context_only_the_tables_the_question_needs(shop, fake_model):
    model = fake_model("SELECT count(*) FROM customers", context_length=200)  # the whole schema does not fit
    result = runner.invoke(app, ["ask", "--db", str(shop), "--model", "fake", "How many customers are there?",
                                 "--prune", "auto", "--show-candidates"])
    assert result.exit_code == 0, result.output
    prompt = model.calls[0]["prompt"]
    assert "CREATE TABLE customers" in prompt and "CREATE TABLE orders" in prompt
    assert "products" not in prompt and "order_items" not in prompt
    note = next(line for line in result.stdout.splitlines() if line.startswith("schema pruned to"))
    assert note == "schema pruned to 2 of 4 tables to fit the model's context"
    assert result.stderr == f"edgesql: {note} (--show-candidates shows the schema it saw)\n"  # how much, not which


def test_the_schema_command_names_what_a_pruning_leaves_out(shop):
    result = runner.invoke(app, ["schema", "--db", str(shop), "--question", "How many customers are there?",
                                 "--prune", "always"])
    assert result.exit_code == 0, result.output
    assert "left out: " in result.stderr and "products" in result.stderr.split("left out: ")[1]


def test_a_model_with_room_sees_the_whole_schema_unless_pruning_is_always(shop, fake_model):
    model = fake_model("SELECT count(*) FROM customers")
    whole = ask(shop, "How many customers are there?", "--prune", "auto")
    assert whole.exit_code == 0 and whole.stderr == ""
    assert ask(shop, "How many customers are there?", "--prune", "always", "-n", "1").exit_code == 0
    whole, pruned = model.calls[0]["prompt"], model.calls[1]["prompt"]
    assert "CREATE TABLE products" in whole
    assert "CREATE TABLE products" not in pruned and "CREATE TABLE customers" in pruned


def test_hints_put_the_stored_value_the_question_names_in_front_of_the_model(shop, fake_model):
    model = fake_model("SELECT count(*) FROM customers WHERE country = 'Germany'")
    assert ask(shop, "How many customers live in Germany?", "--no-hints", "-n", "1").exit_code == 0
    assert ask(shop, "How many customers live in Germany?", "--hints", "-n", "1").exit_code == 0
    plain, hinted = (call["prompt"] for call in model.calls)
    assert "'Germany'" not in plain
    assert "How many customers live in Germany?\nValues in the database: customers.country 'Germany'" in hinted


def test_every_question_on_a_database_shares_the_schema_part_of_its_prompt(shop, fake_model):
    """Hints follow the question, so the schema part (the prompt's cache prefix) is the same for every question: its
    state is computed once and serves them all, in ask as in training."""
    model = fake_model("SELECT count(*) FROM customers")
    for question in ("How many customers live in Germany?", "Which orders were cancelled?", "How many products?"):
        assert ask(shop, question, "--hints", "-n", "1").exit_code == 0
    prefixes = {call["cache_prefix"] for call in model.calls}
    assert len(prefixes) == 1 and all(call["prompt"].startswith(prefixes.pop()) for call in model.calls[:1])
    assert "'cancelled'" in model.calls[1]["prompt"].split(model.calls[1]["cache_prefix"], 1)[1]


def test_the_grammar_of_the_schema_the_model_sees_goes_with_its_prompt(shop, fake_model):
    model = fake_model("SELECT count(*) FROM customers")
    assert ask(shop, "How many customers are there?", "--grammar", "--prune", "always", "-n", "1").exit_code == 0
    assert ask(shop, "How many customers are there?", "--no-grammar", "-n", "1").exit_code == 0
    grammar = model.calls[0]["grammar"]
    assert "customers" in grammar and "order_items" not in grammar  # pruned away: not writable either
    assert model.calls[1]["grammar"] is None
