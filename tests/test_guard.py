"""The guard, proved with an adversarial corpus: every case in ``tests/guard/*.sql`` runs through ``edgesql run``
against both example databases, and then each lower layer is shown to stop attacks on its own, with the statement
check out of the way.

The layers (see ``edge_sql/guard.py``, ``database.py``, ``execute.py``):

1. the statement check on the sqlglot tree: one statement, only a query, allow-listed functions only;
2. the connection: SQLite ``mode=ro``, ``query_only``, an authorizer and limits; DuckDB ``read_only``, no external
   access or extensions, configuration locked, and DuckDB's own parser must find one SELECT;
3. the resources: a time limit, a row cap, DuckDB's memory and thread caps;
4. nothing changes: every test compares the database's directory byte for byte before and after.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ENGINES, EXAMPLES, snapshot
from edge_sql.cli import app
from edge_sql.steps.database import open_database
from edge_sql.errors import REFUSED, QueryFailed, QueryRefused, QueryTimeout
from edge_sql.steps.execute import execute
from edge_sql.steps.guard import MAX_SQL_LENGTH, check

CORPUS = Path(__file__).parent / "guard"
HEADER = re.compile(r"^--\s*(title|expect|rule|engines|timeout|rows|escapes):\s*(.*?)\s*$")
ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})")
OUTCOMES = ("ok", "refused", "timeout", "failed", "stopped")
SECRET = "name,password\nalice,hunter2\n"

runner = CliRunner()


# --- the corpus ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One corpus case: a query and what ``edgesql run`` must make of it."""

    source: str
    title: str
    sql: str
    expect: str
    rule: str | None = None
    engines: tuple[str, ...] = ENGINES
    timeout: float = 5.0
    rows: int | None = None


def parse_corpus(text: str, source: str) -> list[Case]:
    """The cases of one corpus file: a ``-- title:`` line, its ``-- key: value`` header, then its SQL."""
    blocks: list[tuple[dict[str, str], list[str]]] = []
    for line in text.splitlines():
        match = HEADER.match(line)
        if match and match.group(1) == "title":
            blocks.append(({"title": match.group(2)}, []))
        elif not blocks:
            continue  # the file's preamble
        elif match and not blocks[-1][1]:
            blocks[-1][0][match.group(1)] = match.group(2)
        else:
            blocks[-1][1].append(line)
    cases = []
    for header, lines in blocks:
        sql = "\n".join(lines).strip()
        if header.get("escapes") == "yes":
            sql = ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), sql)
        case = Case(
            source=source,
            title=header["title"],
            sql=sql,
            expect=header.get("expect", ""),
            rule=header.get("rule"),
            engines=tuple(header["engines"].split()) if "engines" in header else ENGINES,
            timeout=float(header.get("timeout", 5.0)),
            rows=int(header["rows"]) if "rows" in header else None,
        )
        assert case.expect in OUTCOMES, f"{source}: {case.title!r} expects {case.expect!r}, not one of {OUTCOMES}"
        assert set(case.engines) <= set(ENGINES), f"{source}: {case.title!r} names an unknown engine"
        cases.append(case)
    return cases


def load_corpus() -> list[Case]:
    cases = [case for path in sorted(CORPUS.glob("*.sql")) for case in parse_corpus(path.read_text("utf-8"), path.name)]
    return cases + generated_cases()


