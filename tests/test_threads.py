"""`--threads` reaches the model's loader on every command that loads a model; without it (or the config file's
`threads`), the cores free when the model loads (``backends/cores``), said on the line that names the model when busy
cores took threads away."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, FakeModel
from edge_sql.cli import app
from edge_sql.backends import cores, default_threads, register_model, unregister_model
from edge_sql.preset import DEFAULT_PRESET

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


@pytest.fixture
def one_core_busy(monkeypatch):
    """A 2-core machine on which another process keeps one core busy."""
    monkeypatch.setattr(cores, "read_cores", lambda: cores.Cores(usable=2, busy=1.0))
    cores.forget()


@pytest.mark.parametrize("command", ["ask", "shell", "eval"])
def test_without_threads_the_model_gets_the_free_cores(command, loads, shop, one_core_busy,
                                                                              monkeypatch, tmp_path):
    monkeypatch.setenv("EDGESQL_HISTORY", str(tmp_path / "history"))
    args, stdin = commands(shop)[command]
    result = runner.invoke(app, args, input=stdin)
    assert result.exit_code == 0, result.output
    assert loads == [1]
    assert "thread" not in result.stderr  # --model named it: nothing more on stderr, which is kept for errors


def test_the_default_model_and_its_threads_are_said_on_one_line(shop, one_core_busy, monkeypatch):
    seen = []
    register_model(DEFAULT_PRESET, lambda threads=None: seen.append(threads) or FakeModel(
        ["SELECT count(*) FROM customers"], name=DEFAULT_PRESET))
    try:
        result = runner.invoke(app, ["ask", "--db", str(shop), "How many customers?"])
    finally:
        unregister_model(DEFAULT_PRESET)
    assert result.exit_code == 0, result.output
    assert seen == [1]
    assert f"edgesql: model {DEFAULT_PRESET} (default), 1 thread: 1 of 2 cores busy\n" in result.stderr


@pytest.mark.parametrize("command", ["ask", "shell"])
def test_the_config_files_threads_win_over_the_free_cores_and_the_flag_over_both(command, loads, shop, one_core_busy,
                                                                                 monkeypatch, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("threads = 2\n")
    monkeypatch.setenv("EDGESQL_CONFIG", str(config))
    monkeypatch.setenv("EDGESQL_HISTORY", str(tmp_path / "history"))
    args, stdin = commands(shop)[command]
    pinned = runner.invoke(app, args, input=stdin)
    flagged = runner.invoke(app, [*args, "--threads", "3"], input=stdin)
    assert pinned.exit_code == flagged.exit_code == 0, pinned.output + flagged.output
    assert loads == [2, 3]
    assert "thread" not in pinned.stderr + flagged.stderr  # pinned: nothing to explain


def test_a_quiet_machine_adds_nothing_to_the_line(shop, loads):
    result = runner.invoke(app, ["ask", "--db", str(shop), "--model", "probe", "How many customers?"])
    assert result.exit_code == 0, result.output
    assert loads == [default_threads()] and "thread" not in result.stderr
