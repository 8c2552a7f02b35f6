"""One truth for defaults: ask, shell and eval run the same model and remedies when no flag says otherwise; their
help, the README's option tables and `edgesql config show` say what that is; and only a command that runs a model
names it, in one short line on stderr."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import typer
from typer.testing import CliRunner

from conftest import EXAMPLES, ROOT, FakeModel
from edge_sql.backends import register_model, unregister_model
from edge_sql.cli import app
from edge_sql.cli.options import default_words
from edge_sql.preset import DEFAULT_PRESET, DEMO_PRESET, get_preset
from edge_sql.weights import choose_model

README = (ROOT / "README.md").read_text(encoding="utf-8")
REMEDIES = ("constrain", "grammar", "repair", "merge", "prune", "hints")
runner = CliRunner()


@pytest.fixture
def loads():
    """The default model and a ``fake`` one through the real door: fakes, with the default model's own preset, that
    record the name of each model loaded and the grammar it was asked under."""
    seen = []

    def factory(name):
        def load(threads=None):
            model = FakeModel([" count(*) FROM customers"], name=name, preset=get_preset(DEFAULT_PRESET))
            seen.append(model)
            return model
        return load

    for name in (DEFAULT_PRESET, "fake"):
        register_model(name, factory(name))
    yield seen
    for name in (DEFAULT_PRESET, "fake"):
        unregister_model(name)


@pytest.fixture
def shop(tmp_path):
    target = tmp_path / "shop.sqlite"
    shutil.copyfile(EXAMPLES / "shop.sqlite", target)
    (tmp_path / "questions.jsonl").write_text(json.dumps({"question": "How many customers?",
                                                          "query": "SELECT count(*) FROM customers",
                                                          "db": target.name}) + "\n")
    return target


def run_each(shop, *flags):
    """ask, shell and eval on the same question, with the same flags: each one's result."""
    commands = {"ask": (["ask", "--db", str(shop), "How many customers?"], None),
                "shell": (["shell", "--db", str(shop)], "How many customers?\n"),
                "eval": (["eval", "--data", str(shop.parent / "questions.jsonl"), "-n", "1"], None)}
    results = {}
    for command, (args, stdin) in commands.items():
        results[command] = runner.invoke(app, [*args, *flags], input=stdin)
        assert results[command].exit_code == 0, results[command].output
    return results


def model_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("edgesql: model ")]


# --- the model ------------------------------------------------------------------------------------------------------


def test_ask_shell_and_eval_run_the_same_default_model_and_say_so_in_one_short_line(shop, loads):
    results = run_each(shop)
    assert [model.name for model in loads] == [DEFAULT_PRESET] * 3
    said = f"edgesql: {choose_model(None).notice}"
    assert said.startswith(f"edgesql: model {DEFAULT_PRESET} (default") and len(said) <= 80
    for command, result in results.items():
        assert model_lines(result.stderr) == [said], command
    listed = {row["name"] for row in json.loads(runner.invoke(app, ["models", "list", "-f", "json"]).stdout)
              if row["default"]}
    assert listed == {DEFAULT_PRESET}


def test_the_default_models_preset_gives_ask_shell_and_eval_the_same_remedies(shop, loads):
    """smollm2-135m-sql's preset turns the grammar off: for all three, where no flag or config file says otherwise."""
    assert get_preset(DEFAULT_PRESET).remedies["grammar"] is False
    run_each(shop)
    assert [model.calls[-1]["grammar"] for model in loads] == [None] * 3
    run_each(shop, "--grammar")
    assert all(model.calls[-1]["grammar"] for model in loads[3:])


def test_edgesql_model_chooses_for_all_three(shop, loads, monkeypatch):
    monkeypatch.setenv("EDGESQL_MODEL", "fake")
    results = run_each(shop)
    assert [model.name for model in loads] == ["fake"] * 3
    assert all(model_lines(result.stderr) == ["edgesql: model fake (EDGESQL_MODEL)"] for result in results.values())


