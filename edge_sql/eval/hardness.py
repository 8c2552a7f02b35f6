"""Spider's hardness levels (easy, medium, hard, extra) of a gold query, counted the way Spider's evaluation counts.

Spider's ``Evaluator.eval_hardness`` (taoyds/spider and taoyds/test-suite-sql-eval, ``evaluation.py``) counts three
things on the top-level query of its parse of the gold SQL, and maps them to a level with :func:`level`:

- *component 1*: WHERE, GROUP BY, ORDER BY and LIMIT present (1 each), one per joined table after the first, one per
  OR and one per LIKE among the conditions of ON, WHERE and HAVING;
- *component 2*: one per nested query used as a value in those conditions, plus one for an INTERSECT, UNION or EXCEPT;
- *others*: one each for more than one aggregate, more than one selected column, more than one WHERE condition and
  more than one GROUP BY column. Spider counts as "aggregates" the aggregated select items and ORDER BY terms, but
  also each negated condition (``NOT IN``, ``NOT LIKE``) of WHERE and HAVING and each AND/OR joining HAVING
  conditions: its ``has_agg`` reads the first field of a condition, which is its negation flag. That is kept here,
  or the levels would not be Spider's.

:func:`hardness` reads Spider's parse (the ``sql`` field of Spider's ``dev.json``); :func:`hardness_of` counts the
same things on sqlglot's parse of the SQL text, for datasets that have no such field.

>>> hardness_of("SELECT count(*) FROM singer")
'easy'
>>> hardness_of("SELECT name FROM singer WHERE age > 20 ORDER BY age DESC LIMIT 3")
'hard'
>>> hardness_of("SELECT name FROM singer WHERE id NOT IN (SELECT singer_id FROM concert)")
'hard'
>>> hardness_of("SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id GROUP BY T1.name "
...             "ORDER BY count(*) DESC LIMIT 1")
'extra'
"""

from __future__ import annotations

from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError

LEVELS = ("easy", "medium", "hard", "extra")

#: Spider's operator numbering (``evaluation.py``): the index of LIKE among WHERE_OPS, of "no aggregate" in AGG_OPS.
LIKE_OP = 9
NO_AGG = 0
AGGREGATES = (exp.Max, exp.Min, exp.Count, exp.Sum, exp.Avg)


def level(component1: int, component2: int, others: int) -> str:
    """Spider's mapping from the three counts to a level.

    >>> level(1, 0, 0), level(2, 0, 1), level(3, 0, 0), level(1, 1, 1)
    ('easy', 'medium', 'hard', 'extra')
    """
    if component1 <= 1 and others == 0 and component2 == 0:
        return "easy"
    if (others <= 2 and component1 <= 1 and component2 == 0) or (component1 <= 2 and others < 2 and component2 == 0):
        return "medium"
    if ((others > 2 and component1 <= 2 and component2 == 0)
            or (2 < component1 <= 3 and others <= 2 and component2 == 0)
            or (component1 <= 1 and others == 0 and component2 <= 1)):
        return "hard"
    return "extra"


# --- Spider's parse (the ``sql`` field) ------------------------------------------------------------------------------


def hardness(sql: dict) -> str:
    """The level of a query given as Spider's parse of it (``dev.json``'s ``sql`` field)."""
    return level(count_component1(sql), count_component2(sql), count_others(sql))


def conditions(sql: dict) -> list:
    """The conditions of ON, WHERE and HAVING, with their AND/OR joiners, as Spider lists them."""
    return sql["from"]["conds"] + sql["where"] + sql["having"]


def count_component1(sql: dict) -> int:
    count = sum(1 for clause in ("where", "groupBy", "orderBy") if len(sql[clause]) > 0)
    count += sql["limit"] is not None
    count += max(0, len(sql["from"]["table_units"]) - 1)
    count += sum(1 for joiner in joiners(sql["from"]["conds"]) + joiners(sql["where"]) + joiners(sql["having"])
                 if joiner == "or")
    count += sum(1 for unit in units(sql["from"]["conds"]) + units(sql["where"]) + units(sql["having"])
                 if unit[1] == LIKE_OP)
    return count


def count_component2(sql: dict) -> int:
    nested = [value for unit in units(sql["from"]["conds"]) + units(sql["where"]) + units(sql["having"])
              for value in (unit[3], unit[4]) if isinstance(value, dict)]
    return len(nested) + sum(1 for op in ("intersect", "except", "union") if sql[op] is not None)


def count_others(sql: dict) -> int:
    aggregates = count_aggregates(sql["select"][1]) + count_aggregates(units(sql["where"]))
    aggregates += count_aggregates(sql["groupBy"])
    if len(sql["orderBy"]) > 0:
        terms = sql["orderBy"][1]
        aggregates += count_aggregates([t[1] for t in terms if t[1]] + [t[2] for t in terms if t[2]])
    aggregates += count_aggregates(sql["having"])  # the whole list, joiners included, as Spider does
    return sum((aggregates > 1, len(sql["select"][1]) > 1, len(sql["where"]) > 1, len(sql["groupBy"]) > 1))


