"""How a database stores its dates and times, said in a few words the model can act on.

A model that does not know how a date is stored guesses: ``orderdate = '2017-01-01'`` for "orders in 2017", or
``'1920-12-19'`` for "December 19, 2020". :func:`storage` reads a column's values and says how they are written:

- a pattern, for text in a fixed numeric layout: ``'YYYY-MM-DD'``, ``'YYYY-MM-DD HH:MM:SS'``, ``'MM/DD/YYYY'``;
- ``text like 'Dec 19, 2020'`` for other text in a date column (the engine's date functions cannot read it);
- ``year``, ``unix seconds``, ``unix milliseconds``, ``julian day`` or ``number YYYYMMDD`` for numbers.

:func:`functions_line` is one line of the engine's date functions, shown once under the schema when it has a date
the functions can read.

>>> storage(["2017-03-04", "2023-01-05"], "DATE")
"'YYYY-MM-DD'"
>>> storage(["2017-03-09 10:00:00.123"], "TEXT")
"'YYYY-MM-DD HH:MM:SS.SSS'"
>>> storage(["Dec 19, 2020", "Jan 2, 2021"], "DATE")
"text like 'Dec 19, 2020'"
>>> storage([1658684474, 1663551761], "BIGINT", "time"), storage([2017, 2023], "INTEGER", "order_date")
('unix seconds', 'year')
>>> storage(["Berlin", "Paris"], "TEXT"), storage([417, 705], "BIGINT", "trip_time")
('', '')
"""

from __future__ import annotations

import re
from collections import Counter

#: A column whose name says it holds a date or a time (numbers are looked at only then).
DATE_NAME = re.compile(r"(?i)(date|time|stamp|epoch|year|created|updated|modified|deleted|(^|_)at$|^when|day$)")
#: Text a date layout accepts: digits and these separators, nothing else.
LAYOUT = re.compile(r"[0-9]+(?:[-/.:T ][0-9]+)*(?:Z|[+-][0-9]{2}:?[0-9]{2})?")
ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
ISO_TIME = re.compile(r"(?:[ T])(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?")
SLASHED = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})")
TIME_ONLY = re.compile(r"(\d{2}):(\d{2})(?::(\d{2}))?")

#: Unix seconds between 1973 and 2100, and the same in milliseconds.
UNIX_SECONDS = (100_000_000, 4_102_444_800)
UNIX_MILLISECONDS = (UNIX_SECONDS[0] * 1000, UNIX_SECONDS[1] * 1000)
JULIAN_DAYS = (2_000_000, 2_600_000)

#: The engine's date functions, as one line a model can copy from (both engines' guards allow every one of them).
FUNCTIONS = {
    "sqlite": "strftime('%Y', col) = '2017', date(col), julianday(a) - julianday(b)",
    "duckdb": "year(col) = 2017, date_trunc('month', col), date_diff('day', a, b)",
}


def is_date_type(ctype: str | None) -> bool:
    """The declared type says date or time (``DATE``, ``DATETIME``, ``TIMESTAMP WITH TIME ZONE``, ``TIME``)."""
    upper = (ctype or "").upper()
    return "DATE" in upper or "TIME" in upper


def is_pattern(stored: str) -> bool:
    """``stored`` is a text layout (``'YYYY-MM-DD'``), not a kind of number or free text."""
    return stored.startswith("'")


def readable(stored: str) -> bool:
    """The engines' date functions read text stored this way as it is: ISO 8601 dates and times."""
    return stored.startswith(("'YYYY-MM-DD", "'HH:MM"))


