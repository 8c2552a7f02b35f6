"""Keep the tables and columns of a schema that a question is about: schema pruning, by lexical match.

A question's words (lower-cased, simple plurals and verb endings stripped, common English words left out) are matched
against table names, column names (split at spaces, ``_``, digits and camelCase: :mod:`edge_sql.steps.terms`) and the
sample values the schema holds (``Column.samples``; :mod:`edge_sql.steps.hints` puts the values closest to the
question there). A year (``2017``) or a word of time (``year``, ``month``, ``date``, ``latest``…) matches the date and
time columns, and a few words match the names they usually stand for (``revenue`` ~ ``price``, ``amount``;
``terms.RELATED``). A table scores the matches it holds (its foreign-key columns are about other tables and do not
count), each weighted down by how many tables the same word matches. Then:

- a table the question *names* (all the words of its name appear in it, or the name itself) is never dropped;
- the best-scoring tables are kept, up to ``max_tables`` (named tables come first and may exceed the cap);
- foreign-key neighbours of the best-matched tables fill what room is left, first the ones that link two of them
  (so a join stays possible);
- a table that links two kept tables (a foreign key between it and each) is kept too, beyond the cap: without it
  they cannot be joined;
- a view is kept only when the question names it, and is not counted in ``max_tables``: its rows are its tables',
  which stay reachable, and a view that matches words of the question would otherwise crowd out the tables it reads;
- in a kept table, primary-key and foreign-key columns are always kept, and the ``max_columns`` most relevant other
  columns (ties in table order);
- tables and columns stay in their original order.

>>> from edge_sql.steps.schema import Column, ForeignKey, Schema, Table
>>> schema = Schema("sqlite", (
...     Table("singer", (Column("singer_id", "INT", True), Column("name", "TEXT"), Column("age", "INT"))),
...     Table("stadium", (Column("stadium_id", "INT", True), Column("capacity", "INT"))),
...     Table("concert", (Column("concert_id", "INT", True), Column("stadium_id", "INT")),
...           (ForeignKey("stadium_id", "stadium", "stadium_id"),)),
... ))
>>> [t.name for t in prune_schema(schema, "How old is each singer?").tables]
['singer']
>>> [t.name for t in prune_schema(schema, "How many concerts are there?").tables]
['stadium', 'concert']
>>> [c.name for c in prune_schema(schema, "Names of singers", max_columns=1).tables[0].columns]
['singer_id', 'name']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from edge_sql.steps.dates import is_date_type
from edge_sql.steps.schema import Column, Schema, Table
from edge_sql.steps.terms import (DATE_STEMS, WORD, content_stems, is_year, question_words, related_stems, stem,
                                  value_stems)

#: Weights of one question word matching a table's name, a column's name, or a sample value; a partial match (one
#: word a prefix of the other, both at least PREFIX letters) counts PARTIAL of that.
TABLE_NAME, COLUMN_NAME, VALUE = 3.0, 2.0, 2.0
PARTIAL = 0.5
PREFIX = 4
#: A foreign-key neighbour of an anchor (a named table, or one scoring at least ANCHOR times the best score) gets
#: NEIGHBOUR times the anchor's score (a table that links two anchors gets it from both).
NEIGHBOUR = 0.25
ANCHOR = 0.5



@dataclass(frozen=True)
class Match:
    """One reason a table is relevant: a question word found in the table's name, a column's name or a value."""

    word: str  # the question's word, as written
    where: str  # "table", "column" or "value"
    name: str  # the table, the column, or ``column = 'value'``
    score: float


@dataclass(frozen=True)
class Relevance:
    """How relevant one table is to a question, and why."""

    table: str
    score: float
    named: bool  # the question names the table: it is never dropped
    matches: tuple[Match, ...] = ()
    neighbour_of: tuple[str, ...] = ()  # best-matched tables it shares a foreign key with

    def explain(self) -> str:
        """One line: ``singer 4.50 (named): 'singers' ~ table singer; 'age' ~ column age``."""
        reasons = [f"{m.word!r} ~ {m.where} {m.name}" for m in self.matches]
        if self.neighbour_of:
            reasons.append("foreign key to " + ", ".join(self.neighbour_of))
        head = f"{self.table} {self.score:.2f}" + (" (named)" if self.named else "")
        return head + (": " + "; ".join(reasons) if reasons else "")


def word_match(term: str, candidates: frozenset[str]) -> float:
    """1 when the stemmed ``term`` is among the stemmed ``candidates``, PARTIAL when one is a prefix of the other."""
    if term in candidates:
        return 1.0
    if len(term) >= PREFIX and any(len(c) >= PREFIX and (c.startswith(term) or term.startswith(c)) for c in candidates):
        return PARTIAL
    return 0.0


def named_tables(schema: Schema, question: str) -> set[str]:
    """The tables the question names: the table's name itself, or every word of it, appears in the question.

    >>> from edge_sql.steps.schema import Column, Schema, Table
    >>> schema = Schema("sqlite", tuple(Table(n, (Column("id", "INT"),)) for n in ("singer_in_concert", "order_items", "city")))
    >>> sorted(named_tables(schema, "Which singers sang in each concert?"))
    ['singer_in_concert']
    >>> sorted(named_tables(schema, "Rows of ORDER_ITEMS by capital city"))
    ['city', 'order_items']
    >>> sorted(named_tables(Schema("sqlite", (Table("Order Details", ()),)), "The order detail of order 10248"))
    ['Order Details']
    """
    lowered = question.lower()
    # every word, common ones too: a name made only of them (Order Details) is named by them
    stems = {stem(w) for w in WORD.findall(question.replace("'s ", " "))}
    named = set()
    for table in schema.tables:
        words = content_stems(table.name)
        literal = re.search(r"(?<![\w])" + re.escape(table.name.lower()) + r"(?![\w])", lowered)
        if literal or (words and words <= stems):
            named.add(table.name)
    return named


def column_matches(column: Column, terms: dict[str, str], table: str = "") -> list[tuple[str, str, str, float]]:
    """(word, where, name, strength) for each question term found in the column's name or its sample values; the
    words of its table's name do not count (``concert_name`` in ``concert`` is about a name). A year or a word of
    time matches a date column; a word of ``terms.RELATED`` matches the names it stands for, as a partial match.

    >>> terms = {stem(w): w for w in question_words("Revenue of orders in 2017")}
    >>> [m[:3] for m in column_matches(Column("OrderDate", "DATE"), terms, "Orders")]
    [('2017', 'column', 'OrderDate')]
    >>> [m[:3] for m in column_matches(Column("Unit Price", "REAL"), terms, "Order Details")]
    [('Revenue', 'column', 'Unit Price')]
    """
    found = []
    names = content_stems(column.name) - content_stems(table)
    dated = bool(column.stored) or is_date_type(column.type)
    for term, word in terms.items():
        strength = word_match(term, names) or (PARTIAL if related_stems(term) & names else 0.0)
        if not strength and dated and (is_year(term) or term in DATE_STEMS):
            strength = 1.0
        if strength:
            found.append((word, "column", column.name, COLUMN_NAME * strength))
            continue
        for value in column.samples:
            if word_match(term, value_stems(value)) == 1.0:
                found.append((word, "value", f"{column.name} = '{value}'", VALUE))
                break
    return found


def relevance(schema: Schema, question: str) -> list[Relevance]:
    """Every table's relevance to ``question``, best first (ties in schema order): a score and its reasons.

    >>> from edge_sql.steps.schema import Column, ForeignKey, Schema, Table
    >>> schema = Schema("sqlite", (
    ...     Table("customers", (Column("customer_id", "INT", True), Column("country", "TEXT", samples=("France",)))),
    ...     Table("orders", (Column("order_id", "INT", True), Column("customer_id", "INT")),
    ...           (ForeignKey("customer_id", "customers", "customer_id"),)),
    ...     Table("products", (Column("product_id", "INT", True),)),
    ... ))
    >>> for r in relevance(schema, "How many orders come from France?"):
    ...     print(r.explain())
    orders 3.50 (named): 'orders' ~ table orders; foreign key to customers
    customers 2.75: 'France' ~ value country = 'France'; foreign key to orders
    products 0.00
    """
    terms: dict[str, str] = {}
    for word in question_words(question):
        terms.setdefault(stem(word), word)
    named = named_tables(schema, question)
    raw: dict[str, list[tuple[str, str, str, float]]] = {}
    for table in schema.tables:
        found = []
        table_stems = content_stems(table.name)
        for term, word in terms.items():
            strength = word_match(term, table_stems) or (PARTIAL if related_stems(term) & table_stems else 0.0)
            if strength:
                found.append((word, "table", table.name, TABLE_NAME * strength))
        references = {k.column for k in table.foreign_keys}  # "singer_id" here is about the singer table
        for column in table.columns:
            if column.name not in references:
                found.extend(column_matches(column, terms, table.name))
        raw[table.name] = found
    # A word that matches in many tables tells them apart less: its weight is shared among them (views, which
    # repeat their tables' names, do not count).
    views = {t.name for t in schema.tables if t.view}
    spread: dict[str, int] = {}
    for name, found in raw.items():
        for word in {m[0] for m in found}:
            spread[word] = spread.get(word, 0) + (name not in views)
    own: dict[str, tuple[float, tuple[Match, ...]]] = {}
    for table in schema.tables:
        best: dict[str, Match] = {}
        for word, where, name, score in raw[table.name]:
            match = Match(word, where, name, score / max(spread[word], 1))
            if word not in best or match.score > best[word].score:
                best[word] = match
        matches = tuple(sorted(best.values(), key=lambda m: -m.score))
        own[table.name] = (sum(m.score for m in matches), matches)
    neighbours = foreign_key_neighbours(schema)
    top = max((score for name, (score, _) in own.items() if name not in views), default=0.0)
    anchors = {name for name, (score, _) in own.items()
               if name not in views and (name in named or (score > 0 and score >= ANCHOR * top))}
    ranking = []
    for position, table in enumerate(schema.tables):
        score, matches = own[table.name]
        linked = tuple(n for n in neighbours[table.name] if n in anchors)
        bonus = NEIGHBOUR * sum(own[n][0] for n in linked)
        ranking.append((position, Relevance(table.name, round(score + bonus, 4), table.name in named, matches, linked)))
    ranking.sort(key=lambda item: (not item[1].named, -item[1].score, item[0]))
    return [r for _, r in ranking]


def bridges(schema: Schema, kept: set[str]) -> set[str]:
    """The tables outside ``kept`` that link two of its tables, a foreign key between it and each, either way
    (``order_items`` between ``orders`` and ``products``; ``country`` between ``city`` and ``countrylanguage``).

    >>> from edge_sql.steps.schema import Column, ForeignKey, Schema, Table
    >>> key = lambda table: ForeignKey(f"{table}_id", table, "id")
    >>> schema = Schema("sqlite", (Table("shop", ()), Table("employee", ()),
    ...     Table("hiring", (), (key("shop"), key("employee"))), Table("evaluation", (), (key("employee"),))))
    >>> sorted(bridges(schema, {"shop", "employee"})), sorted(bridges(schema, {"shop", "evaluation"}))
    (['hiring'], [])
    >>> sorted(bridges(schema, {"hiring", "evaluation"}))
    ['employee']
    """
    lowered = {name.lower(): name for name in kept}
    found = set()
    for table in schema.tables:
        if table.name in kept or table.view:
            continue
        out = {lowered[k.table.lower()] for k in table.foreign_keys if k.table.lower() in lowered}
        into = {t.name for t in schema.tables if t.name in kept
                for k in t.foreign_keys if k.table.lower() == table.name.lower()}
        if len(out | into) >= 2:
            found.add(table.name)
    return found


def foreign_key_neighbours(schema: Schema) -> dict[str, list[str]]:
    """Each table's neighbours by a foreign key, either way, in schema order."""
    names = {t.name.lower(): t.name for t in schema.tables}
    linked: dict[str, set[str]] = {t.name: set() for t in schema.tables}
    for table in schema.tables:
        for key in table.foreign_keys:
            target = names.get(key.table.lower())
            if target and target != table.name:
                linked[table.name].add(target)
                linked[target].add(table.name)
    return {t.name: [n.name for n in schema.tables if n.name in linked[t.name]] for t in schema.tables}


