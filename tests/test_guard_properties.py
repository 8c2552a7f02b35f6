"""Property-based tests: whatever text arrives as SQL (``edgesql run``), as a question, or as the model's answer
(``edgesql ask``), the CLI ends with a documented exit code and at most one line on stderr, never a traceback, and
the database's directory is byte-for-byte unchanged.

Arbitrary bytes are turned into text the way Python turns argv bytes into ``sys.argv`` (UTF-8 with
``surrogateescape``), so invalid UTF-8 arrives as it would from a shell.
"""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import ENGINES, EXAMPLES, snapshot
from edge_sql.cli import app
from edge_sql.errors import EXIT_CODES

runner = CliRunner()

#: Exit codes each command may end with on arbitrary input (all documented in ``EXIT_CODES``).
RUN_CODES = {0, 6}
ASK_CODES = {0, 2, 5}

SQL_WORDS = [
    "SELECT", "FROM", "WHERE", "WITH", "RECURSIVE", "UNION", "ALL", "ATTACH", "DROP", "TABLE", "PRAGMA", "VACUUM",
    "INTO", "COPY", "TO", "INSTALL", "LOAD", "SET", "CALL", "DELETE", "INSERT", "UPDATE", "CREATE", "TEMP", "read_csv",
    "glob", "getenv", "load_extension", "readfile", "count(*)", "*", "customers", "orders", "order_items", "products",
    "'/etc/passwd'", '"x.csv"', "(", ")", ",", ";", "--", "/*", "*/", "'", '"', "`", "[", "]", "1", "-1", "0x7f",
    "||", "=", "lpad", "printf('%.*c',", "NULL", "\x00", "\udcff", "ＳＥＬＥＣＴ", "\u200b", "\n",
]

#: Text that looks like SQL often enough to get past the parser now and then, mixed with arbitrary text and bytes.
sql_like = st.lists(st.sampled_from(SQL_WORDS), max_size=25).map(" ".join)
arbitrary_text = st.text(max_size=300)
arbitrary_bytes = st.binary(max_size=300).map(lambda raw: os.fsdecode(raw))
anything = st.one_of(sql_like, arbitrary_text, arbitrary_bytes)

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    """One private copy of each example database, each in its own directory (checked after every example)."""
    copies = {}
    for engine in ENGINES:
        directory = tmp_path_factory.mktemp(f"property-{engine}")
        shutil.copyfile(EXAMPLES / f"shop.{engine}", directory / f"shop.{engine}")
        copies[engine] = (directory / f"shop.{engine}", snapshot(directory))
    return copies


def check_ending(result, allowed: set[int]) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in allowed and result.exit_code in EXIT_CODES, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        assert result.stderr.startswith("edgesql: ") and result.stderr.count("\n") == 1, repr(result.stderr)


@PROPERTY_SETTINGS
@given(engine=st.sampled_from(ENGINES), sql=anything)
def test_any_text_as_sql_through_run(databases, engine, sql):
    db, before = databases[engine]
    result = runner.invoke(app, ["run", "--db", str(db), "--timeout", "1", "--max-rows", "5", "--", sql])
    check_ending(result, RUN_CODES)
    assert snapshot(db.parent) == before


@PROPERTY_SETTINGS
@given(engine=st.sampled_from(ENGINES), question=anything, answer=anything)
def test_any_question_and_any_model_answer_through_ask(databases, fake_model, engine, question, answer):
    db, before = databases[engine]
    fake_model(answer)
    result = runner.invoke(app, ["ask", "--db", str(db), "--model", "fake", "-n", "2", "--timeout", "1", "--",
                                 question])
    check_ending(result, ASK_CODES)
    assert snapshot(db.parent) == before
