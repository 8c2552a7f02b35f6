"""The docs cannot drift: the README's commands, exit codes and options match the code."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from edge_sql.cli import app
from edge_sql.errors import EXIT_CODES

README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS = [c.name or c.callback.__name__ for c in app.registered_commands]
runner = CliRunner()


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = next(line for line in ci.splitlines() if "pytest" in line and not line.startswith("#"))
    assert f"\n{command}\n" in README


def test_the_readme_first_command_asks_the_example_database():
    assert re.search(r'pip install -e "\.\[demo\]" && edgesql ask --db examples/shop\.sqlite "[^"]+"', README)


def test_every_exit_code_is_in_the_readme_table():
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, re.MULTILINE))
    assert sorted(map(int, table)) == sorted(EXIT_CODES)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_is_documented(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert f"edgesql {command}" in README


@pytest.mark.parametrize("option", ["--db", "--model", "--candidates", "--temperature", "--seed", "--format",
                                    "--max-rows", "--timeout", "--memory", "--show-candidates", "--early-stop", "--output", "--log", "--log-rows",
                                    "--threads", "--explain", "--model-timeout"])
def test_every_ask_option_is_documented(option):
    assert option in runner.invoke(app, ["ask", "--help"]).stdout
    assert f"`{option}" in README
