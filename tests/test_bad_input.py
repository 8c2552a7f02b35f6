"""Every bad input to the CLI ends the same way: one clear line on stderr that names the fix, the documented exit code
(``edge_sql.errors.EXIT_CODES``), no traceback, and not a byte changed in the database's directory.

Most tests use ``CliRunner`` on the Typer app. The few that depend on the console script's own handling (one-line
usage errors, a closed output pipe, raw bytes in argv) call ``edge_sql.cli.main`` or run ``python -m edge_sql`` in a
subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from conftest import ENGINES, EXAMPLES, snapshot
from edge_sql import cli
from edge_sql.errors import BROKEN_PIPE, DATABASE, EXIT_CODES, MODEL, OK, USAGE

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(cli.app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in EXIT_CODES
    return result


def one_line(stderr: str, *fragments: str) -> str:
    """``stderr`` is exactly one ``edgesql: …`` line, holding each fragment."""
    assert "Traceback" not in stderr
    assert stderr.startswith("edgesql: ") and stderr.endswith("\n") and stderr.count("\n") == 1, repr(stderr)
    for fragment in fragments:
        assert fragment in stderr
    return stderr


def fails(directory: Path, code: int, args: list[str], *fragments: str):
    """Run ``args``; it must end with ``code``, one line naming ``fragments``, no stdout, and no change in
    ``directory``."""
    before = snapshot(directory)
    result = invoke(*args)
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    one_line(result.stderr, *fragments)
    assert snapshot(directory) == before
    return result


def run_and_ask(db: Path, fake_model) -> list[list[str]]:
    """The same bad database given to ``run``, ``ask`` and ``schema``."""
    fake_model("SELECT count(*) FROM customers")
    return [["run", "--db", str(db), "SELECT 1"], ["ask", "--db", str(db), "--model", "fake", "How many?"],
            ["schema", "--db", str(db), "--model", "fake"]]


def example(engine: str, directory: Path, name: str | None = None) -> Path:
    target = directory / (name or f"shop.{engine}")
    shutil.copyfile(EXAMPLES / f"shop.{engine}", target)
    return target


# --- the database file ----------------------------------------------------------------------------------------------


def test_a_missing_file(tmp_path, fake_model):
    for args in run_and_ask(tmp_path / "missing.sqlite", fake_model):
        fails(tmp_path, DATABASE, args, "no such database file", "missing.sqlite")
    assert list(tmp_path.iterdir()) == []  # no empty database was created in its place


def test_a_missing_file_given_to_schema_without_a_model_is_one_line(tmp_path):
    fails(tmp_path, DATABASE, ["schema", "--db", str(tmp_path / "missing.sqlite")], "no such database file")


def test_a_directory(tmp_path, fake_model):
    (tmp_path / "data.sqlite").mkdir()
    for args in run_and_ask(tmp_path / "data.sqlite", fake_model):
        fails(tmp_path, DATABASE, args, "is a directory", "give the path of a SQLite or DuckDB file")


def test_an_empty_file(tmp_path, fake_model):
    (tmp_path / "empty.sqlite").write_bytes(b"")
    for args in run_and_ask(tmp_path / "empty.sqlite", fake_model):
        fails(tmp_path, DATABASE, args, "is empty", "give the path of a SQLite or DuckDB file")


def test_a_text_file_named_sqlite(tmp_path, fake_model):
    (tmp_path / "notes.sqlite").write_text("CREATE TABLE t (x);\nthis is not a database\n" * 50)
    for args in run_and_ask(tmp_path / "notes.sqlite", fake_model):
        fails(tmp_path, DATABASE, args, "is not a SQLite or DuckDB database")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9])
def test_a_truncated_database(tmp_path, fake_model, engine, keep):
    data = (EXAMPLES / f"shop.{engine}").read_bytes()
    db = tmp_path / f"cut.{engine}"
    db.write_bytes(data[: int(len(data) * keep)])
    for args in run_and_ask(db, fake_model):
        fails(tmp_path, DATABASE, args, "truncated", "restore it from a good copy")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_corrupt_database(tmp_path, fake_model, engine):
    data = bytearray((EXAMPLES / f"shop.{engine}").read_bytes())
    start = 100 if engine == "sqlite" else 4096  # past SQLite's header / DuckDB's magic bytes: the schema is hit
    data[start:start + 8192] = b"\xa5" * 8192
    db = tmp_path / f"bad.{engine}"
    db.write_bytes(bytes(data))
    for args in run_and_ask(db, fake_model):
        fails(tmp_path, DATABASE, args, "damaged", "restore it from a good copy")


def test_a_sqlite_database_with_no_tables(tmp_path, fake_model):
    connection = sqlite3.connect(tmp_path / "blank.sqlite")
    connection.execute("PRAGMA user_version = 1")  # a valid header and no tables
    connection.commit()
    connection.close()
    for args in run_and_ask(tmp_path / "blank.sqlite", fake_model):
        fails(tmp_path, DATABASE, args, "has no tables")


def test_a_duckdb_database_with_no_tables(tmp_path, fake_model):
    connection = duckdb.connect(str(tmp_path / "blank.duckdb"))
    connection.execute("CREATE SEQUENCE s")
    connection.close()
    for args in run_and_ask(tmp_path / "blank.duckdb", fake_model):
        fails(tmp_path, DATABASE, args, "has no tables")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_path_with_spaces_and_non_ascii_characters(tmp_path, fake_model, engine):
    directory = tmp_path / "my data #1 é"
    directory.mkdir()
    db = example(engine, directory, f"boutique café {engine}.db")
    before = snapshot(tmp_path)
    fake_model("SELECT count(*) FROM customers")
    assert invoke("run", "--db", str(db), "SELECT count(*) FROM orders").exit_code == OK
    result = invoke("ask", "--db", str(db), "--model", "fake", "--format", "json", "How many customers?")
    assert result.exit_code == OK and json.loads(result.stdout)["rows"] == [[40]]
    assert snapshot(tmp_path) == before  # in particular no file called "my data " or "boutique café …" appeared


def test_a_sqlite_path_with_uri_characters(tmp_path):
    """``#`` and ``?`` stay in the path: a naive ``file:`` URI would open (and create) ``we`` read-write."""
    directory = tmp_path / "we?ird#dir"
    directory.mkdir()
    db = example("sqlite", directory, "shop?mode=rw#x.sqlite")
    before = snapshot(tmp_path)
    assert invoke("run", "--db", str(db), "SELECT count(*) FROM orders").exit_code == OK
    assert invoke("run", "--db", str(db), "DELETE FROM orders").exit_code == 6
    assert snapshot(tmp_path) == before


