"""Hard limits the engine cannot talk its way out of: queries the guard lets through run in a worker process that the
operating system holds to a memory ceiling and that is killed at its deadline (``steps/sandbox.py``).

The attacks are the issue's: a string grown by nine chained CTEs to 10^10 bytes (SQLite grew to 12.9 GB, DuckDB to
5.0 GB, before the worker), and a recursive CTE whose rows double at every step. Each must end with exit 6, leave the
database's folder byte for byte as it was, and leave the next query working. Their peak memory is measured from
outside by ``benchmarks/sandbox.py``, not here; what is asserted is that a limit stopped them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from typer.testing import CliRunner

from conftest import ROOT, snapshot
from edge_sql.cli import app
from edge_sql.errors import REFUSED, QueryFailed, QueryTimeout
from edge_sql.steps import sandbox
from edge_sql.steps.database import open_database
from edge_sql.steps.execute import execute
from edge_sql.steps.sandbox import QueryOutOfMemory, isolate

#: The issue's attack: nine chained CTEs, each concatenating the previous string with itself ten times (the same
#: text as benchmarks/sandbox.py measures).
CHAIN = ("WITH a AS (SELECT 'xxxxxxxxxx' AS s), " + ", ".join(
    f"{b} AS (SELECT {'||'.join(['s'] * 10)} AS s FROM {a})" for a, b in zip("abcdefghi", "bcdefghij"))
    + " SELECT length(s) FROM j")
#: Rows that double at each step of a recursive CTE, each a kilobyte wide, sorted (so all are held).
EXPONENTIAL = ("WITH RECURSIVE r(n, s) AS (SELECT 1, '" + "x" * 1000 + "' UNION ALL SELECT r.n + 1, r.s FROM r, "
               "(SELECT 1 AS k UNION ALL SELECT 2) AS two) SELECT n, length(s) FROM r ORDER BY n DESC LIMIT 1")

runner = CliRunner()
ATTACKS = {"nine-chained-ctes": CHAIN, "exponential-recursive-cte": EXPONENTIAL}
STOPPED = ("the query needed more than the 1,024 MiB memory limit and was stopped; allow it more with --memory",
           "the query ran past the 2 s time limit and was stopped; allow it more with --timeout",
           "the database refused the query: ")  # DuckDB's own memory cap may answer first


def run(db, *arguments: str):
    return runner.invoke(app, ["run", "--db", str(db), "--format", "json", *arguments])


@pytest.mark.parametrize("sql", ATTACKS.values(), ids=ATTACKS.keys())
def test_an_attack_the_guard_lets_through_is_stopped_and_changes_nothing(shop, sql):
    before = snapshot(shop.parent)
    result = run(shop, "--timeout", "2", "--", sql)
    assert result.exit_code == REFUSED, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(tuple(f"edgesql: {s}" for s in STOPPED))
    assert snapshot(shop.parent) == before
    after = run(shop, "SELECT count(*) FROM customers")
    assert after.exit_code == 0 and json.loads(after.stdout)["rows"] == [[40]]


def test_the_issue_attack_as_a_new_user_runs_it_ends_with_exit_6(shop):
    """``edgesql run --timeout 2`` as its own process, the way the issue tried it."""
    before = snapshot(shop.parent)
    done = subprocess.run([sys.executable, "-m", "edge_sql", "run", "--db", str(shop), "--timeout", "2", CHAIN],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == REFUSED, done.stderr
    assert done.stderr.startswith(tuple(f"edgesql: {s}" for s in STOPPED)) and done.stderr.count("\n") == 1
    assert snapshot(shop.parent) == before


def test_a_query_past_its_memory_ceiling_is_stopped_and_the_worker_replaced(shop):
    before = snapshot(shop.parent)
    with isolate(open_database(shop)) as db:
        with pytest.raises(QueryOutOfMemory, match="the 64 MiB memory limit .* allow it more with --memory"):
            execute(db, CHAIN, timeout=60, memory=64)
        assert execute(db, "SELECT count(*) FROM orders", memory=64).rows == ((150,),)
        assert db.worker.starts == 2  # what a worker holds after an allocation failed is not kept
    assert snapshot(shop.parent) == before


def test_a_worker_that_does_not_stop_in_time_is_killed(shop, monkeypatch):
    """The engine's own interrupt is what usually answers: here the parent's deadline is made to come first (its
    grace far below zero), so the worker is killed mid-query, reported as the time limit, and the next query gets a
    new worker."""
    endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    before = snapshot(shop.parent)
    with isolate(open_database(shop)) as db:
        db.worker.wait_ready()
        process = db.worker.process
        monkeypatch.setattr(sandbox, "GRACE", -59.5)
        with pytest.raises(QueryTimeout, match="the 60 s time limit"):
            execute(db, endless, timeout=60)
        assert process.returncode == -signal.SIGKILL and db.worker.process is None
        monkeypatch.setattr(sandbox, "GRACE", 0.25)
        assert execute(db, "SELECT count(*) FROM customers").rows == ((40,),)
        assert db.worker.starts == 2
    assert snapshot(shop.parent) == before


def test_the_worker_runs_the_same_locked_down_connection(shop):
    """What the guard's lower layers refuse is refused in the worker too, and the worker's connection is the same."""
    with isolate(open_database(shop)) as db:
        with pytest.raises(QueryFailed):
            execute(db, "DROP TABLE customers")
        with pytest.raises(QueryTimeout, match="0.5 s time limit"):  # the engine's own interrupt, inside the worker
            execute(db, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
                    timeout=0.5)
        assert db.worker.starts == 1  # an engine that stops in time keeps its worker
        sql = "SELECT customer_id, signup_date, city FROM customers ORDER BY customer_id"
        through_worker = execute(db, sql, max_rows=3)
    with open_database(shop) as direct:
        on_connection = execute(direct, sql, max_rows=3)
    assert (through_worker.columns, through_worker.rows, through_worker.truncated) == (
        on_connection.columns, on_connection.rows, on_connection.truncated)


def test_a_candidate_that_runs_out_of_memory_is_an_invalid_vote_not_a_crash(shop, fake_model):
    fake_model(CHAIN.replace("SELECT length(s) FROM j", "SELECT length(s) AS n FROM j"), "SELECT count(*) FROM customers")
    result = runner.invoke(app, ["ask", "--db", str(shop), "--model", "fake", "--candidates", "2", "--memory", "64",
                                 "--format", "json", "--no-grammar", "--no-hints", "How many customers?"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["rows"] == [[40]]
    first = answer["ballot"][0]
    assert first["verdict"] in ("execution_error", "timeout") and first["votes"] == 0


def test_the_memory_ceiling_comes_from_the_flag_else_the_config_file(shop, fake_model, tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text("memory = 48\n")
    monkeypatch.setenv("EDGESQL_CONFIG", str(config))
    fake_model(CHAIN)
    arguments = ["ask", "--db", str(shop), "--model", "fake", "-n", "1", "--format", "json", "--no-grammar",
                 "--no-hints", "How long?"]
    first = json.loads(runner.invoke(app, arguments).stdout)["ballot"][0]["error"]
    second = json.loads(runner.invoke(app, [*arguments, "--memory", "40"]).stdout)["ballot"][0]["error"]
    assert "the 48 MiB memory limit" in first and "the 40 MiB memory limit" in second


def test_a_database_named_by_a_relative_path_is_found_by_the_worker(shop, monkeypatch):
    monkeypatch.chdir(shop.parent)
    result = run(shop.name, "SELECT count(*) FROM customers")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == [[40]]


def test_ctrl_c_while_a_query_runs_stops_the_worker_and_the_next_query_gets_its_own_answer(shop, monkeypatch):
    """An interrupted wait must not leave the old query's answer in the pipe for the next query to read."""
    endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    with isolate(open_database(shop)) as db:
        db.worker.wait_ready()
        real, pressed = sandbox.receive, []

        def interrupted(stream, deadline):
            if not pressed:  # Ctrl-C once, while the endless query runs
                pressed.append(True)
                raise KeyboardInterrupt
            return real(stream, deadline)

        monkeypatch.setattr(sandbox, "receive", interrupted)
        with pytest.raises(KeyboardInterrupt):
            execute(db, endless, timeout=60)
        assert db.worker.process is None
        assert execute(db, "SELECT count(*) FROM products").rows == ((25,),)


def test_a_worker_killed_from_outside_mid_query_is_reported_and_replaced(shop):
    """As the kernel's OOM killer would end it: SIGKILL while the query runs."""
    endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    with isolate(open_database(shop)) as db:
        db.worker.wait_ready()
        killer = threading.Timer(0.5, os.kill, (db.worker.process.pid, signal.SIGKILL))
        killer.start()
        with pytest.raises(QueryOutOfMemory):
            execute(db, endless, timeout=60)
        killer.join()
        assert execute(db, "SELECT count(*) FROM customers").rows == ((40,),) and db.worker.starts == 2
