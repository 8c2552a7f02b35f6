"""`edgesql eval`: the EX metric on cases written as data, the run on a tiny Spider-format dataset with the fake model,
the report's JSON shape, and (marked `spider`) the shared Spider dev half.

Metric cases live in tests/eval_cases/*.cases, all run on tests/eval_cases/database.sql: blocks of
`title:`, `gold:`, `predicted:` and `expect:` (right, wrong or skipped) lines, one blank line between blocks.
Adding a case means adding four lines. Every expectation there was checked against Spider's official evaluator.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import ROOT
from edge_sql.cli import app
from edge_sql.steps.database import open_database
from edge_sql.eval.datasets import load_dataset, select_examples
from edge_sql.eval.run import evaluate
from edge_sql.eval.scoring import score
from edge_sql.steps.generate import Sampling
from edge_sql.eval.hardness import hardness, hardness_of
from edge_sql.eval.metric import NO_ANSWER, results_match
from edge_sql.backends import load_model
from edge_sql.pipeline import Setup, ask, decide, deliberate

CASES = ROOT / "tests" / "eval_cases"
SPIDER = ROOT.parent / "shared" / "data" / "spider-dev"
runner = CliRunner()


def read_cases() -> list:
    return list(each_case())


def each_case():
    for path in sorted(CASES.glob("*.cases")):
        for block in path.read_text(encoding="utf-8").split("\n\n"):
            fields = dict(re.findall(r"^(title|gold|predicted|expect): (.*)$", block, re.MULTILINE))
            if fields:
                yield pytest.param(fields, id=f"{path.stem}: {fields['title']}")


@pytest.fixture(scope="module")
def cases_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cases") / "cases.sqlite"
    with sqlite3.connect(path) as connection:
        connection.executescript((CASES / "database.sql").read_text(encoding="utf-8"))
    return path


@pytest.mark.parametrize("case", read_cases())
def test_metric_case(case, cases_db):
    verdict = score(case["gold"], case["predicted"], [cases_db])
    assert {True: "right", False: "wrong", None: "skipped"}[verdict] == case["expect"]


def test_there_are_cases_for_every_rule():
    titles = " ".join(param.values[0]["title"] for param in read_cases())
    for rule in ("order", "ORDER BY", "duplicates", "DISTINCT", "float", "NULL", "column names", "fails", "empty"):
        assert rule in titles


rows = st.lists(st.tuples(st.integers(-3, 3), st.sampled_from(["a", "b", None]), st.integers(0, 2)), max_size=8)


@settings(max_examples=60, deadline=None)
@given(rows, st.randoms(use_true_random=False), st.permutations([0, 1, 2]))
def test_any_row_and_column_order_matches_when_order_does_not_count(result, rng, columns):
    shuffled = [tuple(row[i] for i in columns) for row in result]
    rng.shuffle(shuffled)
    assert results_match(result, shuffled, ordered=False)
    assert results_match(result, [tuple(row[i] for i in columns) for row in result], ordered=True)


@settings(max_examples=60, deadline=None)
@given(rows, rows)
def test_a_match_means_the_same_multiset_of_rows_up_to_column_order(gold, predicted):
    if results_match(gold, predicted, ordered=False) and gold and predicted:
        assert sorted(map(sorted_row, gold)) == sorted(map(sorted_row, predicted))


def sorted_row(row):
    return sorted(map(repr, row))


# --- a tiny Spider-format dataset, run with the fake model ---------------------------------------------------------


SCHEMA = """
CREATE TABLE singer (singer_id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER);
INSERT INTO singer VALUES (1, 'Joe Sharp', 'Netherlands', 52), (2, 'Timbaland', 'United States', 32),
    (3, 'Justin Brown', 'France', 29), (4, 'Rose White', 'France', 41);
