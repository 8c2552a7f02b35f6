"""The questions ``edgesql train --pairs dates`` asks about one date column, by template, with their gold queries
(:mod:`edge_sql.train.pairs` runs and keeps them)."""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable

from edge_sql.steps.schema import Schema, quote_name
from edge_sql.train.date_columns import ISO_DAY, ISO_MOMENT, DateColumn
from edge_sql.train.wording import (DAY_STYLES, MONTH_STYLES, column_words, event, plural, say_day, say_month, singular,
                                    subject, with_article, words)

#: Questions drawn for each filter template of a column (other values, other wording).
DRAWS = 2
#: A column is asked about when it holds this many distinct days (or years, for a column of years).
MIN_DISTINCT = 3
#: The most rows a gold query may return.
MAX_ROWS = 10_000
#: The share of filter questions that list a name rather than count, where the table has a name.
LIST_SHARE = 0.35
#: DuckDB's typed day literal, ``DATE '2020-12-19'``: where a column is named ``date``, the decoding-time check reads
#: that DATE as the column (and refuses the query), so there the literal is a plain string DuckDB casts alike.
TYPED_DATE = re.compile(r"\bDATE '")
LABEL = re.compile(r"(?i)^(name|title)$|(^|_)(name|title)$|[a-z](Name|Title)$")


@dataclass(frozen=True)
class Draft:
    """A question, its gold query in each engine's SQL, and what it must return: ``rows`` (a multiset, values as
    :func:`canonical` reads them) when known, and always its number of rows."""

    template: str
    question: str
    sql: dict
    size: int
    rows: tuple | None = None


@dataclass(frozen=True)
class Condition:
    """A WHERE condition in each engine's SQL, the test it puts to a value, and how the question says it: after a
    verb (``in 2009``), after "is" and after "with a …" (``2009`` and ``of 2009`` for a column of years, else the
    same)."""

    sqlite: str
    duckdb: str
    test: Callable[[object], bool]
    said: str
    copula: str
    attribute: str = ""


@dataclass(frozen=True)
class Names:
    """How a question names a table's rows and a column: ``rows`` (plural), ``row`` (one), the column's words, what
    happened at its date (``were born``, or None), and the table's name column (quoted) and its words, if any."""

    table: str
    column: str
    rows: str
    row: str
    words: str
    event: str | None
    label: str | None
    label_words: str | None


def column_drafts(column: DateColumn, schema: Schema, seed: int, db_id: str) -> list[Draft]:
    """The questions of every template that fits the column (each filter :data:`DRAWS` times), with their gold
    queries; the same seed, database and column give the same drafts."""
    rng = random.Random(f"{seed}:{db_id}:{column.table}:{column.column}")
    names = names_of(column, schema)
    drafts, seen = [], set()
    for template, condition in FILTERS.items():
        for _ in range(DRAWS):
            made = condition(column, names.column, rng)
            if made is not None and any(made.test(m) for m in column.moments):
                drafts.append(filter_draft(template, column, made, names, rng))
    for template, grouping in AGGREGATES.items():
        made = grouping(column, names, rng)
        if made is not None:
            drafts.append(made)
    if any(c.name.lower() == "date" for t in schema.tables for c in t.columns):
        drafts = [replace(d, sql={**d.sql, "duckdb": TYPED_DATE.sub("'", d.sql["duckdb"])}) for d in drafts]
    unique = []
    for draft in drafts:
        if (draft.question, draft.sql["sqlite"]) not in seen:
            seen.add((draft.question, draft.sql["sqlite"]))
            unique.append(draft)
    return unique


def names_of(column: DateColumn, schema: Schema) -> Names:
    table = next(t for t in schema.tables if t.name == column.table)
    labels = [c.name for c in table.columns if LABEL.search(c.name) and c.name != column.column]
    label = min(labels, key=lambda n: (n.lower() not in ("name", "title"), len(n))) if labels else None
    return Names(quote_name(table.name), quote_name(column.column), subject(table.name), singular(table.name),
                 column_words(column.column), event(column.column), quote_name(label) if label else None,
                 words(label) if label else None)