def count_aggregates(items) -> int:
    """Spider's ``count_agg``: items whose first field is not 0 (for a condition that is its negation flag, and for
    a joiner string its first letter)."""
    return sum(1 for item in items if item[0] != NO_AGG)


def units(condition: list) -> list:
    return condition[::2]


def joiners(condition: list) -> list:
    return condition[1::2]


# --- sqlglot's parse of the SQL text ---------------------------------------------------------------------------------


def hardness_of(query: str, dialect: str = "sqlite") -> str | None:
    """The level of a query given as SQL text, or None when sqlglot cannot parse it."""
    try:
        tree = parse_one(query, read=dialect)
    except (SqlglotError, ValueError):
        return None
    if tree is None:
        return None
    return level(*counts_of(tree))


def counts_of(tree: exp.Expression) -> tuple[int, int, int]:
    """(component 1, component 2, others) of a sqlglot tree, counted as Spider counts them on its own parse."""
    select = top_select(tree)
    if select is None:
        return (0, 0, 0)
    component2 = 1 if isinstance(unwrap(tree), exp.SetOperation) else 0
    joins = select.args.get("joins") or []
    on, where, having = [], [], []
    for join in joins:
        if join.args.get("on") is not None:
            on.extend(flatten(join.args["on"]))
    if select.args.get("where") is not None:
        where = flatten(select.args["where"].this)
    if select.args.get("having") is not None:
        having = flatten(select.args["having"].this)
    group = select.args.get("group")
    group_terms = group.expressions if group is not None else []
    order = select.args.get("order")
    order_terms = [o.this for o in order.expressions] if order is not None else []

    component1 = sum((bool(where), bool(group_terms), bool(order_terms), select.args.get("limit") is not None))
    component1 += len(joins)
    every = on + where + having
    component1 += sum(1 for item in every if item == "or")
    component1 += sum(1 for item in every if not isinstance(item, str) and is_like(item))
    component2 += sum(nested_values(item) for item in every if not isinstance(item, str))

    aggregates = sum(1 for item in select.expressions if is_aggregate(strip_alias(item)))
    aggregates += sum(1 for item in where if not isinstance(item, str) and isinstance(item, exp.Not))
    for term in order_terms:
        operands = (term.this, term.expression) if isinstance(term, exp.Binary) else (term,)
        aggregates += sum(1 for operand in operands if is_aggregate(unwrap(operand)))
    aggregates += sum(1 for item in having if isinstance(item, str) or isinstance(item, exp.Not))
    conditions_in_where = len([item for item in where if not isinstance(item, str)])
    others = sum((aggregates > 1, len(select.expressions) > 1, conditions_in_where > 1, len(group_terms) > 1))
    return component1, component2, others


def top_select(tree: exp.Expression) -> exp.Select | None:
    """The query Spider counts on: the first SELECT of a set operation (the rest are nested in Spider's parse)."""
    tree = unwrap(tree)
    while isinstance(tree, exp.SetOperation):
        tree = unwrap(tree.this)
    return tree if isinstance(tree, exp.Select) else None


def unwrap(node: exp.Expression) -> exp.Expression:
    """The node inside parentheses (an unaliased subquery is parentheses too)."""
    while isinstance(node, (exp.Subquery, exp.Paren)) and not node.args.get("alias"):
        node = node.this
    return node


def flatten(condition: exp.Expression) -> list:
    """A condition as Spider lists it: conditions with "and"/"or" between them (parentheses are not nesting)."""
    if isinstance(condition, exp.Paren) and isinstance(condition.this, exp.Connector):
        return flatten(condition.this)
    if isinstance(condition, exp.And):
        return flatten(condition.this) + ["and"] + flatten(condition.expression)
    if isinstance(condition, exp.Or):
        return flatten(condition.this) + ["or"] + flatten(condition.expression)
    return [condition]


def is_like(condition: exp.Expression) -> bool:
    if isinstance(condition, exp.Not):
        condition = condition.this
    return isinstance(condition, exp.Like)


def nested_values(condition: exp.Expression) -> int:
    """How many values of one condition are queries (``x IN (SELECT …)``, ``x > (SELECT …)``)."""
    if isinstance(condition, exp.Not):
        condition = condition.this
    if isinstance(condition, exp.In):
        return 1 if condition.args.get("query") is not None else 0
    if isinstance(condition, exp.Between):
        values = (condition.args.get("low"), condition.args.get("high"))
    elif isinstance(condition, exp.Binary):
        values = (condition.expression,)
    else:
        values = ()
    return sum(1 for value in values if isinstance(value, exp.Subquery) or isinstance(value, exp.Select))


def strip_alias(node: exp.Expression) -> exp.Expression:
    return node.this if isinstance(node, exp.Alias) else node


def is_aggregate(node: exp.Expression) -> bool:
    return isinstance(node, AGGREGATES)
