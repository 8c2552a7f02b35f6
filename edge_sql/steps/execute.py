"""Run a checked query on a locked-down connection, within a time limit and a row cap (or hand it to the database's
worker process, where the operating system bounds its memory and time too: ``sandbox.py``).

SQLite is stopped by a progress handler past its deadline, DuckDB by ``interrupt()`` from a timer thread. Rows are
fetched with ``fetchmany`` up to ``max_rows`` + 1, never all of an unbounded result.

This layer stands even without the guard's statement check: SQLite's ``execute`` runs one statement only and the
connection's authorizer denies everything but reads, and DuckDB's own parser must find exactly one SELECT statement
(DuckDB would run every statement of ``SELECT 1; BEGIN`` and leave a transaction open, and it lets a read-only
connection ``CREATE TEMP VIEW``). That statement object, not the text again, is what DuckDB runs.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass

from edge_sql.steps.database import Database
from edge_sql.errors import QueryFailed, QueryTimeout

#: How many SQLite virtual-machine steps pass between two looks at the clock.
PROGRESS_STEPS = 1000

#: The memory a query may use in a worker process, in MiB (``Limits.memory``, ``--memory``).
DEFAULT_MEMORY = 1024


@dataclass(frozen=True)
class Result:
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    truncated: bool = False  # more rows than max_rows existed
    seconds: float = 0.0


def execute(db: Database, sql: str, *, max_rows: int = 100, timeout: float = 10.0,
            memory: int = DEFAULT_MEMORY) -> Result:
    """Run ``sql`` and return at most ``max_rows`` rows; raise :class:`QueryTimeout` or :class:`QueryFailed`.

    With a worker (``sandbox.isolate(db)``) the query runs there, within ``memory`` MiB and killed past its time;
    else on ``db``'s own connection, where only the engines' own limits hold."""
    if db.worker is not None:
        return db.worker.execute(sql, max_rows=max_rows, timeout=timeout, memory=memory)
    run = run_sqlite if db.engine == "sqlite" else run_duckdb
    started = time.perf_counter()
    columns, rows = run(db.connection, sql, max_rows, timeout)
    return Result(
        columns=tuple(columns),
        rows=tuple(tuple(row) for row in rows[:max_rows]),
        truncated=len(rows) > max_rows,
        seconds=time.perf_counter() - started,
    )


def run_sqlite(connection: sqlite3.Connection, sql: str, max_rows: int, timeout: float):
    deadline = time.monotonic() + timeout
    expired = []

    def past_deadline() -> int:
        if time.monotonic() > deadline:
            expired.append(True)
            return 1
        return 0

    connection.set_progress_handler(past_deadline, PROGRESS_STEPS)
    cursor = connection.cursor()
    try:
        cursor.execute(sql)
        columns = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchmany(max_rows + 1)
    except (sqlite3.Error, OverflowError, MemoryError, ValueError) as error:
        if expired:
            raise QueryTimeout(timeout_message(timeout)) from None
        raise QueryFailed(f"the database refused the query: {one_line(error)}") from None
    finally:
        cursor.close()
        connection.set_progress_handler(None, PROGRESS_STEPS)
    return columns, rows


def run_duckdb(connection, sql: str, max_rows: int, timeout: float):
    import duckdb

    timer = threading.Timer(timeout, connection.interrupt)
    timer.daemon = True
    timer.start()
    try:
        statement = single_select(connection, sql)
        connection.execute(statement)  # on the connection itself: interrupt() reaches only its own query
        columns = [d[0] for d in connection.description or ()]
        rows = connection.fetchmany(max_rows + 1)
    except duckdb.InterruptException:
        raise QueryTimeout(timeout_message(timeout)) from None
    except (duckdb.Error, OverflowError, MemoryError, ValueError) as error:
        if not timer.is_alive() and "interrupt" in str(error).lower():
            raise QueryTimeout(timeout_message(timeout)) from None
        raise QueryFailed(f"the database refused the query: {one_line(error)}") from None
    finally:
        timer.cancel()
        timer.join()
        # Stop what the query would still compute past the rows read: DuckDB keeps running an endless recursive CTE
        # in the background after fetchmany returns, until the next query or close() waits for it.
        connection.interrupt()
    return columns, rows


def single_select(connection, sql: str):
    """DuckDB's own reading of ``sql``: exactly one statement, and a SELECT; else :class:`QueryFailed`."""
    import duckdb

    statements = connection.extract_statements(sql)
    if len(statements) != 1:
        raise QueryFailed(f"the database refused the query: it holds {len(statements)} statements; only one SELECT "
                          "may run")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryFailed(f"the database refused the query: it is a statement of type {kind.name}; only SELECT may run")
    return statements[0]


def timeout_message(timeout: float) -> str:
    return f"the query ran past the {timeout:g} s time limit and was stopped; allow it more with --timeout"


def one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:300] if text else type(error).__name__