"""

QUESTIONS = [
    ("How many singers are there?", "SELECT count(*) FROM singer", "concert_singer"),
    ("Names of singers from France, oldest first.",
     "SELECT name FROM singer WHERE country = 'France' ORDER BY age DESC", "concert_singer"),
    ("What is in the missing database?", "SELECT 1", "no_such_db"),
    ("A question whose gold query fails.", "SELECT nope FROM singer", "concert_singer"),
    ("What are the countries?", "SELECT DISTINCT country FROM singer", "concert_singer"),
]

#: What the fake model answers, three candidates a question (greedy first), for the questions that reach it.
RESPONSES = [
    # 1. all right, worded differently
    "SELECT count(*) FROM singer", "SELECT COUNT(singer_id) FROM singer", "SELECT count(name) AS n FROM singer",
    # 2. greedy has the wrong order; two samples agree on the right one
    "SELECT name FROM singer WHERE country = 'France' ORDER BY age",
    "SELECT name FROM singer WHERE country = 'France' ORDER BY age DESC",
    "SELECT name FROM singer WHERE country = 'France'\nORDER BY age DESC",
    # 5. nothing valid: prose, an unknown column, a refused statement
    "I cannot answer that", "SELECT colour FROM singer", "DROP TABLE singer",
]


def spider_dataset(root: Path, questions=QUESTIONS) -> Path:
    database = root / "database" / "concert_singer"
    database.mkdir(parents=True)
    with sqlite3.connect(database / "concert_singer.sqlite") as connection:
        connection.executescript(SCHEMA)
    items = [{"question": q, "query": gold, "db_id": db} for q, gold, db in questions]
    (root / "dev.json").write_text(json.dumps(items), encoding="utf-8")
    (root / "tables.json").write_text("[]", encoding="utf-8")
    return root


def run_eval(*args):
    return runner.invoke(app, ["eval", *args])


@pytest.fixture
def spider(tmp_path) -> Path:
    return spider_dataset(tmp_path / "spider")


def test_eval_scores_greedy_and_vote_from_one_sampling_pass(spider, fake_model, tmp_path):
    model = fake_model(*RESPONSES)
    report_path = tmp_path / "report.json"
    result = run_eval("--data", str(spider), "--model", "fake", "--candidates", "1,3", "--report", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text(encoding="utf-8"))

    greedy, vote = report["results"]
    assert (greedy["label"], greedy["questions"], greedy["right"]) == ("greedy", 3, 1)
    assert (vote["label"], vote["questions"], vote["right"]) == ("vote@3", 3, 2)
    assert vote["ex"] == pytest.approx(2 / 3, abs=1e-4)
    assert (vote["valid"], vote["invalid"], vote["failed"], vote["no_answer"]) == (6, 3, 0, 1)
    assert (greedy["valid"], greedy["invalid"]) == (2, 1)
    assert [call["temperatures"][0] for call in model.calls] == [0.0, 0.0, 0.0]
    assert all(len(call["temperatures"]) == 3 for call in model.calls)  # one pass of 3 serves greedy and vote@3

    assert report["questions"] == 5 and report["scored"] == 3 and report["skipped"] == 2
    reasons = {q["index"]: q["reason"] for q in report["skipped_questions"]}
    assert reasons[2].startswith("database missing") and reasons[3].startswith("gold query failed")
    assert "EX on spider" in result.stdout and "vote@3" in result.stdout


def test_the_report_json_has_a_stable_shape(spider, fake_model, tmp_path):
    fake_model(*RESPONSES)
    report_path = tmp_path / "report.json"
    assert run_eval("--data", str(spider), "--model", "fake", "-n", "1,3", "--report", str(report_path)).exit_code == 0
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert set(report) == {"edgesql", "dataset", "model", "sampling", "remedies", "merge_model", "questions", "scored", "skipped", "interrupted",
                           "results", "latency", "tokens", "peak_rss_mib", "wall_seconds", "skipped_questions",
                           "records"}
    assert set(report["dataset"]) == {"path", "layout", "metric", "questions", "selected", "db", "limit", "shuffle",
                                      "seed", "shard"}
    assert report["dataset"]["layout"] == "spider" and report["dataset"]["metric"] == "spider"
    assert report["sampling"] == {"candidates": 3, "temperature": 0.7, "seed": 42, "max_tokens": None,  # None: per question
                                  "early_stop": False}
    for result in report["results"]:
        assert set(result) == {"candidates", "label", "questions", "right", "ex", "nonempty_questions",
                               "nonempty_right", "ex_nonempty", "valid", "invalid", "failed", "valid_share",
                               "invalid_share", "failed_share", "no_answer", "hardness", "kind", "reliability"}
        assert result["kind"] == {}  # Spider questions carry no kind tag
        answered = sum(b["questions"] for b in result["reliability"])
        assert answered == result["questions"] - result["no_answer"]  # every answer has a confidence
        assert all(0.0 <= b["mean_confidence"] <= 1.0 for b in result["reliability"])
        assert set(result["hardness"]) <= {"easy", "medium", "hard", "extra", "unknown"}
        assert sum(level["questions"] for level in result["hardness"].values()) == result["questions"]
        assert all(set(level) == {"questions", "right", "ex"} for level in result["hardness"].values())
    assert set(report["latency"]) == {"p50", "p95", "candidates"} and report["latency"]["p50"] is not None
    assert set(report["tokens"]) == {"prompt", "generated", "prompt_per_second", "generated_per_second", "source"}
    assert report["tokens"]["prompt"] > 0 and report["peak_rss_mib"] > 0
    record = report["records"][1]
    assert set(record) == {"index", "db_id", "question", "gold", "hardness", "kind", "gold_empty", "skipped",
                           "error", "seconds", "tokens", "costs", "answers"}
    assert record["hardness"] == "medium"
    assert [a["candidates"] for a in record["answers"]] == [1, 3]
    assert set(record["answers"][0]) == {"candidates", "sql", "right", "votes", "valid", "invalid", "failed", "error",
                                         "confidence", "signals"}
    assert 0.0 < record["answers"][1]["confidence"] < 1.0 and record["answers"][1]["signals"]["agreement"] > 0
    assert [a["right"] for a in record["answers"]] == [False, True]
    assert report["records"][4]["answers"][1] == {"candidates": 3, "sql": NO_ANSWER, "right": False, "votes": 0,
                                                  "valid": 0, "invalid": 3, "failed": 0, "error": "no valid candidate",
                                                  "confidence": None, "signals": None}


def test_early_stop_scores_the_vote_it_stopped(fake_model, tmp_path):
    spider = spider_dataset(tmp_path / "spider", QUESTIONS[:1])
    model = fake_model("SELECT count(*) FROM singer", "SELECT COUNT(singer_id) FROM singer", "SELECT 1")
    report_path = tmp_path / "report.json"
    result = run_eval("--data", str(spider), "--model", "fake", "-n", "3", "--early-stop", "--report", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["sampling"]["early_stop"] is True
    (vote,) = report["results"]
    assert (vote["label"], vote["questions"], vote["right"]) == ("vote@3", 1, 1)
    assert model.served == 2  # two agree, one left to run: the vote was decided


def test_ex_is_also_reported_on_the_questions_whose_gold_result_is_not_empty(tmp_path, fake_model):
    """Two empty results are equal, so a query that returns nothing is right on every empty-gold question: the
    report says EX on the others too."""
    questions = [("How many singers are there?", "SELECT count(*) FROM singer", "concert_singer"),
                 ("Singers older than 90?", "SELECT name FROM singer WHERE age > 90", "concert_singer"),
                 ("Singers from Peru?", "SELECT name FROM singer WHERE country = 'Peru'", "concert_singer")]
    spider = spider_dataset(tmp_path / "spider", questions)
    fake_model("SELECT count(*) FROM singer WHERE age > 100",  # wrong on the one non-empty question
               "SELECT name FROM singer WHERE age > 200", "SELECT name FROM singer WHERE age > 300")  # 'right'
    report_path = tmp_path / "report.json"
    result = run_eval("--data", str(spider), "--model", "fake", "-n", "1", "--report", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    greedy = report["results"][0]
    assert (greedy["right"], greedy["questions"]) == (2, 3)
    assert (greedy["nonempty_right"], greedy["nonempty_questions"], greedy["ex_nonempty"]) == (0, 1, 0.0)
    assert [r["gold_empty"] for r in report["records"]] == [False, True, True]
    assert "EX non-empty" in result.stdout and "0.0% (0/1)" in result.stdout


def test_predictions_are_one_line_each_in_spider_format(spider, fake_model, tmp_path):
    fake_model(*RESPONSES)
    predictions = tmp_path / "pred.sql"
    result = run_eval("--data", str(spider), "--model", "fake", "-n", "1,3", "--predictions", str(predictions))
    assert result.exit_code == 0, result.output
    greedy = (tmp_path / "pred.1.sql").read_text(encoding="utf-8").splitlines()
    vote = (tmp_path / "pred.3.sql").read_text(encoding="utf-8").splitlines()
    gold = (tmp_path / "pred.gold.sql").read_text(encoding="utf-8").splitlines()
    assert len(greedy) == len(vote) == len(gold) == 3  # the scored questions, in the dataset's order
    assert greedy[1] == "SELECT name FROM singer WHERE country = 'France' ORDER BY age"
    assert vote[1].endswith("ORDER BY age DESC") and "\n" not in vote[1]
    assert vote[2] == NO_ANSWER
    assert gold[0] == "SELECT count(*) FROM singer\tconcert_singer"


def test_one_candidate_count_writes_the_named_file(spider, fake_model, tmp_path):
    fake_model("SELECT count(*) FROM singer")
    predictions = tmp_path / "pred.txt"
    result = run_eval("--data", str(spider), "--model", "fake", "-n", "1", "--limit", "1", "--predictions",
                      str(predictions))
    assert result.exit_code == 0, result.output
    assert predictions.read_text(encoding="utf-8") == "SELECT COUNT(*) FROM singer\n"


def test_the_first_k_candidates_of_a_deliberation_are_a_k_candidate_ask(shop, fake_model):
    responses = ["SELECT count(*) FROM orders", "SELECT count(*) FROM customers", "SELECT count(customer_id) FROM "
                 "customers", "SELECT 40", "SELECT count(*) FROM products"]
    with open_database(shop) as db:
        fake_model(*responses)
        deliberation = deliberate("How many customers?", Setup(db, load_model("fake"), Sampling(candidates=5)))
        for k in (1, 3, 5):
            fake_model(*responses)
            alone = ask("How many customers?", Setup(db, load_model("fake"), Sampling(candidates=k)))
            decided = decide(deliberation, k)
            assert (decided.sql, decided.votes, decided.rows) == (alone.sql, alone.votes, alone.rows)
            assert [e.verdict for e in decided.ballot.entries] == [e.verdict for e in alone.ballot.entries]


def test_limit_db_and_shuffle_choose_the_questions_deterministically(tmp_path):
    questions = [(f"Question {i}?", "SELECT 1", f"db{i % 3}") for i in range(12)]
    examples = load_dataset(spider_dataset(tmp_path / "s", questions)).examples
    assert [e.index for e in select_examples(examples, limit=3)] == [0, 1, 2]
    assert [e.index for e in select_examples(examples, db=("db1",))] == [1, 4, 7, 10]
    first = [e.index for e in select_examples(examples, shuffle=True, seed=7, limit=5)]
    assert first == [e.index for e in select_examples(examples, shuffle=True, seed=7, limit=5)]
    assert first != [e.index for e in select_examples(examples, shuffle=True, seed=8, limit=5)]
    assert first != [0, 1, 2, 3, 4]


def test_eval_is_deterministic_and_honours_limit_and_db(spider, fake_model, tmp_path):
    reports = []
    for name in ("a.json", "b.json"):
        fake_model(*RESPONSES)
        args = ["--data", str(spider), "--model", "fake", "-n", "1,3", "--db", "concert_singer", "--limit", "2",
                "--shuffle", "--seed", "3", "--report", str(tmp_path / name)]
        assert run_eval(*args).exit_code == 0
        report = json.loads((tmp_path / name).read_text(encoding="utf-8"))
        reports.append([(r["index"], [a["sql"] for a in r["answers"]]) for r in report["records"]])
        assert report["dataset"]["selected"] == 2 and report["dataset"]["db"] == ["concert_singer"]
    assert reports[0] == reports[1]
    assert all(index != 2 for index, _ in reports[0])  # no_such_db was filtered out


def test_jsonl_dataset_on_both_engines(shop, fake_model, tmp_path):
    data = shop.parent / "mine.jsonl"  # beside the database: "db" is relative to the JSONL file
    lines = [{"question": "How many customers are there?", "query": "SELECT count(*) FROM customers", "db": shop.name},
             {"question": "How many products?", "query": "SELECT count(*) FROM products", "db": shop.name}]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    fake_model("SELECT COUNT(customer_id) FROM customers", "SELECT count(*) FROM orders")
    report_path = tmp_path / "r.json"
    result = run_eval("--data", str(data), "--model", "fake", "-n", "1", "--report", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["dataset"]["layout"] == "jsonl"
    assert [r["answers"][0]["right"] for r in report["records"]] == [True, False]


def test_a_jsonl_kind_tag_gives_ex_per_kind(shop, fake_model, tmp_path):
    data = shop.parent / "tagged.jsonl"
    lines = [{"question": "How many customers?", "query": "SELECT count(*) FROM customers", "db": shop.name,
              "kind": "count"},
             {"question": "How many products?", "query": "SELECT count(*) FROM products", "db": shop.name,
              "kind": "count"},
             {"question": "Which products cost over 10?", "query": "SELECT name FROM products WHERE price > 10",
              "db": shop.name, "kind": "filter"},
             {"question": "How many orders?", "query": "SELECT count(*) FROM orders", "db": shop.name}]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    fake_model("SELECT count(*) FROM customers")  # right on the first question only
    report_path = tmp_path / "r.json"
    result = run_eval("--data", str(data), "--model", "fake", "-n", "1", "--report", str(report_path))
    assert result.exit_code == 0, result.output
    assert "EX by kind" in result.stdout and "filter" in result.stdout
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert [r["kind"] for r in report["records"]] == ["count", "count", "filter", None]
    assert report["results"][0]["kind"] == {"count": {"questions": 2, "right": 1, "ex": 0.5},
                                            "filter": {"questions": 1, "right": 0, "ex": 0.0}}

def test_bird_layout_adds_the_evidence_and_compares_sets(tmp_path, fake_model):
    root = tmp_path / "bird"
    (root / "dev_databases" / "music").mkdir(parents=True)
    with sqlite3.connect(root / "dev_databases" / "music" / "music.sqlite") as connection:
        connection.executescript(SCHEMA)
    item = {"question_id": 0, "db_id": "music", "question": "Which countries have singers?",
            "evidence": "country is in singer", "SQL": "SELECT country FROM singer", "difficulty": "simple"}
    (root / "dev.json").write_text(json.dumps([item]), encoding="utf-8")
    model = fake_model("SELECT DISTINCT country FROM singer")  # duplicates do not count in BIRD's set comparison
    report_path = tmp_path / "r.json"
    assert run_eval("--data", str(root), "--model", "fake", "-n", "1", "--report", str(report_path)).exit_code == 0
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["dataset"]["metric"] == "bird"
    assert report["results"][0]["right"] == 1
    assert "Which countries have singers? Hint: country is in singer" in model.calls[0]["prompt"]


def test_a_question_the_model_cannot_be_asked_is_wrong_with_the_reason(spider, fake_model, tmp_path):
    fake_model("SELECT 1", context_length=50)  # the schema does not fit: the pipeline refuses to prompt
    report_path = tmp_path / "r.json"
    assert run_eval("--data", str(spider), "--model", "fake", "-n", "1", "--limit", "1", "--report",
                    str(report_path)).exit_code == 0
    record = json.loads(report_path.read_text(encoding="utf-8"))["records"][0]
    assert record["skipped"] is None and "too large" in record["error"]
    assert record["answers"][0]["right"] is False and record["answers"][0]["sql"] == NO_ANSWER


def test_an_empty_question_is_skipped(tmp_path, fake_model):
    data = spider_dataset(tmp_path / "s", [("   ", "SELECT count(*) FROM singer", "concert_singer")])
    fake_model("SELECT count(*) FROM singer")
    report_path = tmp_path / "r.json"
    assert run_eval("--data", str(data), "--model", "fake", "--report", str(report_path)).exit_code == 0
    skipped = json.loads(report_path.read_text(encoding="utf-8"))["skipped_questions"]
    assert skipped[0]["reason"].startswith("question refused")


def test_ctrl_c_ends_the_run_with_a_report_of_the_questions_done(spider, fake_model):
    fake_model(*RESPONSES)
    dataset = load_dataset(spider)

    def interrupt_after_two(record, done=[]):
        done.append(record)
        if len(done) == 2:
            raise KeyboardInterrupt

    report = evaluate(dataset, list(dataset.examples), load_model("fake"), Sampling(), (1, 3),
                      progress=interrupt_after_two)
    assert report.interrupted and len(report.records) == 2
    assert [s.questions for s in report.summaries] == [2, 2]


@pytest.mark.parametrize("args, message", [
    (["-n", "0"], "--candidates"),
    (["-n", "1,x"], "--candidates"),
    (["--limit", "0"], "--limit"),
    (["--report", "/no/such/folder/r.json"], "--report"),
    (["--predictions", "/"], "--predictions"),
    (["--early-stop", "-n", "1,5"], "--candidates"),  # the first k of a stopped sampling are not a vote of k
])
def test_bad_options_are_usage_errors(spider, args, message):
    result = run_eval("--data", str(spider), "--model", "fake", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_a_missing_dataset_is_a_usage_error(tmp_path):
    result = run_eval("--data", str(tmp_path / "nowhere"), "--model", "fake")
    assert result.exit_code == 2
    assert "no such dataset" in result.stderr


def test_a_folder_without_dev_json_is_a_usage_error(tmp_path):
    result = run_eval("--data", str(tmp_path), "--model", "fake")
    assert result.exit_code == 2
    assert "dev.json" in result.stderr


@pytest.mark.parametrize("option", ["--data", "--model", "--candidates", "--limit", "--db", "--seed", "--shuffle",
                                    "--temperature", "--timeout", "--report", "--predictions"])
def test_every_eval_option_is_documented(option):
    assert option in runner.invoke(app, ["eval", "--help"]).stdout
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Measuring accuracy"):]
    assert f"`{option}" in section


def test_hardness_levels_from_the_sql_text():
    assert hardness_of("SELECT count(*) FROM singer") == "easy"
    assert hardness_of("SELECT name, age FROM singer WHERE country = 'France'") == "medium"
    assert hardness_of("SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id "
                       "GROUP BY T1.name ORDER BY count(*) DESC LIMIT 1") == "extra"
    assert hardness_of("SELECT name FROM singer EXCEPT SELECT name FROM singer WHERE age > 30") == "hard"
    assert hardness_of("not sql at all (") is None


# --- the shared Spider dev half (../shared/data/spider-dev) ---------------------------------------------------------

needs_spider = pytest.mark.skipif(not (SPIDER / "dev.json").is_file(), reason="shared Spider dev data not present")


@pytest.mark.spider
@needs_spider
def test_a_model_that_answers_the_gold_query_scores_100_percent(fake_model, tmp_path):
    examples = json.loads((SPIDER / "dev.json").read_text(encoding="utf-8"))
    chosen = [examples[i] for i in sorted(random.Random(0).sample(range(len(examples)), 40))]
    fake_model(*[e["query"] for e in chosen])  # answered in the order asked: the dataset's
    data = tmp_path / "chosen.json"  # a Spider JSON file beside a database folder, like train_spider.json
    data.write_text(json.dumps(chosen), encoding="utf-8")
    (tmp_path / "database").symlink_to(SPIDER / "database")
    report_path = tmp_path / "r.json"
    result = run_eval("--data", str(data), "--model", "fake", "-n", "1", "--report", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["results"][0]["questions"] == 40 and report["results"][0]["right"] == 40, report["records"]
    assert len({r["db_id"] for r in report["records"]}) > 5


@pytest.mark.spider
@needs_spider
def test_hardness_from_the_sql_text_agrees_with_spiders_parse():
    examples = json.loads((SPIDER / "dev.json").read_text(encoding="utf-8"))
    disagreements = [e["query"] for e in examples if hardness_of(e["query"]) != hardness(e["sql"])]
    assert disagreements == []


@pytest.mark.spider
@needs_spider
def test_the_shared_data_loads_as_spider():
    dataset = load_dataset(SPIDER)
    assert dataset.layout == "spider" and len(dataset.examples) == 493
    assert all(e.db_path.is_file() and e.sql for e in dataset.examples)


def test_a_prediction_is_read_only_as_far_as_it_could_still_match(tmp_path):
    """A cross join of three tables would fill the memory if read whole: scoring reads one row more than the gold
    result has, which is enough to know it does not match."""
    from edge_sql.eval.metric import fetch
    from edge_sql.eval.scoring import score

    db = tmp_path / "big.sqlite"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE n (i INTEGER)")
        connection.executemany("INSERT INTO n VALUES (?)", [(i,) for i in range(1000)])
    cross = "SELECT a.i, b.i, c.i FROM n AS a, n AS b, n AS c"  # a billion rows
    assert len(fetch(db, cross, limit=3)) == 4
    assert score("SELECT i FROM n WHERE i < 3", cross, [db]) is False
    assert score("SELECT i FROM n WHERE i < 3", "SELECT i FROM n ORDER BY i LIMIT 3", [db]) is True
