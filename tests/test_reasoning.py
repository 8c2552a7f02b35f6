"""Models that reason before they answer (SLM-SQL, CscSQL-Merge: CSC-SQL's ``<think>…</think><answer>SQL</answer>``),
run as their authors run them: no stop at a statement's end inside the think block, the protocol's token budget,
the SQL taken from ``<answer>``, and a split vote merged by a separate merge model that the preset names.

The models here are real llama.cpp models that write a known script (``fixtures/scripted_gguf.py``): a think block
holding semicolons and a blank line, where the old statement stops cut every candidate before its answer. They run
in process and through llama-cpp-python's own server.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from edge_sql.backends import load_model
from edge_sql.cli import app
from edge_sql.steps.database import open_database
from edge_sql.steps.prompt import build_prompt
from edge_sql.steps.schema import render_schema
from edge_sql.preset import Preset
from fixtures.llama_server import llama_server
from fixtures.scripted_gguf import write_scripted_gguf

runner = CliRunner()
THINKS = {"edgesql.protocol": "slm-sql-think"}
#: What the reasoning model writes, whatever it is asked.
THINKING = ["<think>\n", "The question counts customers; ", "SELECT first_name ", "FROM customers; would ",
            "list them.\n\n", "So count the rows.\n", "</think>\n", "<answer>\n", "SELECT count(*) ",
            "FROM customers;\n", "</answer>"]
#: What the merge model writes: neither draft, a third query.
MERGING = ["<think>\n", "Draft 1 counts customers; ", "draft 2 counts orders; ", "the question asks ",
           "about products.\n", "</think>\n", "<answer>SELECT count(*) ", "FROM products", "</answer>"]
needs_server = pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None or
                                  importlib.util.find_spec("fastapi") is None,
                                  reason="llama-cpp-python's server extra is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def thinker(tmp_path_factory):
    return write_scripted_gguf(tmp_path_factory.mktemp("models") / "thinker.gguf", THINKING, metadata=THINKS)


@pytest.fixture(scope="module")
def merger(tmp_path_factory):
    return write_scripted_gguf(tmp_path_factory.mktemp("models") / "merger.gguf", MERGING, metadata=THINKS)


@pytest.fixture(scope="module")
def served_thinker(thinker, tmp_path_factory):
    with llama_server(thinker, tmp_path_factory.mktemp("server") / "thinker.log") as url:
        yield url + "?protocol=slm-sql-think"


@pytest.fixture(scope="module")
def served_merger(merger, tmp_path_factory):
    with llama_server(merger, tmp_path_factory.mktemp("server") / "merger.log") as url:
        yield url + "?protocol=slm-sql-think"


@pytest.fixture
def shop_copy(tmp_path):
    target = tmp_path / "shop.sqlite"
    shutil.copyfile(EXAMPLES / "shop.sqlite", target)
    return target


def count(db, table: str) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def ask(*args: str):
    result = runner.invoke(app, ["ask", *args, "--format", "json"])
    return result, (json.loads(result.stdout) if result.stdout.startswith("{") else None)


@needs_server
def test_the_scripted_model_writes_its_script_in_process_and_through_the_server(thinker, served_thinker):
    prompt = build_prompt("slm-sql-think", "CREATE TABLE t (a INT)", "How many?", "sqlite")
    script = "".join(THINKING).split("</answer>")[0]  # up to the stop string
    for model in (load_model(str(thinker), threads=1), load_model(served_thinker)):
        completions = model.sample(prompt.text, [0.0, 0.8, 1.5], seed=3, max_tokens=64, stop=prompt.stop)
        assert [c.text for c in completions] == [script] * 3


@pytest.mark.parametrize("grammar", ["--grammar", "--no-grammar"])
def test_a_reasoning_model_answers_with_the_sql_of_its_answer_not_of_its_think_block(thinker, shop_copy, grammar):
    result, answer = ask("--db", str(shop_copy), "--model", str(thinker), "How many customers are there?", grammar)
    assert result.exit_code == 0, result.output
    assert answer["sql"] == "SELECT COUNT(*) FROM customers" and answer["rows"] == [[count(shop_copy, "customers")]]
    assert answer["votes"] == answer["candidates"] == 5


def test_a_think_block_cut_by_the_token_budget_says_how_to_give_it_more(thinker, shop_copy):
    result, _ = ask("--db", str(shop_copy), "--model", str(thinker), "How many customers?", "--max-tokens", "3")
    assert result.exit_code == 5
    assert "still reasoning when its token budget ran out: give it more with --max-tokens" in result.stderr


def test_a_reasoning_protocol_gets_its_budget_and_no_statement_stops(fake_model, shop_copy):
    thinking = Preset(name="fake", protocol="slm-sql-think")
    model = fake_model("<think>Count them; no join.\n\nDone.</think>\n<answer>SELECT count(*) FROM customers;</answer>",
                       preset=thinking)
    result, answer = ask("--db", str(shop_copy), "--model", "fake", "How many customers?", "-n", "1")
    assert result.exit_code == 0 and answer["sql"] == "SELECT COUNT(*) FROM customers"
    call = model.calls[0]
    assert call["max_tokens"] == 1024 and ";" not in call["stop"] and "\n\n" not in call["stop"]
    assert "</answer>" in call["stop"] and "Show your work in <think> </think> tags." in call["prompt"]

    plain = fake_model("SELECT count(*) FROM customers")  # a model that answers with SQL alone: stopped at its end
    ask("--db", str(shop_copy), "--model", "fake", "How many customers?", "-n", "1")
    assert plain.calls[0]["max_tokens"] <= 256 and ";" in plain.calls[0]["stop"]


def test_max_tokens_sets_the_budget_of_every_candidate(fake_model, shop_copy):
    model = fake_model("SELECT count(*) FROM customers")
    ask("--db", str(shop_copy), "--model", "fake", "How many customers?", "-n", "2", "--max-tokens", "40")
    assert model.calls[0]["max_tokens"] == 40


@needs_server
def test_a_reasoning_model_answers_alike_through_llama_cpp_pythons_server(served_thinker, thinker, shop_copy,
                                                                          tmp_path):
    for grammar in ("--grammar", "--no-grammar"):
        remote, remote_answer = ask("--db", str(shop_copy), "--model", served_thinker, "How many customers?", grammar)
        local, local_answer = ask("--db", str(shop_copy), "--model", str(thinker), "How many customers?", grammar)
        assert remote.exit_code == local.exit_code == 0, remote.output
        assert remote_answer["ballot"] == local_answer["ballot"] and remote_answer["rows"] == local_answer["rows"]
    cut, _ = ask("--db", str(shop_copy), "--model", served_thinker, "How many customers?", "--max-tokens", "3")
    assert cut.exit_code == 5 and "still reasoning" in cut.stderr

    data = tmp_path / "questions.jsonl"
    data.write_text(json.dumps({"question": "How many customers are there?", "query": "SELECT count(*) FROM customers",
                                "db": str(shop_copy)}) + "\n", encoding="utf-8")
    report = tmp_path / "report.json"
    result = runner.invoke(app, ["eval", "--data", str(data), "--model", served_thinker, "-n", "1,3",
                                 "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert [a["right"] for a in json.loads(report.read_text())["records"][0]["answers"]] == [True, True]

    shell = runner.invoke(app, ["shell", "--db", str(shop_copy), "--model", served_thinker],
                          input="How many customers are there?\n")
    assert shell.exit_code == 0 and str(count(shop_copy, "customers")) in shell.stdout


def split_vote(fake_model, merge: dict):
    """A model whose two candidates disagree (customers vs orders), its preset naming ``merge``."""
    return fake_model("SELECT count(*) FROM customers", "SELECT count(*) FROM orders", "SELECT count(*) FROM products",
                      preset=Preset(name="fake", candidates=2, merge=merge))


def test_a_split_vote_is_merged_by_the_merge_model_the_preset_names_in_csc_sqls_prompt(fake_model, shop_copy):
    merging = fake_model("<think>Draft 1; draft 2.</think><answer>SELECT count(*) FROM products</answer>",
                         name="merger", preset=Preset(name="merger", protocol="slm-sql-think"))
    model = split_vote(fake_model, {"model": "merger", "candidates": 3, "temperature": 0.8})
    result, answer = ask("--db", str(shop_copy), "--model", "fake", "How many products?", "--merge")
    assert result.exit_code == 0, result.output
    assert answer["sql"] == "SELECT COUNT(*) FROM products" and answer["rows"] == [[count(shop_copy, "products")]]
    assert [e["round"] for e in answer["ballot"]] == ["sample", "sample", "merge", "merge", "merge"]
    assert len(model.calls) == 1  # the answering model drafted; the merge model merged
    (call,) = merging.calls
    assert call["temperatures"] == [0.0, 0.8, 0.8] and call["max_tokens"] == 1024
    customers, orders = count(shop_copy, "customers"), count(shop_copy, "orders")
    # the two drafts, the vote's winner first (a tie of 1 to 1 goes to the more confident: the shorter query here)
    assert ("Here are some corresponding draft SQL and execute result: \n"
            f"1. SELECT COUNT(*) FROM orders\n【Execution result】\n[({orders},)]\n\n"
            f"2. SELECT COUNT(*) FROM customers\n【Execution result】\n[({customers},)]\n\n\nInstructions:") in call["prompt"]
    assert "some draft SQL and its corresponding execution result" in call["prompt"]


def test_merge_model_takes_a_gguf_file_run_in_process(fake_model, merger, shop_copy):
    split_vote(fake_model, {})
    result, answer = ask("--db", str(shop_copy), "--model", "fake", "How many products?", "--merge",
                         "--merge-model", str(merger))
    assert result.exit_code == 0, result.output
    assert answer["sql"] == "SELECT COUNT(*) FROM products" and answer["ballot"][-1]["round"] == "merge"


@needs_server
def test_merge_model_takes_a_server(fake_model, served_merger, shop_copy):
    split_vote(fake_model, {"model": served_merger})
    result, answer = ask("--db", str(shop_copy), "--model", "fake", "How many products?", "--merge")
    assert result.exit_code == 0, result.output
    assert answer["rows"] == [[count(shop_copy, "products")]] and answer["ballot"][-1]["round"] == "merge"


def test_a_merge_model_that_is_not_installed_leaves_the_merge_to_the_model_and_says_so(fake_model, shop_copy):
    model = split_vote(fake_model, {"model": "cscsql-merge-0.5b"})
    result, answer = ask("--db", str(shop_copy), "--model", "fake", "How many products?", "--merge")
    assert result.exit_code == 0, result.output
    assert "fake's merge model is not available" in result.stderr and "it merges itself" in result.stderr
    assert len(model.calls) == 2 and answer["sql"] == "SELECT COUNT(*) FROM products"


def test_a_merge_model_given_by_flag_must_load(fake_model, shop_copy, tmp_path):
    split_vote(fake_model, {})
    result, _ = ask("--db", str(shop_copy), "--model", "fake", "How many?", "--merge", "--merge-model",
                    str(tmp_path / "missing.gguf"))
    assert result.exit_code == 4 and "no such model file" in result.stderr and "Traceback" not in result.output


def test_without_merge_no_merge_model_is_loaded(fake_model, shop_copy):
    split_vote(fake_model, {"model": "cscsql-merge-0.5b"})
    result, answer = ask("--db", str(shop_copy), "--model", "fake", "How many?")
    assert result.exit_code == 0 and "merge model" not in result.stderr
    assert [e["round"] for e in answer["ballot"]] == ["sample", "sample"]


def test_eval_merges_with_the_merge_model_and_names_it_in_the_report(fake_model, merger, shop_copy, tmp_path):
    split_vote(fake_model, {})
    data = tmp_path / "questions.jsonl"
    data.write_text(json.dumps({"question": "How many products are there?", "query": "SELECT count(*) FROM products",
                                "db": str(shop_copy)}) + "\n", encoding="utf-8")
    report = tmp_path / "report.json"
    result = runner.invoke(app, ["eval", "--data", str(data), "--model", "fake", "-n", "2", "--merge",
                                 "--merge-model", str(merger), "--report", str(report)])
    assert result.exit_code == 0, result.output
    written = json.loads(report.read_text())
    assert written["merge_model"] == "merger.gguf" and written["results"][0]["right"] == 1
    assert "merge by merger.gguf" in " ".join(result.stdout.split())


def test_candidates_that_do_not_fit_the_context_together_are_decoded_in_turn(tmp_path):
    """A reasoning model's candidates each need their whole budget of cache cells: those that cannot all fit beside
    the prompt at once are decoded a few at a time, never cut when the cache fills."""
    db = tmp_path / "tiny.sqlite"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, first_name TEXT)")
        connection.executemany("INSERT INTO customers (first_name) VALUES (?)", [("Ada",), ("Bo",), ("Cy",)])
    long = THINKING[:1] + [f"step {i}; " for i in range(40)] + THINKING[1:]  # 51 tokens of reasoning and answer
    probe = write_scripted_gguf(tmp_path / "probe.gguf", long, metadata=THINKS)
    with open_database(db) as database:
        text = build_prompt("slm-sql-think", render_schema(database.schema, "ddl"), "How many customers?",
                            "sqlite").text
    needed = load_model(str(probe), threads=1).count_tokens(text)
    budget = len(long) + 2
    # room beside the prompt for one candidate's budget (llama.cpp pads a context to 256 cells), not for twelve
    tight = write_scripted_gguf(tmp_path / "tight.gguf", long, metadata=THINKS, context=needed + budget + 3)
    result, answer = ask("--db", str(db), "--model", str(tight), "How many customers?", "--max-tokens", str(budget),
                         "-n", "12")
    assert result.exit_code == 0, result.output
    assert answer["rows"] == [[3]] and answer["votes"] == 12


def test_the_config_file_sets_max_tokens_and_the_merge_model_and_flags_beat_it(fake_model, merger, shop_copy,
                                                                               tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text(f'max_tokens = 48\nmerge_model = "{merger}"\nmerge = true\n', encoding="utf-8")
    monkeypatch.setenv("EDGESQL_CONFIG", str(config))
    model = split_vote(fake_model, {})
    result, answer = ask("--db", str(shop_copy), "--model", "fake", "How many products?")
    assert result.exit_code == 0, result.output
    assert model.calls[0]["max_tokens"] == 48 and answer["ballot"][-1]["round"] == "merge"
    ask("--db", str(shop_copy), "--model", "fake", "How many products?", "--max-tokens", "30", "--no-merge")
    assert model.calls[-1]["max_tokens"] == 30
    shown = runner.invoke(app, ["config", "show"])
    assert "max_tokens = 48" in shown.stdout and f"merge_model = {merger}" in shown.stdout
    config.write_text("max_tokens = 0\n", encoding="utf-8")
    bad, _ = ask("--db", str(shop_copy), "--model", "fake", "How many products?")
    assert bad.exit_code == 2 and "max_tokens" in bad.stderr and "Traceback" not in bad.output
