"""Decoding-time check: a candidate may only go on writing a query whose names all exist (in the spirit of PICARD).

A :class:`Check` is made from the schema shown to the model; its :meth:`Check.start` gives the :class:`Cursor` of an
empty answer (or of the prompt's prefix), and :meth:`Cursor.feed` says whether a piece of text may follow: it returns
the cursor of the longer text, or None when no query can start with it. The decoder (``backends/batch.py``) asks it
about the token it sampled and walks down the logits only when that one is refused.

What it follows is a lexer and a clause/scope tracker, not a parser: a stack of frames (one a SELECT, one a
parenthesis) with the aliases each FROM clause binds and the names written before that FROM said what they are.

- a table (after FROM, JOIN, a comma in FROM) must be one of the schema's (or a CTE), letter by letter;
- ``X.col``: when X is bound, col must be one of its table's columns; before the FROM clause that binds X, every
  column written with X must be in one table, and the alias that FROM binds to X must be that table;
- an unqualified column must be a column of a table in scope (of any table before FROM; checked again when FROM is
  done), an ``AS`` name, or an outer query's column (correlated subqueries);
- the answer may end only where the whole query passes :func:`edge_sql.steps.validate.validate`.

Nothing bounds nesting, joins, set operations or select items. What it cannot follow (a derived table's or a CTE's
columns) it lets through, and the end check still judges it. What it does not let through, though the engines
would: a derived table's column before the FROM clause that makes it (``SELECT n FROM (SELECT name AS n …)``:
write ``SELECT *`` or name it after FROM), an alias longer than three letters and some digits before the FROM
clause that binds it (unless it is a table's name), a function called with a blank before its parenthesis, and
comments.

>>> from edge_sql.steps.schema import Column, Schema, Table
>>> shop = Schema("sqlite", (Table("products", (Column("name", "TEXT"), Column("price", "REAL"))),
...                          Table("orders", (Column("product", "TEXT"), Column("quantity", "INTEGER")))))
>>> from edge_sql.steps.validate import validate
>>> cursor = Check(shop, judge=lambda sql: validate(sql, shop).ok).start()
>>> cursor.feed("SELECT T1.name FROM pro") is not None, cursor.feed("SELECT T1.name FROM cus") is None
(True, True)
>>> cursor.feed("SELECT T1.quantity FROM products AS T1 J") is None, cursor.feed("SELECT T1.quantity FROM orders AS T1 J") is None
(True, False)
>>> cursor.feed("SELECT name FROM products").can_end(), cursor.feed("SELECT name FROM products WHERE").can_end()
(True, False)
"""

from edge_sql.steps.constrain.check import Check, scope_error
from edge_sql.steps.constrain.cursor import Cursor

__all__ = ["Check", "Cursor", "scope_error"]
