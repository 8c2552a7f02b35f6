"""Typed errors, and the one place that maps them to exit codes.

Every error a user can cause is an :class:`EdgeSQLError` whose ``exit_code`` says how the CLI ends.
The CLI prints ``str(error)`` as one line on stderr; a traceback appears only with ``EDGESQL_DEBUG=1``.

>>> DatabaseError("no such file: shop.db").exit_code
3
>>> sorted(EXIT_CODES.items())[:3]
[(0, 'answer'), (2, 'usage error'), (3, 'database problem')]
"""

from __future__ import annotations

#: Every exit code edgesql ends with, and what it means (the README's table is checked against this).
EXIT_CODES: dict[int, str] = {
    0: "answer",
    2: "usage error",
    3: "database problem",
    4: "model problem",
    5: "no valid candidate",
    6: "query refused by the guard, timed out, or failed to run",
    7: "answer less sure than --min-confidence (declined)",
    130: "interrupted",
    141: "output pipe closed",
}

OK = 0
USAGE = 2
DATABASE = 3
MODEL = 4
NO_VALID_CANDIDATE = 5
REFUSED = 6
UNSURE = 7
INTERRUPTED = 130
BROKEN_PIPE = 141


class EdgeSQLError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    exit_code = 1


class UsageError(EdgeSQLError):
    """A bad argument: an empty question, a negative count, an unknown format."""

    exit_code = USAGE


class DatabaseError(EdgeSQLError):
    """The database file is missing, not a database, unreadable, locked, or its schema does not fit."""

    exit_code = DATABASE


class ModelError(EdgeSQLError):
    """The model is missing, not a GGUF file, or cannot be loaded."""

    exit_code = MODEL


class GrammarError(ModelError):
    """A grammar llama.cpp would not accept (using it would crash the process), or a prefix it cannot follow."""


class NoValidCandidate(EdgeSQLError):
    """No candidate produced a valid, executable query. Carries the answer with its ballot."""

    exit_code = NO_VALID_CANDIDATE

    def __init__(self, message: str, answer=None):
        super().__init__(message)
        self.answer = answer


class Unsure(EdgeSQLError):
    """The answer's confidence is below what the user asked for (``--min-confidence``): declined, its best guess kept.

    >>> str(Unsure(0.42, 0.8))
    'not sure enough to answer: confidence 42% is below --min-confidence 80% (--show-candidates shows the best guess)'
    """

    exit_code = UNSURE

    def __init__(self, confidence: float, required: float, answer=None):
        super().__init__(f"not sure enough to answer: confidence {confidence:.0%} is below --min-confidence "
                         f"{required:.0%} (--show-candidates shows the best guess)")
        self.answer = answer


class QueryRefused(EdgeSQLError):
    """The guard refused a query: which rule, and which part of the query."""

    exit_code = REFUSED

    def __init__(self, rule: str, detail: str):
        super().__init__(f"refused ({rule}): {detail}")
        self.rule = rule
        self.detail = detail


class QueryFailed(EdgeSQLError):
    """A query passed the guard but the engine raised an error running it."""

    exit_code = REFUSED


class QueryTimeout(QueryFailed):
    """A query ran past its time limit and was interrupted."""
