"""`--threads` reaches the model's loader on every command that loads a model; without it, the usable cores."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, FakeModel
from edge_sql.cli import app
from edge_sql.backends import default_threads, register_model, unregister_model

runner = CliRunner()


@pytest.fixture
def loads(tmp_path):
    """``--model probe``: a fake model that records the threads it was loaded with."""
    seen = []

    def factory(threads=None):
        seen.append(threads)
        return FakeModel(["SELECT count(*) FROM customers"], name="probe")

    register_model("probe", factory)
    yield seen
    unregister_model("probe")


@pytest.fixture
def shop(tmp_path):
    target = tmp_path / "shop.sqlite"
    shutil.copyfile(EXAMPLES / "shop.sqlite", target)
    return target


def commands(shop):
    data = shop.parent / "questions.jsonl"
    data.write_text(json.dumps({"question": "How many customers?", "query": "SELECT count(*) FROM customers",
                                "db": shop.name}) + "\n")
    return {
        "ask": (["ask", "--db", str(shop), "--model", "probe", "How many customers?"], None),
        "shell": (["shell", "--db", str(shop), "--model", "probe"], "How many customers?\n.quit\n"),
        "eval": (["eval", "--data", str(data), "--model", "probe", "--candidates", "1"], None),
    }


@pytest.mark.parametrize("command", ["ask", "shell", "eval"])
def test_threads_reaches_the_model(command, loads, shop, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGESQL_HISTORY", str(tmp_path / "history"))
    args, stdin = commands(shop)[command]
    result = runner.invoke(app, [*args, "--threads", "3"], input=stdin)
    assert result.exit_code == 0, result.output
    assert ("100.0%" if command == "eval" else "40") in result.stdout
    result = runner.invoke(app, args, input=stdin)
    assert result.exit_code == 0, result.output
    assert loads == [3, default_threads()]


def test_threads_must_be_positive(shop):
    result = runner.invoke(app, ["ask", "--db", str(shop), "--threads", "0", "How many?"])
    assert result.exit_code == 2