def year_literal(column: DateColumn, year: int) -> str:
    return f"'{year}'" if column.layout == "text" else str(year)


def year_of(column: DateColumn) -> Callable[[object], int]:
    return (lambda v: v) if column.storage == "year" else (lambda v: v.year)


def year_condition(column: DateColumn, c: str, rng: random.Random) -> Condition:
    year = rng.choice(column.years)
    said = rng.choice([f"in {year}", f"in the year {year}", f"during {year}"])
    if column.storage == "year":
        sql = f"{c} = {year_literal(column, year)}"
        return Condition(sql, sql, lambda v: v == year, said, str(year), f"of {year}")
    if column.storage == "text":
        sql = f"{c} LIKE '%{year}%'"
        return Condition(sql, sql, lambda v: v.year == year, said, said)
    return Condition(f"strftime('%Y', {c}) = '{year}'", f"year({c}) = {year}", lambda v: v.year == year, said, said)


def month_condition(column: DateColumn, c: str, rng: random.Random) -> Condition | None:
    if column.storage == "year":
        return None
    year, month = rng.choice(sorted({(m.year, m.month) for m in column.moments}))
    said = rng.choice(["in", "in", "during"]) + " " + say_month(year, month, rng.randrange(len(MONTH_STYLES)))
    test = lambda v: (v.year, v.month) == (year, month)  # noqa: E731
    if column.storage == "text":
        pattern = month_pattern(column.layout, year, month)
        if pattern is None:
            return None
        sql = f"{c} LIKE '{pattern}'"
        return Condition(sql, sql, test, said, said)
    ym = f"{year}-{month:02d}"
    duckdb = rng.choice([f"strftime({c}, '%Y-%m') = '{ym}'", f"date_trunc('month', {c}) = DATE '{ym}-01'",
                         f"year({c}) = {year} AND month({c}) = {month}"])
    return Condition(f"strftime('%Y-%m', {c}) = '{ym}'", duckdb, test, said, said)


def month_pattern(layout: str, year: int, month: int) -> str | None:
    """A LIKE pattern for the days of one month written in ``layout``, or None where the month is a number.

    >>> month_pattern("%B %d, %Y", 2011, 10), month_pattern("%d %b %Y", 2009, 1), month_pattern("%m/%d/%Y", 2013, 8)
    ('October %, 2011', '% Jan 2009', None)
    """
    if "%B" not in layout and "%b" not in layout:
        return None
    text = layout.replace("%B", dt.date(year, month, 1).strftime("%B")).replace("%b", dt.date(year, month, 1)
                                                                                 .strftime("%b"))
    return text.replace("%Y", str(year)).replace("%d", "%")


def day_condition(column: DateColumn, c: str, rng: random.Random) -> Condition | None:
    if column.storage == "year":
        return None
    day = rng.choice(column.days)
    spoken = say_day(day, rng.randrange(len(DAY_STYLES)))
    test = lambda v: v.date() == day  # noqa: E731
    if column.storage == "text":
        stored = next(s for s, m in zip(column.stored, column.moments) if m.date() == day).replace("'", "''")
        sql = (f"{c} LIKE '{stored.split(' ')[0]} %'" if "%H" in column.layout else f"{c} = '{stored}'")
        return Condition(sql, sql, test, f"on {spoken}", spoken)
    if column.storage == "date":
        return Condition(f"{c} = '{day}'", f"{c} = DATE '{day}'", test, f"on {spoken}", spoken)
    return Condition(f"date({c}) = '{day}'", f"CAST({c} AS DATE) = DATE '{day}'", test, f"on {spoken}", spoken)