def prune_schema(schema: Schema, question: str, *, max_tables: int | None = None,
                 max_columns: int | None = None) -> Schema:
    """The part of ``schema`` relevant to ``question``: see the module's description. ``None`` = no cap.

    When nothing in the schema matches the question, every table is relevant (up to ``max_tables``, in order).
    """
    ranking = relevance(schema, question)
    views = {t.name for t in schema.tables if t.view}
    matched = [r for r in ranking if r.named or (r.score > 0 and r.table not in views)]
    if not any(r.named or (r.matches and r.table not in views) for r in ranking):
        matched = [r for r in ranking if r.table not in views]  # nothing to go by: what the caps allow, in order
    kept = [r.table for r in matched if r.named]
    for r in matched:
        if r.table not in kept and r.table not in views and (max_tables is None or len(kept) < max_tables):
            kept.append(r.table)
    keep = set(kept) | bridges(schema, set(kept))
    tables = []
    for table in schema.tables:
        if table.name in keep:
            tables.append(prune_columns(table, schema, keep, question, max_columns))
    return replace(schema, tables=tuple(tables))


def prune_columns(table: Table, schema: Schema, kept: set[str], question: str, max_columns: int | None) -> Table:
    """The table with its key columns and its ``max_columns`` most relevant other columns, in the original order;
    only the foreign keys to kept tables remain."""
    lowered = {name.lower() for name in kept}
    foreign = tuple(k for k in table.foreign_keys if k.table.lower() in lowered)
    keys = {c.name for c in table.columns if c.primary_key} | {k.column for k in foreign}
    for other in schema.tables:  # columns other kept tables point at
        if other.name in kept:
            keys |= {k.target for k in other.foreign_keys if k.table.lower() == table.name.lower()}
    if max_columns is None:
        return replace(table, foreign_keys=foreign)
    terms = {}
    for word in question_words(question):
        terms.setdefault(stem(word), word)
    others = [(i, c) for i, c in enumerate(table.columns) if c.name not in keys]
    scored = sorted(others, key=lambda item: (-sum(m[3] for m in column_matches(item[1], terms, table.name)), item[0]))
    chosen = keys | {c.name for _, c in scored[:max_columns]}
    return replace(table, columns=tuple(c for c in table.columns if c.name in chosen), foreign_keys=foreign)


