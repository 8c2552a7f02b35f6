"""Training pairs written by rule (``edgesql train --pairs dates``): date columns found by their values, questions
whose gold queries run, return rows and say what the data says, in SQLite's SQL and DuckDB's alike.

The fixture is a small concert database whose dates are stored every way Spider stores them: ISO days, ISO
timestamps, years as numbers, years as text and dates written for people, beside columns that look like dates and are
not (a code in the 1990s, a time of day).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from edge_sql.steps.database import open_database
from edge_sql.steps.execute import execute
from edge_sql.train.date_columns import find_date_columns
from edge_sql.train.date_drafts import TEMPLATES, canonical
from edge_sql.train.pairs import write_jsonl, write_pairs
from edge_sql.train.wording import DAY_STYLES, say_day

SPIDER_TRAIN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "spider-train" / "database"

#: (name, ISO day, ISO time of the ticket sale, year the hall opened, the day as the poster wrote it)
CONCERTS = [
    ("Winter Gala", "2009-01-17", "2008-12-01 10:15:00", 1998, "January 17, 2009"),
    ("Spring Lights", "2009-03-02", "2009-01-20 18:40:00", 2001, "March 2, 2009"),
    ("Echoes", "2009-03-28", "2009-02-11 09:05:30", 1998, "March 28, 2009"),
    ("Summer Nights", "2009-07-04", "2009-05-30 21:00:00", 2005, "July 4, 2009"),
    ("Harvest", "2010-09-19", "2010-06-02 12:00:00", 2001, "September 19, 2010"),
    ("First Snow", "2010-12-11", "2010-10-10 08:30:00", 2010, "December 11, 2010"),
    ("Night Owls", "2010-12-19", "2010-11-05 23:59:59", 2005, "December 19, 2010"),
    ("Thaw", "2011-02-14", "2011-01-01 00:00:00", 2010, "February 14, 2011"),
    ("Blossom", "2011-04-30", "2011-03-15 16:20:00", 2001, "April 30, 2011"),
    ("Midsummer", "2011-06-21", "2011-04-01 07:45:00", 1998, "June 21, 2011"),
]


@pytest.fixture(scope="module")
def concerts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("concerts") / "concerts.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE hall (hall_id INTEGER PRIMARY KEY, name TEXT, Opening_Year INTEGER, "
                   "renovated_year TEXT)")
        db.execute("CREATE TABLE concert (concert_id INTEGER PRIMARY KEY, name TEXT, concert_date TEXT, "
                   "sold_at DATETIME, hall_id INTEGER REFERENCES hall (hall_id), poster_date TEXT, code INTEGER, "
                   "start_time TEXT)")
        for number, (name, day, sold, opened, poster) in enumerate(CONCERTS, 1):
            db.execute("INSERT INTO hall VALUES (?, ?, ?, ?)", (number, f"Hall {number}", opened,
                                                                str(opened + 5)))
            db.execute("INSERT INTO concert VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (number, name, day, sold, number, poster, 1990 + number, f"{17 + number % 4}:15"))
        db.execute("INSERT INTO concert (concert_id, name, code) VALUES (99, 'Unscheduled', 2000)")  # no dates
    return path


@pytest.fixture(scope="module")
def written(concerts, tmp_path_factory):
    return write_pairs("dates", [concerts], tmp_path_factory.mktemp("pairs"), seed=7)


def test_date_columns_are_found_by_their_values(concerts):
    found = {(c.table, c.column): (c.storage, c.layout) for c in find_date_columns(concerts)}
    assert found == {
        ("hall", "Opening_Year"): ("year", ""),
        ("hall", "renovated_year"): ("year", "text"),
        ("concert", "concert_date"): ("date", ""),
        ("concert", "sold_at"): ("timestamp", ""),
        ("concert", "poster_date"): ("text", "%B %d, %Y"),
    }  # not code (numbers in the 1990s, but not named a year) nor start_time (a time of day)
    (dates,) = [c for c in find_date_columns(concerts) if c.column == "concert_date"]
    assert dates.nulls == 1 and dates.days[0] == dt.date(2009, 1, 17) and dates.years == [2009, 2010, 2011]


def test_duckdb_dates_and_timestamps_are_found_by_their_types(tmp_path):
    path = tmp_path / "tickets.duckdb"
    with duckdb.connect(str(path)) as db:
        db.execute("CREATE TABLE ticket (id INTEGER, sold DATE, scanned TIMESTAMP, season_year INTEGER, note VARCHAR)")
        db.execute("INSERT INTO ticket VALUES (1, DATE '2020-12-19', TIMESTAMP '2020-12-19 20:01:02', 2020, 'ok'), "
                   "(2, DATE '2021-01-02', TIMESTAMP '2021-01-02 19:00:00', 2021, 'late')")
    found = {c.column: c.storage for c in find_date_columns(path)}
    assert found == {"sold": "date", "scanned": "timestamp", "season_year": "year"}


def test_every_template_writes_pairs_whose_gold_queries_run_and_return_rows(written):
    assert set(p.template for p in written.pairs) == set(TEMPLATES)
    assert {p.engine for p in written.pairs} == {"sqlite", "duckdb"} and written.databases == 1
    for pair in written.pairs:
        with open_database(pair.db) as db:
            assert db.engine == pair.engine
            assert execute(db, pair.query, max_rows=1000).rows, pair


def test_sqlite_and_duckdb_golds_agree(written):
    by_question = {}
    for pair in written.pairs:
        by_question.setdefault(pair.question, {})[pair.engine] = pair
    assert sum(len(engines) == 2 for engines in by_question.values()) == len(written.pairs) // 2
    duckdb_functions = Counter()
    for engines in by_question.values():
        results = {}
        for engine, pair in engines.items():
            with open_database(pair.db) as db:
                results[engine] = Counter(tuple(canonical(v) for v in row) for row in
                                          execute(db, pair.query, max_rows=1000).rows)
        assert results["sqlite"] == results["duckdb"], engines
        duckdb_functions.update(re.findall(r"\b(year|month|strftime|date_trunc|CAST)\(", engines["duckdb"].query))
        assert "strftime('%" not in engines["duckdb"].query  # DuckDB's strftime takes the value first
    assert {"year", "month", "CAST"} <= set(duckdb_functions) and {"strftime", "date_trunc"} & set(duckdb_functions)


def test_the_duckdb_copy_holds_the_rows_with_its_dates_typed(written, concerts):
    copy = next(p.db for p in written.pairs if p.engine == "duckdb")
    with duckdb.connect(str(copy), read_only=True) as db:
        types = dict(db.execute("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_name = 'concert'").fetchall())
        rows = db.execute("SELECT name, concert_date, sold_at FROM concert ORDER BY concert_id").fetchall()
    assert types["concert_date"] == "DATE" and types["sold_at"] == "TIMESTAMP" and types["poster_date"] == "VARCHAR"
    assert rows[0] == ("Winter Gala", dt.date(2009, 1, 17), dt.datetime(2008, 12, 1, 10, 15))
    assert len(rows) == len(CONCERTS) + 1


def test_a_count_says_what_the_data_says(written):
    """Each question that counts the concerts of a year, a month or a day is answered with the number of rows
    written for it above, whatever the column and the engine."""
    checked = Counter()
    for pair in written.pairs:
        if not pair.query.startswith("SELECT count(*) FROM concert WHERE") or pair.template not in ("year", "day"):
            continue
        with open_database(pair.db) as db:
            (count,), = execute(db, pair.query).rows
        if pair.template == "year" and "concert_date" in pair.query:
            year = re.search(r"\b(\d{4})\b", pair.query.split("WHERE")[1]).group(1)
            assert count == sum(day.startswith(year) for _, day, *_ in CONCERTS), pair
            checked["year"] += 1
        if pair.template == "day" and "poster_date" in pair.query:
            assert count == 1 and re.search(r"(January|March|July|September|December|February|April|June) "
                                            r"\d+, \d{4}", pair.query), pair
            checked["day"] += 1
    assert checked["year"] and checked["day"]


def test_a_day_is_said_as_people_write_it_and_asked_on_the_day_of_a_timestamp(written):
    days = [p for p in written.pairs if p.template == "day" and "sold_at" in p.query]
    assert days
    styles = Counter()
    for pair in days:
        if pair.engine == "sqlite":
            found = re.search(r"date\(sold_at\) = '(\d{4}-\d{2}-\d{2})'", pair.query)
        else:
            found = re.search(r"CAST\(sold_at AS DATE\) = DATE '(\d{4}-\d{2}-\d{2})'", pair.query)
        assert found, pair.query
        day = dt.date.fromisoformat(found.group(1))
        said = [style for style in range(len(DAY_STYLES)) if say_day(day, style) in pair.question]
        assert said, pair.question
        styles.update(said)
    assert len(styles) >= 2  # not always the same way


def test_the_same_seed_writes_the_same_pairs_and_a_count_draws_from_them(concerts, written, tmp_path):
    again = write_pairs("dates", [concerts], tmp_path / "again", seed=7)
    assert [(p.question, p.query, p.template, p.engine) for p in again.pairs] == \
        [(p.question, p.query, p.template, p.engine) for p in written.pairs]
    other = write_pairs("dates", [concerts], tmp_path / "other", seed=8)
    assert {p.question for p in other.pairs} != {p.question for p in written.pairs}
    drawn = write_pairs("dates", [concerts], tmp_path / "drawn", seed=7, count=12)
    assert len(drawn.pairs) == 12 and {(p.question, p.query) for p in drawn.pairs} <= \
        {(p.question, p.query) for p in written.pairs}
    everything = write_pairs("dates", [concerts], tmp_path / "all", seed=7, count=10_000)
    assert len(everything.pairs) == len(written.pairs)


def test_pairs_are_written_as_a_dataset_edgesql_reads(written, tmp_path):
    from edge_sql.eval.datasets import load_dataset

    write_jsonl(written.pairs, tmp_path / "out" / "dates.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "out" / "dates.jsonl").read_text().splitlines()]
    assert {line["kind"].split("/")[0] for line in lines} == {"dates"}
    dataset = load_dataset(tmp_path / "out" / "dates.jsonl")
    assert [(e.question, e.gold, e.db_path.resolve()) for e in dataset.examples] == \
        [(p.question, p.query, p.db.resolve()) for p in written.pairs]


def test_a_database_without_dates_gives_no_pairs(tmp_path):
    path = tmp_path / "plain.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE singer (name TEXT, age INTEGER)")
        db.execute("INSERT INTO singer VALUES ('Ann', 31), ('Bo', 45)")
    assert write_pairs("dates", [path], tmp_path / "pairs").pairs == ()


@pytest.mark.skipif(not SPIDER_TRAIN.is_dir(), reason="shared Spider training data not present")
def test_spider_training_databases_give_pairs_that_run(tmp_path):
    databases = [SPIDER_TRAIN / name / f"{name}.sqlite" for name in ("chinook_1", "debate", "cinema")]
    drawn = write_pairs("dates", databases, tmp_path, seed=42, count=60)
    assert len(drawn.pairs) == 60 and drawn.databases == 3
    for pair in drawn.pairs:
        with open_database(pair.db) as db:
            assert execute(db, pair.query, max_rows=100_000).rows, pair
