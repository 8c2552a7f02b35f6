"""Schema pruning: the model sees the tables and columns a question is about, and every table it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_sql.steps.focus import ALWAYS, focus_schema, focus_schemas, schema_ladder
from edge_sql.steps.prune import prune_schema, relevance
from edge_sql.steps.schema import Column, ForeignKey, Schema, Table

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "spider-dev"
needs_spider = pytest.mark.skipif(not (DATA / "dev.json").is_file(), reason="shared Spider dev data not present")


def table(name, *columns, keys=(), pk=None):
    pk = pk or f"{name}_id"
    return Table(name, (Column(pk, "INTEGER", True), *(Column(c, "TEXT") for c in columns)),
                 tuple(ForeignKey(column, target, f"{target}_id") for column, target in keys))


#: A concert database: singer_in_concert links singer and concert; concert points at stadium.
CONCERTS = Schema("sqlite", (
    table("stadium", "location", "capacity", "highest", "lowest"),
    table("singer", "name", "country", "song_name", "age", "is_male"),
    table("concert", "concert_name", "theme", "year", "stadium_id", keys=[("stadium_id", "stadium")]),
    table("singer_in_concert", "concert_id", "singer_id", keys=[("concert_id", "concert"), ("singer_id", "singer")],
          pk="id"),
    table("budget", "department", "amount", "fiscal_year"),
))


def names(schema: Schema) -> list[str]:
    return [t.name for t in schema.tables]


def columns(schema: Schema, name: str) -> list[str]:
    return [c.name for c in schema.table(name).columns]


def test_a_question_about_one_table_keeps_that_table_and_its_neighbours():
    question = "What is the average age of all singers?"
    assert names(prune_schema(CONCERTS, question)) == ["singer", "singer_in_concert"]
    assert names(prune_schema(CONCERTS, question, max_tables=1)) == ["singer"]


def test_a_table_the_question_names_is_never_dropped_whatever_the_cap():
    pruned = prune_schema(CONCERTS, "Which stadium hosted the budget meeting, and which singer sang?", max_tables=1)
    assert set(names(pruned)) >= {"stadium", "budget", "singer"}


def test_a_table_named_literally_is_kept_even_with_no_other_match():
    assert "singer_in_concert" in names(prune_schema(CONCERTS, "How many rows does singer_in_concert have?",
                                                     max_tables=1))


def test_foreign_key_neighbours_are_kept_so_joins_stay_possible():
    pruned = prune_schema(CONCERTS, "Names of singers who performed in a concert in 2014")
    assert names(pruned) == ["stadium", "singer", "concert", "singer_in_concert"]
    assert "budget" not in names(pruned)


def test_a_table_linking_two_matched_tables_outranks_an_unlinked_one():
    ranking = [r.table for r in relevance(CONCERTS, "Which singer sang at which concert?")]
    assert ranking.index("singer_in_concert") < ranking.index("budget")


def test_tables_and_columns_keep_their_original_order():
    pruned = prune_schema(CONCERTS, "theme of each concert and the stadium capacity", max_tables=2, max_columns=1)
    assert names(pruned) == ["stadium", "concert"]
    assert columns(pruned, "stadium") == ["stadium_id", "capacity"]
    assert columns(pruned, "concert") == ["concert_id", "theme", "stadium_id"]


def test_key_columns_are_always_kept_and_max_columns_caps_the_rest():
    pruned = prune_schema(CONCERTS, "Which singers sang at which concert?", max_columns=1)
    assert columns(pruned, "singer_in_concert") == ["id", "concert_id", "singer_id"]
    for kept in pruned.tables:
        keys = {c.name for c in kept.columns if c.primary_key} | {k.column for k in kept.foreign_keys}
        assert len([c for c in kept.columns if c.name not in keys]) <= 1


def test_max_tables_caps_the_tables_not_named():
    assert names(prune_schema(CONCERTS, "Who sang, and the theme and location of the show?", max_tables=2)) == [
        "stadium", "concert"]
    assert names(prune_schema(CONCERTS, "concert themes and stadium locations", max_tables=1)) == [
        "stadium", "concert"]


def test_none_means_no_cap_on_that_axis():
    pruned = prune_schema(CONCERTS, "What is the average age of all singers?")
    assert columns(pruned, "singer") == columns(CONCERTS, "singer")


def test_sample_values_point_at_their_column_and_table():
    schema = Schema("sqlite", (
        Table("staff", (Column("staff_id", "INTEGER", True), Column("dept", "TEXT", samples=("Sales", "R&D")),
                        Column("notes", "TEXT"))),
        table("budget", "amount"),
    ))
    pruned = prune_schema(schema, "Who works in the sales department?", max_columns=1)
    assert names(pruned) == ["staff"]
    assert columns(pruned, "staff") == ["staff_id", "dept"]


def test_foreign_keys_to_dropped_tables_are_dropped_with_them():
    pruned = prune_schema(CONCERTS, "List every concert theme", max_tables=1)
    assert names(pruned) == ["concert"]
    assert pruned.table("concert").foreign_keys == ()


def test_with_nothing_to_go_by_the_first_tables_are_kept():
    assert names(prune_schema(CONCERTS, "Hello?", max_tables=2)) == ["stadium", "singer"]
    assert names(prune_schema(CONCERTS, "Hello?")) == names(CONCERTS)


def test_relevance_explains_each_score():
    best = relevance(CONCERTS, "How many singers are from France?")[0]
    assert best.table == "singer" and best.named
    assert "'singers' ~ table singer" in best.explain()


def test_the_ladder_only_gets_smaller_and_keeps_named_tables():
    question = "Names of singers who performed in a concert in 2014"
    sizes = []
    for schema in schema_ladder(CONCERTS, question):
        sizes.append(sum(len(t.columns) for t in schema.tables))
        assert {"singer", "concert"} <= set(names(schema))
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes) > 2


def test_focus_modes(shop):
    from edge_sql.steps.database import open_database

    with open_database(shop) as db:
        question = "How many customers are from Germany?"
        assert focus_schema(db, question, prune="never") == db.schema
        assert focus_schema(db, question, prune="auto") == db.schema
        pruned = focus_schema(db, question, prune="always")
        assert "customers" in names(pruned) and "products" not in names(pruned)
        assert len(list(focus_schemas(db, question, prune="always"))) == 1
        assert list(focus_schemas(db, question, prune="auto"))[0] == db.schema


@pytest.mark.spider
@needs_spider
def test_on_spider_always_mode_keeps_every_gold_table():
    """The gold query's tables survive ``always`` mode's caps for every question of the Spider dev half."""
    import sqlglot
    from sqlglot import exp

    from edge_sql.steps.database import open_database

    examples = json.loads((DATA / "dev.json").read_text())[::5]
    missed = []
    for example in examples:
        with open_database(DATA / "database" / example["db_id"] / f"{example['db_id']}.sqlite") as db:
            gold = {t.name.lower() for t in sqlglot.parse_one(example["query"], read="sqlite").find_all(exp.Table)}
            pruned = prune_schema(db.schema, example["question"], max_tables=ALWAYS.tables, max_columns=ALWAYS.columns)
            if not gold <= {t.name.lower() for t in pruned.tables}:
                missed.append(example["question"])
    assert not missed