def generated_cases() -> list[Case]:
    """Cases too big to write out by hand: very long queries and deep nesting (the parser's recursion)."""
    numbers = ", ".join(str(n) for n in range(1, 12_000))
    return [
        Case("generated", "a query one character over the length limit", "SELECT 1" + " " * (MAX_SQL_LENGTH - 7),
             "refused", rule="length"),
        Case("generated", "a 300 KB query", "SELECT '" + "x" * 300_000 + "'", "refused", rule="length"),
        Case("generated", "a 70 KB IN list", f"SELECT count(*) FROM customers WHERE customer_id IN ({numbers})", "ok",
             rows=1),
        Case("generated", "a 90 KB string literal", "SELECT length('" + "DROP TABLE customers; " * 4000 + "') AS n",
             "ok", rows=1),
        Case("generated", "15 nested subqueries", "SELECT count(*) FROM " + "(SELECT * FROM " * 15 + "customers"
             + ") AS t" * 15, "ok", rows=1),
        Case("generated", "40 nested subqueries: past SQLite's parser stack", "SELECT count(*) FROM "
             + "(SELECT * FROM " * 40 + "customers" + ") AS t" * 40, "failed", engines=("sqlite",)),
        Case("generated", "40 nested subqueries", "SELECT count(*) FROM " + "(SELECT * FROM " * 40 + "customers"
             + ") AS t" * 40, "ok", engines=("duckdb",), rows=1),
        Case("generated", "500 nested subqueries", "SELECT * FROM " + "(SELECT * FROM " * 500 + "customers"
             + ")" * 500, "refused", rule="nesting"),
        Case("generated", "20,000 nested parentheses", "SELECT " + "(" * 20_000 + "1" + ")" * 20_000, "refused",
             rule="nesting"),
        Case("generated", "a DROP behind 20,000 nested parentheses",
             "SELECT " + "(" * 20_000 + "1" + ")" * 20_000 + "; DROP TABLE customers", "refused"),
        Case("generated", "3,000 nested NOTs", "SELECT " + "NOT " * 3000 + "1", "refused", rule="nesting"),
        Case("generated", "a 2,000-term AND chain: past SQLite's expression depth", "SELECT count(*) FROM customers "
             "WHERE " + " AND ".join(["1 = 1"] * 2000), "failed", engines=("sqlite",)),
        Case("generated", "a 2,000-term AND chain", "SELECT count(*) FROM customers WHERE "
             + " AND ".join(["1 = 1"] * 2000), "ok", engines=("duckdb",), rows=1),
        Case("generated", "a 300-term UNION ALL: past SQLite's compound limit",
             " UNION ALL ".join(["SELECT 1 AS x"] * 300), "failed", engines=("sqlite",)),
        Case("generated", "a 300-term UNION ALL", " UNION ALL ".join(["SELECT 1 AS x"] * 300), "ok",
             engines=("duckdb",), rows=5),
    ]


CASES = load_corpus()


