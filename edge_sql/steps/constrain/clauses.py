"""What each word of a query does to its scopes: a table, an alias, a column, a function call, a keyword that
opens a clause; and the little syntax that keeps a candidate from wandering (clauses once and in order, an operator
between two operands, what may follow a FROM source). :class:`~edge_sql.steps.constrain.cursor.Cursor` reads text
and hands each finished word here."""

from __future__ import annotations

from edge_sql.steps.constrain.scopes import Frame, Refused, Scopes, Unknown
from edge_sql.steps.constrain.words import (AGGREGATES, ALIAS_LIKE, BINARY_WORDS, CLAUSES, DERIVED, FROM_ENDS,
                                            KEYWORDS, OPERAND_WORDS, SORTING, SOFT_KEYWORDS, unquote)

#: Soft keywords that may stand outside a parenthesis (the others belong to a window's frame).
SOFT_OUTSIDE = SORTING | frozenset("date time timestamp interval nocase binary rtrim".split())
#: The keywords that end a FROM clause (and its ON conditions).
ENDS_FROM = frozenset("where group having order limit offset union intersect except window qualify".split())


class Clauses(Scopes):
    """The words of a query, read into its scopes."""

    __slots__ = ()

    # -- words --------------------------------------------------------------------------------------------------------

    def word(self, text: str, quoted: bool, next_char: str | None) -> None:
        frame = self.top
        name = unquote(text).lower() if quoted else text.lower()
        keyword = None if quoted else (name if name in KEYWORDS else None)
        expect = frame.expect
        frame.fresh = False if keyword != "select" else frame.fresh
        if expect == "table":
            if keyword is not None or next_char == ".":
                raise Refused  # a keyword, or a schema's name (main.t): models write neither here
            if name not in self.check.tables and name not in self.ctes:
                raise Refused
            frame.table, frame.expect = (DERIVED if name in self.ctes else name), "alias-or-end"
            if frame.table == DERIVED:
                frame.sources[name] = DERIVED
            return
        if expect == "alias" or expect == "alias-or-end" and keyword not in FROM_ENDS | {"as"}:
            if keyword is not None:
                raise Refused
            self.check_alias(frame, name, implicit=expect == "alias-or-end")
            self.bind(frame, name, frame.table)
            frame.table, frame.expect = None, "source-end"
            return
        if expect == "alias-or-end":
            if keyword == "as":
                frame.expect = "alias"
                return
            self.end_source(frame)
            frame.expect = "expr"
        if expect == "source-end":
            if keyword not in FROM_ENDS:
                raise Refused  # after a table and its alias: JOIN, ON, WHERE, ... or a comma
            frame.expect = "expr"
        if expect == "by":
            if keyword != "by":
                raise Refused
            frame.expect = "expr"
            return
        if expect == "label":
            self.query().labels |= {name}
            frame.expect, frame.operand, frame.named = "expr", True, True
            return
        if expect == "column":
            self.qualified(frame.qualifier, name)
            frame.expect, frame.operand = "expr", True
            return
        if expect == "cte":
            if keyword is None:
                self.ctes |= {name}
                frame.expect = "expr"
                return
        if next_char == "(" and name in self.check.functions and not quoted:
            self.call(frame, name)
            return
        if frame.kind == "query" and frame.clause in ("start", "compound") and keyword not in ("select", "with"):
            raise Refused
        if keyword is not None and next_char != ".":
            self.keyword(keyword)
            return
        if next_char == ".":
            self.begin_operand(frame)
            self.qualify(name)
            return
        if next_char == "(" and not quoted:
            raise Refused  # a function no engine here has
        if name in SOFT_KEYWORDS and not quoted and not self.is_column(name):
            if frame.kind == "paren" or (name in SORTING) == frame.operand and name in SOFT_OUTSIDE:
                return  # a window's frame; NULLS LAST after an operand; DATE '…', COLLATE NOCASE before one
            raise Refused
        if self.begin_operand(frame, name):
            return  # the select item's name, without AS
        self.unqualified(name, quoted and text.startswith('"'))
        frame.operand = True

    def keyword(self, word: str) -> None:
        frame = self.top
        if word in OPERAND_WORDS:
            self.begin_operand(frame)
            frame.operand = True
            return
        if word in ("asc", "desc", "end"):
            if not frame.operand:
                raise Refused
            return
        if word in BINARY_WORDS:
            if not frame.operand:
                raise Refused  # "WHERE AND x": nothing before it
        elif word in ("exists", "case"):
            self.begin_operand(frame)
        if word == "not":
            return  # "x NOT IN", "NOT x": what comes before stays as it was
        frame.operand = False
        if word == "select":
            if frame.kind == "paren" and frame.fresh:
                frame.kind, frame.derived = "query", frame.in_from
            elif frame.kind == "with":
                frame.kind = "query"
            elif frame.kind != "query" or frame.clause not in ("start", "compound"):
                raise Refused
            frame.clause, frame.fresh = "select", False
            return
        if word == "with":
            if frame.kind == "query" and frame.clause == "start":
                frame.kind, frame.clause, frame.expect = "with", "with", "cte"
                return
            raise Refused
        if frame.kind == "with":
            if word in ("as", "recursive"):
                return
            raise Refused
        if frame.kind != "query":
            if word == "as":
                frame.expect = "label"  # CAST(x AS type)
            return
        if word == "from":
            if frame.clause != "select":
                raise Refused
            frame.clause, frame.expect = "from", "table"
            return
        if word in ("join",):
            if frame.clause not in ("from", "on"):
                raise Refused
            frame.clause, frame.expect = "from", "table"
            return
        if word in ("inner", "left", "right", "full", "outer", "cross", "natural"):
            if frame.clause not in ("from", "on"):
                raise Refused
            frame.clause = "from"
            return
        if word in ("on", "using"):
            if frame.clause != "from":
                raise Refused
            frame.clause = "on"
            frame.using = frame.using or word == "using"
            return
        if word == "natural":
            frame.using = True
        if word == "as":
            frame.expect = "label"
            return
        if word in CLAUSES:
            if frame.clause in ("start", "compound") or CLAUSES[word] <= CLAUSES.get(frame.clause, 0):
                raise Refused  # each clause once, in SQL's order
            if not frame.from_done:
                self.end_from(frame)
            frame.clause = word
            if word in ("group", "order"):
                frame.expect = "by"
            return
        if word in ("union", "intersect", "except"):
            if frame.clause in ("start", "compound"):
                raise Refused
            self.end_scope(frame)
            labels = frame.labels
            fresh = Frame("query")
            fresh.clause, fresh.labels, fresh.derived = "compound", labels, frame.derived
            self.frames[-1] = fresh
            return

    def begin_operand(self, frame: Frame, name: str | None = None) -> bool:
        """An operand begins here: refused right after another one, except a select item's name written without AS
        (``count(*) total``), a bare word; True when ``name`` is that name."""
        if not frame.operand:
            return False
        if name is not None and frame.kind == "query" and frame.clause == "select" and not frame.named:
            frame.labels |= {name}
            frame.named = True
            return True
        raise Refused

    def call(self, frame: Frame, name: str) -> None:
        """``name(`` is a function call: one the engine has, and no aggregate where SQLite refuses one."""
        self.begin_operand(frame)
        if name in AGGREGATES and self.query().clause in ("where", "on", "group"):
            raise Refused  # "misuse of aggregate"

    def from_can_end(self) -> None:
        """Refuse the keyword that would end a FROM clause that cannot end here (an alias not bound yet, a column no
        table in it has): written, it would leave the candidate no way on."""
        other = self.copy()
        query = other.query()
        if other.top is not query:
            return
        if query.expect == "alias-or-end" and query.table is not None:
            other.end_source(query)
        other.end_from(query)

    def check_alias(self, frame: Frame, alias: str, implicit: bool) -> None:
        """An alias that a model wrote by gluing on to a refused one (``T2`` was refused: ``T2_1``, ``T2on``) or to
        the keyword after it (``WHEREage``, ``GROUPING``) is refused too: the way out is a different name."""
        if any(alias != q and alias.startswith(q) for q in frame.pending):
            raise Refused
        if implicit and (any(alias != k and alias.startswith(k) for k in FROM_ENDS) or not ALIAS_LIKE.fullmatch(alias)):
            raise Refused  # an alias without AS is short (FROM singer s): a long word there is a keyword misspelt
        if alias in frame.sources:
            raise Unknown(alias, f"alias already used: {alias}")