def test_the_config_file_chooses_for_ask_and_shell_and_eval_reads_none(shop, loads, tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text('model = "fake"\ngrammar = true\n')
    monkeypatch.setenv("EDGESQL_CONFIG", str(config))
    results = run_each(shop)
    assert [model.name for model in loads] == ["fake", "fake", DEFAULT_PRESET]
    assert [model.calls[-1]["grammar"] is not None for model in loads] == [True, True, False]
    assert model_lines(results["ask"].stderr) == ["edgesql: model fake (the config file)"]
    assert f"model = fake  ({config})" in runner.invoke(app, ["config", "show"]).stdout.splitlines()


def test_a_model_named_by_flag_is_not_said_again(shop, loads):
    results = run_each(shop, "--model", "fake")
    assert [model.name for model in loads] == ["fake"] * 3
    assert not any(model_lines(result.stderr) for result in results.values())


@pytest.mark.parametrize("args", [
    ["schema", "--db", "SHOP"],
    ["run", "SELECT count(*) FROM customers", "--db", "SHOP"],
    ["models", "list"],
    ["config", "show"],
])
def test_a_command_that_runs_no_model_says_nothing_on_stderr(shop, args):
    result = runner.invoke(app, [str(shop) if arg == "SHOP" else arg for arg in args])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_schema_for_a_question_says_only_what_was_pruned(shop):
    result = runner.invoke(app, ["schema", "--db", str(shop), "--question", "How many customers?", "--prune", "never"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("not pruned: 4 tables") and result.stderr.count("\n") == 1


# --- what the help, the README and config show say ------------------------------------------------------------------


def options(command: str) -> dict[str, str]:
    """Each option of a command (its first flag) and its help text."""
    click_command = typer.main.get_command(app).commands[command]
    return {param.opts[0]: param.help or "" for param in click_command.params if param.opts}


def readme_defaults(option: str) -> list[str]:
    """The default cell of every README table row for ``option`` (``--model``, ``--grammar``...)."""
    cells = []
    for line in README.splitlines():
        row = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(row) == 3 and re.match(rf"`{re.escape(option)}[`/ ]", row[0]):
            cells.append(row[1])
    return cells


ASK_CHAIN = f"EDGESQL_MODEL, else the config file's, else the best installed preset, else {DEFAULT_PRESET}"


@pytest.mark.parametrize("command, chain", [
    ("ask", ASK_CHAIN), ("shell", ASK_CHAIN), ("schema", ASK_CHAIN),
    ("eval", f"ask's: EDGESQL_MODEL, else the best installed preset, else {DEFAULT_PRESET} "
             "(eval reads no config file)"),
])
def test_every_model_option_says_how_the_model_is_chosen(command, chain):
    assert options(command)["--model"].endswith(f"[default: {chain}]")


def test_the_readme_names_the_default_model_in_the_ask_and_eval_tables():
    cells = readme_defaults("--model")
    assert len(cells) == 2  # ask's table and eval's
    for cell in cells:
        assert f"else `{DEFAULT_PRESET}`" in cell and f"`{DEMO_PRESET}`" not in cell


def test_train_says_its_base_is_not_the_model_ask_runs():
    assert "not the model ask runs" in options("train")["--base"]


@pytest.mark.parametrize("name", REMEDIES)
def test_each_remedys_default_is_the_same_in_the_help_and_the_readme(name):
    said = default_words(name)
    for command in ("ask", "shell", "eval"):
        assert options(command)[f"--{name}"].endswith(f"[default: {said}]"), command
    (cell,) = readme_defaults(f"--{name}")
    assert cell.replace("`", "").startswith(said)


def default_for(help_text: str, preset: str) -> str:
    """What an option's help says its default is for the model ``preset``: the value of the group it is named in,
    else the first, built-in one.

    >>> default_for("Decode. [default: on; off for m1 (the default model), m2: their presets say so]", "m1")
    'off'
    >>> default_for("Hints. [default: on]", "m1")
    'on'
    """
    said = re.search(r"\[default: (.+)\]$", help_text).group(1).removesuffix(": their presets say so")
    built_in, *others = said.split("; ")
    for other in others:
        value, names = other.split(" for ", 1)
        if preset in re.findall(r"[a-z0-9][a-z0-9.\-]*[a-z0-9]", names):
            return value
    return built_in


def test_config_show_and_the_help_agree_on_the_default_models_remedies():
    shown = dict(re.findall(r"^(\w+) = (.+?)  \(", runner.invoke(app, ["config", "show"]).stdout, re.MULTILINE))
    assert shown["model"] == choose_model(None).model == DEFAULT_PRESET
    words = {"True": "on", "False": "off", "0": "off", "1": "on", "2": "on", "3": "on"}
    for name in REMEDIES:
        assert words.get(shown[name], shown[name]) == default_for(options("ask")[f"--{name}"], DEFAULT_PRESET), name