def case_id(case: Case, engine: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", case.title.lower()).strip("-")[:60]
    return f"{engine}-{Path(case.source).stem}-{slug}"


def test_the_corpus_is_large_and_every_title_is_unique():
    assert len(CASES) >= 60
    titles = [(case.source, case.title) for case in CASES]
    assert len(titles) == len(set(titles))
    assert {case.expect for case in CASES} == set(OUTCOMES)


def copy_database(engine: str, directory: Path) -> Path:
    """A private copy of the example database, with a secret file beside it for attacks to aim at."""
    target = directory / f"shop.{engine}"
    shutil.copyfile(EXAMPLES / f"shop.{engine}", target)
    (directory / "secret.csv").write_text(SECRET)
    return target


def one_line(text: str) -> str:
    assert text.endswith("\n") and text.count("\n") == 1, f"expected one line on stderr, got {text!r}"
    assert text.startswith("edgesql: ")
    return text


@pytest.mark.parametrize(
    "case, engine", [pytest.param(case, engine, id=case_id(case, engine)) for case in CASES for engine in case.engines]
)
def test_corpus_case(case: Case, engine: str, tmp_path: Path):
    db = copy_database(engine, tmp_path)
    sql = case.sql.replace("{dir}", str(tmp_path)).replace("{db}", str(db))
    before = snapshot(tmp_path)
    started = time.monotonic()

    result = runner.invoke(app, ["run", "--db", str(db), "--format", "json", "--max-rows", "5",
                                 "--timeout", str(case.timeout), "--", sql])

    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if case.expect == "ok":
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        answer = json.loads(result.stdout)
        if case.rows is not None:
            assert len(answer["rows"]) == case.rows
    else:
        assert result.exit_code == REFUSED, result.output
        assert result.stdout == ""
        message = one_line(result.stderr)
        if case.expect == "refused":
            assert message.startswith("edgesql: refused (")
            if case.rule:
                assert message.startswith(f"edgesql: refused ({case.rule}): ")
        elif case.expect == "timeout":
            assert f"the {case.timeout:g} s time limit" in message and "--timeout" in message
            assert time.monotonic() - started < 30
        elif case.expect == "stopped":  # whichever limit comes first on this machine: the clock or a memory cap
            timed_out = f"the {case.timeout:g} s time limit" in message
            out_of_memory = message.startswith("edgesql: the query needed more than the ") and "--memory" in message
            assert timed_out or out_of_memory or message.startswith("edgesql: the database refused the query: "), message
            assert time.monotonic() - started < 30
        else:
            assert message.startswith("edgesql: the database refused the query: ")
    assert snapshot(tmp_path) == before


# --- layer 1 alone: the statement check refuses every attack without a database -----------------------------------


ATTACK_CASES = [case for case in CASES if case.expect == "refused"]


@pytest.mark.parametrize("case", ATTACK_CASES, ids=[case_id(c, "guard") for c in ATTACK_CASES])
def test_the_statement_check_alone_refuses_every_corpus_attack(case: Case):
    for engine in case.engines:
        with pytest.raises(QueryRefused) as refusal:
            check(case.sql, engine)
        if case.rule:
            assert refusal.value.rule == case.rule


# --- layer 2 alone: the connection stops attacks that skip the statement check --------------------------------------

#: Attacks run straight through ``execute``, with no statement check: every one must fail and change nothing.
BOTH = [
    "ATTACH '{dir}/other.db' AS other",
    "ATTACH '{db}' AS again",
    "ATTACH ':memory:' AS scratch",
    "DETACH main",
    "VACUUM INTO '{dir}/copy.db'",
    "VACUUM",
    "ANALYZE",
    "PRAGMA query_only = 0",
    "PRAGMA journal_mode = WAL",
    "CREATE TEMP TABLE scratch AS SELECT 1 AS x",
    "CREATE TEMP VIEW v AS SELECT 1 AS x",
    "CREATE TABLE loot AS SELECT * FROM customers",
    "CREATE INDEX ix ON customers (city)",
    "DROP TABLE customers",
    "DELETE FROM orders",
    "UPDATE products SET price = 0",
    "INSERT INTO customers (customer_id, first_name) VALUES (999, 'Mallory')",
    "WITH doomed AS (SELECT 1) DELETE FROM orders",
    "ALTER TABLE customers ADD COLUMN pwned TEXT",
    "SELECT 1; DROP TABLE customers",
    "SELECT 1; CREATE TEMP TABLE scratch AS SELECT 1",
    "BEGIN",
    "SELECT load_extension('/opt/evil.so')",
    "SELECT readfile('/etc/passwd')",
    "SELECT writefile('{dir}/planted.txt', 'x')",
    "SELECT fts3_tokenizer('simple')",
    "SELECT getenv('HOME')",
    "SELECT * FROM read_csv('{dir}/secret.csv')",
    "SELECT * FROM '{dir}/secret.csv'",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('{db}')",
    "SELECT * FROM glob('{dir}/*')",
    "SELECT * FROM sqlite_scan('{db}', 'customers')",
    "COPY customers TO '{dir}/out.csv'",
    "COPY (SELECT 1) TO '{dir}/out.parquet' (FORMAT PARQUET)",
    "EXPORT DATABASE '{dir}/export'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET threads = 64",
    "SET enable_external_access = true",
    "RESET memory_limit",
    "CALL pragma_version()",
    "CHECKPOINT",
    "USE memory",
    "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')",
    "CREATE MACRO twice(x) AS x * 2",
]
ONLY = {
    "sqlite": [
        "SELECT * FROM pragma_table_info('customers')",
        "SELECT zeroblob(1000)",
        "SELECT randomblob(16)",
        "SAVEPOINT a",
        "CREATE TRIGGER t AFTER INSERT ON orders BEGIN DELETE FROM customers; END",
    ],
    "duckdb": [
        "SELECT * FROM read_csv_auto('{dir}/secret.csv')",
        # DuckDB allow-lists the database it opened (and its WAL, checkpoint and recovery files, and a .tmp folder):
        # every reader of its own file and folder must be refused all the same.
        "SELECT * FROM read_text('{db}')",
        "SELECT * FROM read_blob('{db}.wal')",
        "SELECT * FROM read_blob('{db}.wal.checkpoint')",
        "SELECT * FROM read_blob('{db}.tmp/x')",
        "SELECT * FROM read_blob('{dir}/*')",
        "SELECT * FROM read_csv('{db}')",
        "SELECT * FROM read_json('{db}')",
        "SELECT * FROM read_parquet('{db}')",
        "SELECT * FROM '{db}'",
        "SELECT * FROM glob('{db}')",
        "SELECT * FROM glob('{db}*')",
        "SET disabled_filesystems = ''",
        "RESET disabled_filesystems",
        "SELECT * FROM read_parquet('{dir}/x.parquet')",
        "SELECT * FROM read_json_auto('{dir}/secret.csv')",
        "SELECT * FROM parquet_metadata('{dir}/x.parquet')",
        "SELECT * FROM 'https://example.com/data.csv'",
        "IMPORT DATABASE '{dir}'",
        "PRAGMA threads = 64",
        "SET VARIABLE x = 1",
        "CREATE TEMP MACRO twice(x) AS x * 2",
    ],
}
LOWER_LAYER_ATTACKS = [(engine, sql) for engine in ENGINES for sql in BOTH + ONLY[engine]]


@pytest.fixture(scope="module")
def opened(tmp_path_factory):
    """One open database per engine in a private directory, shared by the lower-layer attacks (as ``ask`` shares
    one connection between its candidates), with its directory's snapshot taken before any attack."""
    opened = {}
    for engine in ENGINES:
        directory = tmp_path_factory.mktemp(f"lower-{engine}")
        path = copy_database(engine, directory)
        before = snapshot(directory)
        opened[engine] = (open_database(path), directory, before)
    yield opened
    for db, directory, before in opened.values():
        db.close()
        assert snapshot(directory) == before


@pytest.mark.parametrize("engine, sql", LOWER_LAYER_ATTACKS, ids=[f"{e}-{s[:50]}" for e, s in LOWER_LAYER_ATTACKS])
def test_the_connection_alone_stops_attacks_that_skip_the_statement_check(opened, engine, sql):
    db, directory, before = opened[engine]
    with pytest.raises(QueryFailed) as failure:
        execute(db, sql.replace("{dir}", str(directory)).replace("{db}", str(db.path)), timeout=5)
    assert not isinstance(failure.value, QueryTimeout)
    assert snapshot(directory) == before
    # The connection is still sound: no transaction left open, no setting changed, no temp object made.
    assert execute(db, "SELECT count(*) FROM customers", timeout=5).rows == ((40,),)


def test_sqlite_read_only_mode_and_limits_hold_without_the_authorizer(tmp_path):
    """With the authorizer gone (and so query_only free to be turned off), mode=ro and the attach limit still keep
    every byte of the directory as it was; only SQLite's in-memory temp schema can still be written."""
    db = open_database(copy_database("sqlite", tmp_path))
    before = snapshot(tmp_path)
    try:
        db.connection.set_authorizer(None)
        execute(db, "PRAGMA query_only = 0")
        for sql in ("DROP TABLE customers", "INSERT INTO customers (customer_id) VALUES (999)",
                    f"ATTACH '{tmp_path}/other.db' AS other", f"VACUUM INTO '{tmp_path}/copy.db'", "VACUUM",
                    "PRAGMA journal_mode = WAL", "CREATE INDEX ix ON customers (city)"):
            with pytest.raises(QueryFailed):
                execute(db, sql)
        execute(db, "CREATE TEMP TABLE scratch AS SELECT 1 AS x")  # in memory: the authorizer is what stops this
    finally:
        db.close()
    assert snapshot(tmp_path) == before


def test_sqlite_connection_is_locked_down(tmp_path):
    db = open_database(copy_database("sqlite", tmp_path))
    try:
        assert db.connection.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED) == 0
        assert db.connection.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) <= 10_000_000
        with pytest.raises(QueryFailed, match="not authorized"):
            execute(db, "PRAGMA query_only")  # even reading a pragma is denied
    finally:
        db.close()


