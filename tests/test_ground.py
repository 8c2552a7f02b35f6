"""Grounding: a value a candidate compares a text column with is looked up in that column; an answer that rests on
a value no row holds loses the vote to one that rests on stored values, and says so when it wins anyway."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from edge_sql.cli import app
from edge_sql.steps import ground as grounding
from edge_sql.steps.database import open_database
from edge_sql.steps.execute import Result
from edge_sql.steps.generate import Candidate
from edge_sql.steps.ground import CASE, FOUND, MISSING, UNKNOWN, Lookup, ground
from edge_sql.steps.sandbox import isolate
from edge_sql.steps.validate import VALID, Verdict
from edge_sql.steps.vote import Entry, vote

runner = CliRunner()

BRESAILLE = "SELECT COUNT(*) FROM customers WHERE city = 'Bresaille'"
SPAIN = "SELECT COUNT(*) FROM customers WHERE country = 'Spain'"


def looked_up(shop, sql: str) -> list[tuple[str, str, tuple[str, ...], str]]:
    """(table, column, values, found) of each comparison in ``sql``, looked up in the shop's worker."""
    with isolate(open_database(shop)) as db:
        return [(lookup.table, lookup.column, lookup.values, lookup.found) for lookup in ground(sql, db)]


# -- the lookup ---------------------------------------------------------------------------------------------------------


def test_a_stored_value_is_found(shop):
    assert looked_up(shop, "SELECT count(*) FROM customers WHERE city = 'Paris'") == [
        ("customers", "city", ("Paris",), FOUND)]


def test_a_value_no_row_holds_is_missing_with_the_closest_stored_values(shop):
    with isolate(open_database(shop)) as db:
        (lookup,) = ground(BRESAILLE, db)
    assert lookup.found == MISSING and not lookup.grounded
    assert lookup.closest[0] == "Marseille" and len(lookup.closest) == 3
    assert lookup.message().startswith("no customer has city 'Bresaille'; closest stored values: 'Marseille', ")


def test_a_value_stored_in_another_case_is_named_with_its_stored_spelling(shop):
    with open_database(shop) as db:
        (lookup,) = ground("SELECT count(*) FROM customers WHERE city = 'paris'", db)
    assert (lookup.found, lookup.closest) == (CASE, ("Paris",))
    assert lookup.message() == "no customer has city 'paris'; stored as 'Paris'"


def test_aliases_ctes_and_derived_tables_lead_to_the_table(shop):
    joined = ("SELECT c.first_name FROM orders AS o JOIN customers c ON c.customer_id = o.customer_id "
              "WHERE o.status = 'complete' AND c.country = 'Spain'")
    assert looked_up(shop, joined) == [("orders", "status", ("complete",), MISSING),
                                       ("customers", "country", ("Spain",), FOUND)]
    cte = "WITH b AS (SELECT city AS town FROM customers) SELECT count(*) FROM b AS x WHERE x.town = 'Lisbon'"
    assert looked_up(shop, cte) == [("customers", "city", ("Lisbon",), MISSING)]
    nested = ("SELECT name FROM products WHERE product_id IN (SELECT product_id FROM order_items oi JOIN orders o "
              "ON o.order_id = oi.order_id WHERE o.status = 'shipped')")
    assert looked_up(shop, nested) == [("orders", "status", ("shipped",), FOUND)]


def test_in_lists_are_found_when_one_value_is(shop):
    assert looked_up(shop, "SELECT count(*) FROM customers WHERE country IN ('Brazil', 'Spain')")[0][3] == FOUND
    assert looked_up(shop, "SELECT count(*) FROM customers WHERE country IN ('Brazil', 'Peru')")[0][3] == MISSING


def test_a_negative_comparison_is_looked_up_as_the_positive_one(shop):
    """``!= 'Brazil'`` where no row holds 'Brazil' excludes nothing: a mistake as much as ``= 'Brazil'``."""
    assert looked_up(shop, "SELECT count(*) FROM customers WHERE country != 'Brazil'")[0][3] == MISSING
    assert looked_up(shop, "SELECT count(*) FROM customers WHERE country NOT IN ('Spain')")[0][3] == FOUND


def test_like_follows_the_engines_own_rules(shop):
    assert looked_up(shop, "SELECT count(*) FROM customers WHERE city LIKE '%aris'")[0][3] == FOUND
    assert looked_up(shop, "SELECT count(*) FROM customers WHERE city LIKE '%zzz%'")[0][3] == MISSING
    # SQLite's LIKE ignores ASCII case, DuckDB's does not
    spain = looked_up(shop, "SELECT count(*) FROM customers WHERE country LIKE 'spain'")[0][3]
    assert spain == (FOUND if shop.suffix == ".sqlite" else CASE)
    assert looked_up(shop, "SELECT count(*) FROM customers WHERE LOWER(country) = 'spain'") == [
        ("customers", "LOWER(country)", ("spain",), FOUND)]


def test_what_is_not_a_text_column_compared_with_a_string_is_not_looked_up(shop):
    for sql in ("SELECT count(*) FROM customers", "SELECT count(*) FROM customers WHERE customer_id = 3",
                "SELECT count(*) FROM customers WHERE signup_date = '2022-01-01'",
                "SELECT first_name || ' ' || last_name FROM customers",
                "SELECT count(*) FROM customers WHERE city = (SELECT max(city) FROM customers)"):
        assert looked_up(shop, sql) == [], sql


def test_a_value_is_looked_up_once_a_session(shop, monkeypatch):
    ran = []
    real = grounding.execute
    monkeypatch.setattr(grounding, "execute", lambda db, sql, **limits: ran.append(sql) or real(db, sql, **limits))
    with open_database(shop) as db:
        first = ground(SPAIN, db)
        again = ground(SPAIN + " AND city = 'Madrid'", db)
    assert first[0] == again[0] and again[1].found == FOUND
    assert len(ran) == 2  # Spain once, Madrid once