def compared(column: DateColumn, c: str, op: str, days: tuple[dt.date, ...], said: str) -> Condition:
    """``c op day`` (or BETWEEN two days) on the day of each value."""
    def literal(day: dt.date, engine: str) -> str:
        return f"'{day}'" if engine == "sqlite" else f"DATE '{day}'"

    sides = {"sqlite": c if column.storage == "date" else f"date({c})",
             "duckdb": c if column.storage == "date" else f"CAST({c} AS DATE)"}
    sql = {engine: (f"{side} BETWEEN {literal(days[0], engine)} AND {literal(days[1], engine)}" if op == "BETWEEN"
                    else f"{side} {op} {literal(days[0], engine)}") for engine, side in sides.items()}
    tests = {"<": lambda v: v.date() < days[0], ">": lambda v: v.date() > days[0],
             ">=": lambda v: v.date() >= days[0], "BETWEEN": lambda v: days[0] <= v.date() <= days[-1]}
    return Condition(sql["sqlite"], sql["duckdb"], tests[op], said, said)


def a_day(days: list[dt.date], rng: random.Random) -> dt.date:
    """One of ``days``, or (half the time) the first of its month, as people round a bound."""
    day = rng.choice(days)
    return day.replace(day=1) if rng.random() < 0.5 else day


def before_condition(column: DateColumn, c: str, rng: random.Random) -> Condition | None:
    if column.storage not in ("date", "timestamp"):
        return None
    day = a_day(column.days[1:], rng)
    word = rng.choice(["before", "earlier than", "prior to"])
    return compared(column, c, "<", (day,), f"{word} {say_day(day, rng.randrange(len(DAY_STYLES)))}")


def after_condition(column: DateColumn, c: str, rng: random.Random) -> Condition | None:
    if column.storage not in ("date", "timestamp"):
        return None
    day = rng.choice(column.days[:-1])
    word = rng.choice(["after", "later than"])
    return compared(column, c, ">", (day,), f"{word} {say_day(day, rng.randrange(len(DAY_STYLES)))}")


def since_condition(column: DateColumn, c: str, rng: random.Random) -> Condition | None:
    if column.storage not in ("date", "timestamp"):
        return None
    day = a_day(column.days[1:], rng)
    word = rng.choice(["since", "on or after"])
    return compared(column, c, ">=", (day,), f"{word} {say_day(day, rng.randrange(len(DAY_STYLES)))}")


def between_condition(column: DateColumn, c: str, rng: random.Random) -> Condition | None:
    if column.storage not in ("date", "timestamp"):
        return None
    first, last = sorted(rng.sample(column.days, 2))
    style = rng.randrange(len(DAY_STYLES))
    form = rng.choice(["between {} and {}", "from {} to {}"])
    return compared(column, c, "BETWEEN", (first, last), form.format(say_day(first, style), say_day(last, style)))


def years_condition(op: str, words_for: list[str]):
    """A condition on the year of each value: ``op`` ``<``, ``>`` or BETWEEN."""

    def condition(column: DateColumn, c: str, rng: random.Random) -> Condition | None:
        years = column.years
        if column.storage == "text" or len(years) < 2:
            return None
        if op == "BETWEEN":
            bounds = tuple(sorted(rng.sample(years, 2)))
        else:
            bounds = (rng.choice(years[1:] if op == "<" else years[:-1]),)
        said = rng.choice(words_for).format(*bounds)
        of = year_of(column)
        test = {"<": lambda v: of(v) < bounds[0], ">": lambda v: of(v) > bounds[0],
                "BETWEEN": lambda v: bounds[0] <= of(v) <= bounds[-1]}[op]
        if column.storage == "year":
            side, lits = c, [year_literal(column, y) for y in bounds]
            sql = f"{side} BETWEEN {lits[0]} AND {lits[1]}" if op == "BETWEEN" else f"{side} {op} {lits[0]}"
            return Condition(sql, sql, test, said, said)
        sqlite = (f"strftime('%Y', {c}) BETWEEN '{bounds[0]}' AND '{bounds[1]}'" if op == "BETWEEN"
                  else f"strftime('%Y', {c}) {op} '{bounds[0]}'")
        duckdb = (f"year({c}) BETWEEN {bounds[0]} AND {bounds[1]}" if op == "BETWEEN"
                  else f"year({c}) {op} {bounds[0]}")
        return Condition(sqlite, duckdb, test, said, said)

    return condition


