"""Value hints: the stored values of text columns that the question's words point at, shown to the model first.

A model writes ``WHERE department = 'sales'`` when the data says ``'Sales'``; shown the stored value, it copies it.
For every text column, the distinct values of its first :data:`SCAN_ROWS` rows are read (at most
:data:`DISTINCT_VALUES` of them) through the guarded executor (:func:`edge_sql.steps.execute.execute`: the locked-down
read-only connection and its time limit), all columns within :data:`TIME_BUDGET` seconds in total. A value matches
the question, best first, when it

1. equals a quoted string of the question (``'…'`` or ``"…"``), case-insensitively;
2. equals a phrase of one to three of the question's words, case-insensitively (``'Sales'`` for "sales department");
3. equals one after simple stemming (``'Dog'`` for "dogs");
4. holds a phrase as whole words, or a phrase starts with the whole value (``'New York City'`` for "new york"), or
   a word is a one-word value with at most three more letters (``'Asia'`` for "Asian").

The matching values are shown on one line after the question (:func:`render_hints`), never inside the schema: the
schema part of the prompt is then the same for every question on a database, and its computed state serves them all. A column's values are read once and kept for the next question on the same, unchanged file.

>>> rank_values(["Sales", "Marketing", "Sales Support", "R&D"], question_phrases("Who works in the sales department?"))
['Sales', 'Sales Support']
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from edge_sql.steps.database import Database
from edge_sql.errors import QueryFailed, QueryTimeout
from edge_sql.steps.execute import execute
from edge_sql.steps.terms import STOPWORDS, stem
from edge_sql.steps.schema import SAMPLES_PER_COLUMN, Schema, is_text_type, quote_identifier, quote_name, quote_value

#: Rows read from each table column, distinct values kept from them, and the seconds all columns may take together.
SCAN_ROWS = 20_000
DISTINCT_VALUES = 5_000
TIME_BUDGET = 2.0
#: Values longer than this are never hints (a model cannot copy them reliably, and they cost prompt room).
LONGEST_HINT = 80
#: Phrases of up to this many words are compared with values.
LONGEST_PHRASE = 3
#: Files whose values are kept in memory: the values of a file are read once for all its questions.
CACHED_FILES = 4

QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"|‘([^’]+)’|“([^”]+)”")
WORDS = re.compile(r"[\w]+(?:[.'&-][\w]+)*")


@dataclass(frozen=True)
class Phrases:
    """What in a question may be a stored value: its quoted strings, and its phrases of 1 to 3 words."""

    quoted: tuple[str, ...]
    phrases: tuple[str, ...]  # lower-cased, longest first


def question_phrases(question: str) -> Phrases:
    """The quoted strings and the word n-grams of ``question`` that are not only common words.

    >>> question_phrases('Employees of the "R&D" team in New York')
    Phrases(quoted=('r&d',), phrases=('team in new', 'r&d team', 'new york', 'employees', 'r&d', 'team', 'new', 'york'))
    """
    quoted = tuple(next(g for g in m.groups() if g).strip().lower() for m in QUOTED.finditer(question))
    words = [w.lower() for w in WORDS.findall(question)]
    phrases = []
    for size in range(LONGEST_PHRASE, 0, -1):
        for start in range(len(words) - size + 1):
            gram = words[start:start + size]
            if gram[0] in STOPWORDS or gram[-1] in STOPWORDS or (size == 1 and len(gram[0]) < 2):
                continue  # "Bank of America" is a phrase, "of the" and "in new york" are not
            phrases.append(" ".join(gram))
    return Phrases(tuple(q for q in quoted if q), tuple(dict.fromkeys(phrases)))


def match_strength(value: str, phrases: Phrases) -> float:
    """How well one stored value matches the question: 0 for not at all, up to 4 for a quoted string.

    >>> p = question_phrases("How many dogs live in new york?")
    >>> [match_strength(v, p) for v in ("Dog", "New York", "New York City", "York", "Yorkshire", "Cat")]
    [2.0, 3.0, 1.0, 3.0, 0.0, 0.0]
    >>> match_strength("Asia", question_phrases("Asian countries"))
    1.0
    """
    lowered = " ".join(value.lower().split())
    if not lowered or len(lowered) > LONGEST_HINT:
        return 0.0
    if lowered in phrases.quoted:
        return 4.0
    if lowered in phrases.phrases and lowered not in STOPWORDS:
        return 3.0
    value_words = WORDS.findall(lowered)
    if not value_words or all(w in STOPWORDS for w in value_words):
        return 0.0
    stemmed = " ".join(stem(w) for w in value_words)
    if any(" ".join(stem(w) for w in p.split()) == stemmed for p in phrases.phrases):
        return 2.0
    padded = f" {' '.join(value_words)} "
    for phrase in phrases.quoted + phrases.phrases:
        if phrase in STOPWORDS or len(phrase) < 3:
            continue
        if f" {phrase} " in padded or (phrase + " ").startswith(" ".join(value_words) + " "):
            return 1.0
        if len(value_words) == 1 and len(lowered) >= 4 and phrase.startswith(lowered) and len(phrase) - len(lowered) <= 3:
            return 1.0  # 'Asia' for "Asian", 'Europe' for "European"
    return 0.0


def rank_values(values, phrases: Phrases, limit: int = SAMPLES_PER_COLUMN) -> list[str]:
    """The values that match the question, best first (then shorter first), at most ``limit``."""
    scored = []
    for value in dict.fromkeys(values):
        strength = match_strength(value, phrases)
        if strength:
            scored.append((-strength, len(value), value))
    return [value for *_, value in sorted(scored)[:limit]]


@dataclass(frozen=True)
class Hint:
    """The stored values of one column that the question's words point at, best first."""

    table: str
    column: str
    values: tuple[str, ...]