@pytest.fixture
def huge(tmp_path):
    """A SQLite table of 400,000 rows without an index on the column looked up."""
    path = tmp_path / "huge.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT)")
    connection.execute("INSERT INTO events (kind) SELECT 'click' FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                       "SELECT i + 1 FROM n WHERE i < 400000) SELECT i FROM n)")
    connection.commit()
    connection.close()
    return path


def test_a_lookup_on_a_huge_table_stops_at_the_first_row_or_its_time_limit(huge):
    with isolate(open_database(huge)) as db:
        (found,) = ground("SELECT count(*) FROM events WHERE kind = 'click'", db)
        # scanning every row for a value none holds takes longer than a millisecond: not known, so not held against it
        (unknown,) = ground("SELECT count(*) FROM events WHERE kind = 'scroll'", db, timeout=0.001)
    assert found.found == FOUND
    assert unknown.found == UNKNOWN and unknown.grounded


# -- the vote -----------------------------------------------------------------------------------------------------------


def entry(sql: str, rows, *found: str, logprob: float = -1.0) -> Entry:
    lookups = tuple(Lookup("customers", "city", "=", (f"v{i}",), kind) for i, kind in enumerate(found))
    return Entry(Candidate(sql, sql, logprob=logprob, tokens=1), Verdict(VALID, sql=sql), Result(("n",), rows),
                 lookups=lookups)


def test_a_grounded_result_beats_a_larger_group_resting_on_a_missing_value():
    ballot = vote([entry(BRESAILLE, ((0,),), MISSING), entry(BRESAILLE, ((0,),), MISSING),
                   entry(BRESAILLE, ((0,),), MISSING), entry(SPAIN, ((4,),), FOUND), entry(BRESAILLE, ((0,),), MISSING)])
    assert ballot.winner.candidate.sql == SPAIN and ballot.winner.votes == 1
    assert ballot.winner.ungrounded == ()


def test_without_a_grounded_candidate_the_vote_is_by_size():
    """A question about a city no row holds: 0 may be right, and a query without the city does not beat it."""
    ballot = vote([entry("SELECT count(*) FROM customers", ((40,),)), entry(BRESAILLE, ((0,),), MISSING),
                   entry(BRESAILLE, ((0,),), MISSING)])
    assert ballot.winner.result.rows == ((0,),) and ballot.winner.votes == 2
    assert [lookup.found for lookup in ballot.winner.ungrounded] == [MISSING]


def test_a_grounded_member_speaks_for_its_group_and_unknown_lookups_count_as_stored():
    ballot = vote([entry("a", ((1,),), MISSING, logprob=-0.1), entry("b", ((1,),), FOUND, logprob=-5.0),
                   entry("c", ((2,),), FOUND), entry("d", ((1,),), UNKNOWN, logprob=-2.0)])
    # the group of a, b and d wins; its most confident candidate that rests on no missing value represents it
    assert ballot.winner.candidate.sql == "d" and ballot.winner.votes == 3


def test_a_case_mismatch_loses_to_the_stored_spelling():
    ballot = vote([entry("lower", ((0,),), CASE), entry("lower", ((0,),), CASE), entry("Paris", ((3,),), FOUND)])
    assert ballot.winner.candidate.sql == "Paris"


# -- end to end ---------------------------------------------------------------------------------------------------------


def ask(shop, *args):
    return runner.invoke(app, ["ask", "--db", str(shop), "--model", "fake", *args])


def test_the_candidate_whose_value_is_stored_wins_the_answer(shop, fake_model):
    fake_model(BRESAILLE, BRESAILLE, BRESAILLE, SPAIN, BRESAILLE)
    result = ask(shop, "Combien de clients viennent du Brésil ?", "--format", "json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["sql"] == SPAIN and answer["votes"] == 1 and answer["ungrounded"] == []
    assert "ground" in answer["timings"]


def test_an_answer_resting_on_a_missing_value_says_so(shop, fake_model):
    fake_model(BRESAILLE)
    table = ask(shop, "Combien de clients viennent du Brésil ?")
    assert table.exit_code == 0, table.output
    assert "no customer has city 'Bresaille'; closest stored values: 'Marseille'" in table.stdout

    answer = json.loads(ask(shop, "Combien de clients viennent du Brésil ?", "--format", "json").stdout)
    assert answer["rows"] == [[0]]
    (warning,) = answer["ungrounded"]
    assert warning["table"] == "customers" and warning["column"] == "city" and warning["values"] == ["Bresaille"]
    assert warning["found"] == "missing" and warning["closest"][0] == "Marseille"
    assert warning["message"].startswith("no customer has city 'Bresaille'")

    rows = ask(shop, "Combien de clients viennent du Brésil ?", "--format", "csv")
    assert rows.stdout.splitlines()[1:] == ["0"]
    assert rows.stderr.startswith("edgesql: no customer has city 'Bresaille'")


def test_a_grounded_answer_prints_no_warning(shop, fake_model):
    fake_model(SPAIN)
    result = ask(shop, "How many customers are from Spain?")
    assert result.exit_code == 0, result.output
    assert "no customer has" not in result.stdout and "no customer has" not in result.stderr


def test_early_stop_waits_past_a_majority_resting_on_a_missing_value(shop, fake_model):
    model = fake_model(BRESAILLE, BRESAILLE, BRESAILLE, SPAIN, SPAIN)
    result = ask(shop, "Combien de clients viennent du Brésil ?", "--early-stop", "--format", "json")
    assert result.exit_code == 0, result.output
    assert model.served == 5 and json.loads(result.stdout)["sql"] == SPAIN