#: The filter templates: each draws a condition on a column (None where it does not fit the column).
FILTERS = {
    "year": year_condition,
    "month": month_condition,
    "day": day_condition,
    "before": before_condition,
    "after": after_condition,
    "since": since_condition,
    "between": between_condition,
    "before_year": years_condition("<", ["before {}", "before the year {}", "earlier than {}"]),
    "after_year": years_condition(">", ["after {}", "after the year {}", "later than {}"]),
    "between_years": years_condition("BETWEEN", ["between {} and {}", "from {} to {}", "in the years {} to {}"]),
}

#: Questions that count rows ({v}: what happened to them, where the column's name says).
COUNT_FORMS = ("How many {S} {v} {T}?", "Find the number of {S} that {v} {T}.", "How many {S} have {aw} {A}?",
               "Count the {S} whose {w} is {C}.", "What is the number of {S} with {aw} {A}?",
               "How many {S} are there with {aw} {A}?")
#: Questions that list the rows' names.
LIST_FORMS = ("List the {Ls} of the {S} that {v} {T}.", "Which {S} {v} {T}? Give their {Ls}.",
              "What are the {Ls} of the {S} with {aw} {A}?", "Show the {L} of every {s} whose {w} is {C}.")


def phrase(forms: tuple[str, ...], names: Names, rng: random.Random, **extra) -> str:
    """One of ``forms`` (those that need a verb only where the column gives one), filled in."""
    usable = [f for f in forms if "{v}" not in f or names.event]
    text = rng.choice(usable).format(S=names.rows, s=names.row, v=names.event, w=names.words,
                                     aw=with_article(names.words), L=names.label_words,
                                     Ls=plural(names.label_words or ""), **extra)
    return text[0].upper() + text[1:]


def filter_draft(template: str, column: DateColumn, condition: Condition, names: Names,
                 rng: random.Random) -> Draft:
    count = sum(1 for m in column.moments if condition.test(m))
    sql = {"sqlite": condition.sqlite, "duckdb": condition.duckdb}
    if names.label and rng.random() < LIST_SHARE:
        question = phrase(LIST_FORMS, names, rng, T=condition.said, C=condition.copula,
                          A=condition.attribute or condition.said)
        return Draft(template, question, {e: f"SELECT {names.label} FROM {names.table} WHERE {w}"
                                          for e, w in sql.items()}, count)
    question = phrase(COUNT_FORMS, names, rng, T=condition.said, C=condition.copula,
                      A=condition.attribute or condition.said)
    return Draft(template, question, {e: f"SELECT count(*) FROM {names.table} WHERE {w}" for e, w in sql.items()},
                 1, ((count,),))


def per_year(column: DateColumn, names: Names, rng: random.Random) -> Draft | None:
    if column.storage == "text" or len(column.years) < 2:
        return None
    counts = Counter(map(year_of(column), column.moments))
    rows = tuple((y, n) for y, n in counts.items()) + (((None, column.nulls),) if column.nulls else ())
    forms = (("How many {S} are there for each {w}?", "Count the {S} for each {w}.", "Show the number of {S} per "
              "{w}.", "How many {S} {v} in each year?") if column.storage == "year" else
             ("How many {S} {v} in each year?", "Count the {S} for each year of their {w}.",
              "For each year, how many {S} have {aw} in that year?", "Show the number of {S} per year of {w}."))
    question = phrase(forms, names, rng)
    c, t = names.column, names.table
    if column.storage == "year":
        sql = {e: f"SELECT {c}, count(*) FROM {t} GROUP BY {c}" for e in ("sqlite", "duckdb")}
    else:
        sql = {"sqlite": f"SELECT strftime('%Y', {c}), count(*) FROM {t} GROUP BY strftime('%Y', {c})",
               "duckdb": f"SELECT year({c}), count(*) FROM {t} GROUP BY year({c})"}
    return Draft("per_year", question, sql, len(rows), rows)


