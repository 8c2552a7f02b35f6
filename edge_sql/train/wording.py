"""English for questions written by rule: a table's rows and a column's meaning from their names, and dates said
the ways people say them.

>>> subject("Apartment_Bookings"), subject("InvoiceLine"), subject("party"), singular("Customers_Policies")
('apartment bookings', 'invoice lines', 'parties', 'customers policy')
>>> words("date_of_birth"), words("STU_DOB"), with_article("openning year")
('date of birth', 'stu dob', 'an openning year')
>>> event("booking_start_date"), event("Date_Opened"), event("date_of_birth"), event("Date") is None
('started', 'were opened', 'were born', True)
>>> import datetime as dt
>>> [say_day(dt.date(2020, 12, 19), style) for style in range(len(DAY_STYLES))]
['December 19, 2020', '19 Dec 2020', '2020-12-19', 'Dec 19, 2020', '19 December 2020', 'the 19th of December 2020']
"""

from __future__ import annotations

import calendar
import datetime as dt
import re

MONTHS = tuple(calendar.month_name)  # "", "January", …
ABBREVIATIONS = tuple(calendar.month_abbr)  # "", "Jan", …
IRREGULAR = {"person": "people", "child": "children", "man": "men", "woman": "women", "staff": "staff",
             "information": "information", "data": "data", "media": "media", "series": "series"}
#: A word of a column's name → what happened to a row then ("How many guests were born in 1995?").
EVENTS = {
    "birth": "were born", "born": "were born", "dob": "were born", "bdate": "were born", "birthday": "were born",
    "hire": "were hired", "hired": "were hired", "hiredate": "were hired",
    "created": "were created", "creation": "were created", "create": "were created",
    "opened": "were opened", "opening": "opened", "openning": "opened", "open": "opened",
    "closed": "were closed", "closing": "closed", "close": "closed",
    "start": "started", "started": "started", "begin": "began", "beginning": "began",
    "end": "ended", "ended": "ended", "finish": "finished", "finished": "finished",
    "registration": "were registered", "registered": "were registered",
    "release": "were released", "released": "were released", "releasedate": "were released",
    "publication": "were published", "published": "were published", "publish": "were published",
    "join": "joined", "joined": "joined", "joining": "joined",
    "order": "were ordered", "ordered": "were ordered", "payment": "were paid", "paid": "were paid",
    "delivery": "were delivered", "delivered": "were delivered", "shipped": "were shipped", "shipment": "were shipped",
    "arrival": "arrived", "arrived": "arrived", "departure": "departed", "departed": "departed",
    "booking": "were booked", "booked": "were booked", "purchase": "were purchased", "purchased": "were purchased",
    "sale": "were sold", "sold": "were sold", "issue": "were issued", "issued": "were issued",
    "installation": "were installed", "installed": "were installed", "launch": "were launched",
    "launched": "were launched", "death": "died", "died": "died", "founded": "were founded",
    "founding": "were founded", "established": "were established", "built": "were built",
    "completion": "were completed", "completed": "were completed", "update": "were updated",
    "updated": "were updated", "received": "were received", "receipt": "were received", "sent": "were sent",
    "submitted": "were submitted", "submission": "were submitted", "returned": "were returned",
    "return": "were returned", "assigned": "were assigned", "approved": "were approved", "approval": "were approved",
    "recorded": "were recorded", "logged": "were logged", "made": "were made", "enrolled": "enrolled",
    "enrollment": "enrolled", "expires": "expired", "expiry": "expired", "expiration": "expired",
    "effective": "became effective", "rented": "were rented", "rental": "were rented", "visited": "were visited",
}
#: How a day is said, as :func:`say_day` writes it.
DAY_STYLES = ("{month} {day}, {year}", "{day} {abbr} {year}", "{iso}", "{abbr} {day}, {year}", "{day} {month} {year}",
              "the {ordinal} of {month} {year}")
#: How a month of a year is said.
MONTH_STYLES = ("{month} {year}", "{month} of {year}", "{abbr} {year}", "{year}-{mm}")


def words(name: str) -> str:
    """A name as lower-case words: underscores and camelCase split."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " ").replace("-", " "))
    return " ".join(spaced.lower().split())


def column_words(name: str) -> str:
    """A date column's name as a noun: its words, where ``created_at`` says ``created date``.

    >>> column_words("created_at"), column_words("InvoiceDate")
    ('created date', 'invoice date')
    """
    said = words(name)
    return said[:-3] + " date" if said.endswith(" at") else said


def plural(phrase: str) -> str:
    """The phrase with its last word in the plural (a word already plural is kept).

    >>> [plural(w) for w in ("order", "match", "city", "day", "bookings", "person", "status")]
    ['orders', 'matches', 'cities', 'days', 'bookings', 'people', 'statuses']
    """
    head, _, last = phrase.rpartition(" ")
    if last in IRREGULAR:
        last = IRREGULAR[last]
    elif last in IRREGULAR.values():
        pass
    elif last.endswith("us") or last.endswith(("ss", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("s"):
        pass
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def singular(name: str) -> str:
    """A table's name as one of its rows: its last word in the singular."""
    head, _, last = words(name).rpartition(" ")
    backwards = {v: k for k, v in IRREGULAR.items()}
    if last in backwards:
        last = backwards[last]
    elif last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith(("sses", "xes", "ches", "shes", "uses")):
        last = last[:-2]
    elif last.endswith("s") and not last.endswith(("ss", "us", "is")):
        last = last[:-1]
    return f"{head} {last}" if head else last


def subject(name: str) -> str:
    """A table's name as its rows, in the plural: ``orders``, ``apartment bookings``."""
    return plural(singular(name))


def with_article(phrase: str) -> str:
    return ("an " if phrase[:1] in tuple("aeiou") else "a ") + phrase


def event(column: str) -> str | None:
    """What happened to a row at the column's date, when its name says (``hire_date`` → ``were hired``)."""
    for word in reversed(words(column).split()):
        if word in EVENTS:
            return EVENTS[word]
    return None


def ordinal(number: int) -> str:
    """A number as an ordinal.

    >>> [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23)]
    ['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd', '23rd']
    """
    suffix = "th" if 11 <= number % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def say_day(day: dt.date, style: int) -> str:
    """``day`` said in the way :data:`DAY_STYLES` numbers ``style``."""
    return DAY_STYLES[style].format(month=MONTHS[day.month], abbr=ABBREVIATIONS[day.month], day=day.day,
                                    year=day.year, iso=day.isoformat(), ordinal=ordinal(day.day))


def say_month(year: int, month: int, style: int) -> str:
    """A month of a year said in the way :data:`MONTH_STYLES` numbers ``style``.

    >>> [say_month(2010, 3, style) for style in range(len(MONTH_STYLES))]
    ['March 2010', 'March of 2010', 'Mar 2010', '2010-03']
    """
    return MONTH_STYLES[style].format(month=MONTHS[month], abbr=ABBREVIATIONS[month], year=year, mm=f"{month:02d}")