def test_a_duckdb_path_with_a_question_mark(tmp_path):
    """DuckDB reads ``?`` in a path as options; edgesql says so instead of a permission error about another path."""
    directory = tmp_path / "what?"
    directory.mkdir()
    db = example("duckdb", directory)
    fails(tmp_path, DATABASE, ["run", "--db", str(db), "SELECT 1"], "rename the file or its folder without '?'")


# --- a database in use or in a read-only place ---------------------------------------------------------------------


@contextmanager
def holding(code: str, db: Path):
    """Another process that opens ``db`` and holds it until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", code, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


HOLD_SQLITE = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN "
               "EXCLUSIVE'); print('holding', flush=True); sys.stdin.read()")
HOLD_DUCKDB = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('holding', flush=True); sys.stdin.read()"


def test_a_sqlite_database_in_an_exclusive_transaction_of_another_process(tmp_path):
    db = example("sqlite", tmp_path)
    with holding(HOLD_SQLITE, db):
        fails(tmp_path, DATABASE, ["run", "--db", str(db), "SELECT 1"], "is locked by another process", "try again")


def test_a_duckdb_database_open_for_writing_in_another_process(tmp_path):
    db = example("duckdb", tmp_path)
    with holding(HOLD_DUCKDB, db):
        fails(tmp_path, DATABASE, ["run", "--db", str(db), "SELECT 1"], "is locked by another process", "try again")


def wal_database(directory: Path, pending: bool) -> Path:
    """The example as a WAL-mode SQLite file in ``directory``; with ``pending``, a copy taken while a writer had a
    change in the -wal file only: the database file and its -wal file, without the -shm file."""
    staging = directory.parent / f"{directory.name}-writer"
    staging.mkdir()
    db = example("sqlite", staging)
    connection = sqlite3.connect(db)
    connection.execute("PRAGMA journal_mode = WAL")
    if pending:
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        connection.execute("CREATE TABLE extra (x)")
        connection.commit()
        for name in (db.name, f"{db.name}-wal"):
            shutil.copyfile(staging / name, directory / name)
    connection.close()
    if not pending:
        shutil.copyfile(db, directory / db.name)
    shutil.rmtree(staging)
    return directory / db.name


def read_only_command(directory: Path, args: list[str]) -> list[str] | None:
    """``python -m edge_sql args`` with ``directory`` truly read-only: for root (whom permissions do not stop) a
    read-only bind mount in a private mount namespace; None where neither works."""
    command = [sys.executable, "-m", "edge_sql", *args]
    if os.geteuid() != 0:
        return command
    if shutil.which("unshare") is None:
        return None
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    wrapped = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(directory), *command]
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(directory), "true"],
                           capture_output=True)
    return wrapped if probe.returncode == 0 else None


def run_read_only(directory: Path, args: list[str]) -> subprocess.CompletedProcess:
    command = read_only_command(directory, args)
    if command is None:
        pytest.skip("cannot make a directory read-only here (root without mount namespaces)")
    mode = directory.stat().st_mode
    directory.chmod(0o555)
    try:
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)
    finally:
        directory.chmod(mode)


def test_a_clean_wal_database_in_a_read_only_directory_answers(tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    db = wal_database(directory, pending=False)
    before = snapshot(directory)
    result = run_read_only(directory, ["run", "--db", str(db), "--format", "csv", "SELECT count(*) FROM customers"])
    assert (result.returncode, result.stdout, result.stderr) == (OK, "COUNT(*)\n40\n", "")
    assert snapshot(directory) == before


def test_a_clean_wal_database_leaves_no_wal_or_shm_file(tmp_path):
    db = wal_database(tmp_path, pending=False)
    before = snapshot(tmp_path)
    assert invoke("run", "--db", str(db), "SELECT count(*) FROM customers").exit_code == OK
    assert invoke("run", "--db", str(db), "DROP TABLE customers").exit_code == 6
    assert snapshot(tmp_path) == before


def test_a_wal_database_with_unsaved_changes_in_a_read_only_directory(tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    db = wal_database(directory, pending=True)
    before = snapshot(directory)
    result = run_read_only(directory, ["run", "--db", str(db), "SELECT count(*) FROM extra"])
    assert result.returncode == DATABASE and result.stdout == ""
    one_line(result.stderr, "shop.sqlite-wal", "wal_checkpoint")
    assert snapshot(directory) == before


def test_a_wal_database_with_unsaved_changes_is_refused_rather_than_given_a_new_shm_file(tmp_path):
    db = wal_database(tmp_path, pending=True)
    fails(tmp_path, DATABASE, ["run", "--db", str(db), "SELECT count(*) FROM extra"], "shop.sqlite-shm",
          "PRAGMA wal_checkpoint(TRUNCATE)")


# --- the question ---------------------------------------------------------------------------------------------------


@pytest.fixture
def shop_sqlite(tmp_path) -> Path:
    return example("sqlite", tmp_path)


@pytest.mark.parametrize("question", ["", "   ", "\t\n  \r\n"], ids=["empty", "spaces", "whitespace"])
def test_an_empty_question(shop_sqlite, fake_model, question):
    model = fake_model("SELECT count(*) FROM customers")
    fails(shop_sqlite.parent, USAGE, ["ask", "--db", str(shop_sqlite), "--model", "fake", question],
          "the question is empty", "ask something")
    assert model.calls == []


def test_a_100_kb_question(shop_sqlite, fake_model):
    model = fake_model("SELECT count(*) FROM customers")
    fails(shop_sqlite.parent, USAGE, ["ask", "--db", str(shop_sqlite), "--model", "fake", "why? " * 20_000],
          "99,999 characters long", "at most 2,000")
    assert model.calls == []


def test_control_characters_in_the_question_never_reach_the_model(shop_sqlite, fake_model):
    model = fake_model("SELECT count(*) FROM customers")
    before = snapshot(shop_sqlite.parent)
    question = "How\x00 many\x1b[1m customers\x07 are\x7f there?\x0c"
    result = invoke("ask", "--db", str(shop_sqlite), "--model", "fake", question)
    assert result.exit_code == OK and result.stderr == ""
    prompt = str(getattr(model.calls[0]["prompt"], "text", model.calls[0]["prompt"]))
    assert "How many customers are there?" in prompt  # the terminal escape went with the control characters
    assert not any(ch in prompt for ch in "\x00\x1b\x07\x7f\x0c")
    assert snapshot(shop_sqlite.parent) == before


def test_invalid_utf8_in_the_question_through_cli_runner(shop_sqlite, fake_model):
    fake_model("SELECT count(*) FROM customers")
    before = snapshot(shop_sqlite.parent)
    result = invoke("ask", "--db", str(shop_sqlite), "--model", "fake", "How many \udcff\udcfe customers?")
    assert result.exit_code == OK and result.stderr == ""
    assert snapshot(shop_sqlite.parent) == before


def test_a_schema_too_large_for_the_models_context(shop_sqlite, fake_model):
    # 70 tokens for the answer ("How many?") leave 30: not even the smallest pruning of the schema fits
    fake_model("SELECT count(*) FROM customers", context_length=100)
    fails(shop_sqlite.parent, DATABASE, ["ask", "--db", str(shop_sqlite), "--model", "fake", "How many?"],
          "too large for fake", "use a model with a longer context")


# --- the model ------------------------------------------------------------------------------------------------------


def test_a_missing_model_file(shop_sqlite):
    fails(shop_sqlite.parent, MODEL, ["ask", "--db", str(shop_sqlite), "--model", str(shop_sqlite.parent / "no.gguf"),
                                      "How many?"], "no such model file", "no.gguf")


def test_a_model_that_is_not_gguf(shop_sqlite):
    fake = shop_sqlite.parent / "model.gguf"
    fake.write_bytes(b"<html>404 Not Found</html>\n")
    fails(shop_sqlite.parent, MODEL, ["ask", "--db", str(shop_sqlite), "--model", str(fake), "How many?"],
          "is not a GGUF model file")


def test_a_model_path_that_is_a_directory(shop_sqlite):
    model = shop_sqlite.parent / "model.gguf"
    model.mkdir()
    fails(shop_sqlite.parent, MODEL, ["ask", "--db", str(shop_sqlite), "--model", str(model), "How many?"],
          "is a directory", ".gguf file")


def test_an_unknown_model_name(shop_sqlite):
    fails(shop_sqlite.parent, MODEL, ["ask", "--db", str(shop_sqlite), "--model", "gpt-17", "How many?"],
          "unknown model 'gpt-17'", "give a GGUF file path or a preset")


@pytest.mark.parametrize("keep", [64, 0.5])
def test_a_truncated_gguf_model(shop_sqlite, keep):
    """Through a real process: llama.cpp writes to file descriptor 2 itself, and must add nothing to the one line."""
    pytest.importorskip("llama_cpp")
    from fixtures.tiny_gguf import write_tiny_gguf

    whole = write_tiny_gguf(shop_sqlite.parent / "whole.gguf").read_bytes()
    model = shop_sqlite.parent / "cut.gguf"
    model.write_bytes(whole[: keep if isinstance(keep, int) else int(len(whole) * keep)])
    before = snapshot(shop_sqlite.parent)
    result = subprocess.run([sys.executable, "-m", "edge_sql", "ask", "--db", str(shop_sqlite), "--model", str(model),
                             "How many?"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == MODEL and result.stdout == ""
    one_line(result.stderr, "cannot load", "truncated")
    assert snapshot(shop_sqlite.parent) == before


# --- options: through the console script, whose usage errors are one line ------------------------------------------


def main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the console script ``edgesql args`` in this process."""
    monkeypatch.setattr(sys, "argv", ["edgesql", *args])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    captured = capsys.readouterr()
    return ended.value.code, captured.out, captured.err