def test_duckdb_configuration_alone_stops_file_and_extension_access(tmp_path):
    """DuckDB's own settings, with the statement check and execute's statement-type check both skipped."""
    import duckdb

    db = open_database(copy_database("duckdb", tmp_path))
    before = snapshot(tmp_path)
    try:
        settings = dict(db.connection.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', 'lock_configuration', "
            "'autoinstall_known_extensions', 'autoload_known_extensions', 'access_mode', 'threads')").fetchall())
        assert settings == {"enable_external_access": "false", "lock_configuration": "true", "threads": "2",
                            "autoinstall_known_extensions": "false", "autoload_known_extensions": "false",
                            "access_mode": "read_only"}
        # disabled_filesystems is applied to the file system itself (duckdb_settings() shows it empty): its effect is
        # what is checked, below and in the lower-layer attacks.
        for sql in (f"SELECT * FROM read_csv('{tmp_path}/secret.csv')", f"SELECT * FROM '{tmp_path}/secret.csv'",
                    f"COPY customers TO '{tmp_path}/out.csv'", f"EXPORT DATABASE '{tmp_path}/export'",
                    f"ATTACH '{tmp_path}/other.duckdb' AS other", "INSTALL httpfs", "LOAD httpfs",
                    "SET enable_external_access = true", "SET threads = 64", "SET memory_limit = '100GB'",
                    "DROP TABLE customers", "INSERT INTO customers (customer_id) VALUES (999)",
                    f"SELECT * FROM read_blob('{tmp_path}/shop.duckdb')", f"SELECT * FROM read_text('{tmp_path}/*')",
                    "SET disabled_filesystems = ''"):
            with pytest.raises(duckdb.Error):
                db.connection.execute(sql)
    finally:
        db.close()
    assert snapshot(tmp_path) == before


