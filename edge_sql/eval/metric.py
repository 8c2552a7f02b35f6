"""Execution accuracy (EX): is a predicted query right? Scored exactly as Spider's official evaluator scores it.

The rules are those of ``taoyds/test-suite-sql-eval`` (``evaluation.py --etype exec``, the leaderboard's settings: no
``--plug_value``, no ``--keep_distinct``):

1. Rewrites before running: in the prediction, every ``value`` becomes ``1``; in both queries ``> =``, ``< =`` and
   ``! =`` are joined, every DISTINCT keyword is deleted (even in ``COUNT(DISTINCT x)``) and ``YEAR(CURDATE())``
   becomes 2020.
2. Both run on every database file of the question (Spider: each file with ``.sqlite`` in its name in the db's folder);
   a prediction that fails is wrong. A gold query that fails makes the question skipped (the official script stops).
3. Two empty results are equal. Otherwise the row counts and column counts must be equal, and some order of the
   predicted columns must make the results equal: column names and order do not matter.
4. Rows must be in the same order only when the rewritten gold query contains ``order by`` anywhere; otherwise the
   results are compared as multisets (duplicates count).
5. Values are compared with Python's ``==``: ``1 == 1.0``, ``'1' != 1``, NULL equals NULL, no rounding. A quick
   pre-check compares rows with their values sorted by ``str(v) + str(type(v))``, so an int and a float that are
   equal can still make a row of several columns differ.

:func:`results_match` is the comparison as a pure function:

>>> results_match([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], ordered=False)
True
>>> results_match([(1,), (1,), (2,)], [(1,), (2,), (2,)], ordered=False)
False
>>> results_match([(1,), (2,)], [(2,), (1,)], ordered=True)
False
>>> rewrite("SELECT count(DISTINCT name) FROM singer WHERE age > = 20")
'SELECT count( name) FROM singer WHERE age >= 20'
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from pathlib import Path

from edge_sql.errors import QueryFailed

#: What a prediction line says when the pipeline chose no query: it fails on every database, so it scores 0 here
#: and in the official evaluator alike (a blank line would end a "session" there and shift every line after it).
NO_ANSWER = "SELECT * FROM edgesql_no_valid_candidate"

#: Seconds a gold or predicted query may run while it is scored (the official script's nominal limit).
SCORE_TIMEOUT = 60.0

PROGRESS_STEPS = 1000
CURRENT_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)
#: What Spider's ``remove_distinct`` keeps whole (sqlparse tokens: strings, quoted names, comments), or a DISTINCT
#: keyword, or the end of the first statement (sqlparse keeps the first statement only).
TOKENS = re.compile(
    r"""(?P<keep>'(?:''|\\'|[^'])*'|"(?:""|\\"|[^"])*"|`[^`]*`|\[[^\]]*\]|(?:--|# )[^\n]*|/\*.*?(?:\*/|$))"""
    r"""|(?P<distinct>\bdistinct\b)|(?P<end>;)""",
    re.IGNORECASE | re.DOTALL,
)
#: What sqlparse keeps of the text after the first statement's ``;``: whitespace and line comments.
TRAILER = re.compile(r"(?:\s+|(?:--|# )[^\r\n]*(?:\r\n|\r|\n|$))*")


def prediction_line(sql: str | None) -> str:
    """A query as one line of a Spider predictions file: line breaks and TABs folded to spaces, never blank.

    >>> prediction_line("SELECT name\\nFROM singer\\tWHERE age > 20 ")
    'SELECT name FROM singer WHERE age > 20'
    >>> prediction_line(None)
    'SELECT * FROM edgesql_no_valid_candidate'
    """
    line = (sql or "").replace("\r\n", " ").replace("\r", " ").replace("\n", " ").replace("\t", " ").strip()
    return line or NO_ANSWER


def rewrite(sql: str, *, predicted: bool = False) -> str:
    """The query the official evaluator runs for ``sql`` (see rule 1)."""
    if predicted:
        sql = sql.replace("value", "1")
    sql = sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")
    return remove_distinct(sql)


def remove_distinct(sql: str) -> str:
    """Every DISTINCT keyword deleted; strings, quoted names and comments kept; text after the first ``;`` dropped.

    >>> remove_distinct("SELECT DISTINCT name FROM t WHERE note = 'distinct';SELECT 2")
    "SELECT  name FROM t WHERE note = 'distinct';"
    """
    out, position = [], 0
    for match in TOKENS.finditer(sql):
        if match.group("keep"):
            continue
        out.append(sql[position:match.start()])
        position = match.end()
        if match.group("end"):
            out.append(";" + TRAILER.match(sql, position).group())
            return "".join(out)
    out.append(sql[position:])
    return "".join(out)


def order_matters(gold_rewritten: str) -> bool:
    """Rule 4: the row order counts when the (rewritten) gold query says ``order by`` anywhere, even in a subquery."""
    return "order by" in gold_rewritten.lower()


def fetch(path: Path, sql: str, timeout: float = SCORE_TIMEOUT, limit: int | None = None) -> list[tuple]:
    """Every row of ``sql`` on the SQLite file ``path``, read as the official evaluator reads it (text decoded as
    UTF-8 with bad bytes dropped, ``YEAR(CURDATE())`` as 2020), on a read-only connection; :class:`QueryFailed` if
    the query fails or runs past ``timeout`` seconds. With ``limit``, at most ``limit + 1`` rows: a prediction
    with more rows than the gold result cannot match it, and a cross join of three tables would fill the memory."""
    sql = CURRENT_YEAR.sub("2020", sql)
    try:
        connection = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error as error:
        raise QueryFailed(f"cannot open {path}: {error}") from None
    connection.text_factory = lambda data: data.decode(errors="ignore")
    deadline = time.monotonic() + timeout
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), PROGRESS_STEPS)
    try:
        connection.execute("PRAGMA query_only = 1")
        cursor = connection.execute(sql)
        if limit is None:
            return cursor.fetchall()
        rows = []
        while len(rows) <= limit and (chunk := cursor.fetchmany(min(10_000, limit + 1 - len(rows)) or 1)):
            rows.extend(chunk)
        return rows
    except Exception as error:  # the official evaluator counts any exception (sqlite3.Warning is not an Error)
        if time.monotonic() > deadline:
            raise QueryFailed(f"ran past the {timeout:g} s time limit") from None
        raise QueryFailed(" ".join(str(error).split()) or type(error).__name__) from None
    finally:
        connection.close()


def results_match(gold, predicted, *, ordered: bool) -> bool:
    """Whether a predicted result equals the gold result under rules 3-5 (the official ``result_eq``)."""
    gold, predicted = [tuple(row) for row in gold], [tuple(row) for row in predicted]
    if not gold and not predicted:
        return True
    if len(gold) != len(predicted):
        return False
    width = len(gold[0])
    if len(predicted[0]) != width:
        return False
    if not same_rows_ignoring_columns(gold, predicted, ordered):
        return False
    gold_columns = [{row[i] for row in gold} for i in range(width)]
    for order in column_orders(gold_columns, predicted):
        permuted = [tuple(row[i] for i in order) for row in predicted]
        if ordered and permuted == gold:
            return True
        if not ordered and Counter(permuted) == Counter(gold):
            return True
    return False


def same_rows_ignoring_columns(gold: list[tuple], predicted: list[tuple], ordered: bool) -> bool:
    """The official quick rejection: rows with their values sorted by ``str(v) + str(type(v))`` must be equal (as a
    list when the order matters, else as a set)."""
    def unorder(row: tuple) -> tuple:
        return tuple(sorted(row, key=lambda value: str(value) + str(type(value))))

    gold_rows, predicted_rows = [unorder(r) for r in gold], [unorder(r) for r in predicted]
    return gold_rows == predicted_rows if ordered else set(gold_rows) == set(predicted_rows)


def column_orders(gold_columns: list[set], predicted: list[tuple]):
    """Every order of the predicted columns that could make the results equal: predicted column j can stand at gold
    column i only if the values of j in some rows are all among the values of gold column i (the official script
    samples 20 random rows for this; any rows give the same answer, since the check only drops impossible orders)."""
    width = len(gold_columns)
    sample = predicted[:: max(1, len(predicted) // 50)]
    allowed = [[j for j in range(width) if all(row[j] in gold_columns[i] for row in sample)] for i in range(width)]

    def extend(prefix: tuple[int, ...]):
        if len(prefix) == width:
            yield prefix
            return
        for j in allowed[len(prefix)]:
            if j not in prefix:
                yield from extend(prefix + (j,))

    yield from extend(())


def set_match(gold, predicted) -> bool:
    """BIRD's official comparison: the results as sets of rows (order, duplicates ignored; column order counts).

    >>> set_match([(1, "a"), (1, "a")], [(1, "a")]), set_match([(1, "a")], [("a", 1)])
    (True, False)
    """
    return set(map(tuple, gold)) == set(map(tuple, predicted))