def describe_pruning(full: Schema, pruned: Schema) -> str:
    """One line saying what pruning left out.

    >>> from edge_sql.steps.schema import Column, Schema, Table
    >>> full = Schema("sqlite", (Table("a", (Column("x", "INT"), Column("y", "INT"))), Table("b", (Column("z", "INT"),))))
    >>> describe_pruning(full, Schema("sqlite", (Table("a", (Column("x", "INT"),)),)))
    'pruned to 1 of 2 tables and 1 of 3 columns; left out: b, a.y'
    >>> describe_pruning(full, full)
    'not pruned: 2 tables, 3 columns'
    """
    total = sum(len(t.columns) for t in full.tables)
    left = sum(len(t.columns) for t in pruned.tables)
    if len(pruned.tables) == len(full.tables) and left == total:
        return f"not pruned: {len(full.tables)} tables, {total} columns"
    dropped = [t.name for t in full.tables if pruned.table(t.name) is None]
    for table in full.tables:
        kept = pruned.table(table.name)
        if kept is not None:
            names = {c.name for c in kept.columns}
            dropped.extend(f"{table.name}.{c.name}" for c in table.columns if c.name not in names)
    return (f"pruned to {len(pruned.tables)} of {len(full.tables)} tables and {left} of {total} columns; "
            f"left out: {', '.join(dropped)}")