def value_hints(schema: Schema, db: Database, question: str, per_column: int = 3) -> tuple[Hint, ...]:
    """For each text column of ``schema``, the stored values closest to the question (columns without any left out).

    The values are read through ``db``'s guarded executor; a column that cannot be read (a failing view, an odd type,
    undecodable text) or that the time budget does not reach gets no hints.
    """
    phrases = question_phrases(question)
    if not (phrases.quoted or phrases.phrases) or per_column < 1:
        return ()
    values = stored_values(db)
    deadline = time.monotonic() + TIME_BUDGET
    found = []
    for table in schema.tables:
        for column in table.columns:
            stored = values.get(db, table.name, column.name, column.type, deadline)
            hints = rank_values(stored.candidates(phrases), phrases, per_column)
            if hints:
                found.append(Hint(table.name, column.name, tuple(hints)))
    return tuple(found)


def render_hints(hints, schema: Schema | None = None) -> str:
    """One line after the question that names the stored values it points at (only columns of ``schema`` when given):
    the schema part of the prompt stays the same for every question on a database, so its state is computed once.

    >>> render_hints([Hint("customers", "country", ("Germany",)), Hint("orders", "status", ("cancelled", "open"))])
    "Values in the database: customers.country 'Germany'; orders.status 'cancelled', 'open'"
    >>> print(render_hints([Hint("Order Details", "Ship Country", ("France",))]))
    Values in the database: "Order Details"."Ship Country" 'France'
    """
    shown = None if schema is None else {(t.name, c.name) for t in schema.tables for c in t.columns}
    parts = [f"{quote_name(h.table)}.{quote_name(h.column)} " + ", ".join(quote_value(v) for v in h.values)
             for h in hints if shown is None or (h.table, h.column) in shown]
    return "Values in the database: " + "; ".join(parts) if parts else ""


def add_value_hints(schema: Schema, db: Database, question: str, per_column: int = 3) -> Schema:
    """``schema`` with, for each text column, the stored values closest to the question first among its samples
    (what pruning ranks tables by; the prompt shows the hints after the question, :func:`render_hints`)."""
    hints = {(h.table, h.column): list(h.values) for h in value_hints(schema, db, question, per_column)}
    if not hints:
        return schema
    tables = []
    for table in schema.tables:
        columns = []
        for column in table.columns:
            found = hints.get((table.name, column.name))
            if found:
                rest = [s for s in column.samples if s not in found]
                column = replace(column, samples=tuple(found + rest)[: max(len(column.samples), len(found))])
            columns.append(column)
        tables.append(replace(table, columns=tuple(columns)))
    return replace(schema, tables=tuple(tables))