def per_month(column: DateColumn, names: Names, rng: random.Random) -> Draft | None:
    if column.storage not in ("date", "timestamp"):
        return None
    months = Counter((m.year, m.month) for m in column.moments)
    years = sorted({y for y, _ in months if sum(1 for yy, _ in months if yy == y) >= 2})
    if not years:
        return None
    year = rng.choice(years)
    rows = tuple((m, n) for (y, m), n in months.items() if y == year)
    question = phrase(("How many {S} {v} in each month of {Y}?",
                    "For each month of {Y}, how many {S} have {aw} in that month?",
                    "Show the number of {S} per month of {Y} by {w}."), names, rng, Y=year)
    c, t = names.column, names.table
    sql = {"sqlite": f"SELECT strftime('%m', {c}), count(*) FROM {t} WHERE strftime('%Y', {c}) = '{year}' "
                     f"GROUP BY strftime('%m', {c})",
           "duckdb": f"SELECT month({c}), count(*) FROM {t} WHERE year({c}) = {year} GROUP BY month({c})"}
    return Draft("per_month", question, sql, len(rows), rows)


def extreme(latest: bool):
    """The latest (or earliest) value; or, where the table has a name and one row holds that value, its name."""

    def draft(column: DateColumn, names: Names, rng: random.Random) -> Draft | None:
        if column.storage == "text":
            return None
        pick = max if latest else min
        value = pick(column.moments)
        template = "latest" if latest else "earliest"
        c, t = names.column, names.table
        if names.label and sum(1 for m in column.moments if m == value) == 1 and (latest or not column.nulls) \
                and rng.random() < 0.5:
            forms = (("Which {s} has the latest {w}? Give its {L}.", "What is the {L} of the {s} with the most "
                      "recent {w}?", "Give the {L} of the {s} with the latest {w}.") if latest else
                     ("Which {s} has the earliest {w}? Give its {L}.", "What is the {L} of the {s} with the "
                      "earliest {w}?", "Give the {L} of the {s} with the oldest {w}."))
            sql = f"SELECT {names.label} FROM {t} ORDER BY {c} {'DESC' if latest else 'ASC'} LIMIT 1"
            return Draft(template, phrase(forms, names, rng), {"sqlite": sql, "duckdb": sql}, 1)
        forms = (("What is the latest {w} of any {s}?", "What is the most recent {w} among the {S}?",
                  "When was the last {w} of the {S}?") if latest else
                 ("What is the earliest {w} of any {s}?", "What is the oldest {w} among the {S}?",
                  "When was the first {w} of the {S}?"))
        if column.storage == "year":
            forms = forms[:2]  # not "when was the last year"
        sql = f"SELECT {'max' if latest else 'min'}({c}) FROM {t}"
        return Draft(template, phrase(forms, names, rng), {"sqlite": sql, "duckdb": sql}, 1, ((canonical(value),),))

    return draft


#: The templates that group or pick a column's values.
AGGREGATES = {"per_year": per_year, "per_month": per_month, "latest": extreme(True), "earliest": extreme(False)}
TEMPLATES = tuple(FILTERS) + tuple(AGGREGATES)


def canonical(value):
    """A result's value as both engines' results and Python's reading of the values can be compared: a day or a
    time as a :class:`datetime.datetime`, digits as a number (``'03'`` is 3), a whole float as an int.

    >>> canonical("2010-03-01"), canonical(dt.date(2010, 3, 1)), canonical("2010"), canonical(2010.0)
    (datetime.datetime(2010, 3, 1, 0, 0), datetime.datetime(2010, 3, 1, 0, 0), 2010, 2010)
    """
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    if isinstance(value, str):
        if value.isascii() and value.isdigit():
            return int(value)
        if ISO_DAY.fullmatch(value) or ISO_MOMENT.fullmatch(value):
            try:
                return dt.datetime.fromisoformat(value)
            except ValueError:
                return value
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# --- into training -------------------------------------------------------------------------------------------------