def test_duckdb_reads_its_whole_file_after_the_file_system_is_closed(tmp_path):
    """The local file system is disabled once the database is open: blocks read later (a table of many row groups,
    none in memory yet) still come through the handle DuckDB holds."""
    import duckdb

    path = tmp_path / "big.duckdb"
    with duckdb.connect(str(path)) as writer:
        writer.execute("CREATE TABLE numbers AS SELECT range AS n, md5(range::VARCHAR) AS h FROM range(2000000)")
    assert path.stat().st_size > 20_000_000
    with open_database(path) as db:
        assert execute(db, "SELECT count(*), sum(n), count(DISTINCT h) FROM numbers", timeout=30).rows == (
            (2_000_000, 1_999_999_000_000, 2_000_000),)
        with pytest.raises(QueryFailed, match="disabled"):
            execute(db, f"SELECT * FROM read_blob('{path}')")


# --- layer 3 alone: the time limit and the row cap ------------------------------------------------------------------

RUNAWAY = [
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    "SELECT count(*) FROM customers, products, orders, order_items AS a, order_items AS b",
]


@pytest.mark.parametrize("sql", RUNAWAY)
def test_the_time_limit_alone_stops_a_runaway_query(shop, sql):
    before = snapshot(shop.parent)
    with open_database(shop) as db:
        started = time.monotonic()
        with pytest.raises(QueryTimeout, match="0.5 s time limit"):
            execute(db, sql, timeout=0.5)
        assert time.monotonic() - started < 30
        assert execute(db, "SELECT count(*) FROM orders").rows == ((150,),)
    assert snapshot(shop.parent) == before


def test_the_row_cap_alone_reads_only_max_rows_of_an_endless_result(shop):
    endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"
    with open_database(shop) as db:
        result = execute(db, endless, max_rows=7, timeout=10)
        assert result.rows == tuple((n,) for n in range(1, 8))
        assert result.truncated
        # What the endless query would still compute is stopped: the next query and close() do not wait for it.
        started = time.monotonic()
        assert execute(db, "SELECT 42", timeout=10).rows == ((42,),)
    assert time.monotonic() - started < 5


def test_duckdb_runs_with_a_memory_and_thread_cap(tmp_path):
    with open_database(copy_database("duckdb", tmp_path)) as db:
        memory, threads = execute(db, "SELECT current_setting('memory_limit'), current_setting('threads')").rows[0]
    assert memory.endswith(("MiB", "MB", "GiB", "GB")) and threads == 2