@pytest.mark.parametrize("option, value, fragment", [
    ("--candidates", "0", "'--candidates'"),
    ("--candidates", "-1", "'--candidates'"),
    ("-n", "0", "'-n'"),
    ("--timeout", "0", "'--timeout'"),
    ("--timeout", "-5", "'--timeout'"),
    ("--max-rows", "0", "'--max-rows'"),
    ("--format", "xml", "xml"),
    ("--temperature", "9", "'--temperature'"),
])
def test_a_bad_option_is_one_usage_line(monkeypatch, capsys, shop_sqlite, fake_model, option, value, fragment):
    model = fake_model("SELECT count(*) FROM customers")
    before = snapshot(shop_sqlite.parent)
    code, out, err = main(monkeypatch, capsys, "ask", "--db", str(shop_sqlite), "--model", "fake", option, value,
                          "How many?")
    assert (code, out) == (USAGE, "")
    one_line(err, fragment, "edgesql --help")
    assert model.calls == []
    assert snapshot(shop_sqlite.parent) == before


@pytest.mark.parametrize("args, fragment", [
    (["run", "--timeout", "0", "SELECT 1"], "'--timeout'"),
    (["run", "--max-rows", "-3", "SELECT 1"], "'--max-rows'"),
    (["run"], "Missing argument"),
    (["run", "SELECT 1", "--frobnicate"], "--frobnicate"),
])
def test_a_bad_run_option_is_one_usage_line(monkeypatch, capsys, shop_sqlite, args, fragment):
    before = snapshot(shop_sqlite.parent)
    code, out, err = main(monkeypatch, capsys, *args[:1], "--db", str(shop_sqlite), *args[1:])
    assert (code, out) == (USAGE, "")
    one_line(err, fragment)
    assert snapshot(shop_sqlite.parent) == before