def text_layout(value: str) -> str:
    """The layout of one text value, or "" when it is not a date or time in digits.

    >>> [text_layout(v) for v in ("2020-12-19", "2020-12-19T08:30:00Z", "19/12/2020", "12/19/2020", "08:30", "12")]
    ["'YYYY-MM-DD'", "'YYYY-MM-DDTHH:MM:SSZ'", "'DD/MM/YYYY'", "'MM/DD/YYYY'", "'HH:MM'", '']
    """
    value = value.strip()
    if not LAYOUT.fullmatch(value):
        return ""
    found = ISO_DATE.match(value)
    if found:
        if not (1 <= int(found.group(2)) <= 12 and 1 <= int(found.group(3)) <= 31):
            return ""
        rest = value[found.end():]
        if not rest:
            return "'YYYY-MM-DD'"
        clock = ISO_TIME.fullmatch(rest)
        if not clock:
            return ""
        layout = "YYYY-MM-DD" + rest[0] + "HH:MM" + (":SS" if clock.group(3) else "")
        layout += "." + "S" * min(len(clock.group(4)), 3) if clock.group(4) else ""
        zone = clock.group(5)
        layout += ("Z" if zone == "Z" else "+HH:MM") if zone else ""
        return f"'{layout}'"
    found = SLASHED.fullmatch(value)
    if found:
        first, separator, second = int(found.group(1)), found.group(2), int(found.group(3))
        if first > 31 or second > 31 or (first > 12 and second > 12):
            return ""
        order = ("DD", "MM") if first > 12 else ("MM", "DD") if second > 12 else ("MM", "DD")
        return f"'{order[0]}{separator}{order[1]}{separator}YYYY'"
    found = TIME_ONLY.fullmatch(value)
    if found and int(found.group(1)) < 24 and int(found.group(2)) < 60:
        return "'HH:MM:SS'" if found.group(3) else "'HH:MM'"
    return ""


def number_kind(values: list[float]) -> str:
    """What whole numbers in a date column are: years, unix seconds or milliseconds, julian days, YYYYMMDD."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if all(float(v).is_integer() for v in values):
        if 1000 <= low and high <= 2999:
            return "year"
        if 19000101 <= low and high <= 21001231 and all(1 <= int(v) // 100 % 100 <= 12 for v in values):
            return "number YYYYMMDD"
        if UNIX_SECONDS[0] <= low and high <= UNIX_SECONDS[1]:
            return "unix seconds"
        if UNIX_MILLISECONDS[0] <= low and high <= UNIX_MILLISECONDS[1]:
            return "unix milliseconds"
    if JULIAN_DAYS[0] <= low and high <= JULIAN_DAYS[1]:
        return "julian day"
    return ""


def storage(values, ctype: str | None, name: str = "") -> str:
    """How the values of a column of type ``ctype`` called ``name`` are stored, or "" when they are not dates, or
    when the type says it all (a DuckDB ``DATE`` is given as a date object, never text).

    Text is a date when every value has one layout; in a column declared as a date, text of no layout is
    ``text like`` its first value. Numbers are dates only in a column declared or named as one."""
    values = [v for v in values if v is not None and not isinstance(v, (bytes, bytearray, memoryview))]
    texts = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if texts and len(texts) >= len(numbers):
        layouts = Counter(text_layout(t) for t in texts)
        if "" not in layouts:
            return " or ".join(layout for layout, _ in layouts.most_common(2))
        if is_date_type(ctype) and any(ch.isdigit() for t in texts for ch in t):
            return "text like " + "'" + texts[0][:24].replace("'", "''") + "'"
        return ""
    if numbers and (is_date_type(ctype) or DATE_NAME.search(name)):
        return number_kind(numbers)
    return ""


def functions_line(engine: str, default: str = "") -> str:
    """The line under the schema that names the engine's date functions; ``default`` is the layout of the date
    columns that carry no note of their own.

    >>> functions_line("sqlite", "'YYYY-MM-DD'")
    "-- dates: text 'YYYY-MM-DD' unless noted; strftime('%Y', col) = '2017', date(col), julianday(a) - julianday(b)"
    """
    stored = f"text {default} unless noted; " if default else ""
    return f"-- dates: {stored}{FUNCTIONS.get(engine, FUNCTIONS['duckdb'])}"
