"""How sure an answer is: a confidence from the ballot, shown in words, and `--min-confidence` declining the unsure."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from edge_sql.cli import app
from edge_sql.steps.confidence import DEFAULT, Signals

runner = CliRunner()


def ask(shop, *args):
    return runner.invoke(app, ["ask", "--db", str(shop), "--model", "fake", *args])


AGREED = ["SELECT count(*) FROM customers"] * 5
SPLIT = ["SELECT count(*) FROM customers", "SELECT count(*) FROM orders", "SELECT count(*) FROM products",
         "SELECT max(price) FROM products", "SELECT min(price) FROM products"]


def test_candidates_that_agree_make_a_surer_answer_than_a_split_vote(shop, fake_model):
    fake_model(*AGREED)
    agreed = json.loads(ask(shop, "How many customers are there?", "--format", "json").stdout)
    fake_model(*SPLIT)
    split = json.loads(ask(shop, "How many customers are there?", "--format", "json").stdout)
    assert agreed["signals"]["agreement"] == 1.0 and split["signals"]["agreement"] == 0.2
    assert 0.0 < split["confidence"] < agreed["confidence"] < 1.0


def test_the_table_says_how_sure_in_words(shop, fake_model):
    fake_model(*AGREED)
    result = ask(shop, "How many customers are there?")
    assert result.exit_code == 0, result.output
    assert "5 of 5 candidates agreed · fake · confidence" in result.stdout
    assert any(word in result.stdout for word in ("(high)", "(medium)", "(low)"))


def test_an_answer_below_min_confidence_is_declined_with_exit_7_and_one_line(shop, fake_model):
    fake_model(*SPLIT)
    result = ask(shop, "How many customers are there?", "--min-confidence", "0.99")
    assert result.exit_code == 7
    assert result.stdout == ""  # no answer is shown as if it were one
    assert result.stderr.count("\n") == 1 and "below --min-confidence 99%" in result.stderr


def test_a_declined_answer_still_shows_its_best_guess_when_asked(shop, fake_model):
    fake_model(*SPLIT)
    shown = ask(shop, "How many customers are there?", "--min-confidence", "0.99", "--show-candidates")
    assert shown.exit_code == 7 and "Candidates" in shown.stdout and "candidates agreed" in shown.stdout
    fake_model(*SPLIT)
    data = json.loads(ask(shop, "How many customers?", "--min-confidence", "0.99", "--format", "json").stdout)
    assert data["sql"] and data["confidence"] < 0.99 and "min-confidence" in data["error"]


def test_min_confidence_declines_only_what_is_less_sure(shop, fake_model):
    fake_model(*AGREED)
    sure = json.loads(ask(shop, "How many customers are there?", "--format", "json").stdout)["confidence"]
    fake_model(*AGREED)
    assert ask(shop, "How many customers are there?", "--min-confidence", f"{sure - 0.01:.4f}").exit_code == 0
    fake_model(*AGREED)
    assert ask(shop, "How many customers are there?", "--min-confidence", f"{sure + 0.01:.4f}").exit_code == 7


def test_agreement_rows_a_probable_query_and_stored_values_each_raise_the_confidence():
    base = Signals(agreement=0.6, lead=0.2, greedy=False, empty=True, logprob=-0.5)
    assert DEFAULT.probability(base) <= DEFAULT.probability(Signals(0.6, 0.2, True, True, -0.5))
    assert DEFAULT.probability(base) < DEFAULT.probability(Signals(0.6, 0.2, False, True, -0.1))
    assert DEFAULT.probability(base) < DEFAULT.probability(Signals(1.0, 1.0, False, True, -0.5))
    assert DEFAULT.probability(base) < DEFAULT.probability(Signals(0.6, 0.2, False, False, -0.5))
    assert DEFAULT.probability(Signals(0.6, 0.2, False, False, -0.5, grounded=False)) < \
        DEFAULT.probability(Signals(0.6, 0.2, False, False, -0.5))


def test_min_confidence_comes_from_the_config_file(shop, fake_model, tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text("min_confidence = 0.99\n")
    monkeypatch.setenv("EDGESQL_CONFIG", str(config))
    fake_model(*SPLIT)
    assert ask(shop, "How many customers are there?").exit_code == 7
    fake_model(*SPLIT)
    assert ask(shop, "How many customers are there?", "--min-confidence", "0").exit_code == 0


def test_min_confidence_outside_0_to_1_is_a_usage_error(shop):
    result = ask(shop, "How many customers are there?", "--min-confidence", "80")
    assert result.exit_code == 2 and "--min-confidence" in result.stderr
