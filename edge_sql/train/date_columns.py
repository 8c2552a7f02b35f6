"""Find a database's date and time columns by the values they hold, and read those values as dates.

Training pairs about dates (:mod:`edge_sql.train.pairs`) are written by rule over such columns; the declared type is
no guide (Spider declares ``DATETIME`` columns that hold text, ``INT`` columns that hold years, ``TEXT`` columns that
hold ``'October 21, 2011'``). A column is a date column when every value it holds reads as one of:

- ``date``: ISO days, ``'2016-11-19'`` (text in SQLite; a DuckDB ``DATE``);
- ``timestamp``: ISO days with a time, ``'2017-10-09 18:15:00'`` (a DuckDB ``TIMESTAMP``), some perhaps days alone;
- ``year``: whole numbers from 1000 to 2100 in a column whose name says year (``Open_Year``, ``founded``) or whose
  declared type is ``YEAR``, stored as numbers or as four-digit text;
- ``text``: dates written for people in one layout, ``'October 21, 2011'``, ``'18 May 2007'``, ``'8/29/2013'``
  (no engine date function reads them: the pairs compare them as text).

>>> [(c.storage, c.layout) for c in (classify("d", "TEXT", ["2016-11-19", "2018-03-04"]),
...                                   classify("d", "DATETIME", ["2017-10-09 18:15:00", "2017-10-10"]),
...                                   classify("Open_Year", "TEXT", ["2010", "1998"]),
...                                   classify("Date", "TEXT", ["October 21, 2011", "March 1, 1963"]))]
[('date', ''), ('timestamp', ''), ('year', 'text'), ('text', '%B %d, %Y')]
>>> classify("Candidate_ID", "INT", [1998, 2001]) is None, classify("time", "TEXT", ["17:15", "09:30"]) is None
(True, True)
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import duckdb

from edge_sql.steps.database import open_database
from edge_sql.steps.schema import quote_name

#: A name that says its numbers are years.
YEAR_NAME = re.compile(r"(?i)(year|yr|founded|established|built|since)")
YEARS = (1000, 2100)
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")
FOUR_DIGITS = re.compile(r"\d{4}")
#: Layouts of dates written for people, tried in this order (``strptime``'s; month names in English).
TEXT_LAYOUTS = ("%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%d %b %Y", "%B %d %Y", "%d-%b-%Y", "%m/%d/%Y", "%m/%d/%Y %H:%M",
                "%Y/%m/%d", "%d.%m.%Y")
#: The most values read from one column.
MAX_VALUES = 200_000


@dataclass(frozen=True)
class DateColumn:
    """A column whose values are dates: how they are stored, each value as stored and as read (a
    :class:`datetime.datetime`, or an ``int`` for a year), and how many of the table's rows have none."""

    table: str
    column: str
    storage: str  # "date", "timestamp", "year" or "text"
    layout: str = ""  # text: its strptime layout; year: "text" when the years are strings
    stored: tuple = ()
    moments: tuple = ()
    nulls: int = 0

    @property
    def days(self) -> list[dt.date]:
        """The distinct days of a date column, in order (none for years)."""
        return sorted({m.date() for m in self.moments}) if self.storage != "year" else []

    @property
    def years(self) -> list[int]:
        return sorted({m if self.storage == "year" else m.year for m in self.moments})


def find_date_columns(path: Path | str) -> tuple[DateColumn, ...]:
    """Every date column of the SQLite or DuckDB file ``path`` (opened read-only), table by table; a column that
    cannot be read is left out. :class:`~edge_sql.errors.DatabaseError` when the file cannot be opened."""
    found = []
    with open_database(path) as db:
        for table in db.schema.tables:
            if table.view:
                continue
            for column in table.columns:
                try:
                    rows = db.connection.execute(
                        f"SELECT {quote_name(column.name)} FROM {quote_name(table.name)} LIMIT {MAX_VALUES}").fetchall()
                except (sqlite3.Error, duckdb.Error, UnicodeDecodeError):  # undecodable text: not one to write about
                    continue
                values = [row[0] for row in rows if row[0] is not None]
                kind = classify(column.name, column.type, values)
                if kind is not None:
                    found.append(DateColumn(table.name, column.name, kind.storage, kind.layout, tuple(values),
                                            kind.moments, len(rows) - len(values)))
    return tuple(found)


@dataclass(frozen=True)
class Kind:
    storage: str
    layout: str
    moments: tuple


def classify(name: str, declared: str, values: list) -> Kind | None:
    """How the (non-null) ``values`` of column ``name`` store dates, or None when they are not all dates."""
    if not values:
        return None
    if all(isinstance(v, dt.datetime) for v in values):
        return Kind("timestamp", "", tuple(v.replace(tzinfo=None) for v in values))
    if all(isinstance(v, dt.date) and not isinstance(v, dt.datetime) for v in values):
        return Kind("date", "", tuple(dt.datetime.combine(v, dt.time()) for v in values))
    says_year = bool(YEAR_NAME.search(name)) or (declared or "").strip().upper() == "YEAR"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if says_year and all(float(v).is_integer() and YEARS[0] <= v <= YEARS[1] for v in values):
            return Kind("year", "", tuple(int(v) for v in values))
        return None
    if not all(isinstance(v, str) for v in values):
        return None
    if says_year and all(FOUR_DIGITS.fullmatch(v) and YEARS[0] <= int(v) <= YEARS[1] for v in values):
        return Kind("year", "text", tuple(int(v) for v in values))
    return iso(values) or written(values)


def iso(values: list[str]) -> Kind | None:
    """ISO days (``date``), or ISO days and times (``timestamp``)."""
    days = all(ISO_DAY.fullmatch(v) for v in values)
    if not days and not all(ISO_DAY.fullmatch(v) or ISO_MOMENT.fullmatch(v) for v in values):
        return None
    try:
        moments = tuple(dt.datetime.fromisoformat(v) for v in values)
    except ValueError:  # '0000-00-00', '2011-02-30'
        return None
    return Kind("date" if days else "timestamp", "", moments)


def written(values: list[str]) -> Kind | None:
    """Dates in one of the :data:`TEXT_LAYOUTS`; a layout of numbers alone must show a day after the 12th somewhere
    (else its days and months could be the other way round)."""
    for layout in TEXT_LAYOUTS:
        try:
            moments = tuple(dt.datetime.strptime(v.strip(), layout) for v in values)
        except ValueError:
            continue
        if "%B" not in layout and "%b" not in layout and not any(m.day > 12 for m in moments):
            return None
        return Kind("text", layout, moments)
    return None
