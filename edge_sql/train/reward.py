"""What a sampled candidate earns in GRPO: scored from execution, as ``edgesql eval`` scores, with partial credit.

A small model learns little from a reward that is 0 for nearly every wrong candidate (FINER-SQL), so a candidate
that is not right earns partial credit for how near it came, and never as much as a right one:

- **right** (its result matches the gold result by Spider's rules, :mod:`edge_sql.eval.metric`): 1;
- **ran but wrong**: ``ran`` plus, each weighted, the overlap of its tables and columns with the gold query's
  (``names``), of its SQL operations — clauses, joins, aggregates, comparisons, set operations, sort direction —
  with the gold query's (``operations``, FINER-SQL's "atomic" reward), and of its rows with the gold rows
  (``rows``, an F1 over the rows as multisets);
- **did not run** (no SQL, a parse error, an unknown name, an execution error, a timeout): the name overlap only,
  weighted by ``names`` (it still knew which tables the question is about);
- **refused by the guard** (it would write, attach or read outside the database): ``refused``, the lowest of all. It
  never ran: the guard is in :func:`edge_sql.steps.validate.validate`, before execution.

>>> w = Weights()
>>> round(w.ran + w.names + w.operations + w.rows, 2) < w.right
True
>>> operations("SELECT count(*) FROM t WHERE a > 3 ORDER BY b DESC LIMIT 1") >= {"Count", "Where", "GT", "desc", "Limit"}
True
>>> sorted(names("SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id"))
['column:id', 'column:name', 'column:singer_id', 'table:concert', 'table:singer']
>>> round(row_overlap([(1,), (2,), (3,)], [(1,), (2,)]), 3)
0.8
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from edge_sql.steps.validate import REFUSED

#: The SQL operations whose overlap earns credit (sqlglot expression names).
OPERATIONS = frozenset({
    "Where", "Group", "Having", "Order", "Limit", "Join", "Distinct", "Subquery", "Union", "Intersect", "Except",
    "Count", "Sum", "Avg", "Max", "Min", "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "Like", "In", "Between", "Not", "And",
    "Or", "Is", "Null", "Add", "Sub", "Mul", "Div", "Star",
})


@dataclass(frozen=True)
class Weights:
    """What each part of a candidate's reward is worth (see the module's docstring)."""

    right: float = 1.0
    ran: float = 0.1
    names: float = 0.1
    operations: float = 0.1
    rows: float = 0.2
    refused: float = -1.0


@dataclass(frozen=True)
class Reward:
    value: float
    right: bool
    ran: bool
    parts: dict


def reward_of(entry, gold_sql: str, gold_rows: list, right: bool, weights: Weights = Weights()) -> Reward:
    """The reward of one judged candidate (a :class:`edge_sql.steps.vote.Entry`) whose rightness was scored against
    the gold query ``gold_sql``, whose result on the question's database is ``gold_rows``."""
    verdict = entry.verdict
    if verdict.kind == REFUSED:
        return Reward(weights.refused, False, False, {"refused": 1.0})
    if right:
        return Reward(weights.right, True, True, {"right": 1.0})
    sql = verdict.sql or entry.candidate.sql
    parts = {"names": jaccard(names(sql), names(gold_sql))}
    ran = entry.result is not None
    if not ran:
        return Reward(weights.names * parts["names"], False, False, parts)
    parts["operations"] = jaccard(operations(sql), operations(gold_sql))
    parts["rows"] = row_overlap(gold_rows, list(entry.result.rows))
    value = (weights.ran + weights.names * parts["names"] + weights.operations * parts["operations"]
             + weights.rows * parts["rows"])
    return Reward(value, False, True, parts)


def parse(sql: str):
    import sqlglot
    from sqlglot.errors import SqlglotError

    try:
        return sqlglot.parse_one(sql, read="sqlite") if sql and sql.strip() else None
    except (SqlglotError, ValueError, RecursionError):
        return None


def names(sql: str) -> set[str]:
    """The tables and columns a query names, lower-cased (aliases resolved away: ``T1.name`` is ``name``)."""
    from sqlglot import exp

    tree = parse(sql)
    if tree is None:
        return set()
    return ({f"table:{t.name.lower()}" for t in tree.find_all(exp.Table)}
            | {f"column:{c.name.lower()}" for c in tree.find_all(exp.Column) if c.name})


def operations(sql: str) -> set[str]:
    """The SQL operations a query uses (see :data:`OPERATIONS`), and ``desc`` for a descending sort."""
    from sqlglot import exp

    tree = parse(sql)
    if tree is None:
        return set()
    found = {type(node).__name__ for node in tree.walk()} & OPERATIONS
    if any(o.args.get("desc") for o in tree.find_all(exp.Ordered)):
        found.add("desc")
    if any(isinstance(node, exp.Distinct) or node.args.get("distinct") for node in tree.walk()):
        found.add("Distinct")
    return found


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def row_overlap(gold: list, predicted: list) -> float:
    """F1 of the predicted rows against the gold rows, each a multiset of rows; 1 when both are empty."""
    if not gold and not predicted:
        return 1.0
    if not gold or not predicted:
        return 0.0
    common = sum((Counter(map(normal, gold)) & Counter(map(normal, predicted))).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def normal(row) -> tuple:
    """A row whose numbers compare as Spider compares them (``1 == 1.0``), hashable."""
    return tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in row)