class ColumnValues:
    """One column's distinct values, indexed by their words (and the words' stems) so that a question looks at only
    the values that share a word with it."""

    def __init__(self, values: tuple[str, ...]):
        self.values = values
        self.by_word: dict[str, list[int]] = {}
        for position, value in enumerate(values):
            for word in set(WORDS.findall(value.lower())):
                for key in {word, stem(word)}:
                    self.by_word.setdefault(key, []).append(position)

    def candidates(self, phrases: Phrases) -> list[str]:
        """The values that share a word, a stem or (for 'Asia' and "Asian") a prefix with the question."""
        words = {w for text in phrases.quoted + phrases.phrases for w in text.split()}
        keys = {k for w in words for k in (w, stem(w), *(w[:-cut] for cut in (1, 2, 3) if len(w) - cut >= 4))}
        hits = sorted({p for key in keys for p in self.by_word.get(key, ())})
        return [self.values[p] for p in hits]


class StoredValues:
    """The distinct values of one database file's text columns, each column read on first use."""

    def __init__(self):
        self.read: dict[tuple[str, str], ColumnValues] = {}

    def get(self, db: Database, table: str, column: str, ctype: str, deadline: float) -> ColumnValues:
        key = (table, column)
        if key in self.read:
            return self.read[key]
        left = deadline - time.monotonic()
        if left <= 0:  # out of time for this question: not read, and not remembered as empty
            return ColumnValues(())
        self.read[key] = ColumnValues(read_values(db, table, column, ctype, left))
        return self.read[key]


def read_values(db: Database, table: str, column: str, ctype: str, timeout: float) -> tuple[str, ...]:
    """The column's distinct values (see :func:`distinct_values_sql`); none when it cannot be read in time."""
    if not is_hintable(ctype):
        return ()
    try:
        result = execute(db, distinct_values_sql(table, column, db.engine), max_rows=DISTINCT_VALUES,
                         timeout=max(timeout, 0.01))
    except (QueryFailed, QueryTimeout):
        return ()
    return tuple(v for v in (as_text(row[0]) for row in result.rows) if v)


def is_hintable(ctype: str | None) -> bool:
    return is_text_type(ctype) or (ctype or "").upper().startswith("ENUM")


def distinct_values_sql(table: str, column: str, engine: str) -> str:
    """The distinct values of the column's first :data:`SCAN_ROWS` rows; SQLite's as bytes, decoded here, so that one
    value that is not UTF-8 does not fail the whole column."""
    parts = table.split(".", 1) if engine == "duckdb" else [table]
    source = ".".join(quote_identifier(part) for part in parts)
    col = quote_identifier(column)
    cast = f"CAST({col} AS BLOB)" if engine == "sqlite" else f"CAST({col} AS VARCHAR)"
    return (f"SELECT DISTINCT {cast} FROM (SELECT {col} FROM {source} LIMIT {SCAN_ROWS}) AS scan "
            f"WHERE {col} IS NOT NULL LIMIT {DISTINCT_VALUES}")


def as_text(value) -> str | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None if value is None else str(value)


_STORES: dict[tuple, StoredValues] = {}


def file_key(db: Database) -> tuple | None:
    """What names ``db``'s file as it is now (its path, modification time and size); None when it cannot be read."""
    try:
        stat = Path(db.path).stat()
    except OSError:
        return None
    return str(Path(db.path).resolve()), stat.st_mtime_ns, stat.st_size


def stored_values(db: Database) -> StoredValues:
    """The values read from ``db``'s file so far, shared by every question asked of the same unchanged file."""
    key = file_key(db)
    if key is None:
        return StoredValues()
    if key not in _STORES:
        while len(_STORES) >= CACHED_FILES:
            _STORES.pop(next(iter(_STORES)))
        _STORES[key] = StoredValues()
    return _STORES[key]