def test_a_missing_db_option_is_one_usage_line(monkeypatch, capsys):
    code, out, err = main(monkeypatch, capsys, "run", "SELECT 1")
    assert (code, out) == (USAGE, "")
    one_line(err, "--db")


# --- real processes: raw bytes in argv, and a reader that goes away -------------------------------------------------

#: ``edgesql`` with a fake model registered as ``fake`` that answers with the SQL in $EDGESQL_FAKE_SQL.
FAKE_EDGESQL = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from conftest import FakeModel
    from edge_sql.backends import register_model
    model = FakeModel([os.environ["EDGESQL_FAKE_SQL"]])
    register_model("fake", lambda threads=None: model)
    sys.argv[0] = "edgesql"
    from edge_sql.cli import main
    main()
""").format(tests=str(TESTS))


def fake_edgesql(*args: str | bytes, sql: str = "SELECT count(*) FROM customers", **options):
    env = {**os.environ, "EDGESQL_FAKE_SQL": sql}
    return subprocess.Popen([sys.executable, "-c", FAKE_EDGESQL, *args], env=env, cwd=ROOT, **options)


def test_invalid_utf8_bytes_in_argv(shop_sqlite):
    before = snapshot(shop_sqlite.parent)
    process = fake_edgesql(b"ask", b"--db", os.fsencode(shop_sqlite), b"--model", b"fake", b"How many \xff\xfe?",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=60)
    assert process.returncode == OK and err == b"" and b"40" in out
    sql = subprocess.run([sys.executable, "-m", "edge_sql", "run", "--db", os.fsencode(shop_sqlite),
                          b"SELECT 1 AS \xff"], capture_output=True, cwd=ROOT, timeout=60)
    assert sql.returncode == 6 and sql.stdout == b""
    one_line(sql.stderr.decode(), "refused (characters)")
    assert snapshot(shop_sqlite.parent) == before


@pytest.mark.parametrize("command", ["ask", "run"])
def test_output_to_a_closed_pipe(shop_sqlite, command):
    """``edgesql ask … | head -1``: the reader leaves after one line; no BrokenPipe traceback, exit 141."""
    big = "SELECT a.order_item_id, b.order_item_id, a.unit_price FROM order_items AS a, order_items AS b"
    before = snapshot(shop_sqlite.parent)
    common = ["--db", str(shop_sqlite), "--format", "csv", "--max-rows", "50000"]
    args = ["ask", *common, "--model", "fake", "-n", "1", "Everything"] if command == "ask" else ["run", *common, big]
    process = fake_edgesql(*args, sql=big, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline()
    process.stdout.close()  # what head -1 does
    err = process.stderr.read()
    process.wait(timeout=60)
    assert first.startswith(b"order_item_id")
    assert process.returncode == BROKEN_PIPE
    assert b"Traceback" not in err and b"BrokenPipe" not in err and err == b""
    assert snapshot(shop_sqlite.parent) == before


def test_edgesql_run_piped_to_head_in_a_shell(shop_sqlite):
    """The same through a real shell pipeline and the ``python -m edge_sql`` entry point."""
    sql = "SELECT a.order_item_id FROM order_items AS a, order_items AS b"
    pipeline = (f'"{sys.executable}" -m edge_sql run --db "{shop_sqlite}" --format csv --max-rows 50000 "{sql}" '
                '| head -1; echo "status=${PIPESTATUS[0]}"')
    result = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.stdout.splitlines() == ["order_item_id", f"status={BROKEN_PIPE}"]
    assert result.stderr == ""
