"""The config file: defaults for ask and shell; flags override it; `edgesql config show` says where each comes from."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edge_sql.cli import app
from fixtures.model_server import ModelServer, Reply

runner = CliRunner()


@pytest.fixture
def config(tmp_path, monkeypatch):
    path = tmp_path / "edgesql" / "config.toml"
    path.parent.mkdir()
    monkeypatch.delenv("EDGESQL_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return path


def test_the_config_file_sets_defaults_and_flags_override_it(config, shop, fake_model):
    config.write_text('model = "fake"\ncandidates = 3\ntemperature = 0.2\ntimeout = 20\nthreads = 2\n')
    model = fake_model("SELECT count(*) FROM customers")
    result = runner.invoke(app, ["ask", "--db", str(shop), "How many customers?", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["candidates"] == 3 and model.calls[-1]["temperatures"][1] == 0.2
    result = runner.invoke(app, ["ask", "--db", str(shop), "How many customers?", "-f", "json", "-n", "2"])
    assert json.loads(result.stdout)["candidates"] == 2


def test_config_show_says_where_each_setting_comes_from(config, monkeypatch):
    config.write_text("candidates = 8\ntimeout = 20\n")
    monkeypatch.setenv("EDGESQL_MODEL", "qwen2.5-coder-1.5b")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"config file: {config}"
    assert f"candidates = 8  ({config})" in lines
    assert f"timeout = 20.0  ({config})" in lines
    assert "model = qwen2.5-coder-1.5b  (EDGESQL_MODEL)" in lines
    assert "temperature = the preset's  (default)" in lines
    assert "model_timeout = 300.0  (default)" in lines
    config.write_text("model_timeout = 600\n")
    assert f"model_timeout = 600.0  ({config})" in runner.invoke(app, ["config", "show"]).stdout.splitlines()


def test_the_config_files_model_timeout_applies_unless_the_flag_is_given(config, shop):
    """ask and shell wait for a model server as long as the file says; --model-timeout beats it; eval reads no
    config file."""
    config.write_text("model_timeout = 0.5\n")
    with ModelServer() as server:
        answer = {"choices": [{"text": "SELECT COUNT(*) FROM customers"}]}
        server.script("/v1/completions", Reply(delay=1.5, body=answer))
        base = ["--db", str(shop), "--model", server.url, "-n", "1", "--no-grammar"]
        result = runner.invoke(app, ["ask", *base, "How many customers?"])
        assert result.exit_code == 4 and "no answer within 0.5 s (--model-timeout)" in result.stderr
        result = runner.invoke(app, ["shell", *base], input="How many customers?\n")  # an error is a line of output
        assert result.exit_code == 0 and "no answer within 0.5 s (--model-timeout)" in result.output
        result = runner.invoke(app, ["ask", *base, "--model-timeout", "0.7", "How many customers?"])
        assert result.exit_code == 4 and "no answer within 0.7 s (--model-timeout)" in result.stderr
        result = runner.invoke(app, ["ask", *base, "--model-timeout", "30", "How many customers?"])
        assert result.exit_code == 0, result.output
        data = config.parent / "q.jsonl"
        data.write_text(json.dumps({"question": "How many customers?", "query": "SELECT COUNT(*) FROM customers",
                                    "db": str(shop)}) + "\n")
        result = runner.invoke(app, ["eval", "--data", str(data), "--model", server.url, "-n", "1", "--no-grammar"])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text, message", [
    ("candidates = 0\n", "candidates in the config file"),
    ('threads = "four"\n', "threads in the config file"),
    ("colour = 1\n", "unknown settings: colour"),
    ("model_timeout = 0\n", "model_timeout in the config file"),
    ('model_timeout = "slow"\n', "model_timeout in the config file"),
    ("candidates = \n", "cannot read the config file"),
])
def test_a_bad_config_file_is_one_line_and_exit_2(config, shop, text, message):
    config.write_text(text)
    result = runner.invoke(app, ["ask", "--db", str(shop), "How many?"])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_a_presets_remedies_apply_unless_a_flag_or_the_config_file_sets_them(config, shop, fake_model):
    """A model's preset may say which remedies measured best for it (smollm2-135m-sql: no grammar); a flag or the
    config file still decides."""
    from edge_sql.preset import Preset

    model = fake_model("SELECT count(*) FROM customers",
                       preset=Preset(name="fake", candidates=2, temperature=0.7, remedies={"grammar": False}))

    def grammar_used(*args) -> bool:
        result = runner.invoke(app, ["ask", "--db", str(shop), "--model", "fake", "How many customers?", *args])
        assert result.exit_code == 0, result.output
        return model.calls[-1]["grammar"] is not None

    assert not grammar_used()
    assert grammar_used("--grammar")
    config.write_text("grammar = true\n")
    assert grammar_used()
    assert not grammar_used("--no-grammar")


def test_the_shipped_sql_model_recommends_the_check_and_no_grammar():
    from edge_sql.preset import get_preset

    assert get_preset("smollm2-135m-sql").remedies == {"constrain": True, "grammar": False}
    assert get_preset("smollm2-135m").remedies == {}
