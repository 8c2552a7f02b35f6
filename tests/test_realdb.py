"""The real-database question set, ``benchmarks/realdb/questions.jsonl``: analyst questions with gold SQL over the
sample databases of ``../shared/data/realdb`` (Sakila and Oracle's Customer Orders in SQLite; Hacker News, NYC and
WHO excerpts in DuckDB), which the set names by paths relative to its own file, so the databases are never copied.

It loads as an ``edgesql eval`` JSONL dataset; every gold query passes edgesql's validator, runs on its database as
``eval`` scores it, and finds something (rows, not only a zero or NULL). The tests that open the databases are
skipped where they are absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from edge_sql.cli import app
from edge_sql.eval.datasets import comparison_files, load_dataset
from edge_sql.eval.metric import prediction_line, rewrite
from edge_sql.eval.scoring import Databases, run_gold
from edge_sql.steps.validate import validate

SET = ROOT / "benchmarks" / "realdb" / "questions.jsonl"
REALDB = ROOT.parent / "shared" / "data" / "realdb"
DATABASES = {"sakila", "customer_orders", "hn", "nyc", "who"}
KINDS = {"dates", "joins", "text", "top-n", "groups"}
needs_realdb = pytest.mark.skipif(not all((REALDB / name).is_file() for name in (
    "sakila.sqlite", "customer_orders.sqlite", "hn.duckdb", "nyc.duckdb", "who.duckdb")),
    reason="shared real databases (../shared/data/realdb) not present")


def items() -> list[dict]:
    return [json.loads(line) for line in SET.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_set_loads_as_an_eval_dataset_over_the_shared_databases():
    dataset = load_dataset(SET)
    assert dataset.layout == "jsonl" and dataset.metric == "spider"
    assert len(dataset.examples) >= 40
    assert {example.db_id for example in dataset.examples} == DATABASES
    for example in dataset.examples:  # "db" is relative to the JSONL file and leads to ../shared/data/realdb
        assert example.db_path.resolve() == REALDB.resolve() / example.db_path.name
    assert not any(Path(item["db"]).is_absolute() for item in items())


def test_every_line_has_a_question_a_gold_query_and_a_kind():
    lines = items()
    assert all(set(item) == {"question", "query", "db", "kind"} for item in lines)
    assert {item["kind"] for item in lines} == KINDS
    assert len({item["question"] for item in lines}) == len(lines)


def test_every_gold_query_runs_as_written():
    """``eval`` deletes DISTINCT from gold queries (Spider's rule) and folds them onto one line: none of these
    changes, so the gold result is the one the question asks for."""
    assert [example.gold for example in load_dataset(SET).examples if
            rewrite(prediction_line(example.gold)) != example.gold] == []


@needs_realdb
def test_every_gold_query_is_valid_and_finds_something():
    """Rows, and not only a zero or NULL: a count of nothing or a sum over no rows says the question missed."""
    dataset = load_dataset(SET)
    problems = []
    with Databases() as open_db:
        for example in dataset.examples:
            verdict = validate(example.gold, open_db(example.db_path).schema)
            if not verdict.ok:
                problems.append((example.question, verdict.kind, verdict.error))
                continue
            gold = run_gold(example, comparison_files(example, dataset.layout), dataset.metric, open_db)
            rows = gold.results[0][1]
            if not rows or all(value in (None, 0) for row in rows for value in row):
                problems.append((example.question, "nothing found", example.gold))
    assert problems == []


@needs_realdb
def test_eval_runs_the_set_on_its_duckdb_databases(fake_model, tmp_path):
    first, second = [item for item in items() if item["db"].endswith("who.duckdb")][:2]
    fake_model(first["query"])  # right on the first question, wrong on the second
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["eval", "--data", str(SET), "--model", "fake", "-n", "1", "--db", "who",
                                      "--limit", "2", "--report", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert [(r["question"], r["skipped"], r["answers"][0]["right"]) for r in report["records"]] == [
        (first["question"], None, True), (second["question"], None, False)]
