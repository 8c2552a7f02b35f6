"""Explain a query: the SQL pretty-printed, and one plain-English line per clause, read from its syntax tree.

No model is asked: the explanation is what the query says, clause by clause (``edgesql ask --explain``).

>>> explanation = explain("SELECT name, price FROM products WHERE category = 'Books' ORDER BY price DESC LIMIT 3")
>>> print(explanation.sql)
SELECT
  name,
  price
FROM products
WHERE
  category = 'Books'
ORDER BY
  price DESC
LIMIT 3
>>> print("\\n".join(explanation.lines))
Reads the table products.
Keeps the rows where category = 'Books'.
Sorts by price (highest first).
Keeps the first 3 rows.
Shows name, price.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from edge_sql.errors import UsageError


@dataclass(frozen=True)
class Explanation:
    """The query pretty-printed, and what each clause does, in the order the database applies them."""

    sql: str
    lines: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"sql": self.sql, "clauses": list(self.lines)}


def explain(sql: str, dialect: str = "sqlite") -> Explanation:
    """Pretty-print ``sql`` and read it out clause by clause.

    >>> print("\\n".join(explain(
    ...     "SELECT c.country, count(*) AS n FROM customers c JOIN orders o ON o.customer_id = c.customer_id "
    ...     "GROUP BY c.country HAVING count(*) > 2").lines))
    Reads the table customers (as c).
    Joins orders (as o) on o.customer_id = c.customer_id.
    Groups the rows by c.country.
    Keeps the groups where COUNT(*) > 2.
    Shows c.country, COUNT(*) AS n.
    """
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except sqlglot.errors.ParseError as error:
        raise UsageError(f"cannot explain the query: {str(error).splitlines()[0]}") from None
    return Explanation(sql=tree.sql(dialect=dialect, pretty=True), lines=tuple(read_query(tree, dialect)))


def read_query(tree: exp.Expression, dialect: str) -> list[str]:
    """The lines for one query: a SELECT, a set operation of queries, or either with a WITH clause."""
    lines = []
    with_ = tree.args.get("with_") or tree.args.get("with")
    if with_ is not None:
        for cte in with_.expressions:
            lines.append(f"First defines {cte.alias} as the result of a subquery.")
    if isinstance(tree, exp.SetOperation):
        operation = {exp.Union: "UNION", exp.Intersect: "INTERSECT", exp.Except: "EXCEPT"}.get(type(tree), "UNION")
        if isinstance(tree, exp.Union) and not tree.args.get("distinct", True):
            operation = "UNION ALL"
        lines.append(f"Combines the results of two queries with {operation}.")
        lines += [f"Left: {line}" for line in read_query(tree.left, dialect)]
        lines += [f"Right: {line}" for line in read_query(tree.right, dialect)]
        lines += read_tail(tree, dialect)
        return lines
    if not isinstance(tree, exp.Select):
        return lines + [f"Runs a {tree.key.upper()} statement."]
    text = lambda node: node.sql(dialect=dialect)  # noqa: E731 - a local shorthand
    source = tree.args.get("from_") or tree.args.get("from")
    if source is not None:
        lines.append(f"Reads {'the table ' if isinstance(source.this, exp.Table) else ''}"
                     f"{describe_source(source.this, dialect)}.")
    for join in tree.args.get("joins") or ():
        side = " ".join(part for part in (join.args.get("side"), join.args.get("kind")) if part).lower()
        kind = f"{side} " if side and side != "inner" else ""
        line = f"Joins ({kind}join) {describe_source(join.this, dialect)}" if kind else \
            f"Joins {describe_source(join.this, dialect)}"
        if join.args.get("on") is not None:
            line += f" on {text(join.args['on'])}"
        elif join.args.get("using"):
            line += f" on the same {', '.join(text(c) for c in join.args['using'])}"
        lines.append(line + ".")
    if tree.args.get("where") is not None:
        lines.append(f"Keeps the rows where {text(tree.args['where'].this)}.")
    if tree.args.get("group") is not None:
        lines.append(f"Groups the rows by {', '.join(text(e) for e in tree.args['group'].expressions)}.")
    if tree.args.get("having") is not None:
        lines.append(f"Keeps the groups where {text(tree.args['having'].this)}.")
    lines += read_tail(tree, dialect)
    shown = ", ".join(text(e) for e in tree.expressions)
    shown = "every column" if shown == "*" else shown
    if tree.args.get("distinct"):
        shown = f"each distinct {'combination' if len(tree.expressions) > 1 else 'value'} of {shown}"
    lines.append(f"Shows {shown}.")
    return lines


def read_tail(tree: exp.Expression, dialect: str) -> list[str]:
    """ORDER BY, LIMIT and OFFSET: the same for a SELECT and a set operation."""
    lines = []
    order = tree.args.get("order")
    if order is not None:
        keys = [f"{key.this.sql(dialect=dialect)} ({'highest' if key.args.get('desc') else 'lowest'} first)"
                for key in order.expressions]
        lines.append(f"Sorts by {', then '.join(keys)}.")
    offset = tree.args.get("offset")
    if offset is not None:
        lines.append(f"Skips the first {offset.expression.sql(dialect=dialect)} rows.")
    limit = tree.args.get("limit")
    if limit is not None:
        count = limit.expression.sql(dialect=dialect)
        lines.append("Keeps the first row only." if count == "1" else f"Keeps the first {count} rows.")
    return lines


def describe_source(node: exp.Expression, dialect: str) -> str:
    """A table (with its alias), or a subquery."""
    alias = f" (as {node.alias})" if node.alias and node.alias != getattr(node, "name", None) else ""
    if isinstance(node, exp.Table):
        return f"{node.name}{alias}"
    if isinstance(node, exp.Subquery):
        return f"the result of a subquery{alias}"
    return node.sql(dialect=dialect)
