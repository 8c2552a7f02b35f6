"""The scopes of a query being written: a stack of frames (a SELECT, a parenthesis, a WITH list), the aliases each
FROM clause binds, and the names written before the FROM clause that says what they are."""

from __future__ import annotations

from edge_sql.steps.constrain.words import ALIAS_LIKE, DERIVED


class Refused(Exception):
    """The text can start no query over the schema."""


class Unknown(Refused):
    """A name that is not there: a column no table in scope has, an alias no FROM binds (the validator's second
    opinion, :func:`scope_error`, reports these and no other refusal)."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


class Frame:
    """One level of the query: a SELECT (``query``), a parenthesis (``paren``), or a WITH list (``with``)."""

    __slots__ = ("kind", "clause", "expect", "sources", "pending", "unresolved", "labels", "table", "qualifier",
                 "from_done", "derived", "fresh", "in_from", "operand", "named", "using")

    def __init__(self, kind: str, in_from: bool = False):
        self.kind = kind
        self.clause = "start"
        self.expect = "expr"  # expr | table | alias | alias-or-end | source-end | label | dot | column | by | cte
        self.sources: dict[str, str] = {}  # alias -> table ("" for a derived table)
        self.pending: dict[str, frozenset] = {}  # qualifier not bound yet -> the tables it could still be
        self.unresolved: tuple = ()  # unqualified columns written before FROM
        self.labels: frozenset = frozenset()
        self.table: str | None = None  # the FROM source waiting for its alias
        self.qualifier: str | None = None  # after "X.": X
        self.from_done = False
        self.derived = False  # a subquery in FROM
        self.fresh = True  # a parenthesis with nothing in it yet
        self.in_from = in_from
        self.operand = False  # the last thing written here is a whole operand: an operator or a keyword comes next
        self.named = False  # this select item has its name (``expr AS name``, or ``expr name``)
        self.using = False  # a USING or NATURAL join: a column both tables have is not ambiguous

    def copy(self) -> "Frame":
        other = Frame.__new__(Frame)
        for name in Frame.__slots__:
            setattr(other, name, getattr(self, name))
        other.sources = dict(self.sources)
        other.pending = dict(self.pending)
        return other


class Scopes:
    """The frames of one text, and what their names resolve to; :class:`~edge_sql.steps.constrain.cursor.Cursor`
    reads text into them."""

    __slots__ = ("check", "frames", "ctes")

    def __init__(self, check):
        self.check = check  # the Check of the schema: its tables, columns and words
        self.frames = [Frame("query")]
        self.ctes: frozenset = frozenset()

    @property
    def top(self) -> Frame:
        return self.frames[-1]

    def query(self) -> Frame:
        """The innermost SELECT frame."""
        return next(f for f in reversed(self.frames) if f.kind != "paren")

    # -- names --------------------------------------------------------------------------------------------------------

    def bind(self, frame: Frame, alias: str, table: str) -> None:
        """The FROM clause names ``table`` ``alias``: every column already written with that alias must be its."""
        wanted = frame.pending.pop(alias, None)
        if wanted is not None and table != DERIVED and table not in wanted:
            raise Unknown(alias, f"{alias} is {table}, which lacks a column written with {alias}")
        frame.sources[alias] = table

    def end_source(self, frame: Frame) -> None:
        if frame.expect == "alias-or-end" and frame.table is not None:
            if frame.table != DERIVED:
                self.bind(frame, frame.table, frame.table)
            frame.table = None
        elif frame.expect in ("table", "alias"):
            raise Refused

    def end_from(self, frame: Frame) -> None:
        """The FROM clause is over: every alias written before it must be bound, every column found."""
        self.end_source(frame)
        frame.from_done = True
        for qualifier, tables in frame.pending.items():  # not bound here: an outer query's alias, or nothing
            outer = self.outer_source(qualifier)
            if outer is None:
                raise Unknown(qualifier, f"no FROM clause binds {qualifier}")
            if outer != DERIVED and outer not in tables:
                raise Unknown(qualifier, f"{qualifier} is {outer}, which lacks a column written with {qualifier}")
        for name in frame.unresolved:
            if not self.in_scope(name):
                raise Unknown(name, f"no table in scope has a column {name}")
            if self.ambiguous(name):
                raise Unknown(name, f"ambiguous column name: {name} (more than one table in scope has it)")
        frame.pending, frame.unresolved = {}, ()

    def end_scope(self, frame: Frame) -> None:
        if frame.kind == "with" or frame.clause in ("start", "compound"):
            raise Refused
        if frame.clause in ("from", "on") or not frame.from_done:
            self.end_from(frame)

    def sources_in_scope(self):
        """(alias, table) of every frame from the innermost out; a GROUP BY or ORDER BY sees only its own SELECT's
        (SQLite does not look outside it there)."""
        for frame in reversed(self.frames):
            yield from frame.sources.items()
            if frame.kind == "query" and frame.clause in ("group", "order"):
                return

    def outer_source(self, alias: str) -> str | None:
        return next((table for name, table in self.sources_in_scope() if name == alias), None)

    def is_column(self, name: str) -> bool:
        return name in self.check.all_columns

    def ambiguous(self, name: str) -> bool:
        """Whether two tables of the innermost SELECT that has ``name`` have it (SQLite: "ambiguous column name")."""
        for frame in reversed(self.frames):
            if frame.kind != "query":
                continue
            if name in frame.labels:
                return False
            having = [t for t in frame.sources.values() if t == DERIVED or name in self.check.columns[t]]
            if having:
                return len(having) > 1 and DERIVED not in having and not frame.using
        return False

    def in_scope(self, name: str) -> bool:
        """Whether ``name`` is a column of a table in scope, or an ``AS`` name."""
        if any(name in f.labels for f in self.frames if f.kind != "paren"):
            return True
        for _, table in self.sources_in_scope():
            if table == DERIVED or name in self.check.columns[table]:
                return True
        return False

    def qualify(self, qualifier: str) -> None:
        """``qualifier.`` was written: it must be bound, or be bound later by this SELECT's FROM."""
        frame = self.top
        query = self.query()
        if self.outer_source(qualifier) is None:
            if query.from_done:
                raise Refused
            if qualifier not in query.pending:
                if qualifier not in self.check.tables and not ALIAS_LIKE.fullmatch(qualifier):
                    raise Refused
                query.pending[qualifier] = frozenset(self.check.columns)
        frame.expect, frame.qualifier = "dot", qualifier

    def qualified(self, qualifier: str, column: str) -> None:
        table = self.outer_source(qualifier)
        query = self.query()
        if table is not None:
            if table == DERIVED or column in self.check.columns[table]:
                return
            if query.from_done or qualifier in query.sources:
                raise Unknown(column, f"{qualifier} is {table}, which has no column {column}")
            # an outer query's alias, unless this SELECT's own FROM binds the name again to a table that has it
            query.pending.setdefault(qualifier, frozenset(self.check.columns))
        left = query.pending[qualifier] & self.check.having.get(column, frozenset())
        if not left:
            raise Unknown(column, f"no table has a column {column} beside the others written with {qualifier}")
        query.pending[qualifier] = left

    def unqualified(self, name: str, may_be_string: bool) -> None:
        query = self.query()
        if query.from_done:
            if not self.in_scope(name) and not may_be_string:
                raise Unknown(name, f"no table in scope has a column {name}")
            if self.ambiguous(name):
                raise Unknown(name, f"ambiguous column name: {name} (more than one table in scope has it)")
            return
        if self.in_scope(name) or may_be_string:
            return
        if not self.is_column(name) and not self.ctes:
            raise Refused
        query.unresolved += (name,)
