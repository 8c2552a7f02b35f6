"""The decoding-time check (``steps/constrain``): a candidate may only go on writing a query whose names exist, each
column on a table that has it, and may only end as a query the validator passes.

Three parties must agree on every query: the check (what the decoder lets the model write), the validator (what
the pipeline runs) and the engine. Hand-written cases over the example shop database show each rule; every gold
query of the shared Spider data shows that nothing valid is refused; mutants of those gold queries (a column
swapped for another) show that the three agree on what is wrong.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from edge_sql.backends import load_model
from edge_sql.cli import app
from edge_sql.steps.constrain import Check, scope_error
from edge_sql.steps.database import open_database
from edge_sql.steps.prompt import build_prompt
from edge_sql.steps.schema import render_schema
from edge_sql.steps.validate import validate
from fixtures.scripted_gguf import write_scripted_gguf

SPIDER = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_spider = pytest.mark.skipif(not (SPIDER / "spider-dev" / "dev.json").is_file(),
                                  reason="shared Spider data not present")


@pytest.fixture(scope="module")
def shop():
    with open_database(EXAMPLES / "shop.sqlite") as db:
        yield db.schema


def checker(schema, **options) -> Check:
    return Check(schema, judge=lambda sql: validate(sql, schema).ok, **options)


def written(check: Check, text: str, step: int = 1):
    """The cursor after ``text`` written ``step`` characters at a time, as a model writes it; None once refused."""
    cursor = check.start()
    for at in range(0, len(text), step):
        cursor = cursor.feed(text[at: at + step])
        if cursor is None:
            return None
    return cursor


#: Queries the check must let through, character by character, and let end.
WRITABLE = [
    "SELECT name, price FROM products WHERE price > 10 ORDER BY price DESC LIMIT 3",
    "SELECT T1.first_name, count(*) FROM customers AS T1 JOIN orders AS T2 ON T1.customer_id = T2.customer_id "
    "GROUP BY T1.customer_id HAVING count(*) > 1",
    "select t2.name from order_items as t1 join products as t2 on t1.product_id = t2.product_id",
    "SELECT customers.city FROM customers",
    'SELECT email FROM customers WHERE city = "Berlin"',  # SQLite's double-quoted string
    "SELECT name FROM products WHERE product_id NOT IN (SELECT product_id FROM order_items)",
    "SELECT first_name FROM customers AS c WHERE EXISTS (SELECT 1 FROM orders AS o WHERE o.customer_id = c.customer_id)",
    "SELECT city FROM customers UNION SELECT category FROM products",
    "SELECT * FROM (SELECT name AS n, price FROM products) AS cheap WHERE cheap.price < 5 ORDER BY n",
    "WITH spent AS (SELECT customer_id, sum(quantity) AS total FROM orders JOIN order_items USING (order_id) "
    "GROUP BY customer_id) SELECT total FROM spent",
    "SELECT CASE WHEN price > 10 THEN 'dear' ELSE 'cheap' END AS band, count(*) FROM products GROUP BY band",
    "SELECT CAST(price AS INTEGER), strftime('%Y', order_date) FROM products, orders",
    "SELECT name, rank() OVER (PARTITION BY category ORDER BY price DESC) FROM products",
    'SELECT "first_name" FROM "customers" WHERE country LIKE \'%land\'',
    "SELECT avg(unit_price * quantity) FROM order_items WHERE order_id IN (1, 2, 3)",
    "SELECT a.first_name FROM customers AS a",  # an alias written before FROM that AS begins with
    "SELECT o.status FROM customers AS c JOIN orders AS o ON o.customer_id = c.customer_id",
    "SELECT count(DISTINCT status) FROM orders WHERE shipped_date IS NOT NULL AND order_date BETWEEN '2024-01-01' "
    "AND '2024-12-31'",
]


@pytest.mark.parametrize("sql", WRITABLE)
def test_a_valid_query_can_be_written_piece_by_piece_and_can_end(shop, sql):
    assert validate(sql, shop).ok
    for step in (1, 3, 7):
        cursor = written(checker(shop), sql, step)
        assert cursor is not None, f"refused at some piece of {step} characters"
        assert cursor.can_end()


#: (what the model wrote, the piece the check refuses next): the first is allowed, the second is not.
REFUSED = [
    ("SELECT name FROM ", "customers_x"),  # no such table, letter by letter
    ("SELECT name FROM products WHERE ", "colour"),  # no table in scope has it
    ("SELECT T1.city FROM products AS ", "T1"),  # products has no city: T1 may not be products
    ("SELECT T1.city FROM products AS ", "T1x"),  # nor may an alias glued on to it be written instead
    ("SELECT first_name FROM orders ", "WHERE"),  # orders has no first_name: the FROM clause cannot end here
    ("SELECT name FROM products WHERE price > 1 ", "AND AND "),  # AND needs something before it
    ("SELECT name FROM products WHERE price ", "price "),  # two operands in a row
    ("SELECT name FROM products ", "WHERE price > 1 WHERE "),  # each clause once, in order
    ("SELECT name FROM products AS p ", "name "),  # after a table and its alias: JOIN, WHERE, a comma, ...
    ("SELECT name FROM products WHERE ", "sum(price) > 1"),  # SQLite: misuse of aggregate
    ("SELECT name FROM products WHERE ", "year(price)"),  # SQLite has no such function
    ("SELECT first_name FROM customers JOIN orders ON customers.customer_id = orders.customer_id WHERE ",
     "customer_id "),  # ambiguous: both tables have it
    ("SELECT T1.city, T1.", "price"),  # no table has both city and price
    ("SELECT T1.name FROM products AS T1 JOIN orders AS T2 ON T1.product_id = T2.", "product_id"),
    ("SELECT name FROM products AS p WHERE ", "q.price"),  # q is bound by no FROM
    ("SELECT first_name FROM customers GROUP BY city HAVING count(", "quantity"),  # order_items is not in the query
    ("SELECT first_name FROM customers WHERE customer_id = (SELECT customer_id FROM orders ORDER BY ", "city"),
    ("SELECT name FROM products", " -- a comment"),
    ("", "```sql"),  # prose and fences: the answer is SQL
    ("", "The answer is"),
    ("SELECT name FROM products WHERE price > 1", " " * 13),  # padding instead of SQL
]


@pytest.mark.parametrize("prefix, piece", REFUSED)
def test_a_name_that_is_not_there_is_refused_the_moment_it_is_written(shop, prefix, piece):
    cursor = written(checker(shop), prefix)
    assert cursor is not None, "what comes before is allowed"
    assert cursor.feed(piece) is None


def test_an_alias_written_before_from_binds_only_to_a_table_with_its_columns(shop):
    check = checker(shop)
    cursor = written(check, "SELECT T1.city, T2.name FROM ")
    assert cursor.feed("products AS T1 ") is None  # refused as soon as the alias is whole
    assert cursor.feed("customers AS T1 JOIN products AS T2 ") is not None
    assert written(check, "SELECT T1.city FROM customers AS T2 ").feed("WHERE") is None  # T1 was never bound
    assert written(check, "SELECT T1.city FROM customers AS T2 ").feed("JOIN customers AS T1 WHERE") is not None


def test_a_query_ends_only_where_the_validator_passes_it(shop):
    check = checker(shop)
    assert not written(check, "SELECT name FROM products WHERE").can_end()
    assert not written(check, "SELECT name FROM products WHERE price >").can_end()
    assert not written(check, "SELECT count(*) FROM orders WHERE status IN (SELECT").can_end()
    assert written(check, "SELECT count(*) FROM orders").can_end()


def test_the_prompts_prefix_is_part_of_the_query(shop):
    check = Check(shop, prefix="SELECT", judge=lambda sql: validate(sql, shop).ok)
    assert check.start().feed(" name FROM products").can_end()
    assert check.start().feed(" colour FROM products") is None


def test_a_reasoning_answer_thinks_freely_and_its_answer_is_checked(shop):
    check = checker(shop, reasoning=True, prefix="<think>\n")
    thinking = written(check, "I need T9.colour; FROM nowhere -- anything goes.\n</think>\n<answer>\nSELECT name ")
    assert thinking is not None and not thinking.can_end()
    assert thinking.feed("FROM nowhere") is None
    answered = thinking.feed("FROM products WHERE price <")
    assert answered is not None and answered.feed(" 3").can_end()  # "<" is an operator here
    closing = written(check, "<think>x</think><answer>SELECT name FROM products </")
    assert closing is not None and closing.can_end()  # the start of </answer>: the query before it is whole


def test_the_validator_finds_what_sqlglot_lets_pass_and_the_engine_refuses(shop):
    having = "SELECT city FROM customers GROUP BY city HAVING sum(quantity) > 1"
    ordered = "SELECT first_name FROM customers WHERE customer_id = (SELECT customer_id FROM orders ORDER BY city)"
    connection = sqlite3.connect(EXAMPLES / "shop.sqlite")
    for sql, column in ((having, "quantity"), (ordered, "city")):
        verdict = validate(sql, shop)
        assert (verdict.kind, verdict.name) == ("unknown_column", column)
        with pytest.raises(sqlite3.OperationalError, match=f"no such column: {column}"):
            connection.execute(sql)
    assert scope_error(WRITABLE[1], shop) is None


def spider_queries(which: str, sample: int | None = None):
    folder = SPIDER / which
    questions = json.loads((folder / ("dev.json" if which == "spider-dev" else "train_spider.json")).read_text())
    if sample:
        questions = random.Random(7).sample(questions, sample)
    schemas = {}
    for question in questions:
        path = folder / "database" / question["db_id"] / f"{question['db_id']}.sqlite"
        if question["db_id"] not in schemas and path.is_file():
            with open_database(path) as db:
                schemas[question["db_id"]] = (db.schema, path)
        if question["db_id"] in schemas:
            yield question["query"], *schemas[question["db_id"]]


@needs_spider
@pytest.mark.parametrize("which, sample", [("spider-dev", None), ("spider-train", 400)])
def test_every_spider_gold_query_can_be_written_and_can_end(which, sample):
    rng = random.Random(0)
    checks = {}
    for sql, schema, _ in spider_queries(which, sample):
        check = checks.setdefault(id(schema), checker(schema))
        cursor = check.start()
        at = 0
        while at < len(sql):
            step = rng.randint(1, 6)
            cursor = cursor.feed(sql[at: at + step])
            assert cursor is not None, f"{sql!r} refused at {sql[: at + step]!r}"
            at += step
        assert cursor.can_end(), sql


@needs_spider
def test_the_check_the_validator_and_the_engine_agree_on_gold_queries_with_a_column_swapped():
    """3 mutants of every dev gold query, each with one column swapped for another column of the database: what the
    check lets end the validator passes, what the validator passes the check lets through and SQLite runs."""
    rng = random.Random(1)
    counts = {"mutants": 0, "valid": 0}
    checks = {}
    for sql, schema, path in spider_queries("spider-dev"):
        columns = sorted({c.name for t in schema.tables for c in t.columns})
        lowered = {c.lower() for c in columns}
        names = [m for m in re.finditer(r"(?<![\w'\".])([A-Za-z_]\w*)(?![\w'\"(])", sql) if m[1].lower() in lowered]
        if not names:
            continue
        check = checks.setdefault(id(schema), checker(schema))
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        for _ in range(3):
            name = rng.choice(names)
            mutant = sql[: name.start(1)] + rng.choice(columns) + sql[name.end(1):]
            cursor = written(check, mutant, rng.randint(1, 5))
            allowed = cursor is not None and cursor.can_end()
            verdict = validate(mutant, schema)
            assert allowed == verdict.ok, (mutant, verdict)
            if verdict.ok:
                connection.execute(verdict.sql).fetchmany(1)  # no "no such column"
            counts["mutants"] += 1
            counts["valid"] += verdict.ok
    assert counts["mutants"] > 1000 and 0.2 < counts["valid"] / counts["mutants"] < 0.8  # both kinds were tried


# -- in the decoder: a real llama.cpp model that writes a known script (fixtures/scripted_gguf.py) --------------------

runner = CliRunner()


def ask_json(*args: str):
    result = runner.invoke(app, ["ask", *args, "--format", "json"])
    return result, (json.loads(result.stdout) if result.stdout.startswith("{") else None)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """Two models: one writes a query over a column no table has, the other a valid one."""
    folder = tmp_path_factory.mktemp("models")
    return (write_scripted_gguf(folder / "wrong.gguf", ["SELECT ", "colour ", "FROM ", "products"]),
            write_scripted_gguf(folder / "right.gguf", ["SELECT ", "name ", "FROM ", "products"]))


def test_the_decoder_refuses_the_token_the_check_refuses_and_leaves_a_valid_script_alone(scripted, shop):
    wrong, right = scripted
    prompt = build_prompt("chatml-strict", render_schema(shop, "strict"), "Which products?", "sqlite")
    check = checker(shop)
    options = dict(seed=5, max_tokens=12, stop=prompt.stop)
    model = load_model(str(wrong), threads=1)
    assert [c.text for c in model.sample(prompt.text, [0.0, 0.9], **options)] == ["SELECT colour FROM products"] * 2
    checked = model.sample(prompt.text, [0.0, 0.9], check=check, **options)
    assert all(completion.refused >= 1 for completion in checked)
    for completion in checked:  # what it writes instead is noise (this model knows nothing else), cut by its budget
        assert completion.text.startswith("SELECT ") and "colour" not in completion.text
    model = load_model(str(right), threads=1)
    checked = model.sample(prompt.text, [0.0, 0.9], check=check, **options)
    assert [c.text for c in checked] == [c.text for c in model.sample(prompt.text, [0.0, 0.9], **options)] == \
        ["SELECT name FROM products"] * 2
    assert [c.refused for c in checked] == [0, 0]


def test_ask_checks_by_default_and_no_constrain_turns_it_off(scripted):
    wrong, right = scripted
    db = str(EXAMPLES / "shop.sqlite")
    result, answer = ask_json("--db", db, "--model", str(wrong), "Which products?", "--no-constrain", "--no-grammar")
    assert result.exit_code == 5 and "unknown_column" in result.stderr  # no candidate runs: all name colour
    result, answer = ask_json("--db", db, "--model", str(wrong), "Which products?", "--no-grammar")
    assert "colour" not in result.stdout + result.stderr  # what it wrote instead is noise: a model's last resort
    result, answer = ask_json("--db", db, "--model", str(right), "Which products?", "--no-grammar")
    assert result.exit_code == 0 and answer["sql"] == "SELECT name FROM products"


def test_the_config_file_and_the_flag_switch_the_check(scripted, tmp_path, monkeypatch):
    wrong, _ = scripted
    db = str(EXAMPLES / "shop.sqlite")
    config = tmp_path / "config.toml"
    config.write_text("constrain = false\ngrammar = false\n")
    monkeypatch.setenv("EDGESQL_CONFIG", str(config))
    assert f"constrain = False  ({config})" in runner.invoke(app, ["config", "show"]).stdout
    result, _ = ask_json("--db", db, "--model", str(wrong), "Which products?")
    assert result.exit_code == 5 and "colour" in result.stdout  # unchecked: the model wrote what it wrote
    result, _ = ask_json("--db", db, "--model", str(wrong), "Which products?", "--constrain")
    assert "colour" not in result.stdout + result.stderr


def test_a_model_that_cannot_check_is_asked_without_the_check(fake_model):
    """A model server (or any model without ``checks``) gets no check: its candidates are judged once written. (The
    fake model's ``sample`` takes no ``check``: passed one, it would fail.)"""
    fake_model("SELECT name FROM products")
    result, answer = ask_json("--db", str(EXAMPLES / "shop.sqlite"), "--model", "fake", "Names?", "--constrain",
                              "--show-candidates")
    assert result.exit_code == 0 and answer["sql"] == "SELECT name FROM products"
