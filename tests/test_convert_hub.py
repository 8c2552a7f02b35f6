"""edgesql convert and `edgesql models pull --convert` with Hub repo ids, for real over HTTP: a small hub on
127.0.0.1 (tests/fixtures/hub_server.py) serves a tiny Qwen2 model folder and a LoRA adapter in the Hugging Face
layout, HF_ENDPOINT points at it, and huggingface_hub's snapshot_download runs unmocked.

The tiny model stands in for the SLM-SQL preset (a Qwen2 fine-tune published as safetensors): the real preset from
models/, the real repo id, served locally."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from edge_sql.cli import app
from edge_sql.backends.gguf_info import read_info
from edge_sql.paths import hub_cache_dir
from edge_sql.preset import get_preset
from edge_sql.weights import converted_path, installed
from fixtures.hub_server import HubServer, isolate
from fixtures.tiny_hf import needs_extra, session_tokenizer, tiny_lora, tiny_model

runner = CliRunner()
BASE, LORA = "some-org/tiny-qwen", "some-org/tiny-qwen-lora"
PRESET = "slm-sql-0.5b"


@pytest.fixture(autouse=True)
def private_caches(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny Qwen2 model folder (config.json, model.safetensors, tokenizer files) and a LoRA adapter for it."""
    root = tmp_path_factory.mktemp("hub-models")
    base = tiny_model("qwen2", root / "base", session_tokenizer(tmp_path_factory))
    tiny_lora(base, root / "lora")
    return root / "base", root / "lora"


@pytest.fixture
def hub(monkeypatch, folders):
    with HubServer(lifetime=120) as server:
        server.add_folder(BASE, folders[0])
        server.add_folder(LORA, folders[1])
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def fetched(hub) -> set[str]:
    return {r.path.rsplit("/", 1)[-1] for r in hub.gets() if "/resolve/" in r.path}


def fails(args: list[str], out_dir) -> str:
    """Run a command that must fail as a model problem: exit 4, one line, nothing written into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    result = runner.invoke(app, args)
    assert result.exit_code == 4, result.output
    assert list(out_dir.iterdir()) == []
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("edgesql: ")
    return message


# --- edgesql convert OWNER/NAME --lora OWNER/NAME ---------------------------------------------------------------------

@needs_extra
def test_convert_a_hub_model_and_a_hub_adapter(hub, tmp_path, monkeypatch):
    out = tmp_path / "tiny.q8_0.gguf"
    result = runner.invoke(app, ["convert", BASE, "--lora", LORA, "--quant", "q8_0", "--out", str(out),
                                 "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert {"config.json", "model.safetensors", "tokenizer.json", "adapter_config.json",
            "adapter_model.safetensors"} <= fetched(hub)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".gguf") == ["tiny.q8_0.gguf"]
    info = read_info(out)
    assert info.name == "tiny-qwen-lora" and info.file_type == "Q8_0"
    assert info.edgesql == {"edgesql.source": BASE, "edgesql.lora": LORA, "edgesql.protocol": "chatml-strict"}
    assert f"{BASE} + LoRA {LORA}" in result.stdout and "q8_0 vs transformers" in result.stdout

    # Both repositories are in the Hugging Face cache now: offline, the same conversion asks the hub nothing.
    requests = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = runner.invoke(app, ["convert", BASE, "--lora", LORA, "--quant", "q8_0", "--out", str(tmp_path / "b.gguf"),
                                "--no-verify", "--threads", "2"])
    assert again.exit_code == 0, again.output
    assert len(hub.requests) == requests and read_info(tmp_path / "b.gguf").edgesql["edgesql.lora"] == LORA


def test_offline_with_nothing_cached_is_one_line_and_writes_nothing(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = fails(["convert", BASE, "--out", str(tmp_path / "out" / "x.gguf")], tmp_path / "out")
    assert message == (f"edgesql: cannot get {BASE}: HF_HUB_OFFLINE is set and it is not in the Hugging Face cache")
    assert hub.requests == []


def test_an_unreachable_hub_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    message = fails(["convert", BASE, "--out", str(tmp_path / "out" / "x.gguf")], tmp_path / "out")
    assert f"cannot get {BASE}: http://127.0.0.1:{port} cannot be reached" in message
    assert "not in the Hugging Face cache" in message


def test_a_repo_the_hub_does_not_have(hub, tmp_path):
    message = fails(["convert", "some-org/nothing", "--out", str(tmp_path / "out" / "x.gguf")], tmp_path / "out")
    assert "the hub has no repository some-org/nothing" in message


@needs_extra
def test_an_adapter_repo_the_hub_does_not_have(hub, tmp_path):
    message = fails(["convert", BASE, "--lora", "some-org/no-adapter", "--out", str(tmp_path / "out" / "x.gguf")],
                    tmp_path / "out")
    assert "the hub has no repository some-org/no-adapter" in message


# --- edgesql models pull PRESET --convert -----------------------------------------------------------------------------

def expected_command() -> str:
    return f"edgesql convert cycloneboy/SLM-SQL-0.5B --quant q8_0 --out {converted_path(get_preset(PRESET))}"


def test_pull_without_convert_says_exactly_how_to_make_the_file(hub):
    result = runner.invoke(app, ["models", "pull", PRESET])
    assert result.exit_code == 4
    lines = result.stderr.strip().splitlines()
    assert "CC-BY-NC-4.0 - non-commercial use only" in lines[0]
    assert f"run edgesql models pull {PRESET} --convert" in lines[-1]
    assert f"(the same as: {expected_command()})" in lines[-1]
    assert str(converted_path(get_preset(PRESET))).startswith(os.environ["EDGESQL_HOME"])
    assert hub.requests == []


def test_without_the_extra_the_advice_starts_with_installing_it():
    code = ("import sys; sys.modules['torch'] = None; from edge_sql.cli import main; "
            f"sys.argv = ['edgesql', 'models', 'pull', {PRESET!r}{{}}]; main()")
    for extra in ("", ", '--convert'"):
        result = subprocess.run([sys.executable, "-c", code.format(extra)], capture_output=True, text=True, cwd=ROOT,
                                timeout=120, env=os.environ)
        assert result.returncode == 4, result.stderr
        assert 'pip install torch==2.13.0 && pip install -e ".[convert]"' in result.stderr.strip().splitlines()[-1]


def test_convert_is_only_for_presets_published_as_safetensors(hub):
    result = runner.invoke(app, ["models", "pull", "qwen2.5-coder-0.5b", "--convert"])
    assert result.exit_code == 2 and "is a GGUF file already" in result.stderr
    assert hub.requests == []


def test_pull_convert_offline_writes_nothing(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target = converted_path(get_preset(PRESET))
    message = fails(["models", "pull", PRESET, "--convert"], target.parent)
    assert message == ("edgesql: cannot get cycloneboy/SLM-SQL-0.5B: HF_HUB_OFFLINE is set and it is not in the "
                       "Hugging Face cache")


@needs_extra
def test_pull_convert_makes_the_file_ask_uses(hub, folders):
    """The whole story, with the tiny model served as cycloneboy/SLM-SQL-0.5B: pull --convert, list, ask, rm."""
    preset = get_preset(PRESET)
    hub.add_folder(preset.source["repo"], folders[0])

    pulled = runner.invoke(app, ["models", "pull", PRESET, "--convert"])
    assert pulled.exit_code == 0, pulled.output
    target = converted_path(preset)
    assert pulled.stdout.strip() == str(target) and target.is_file() and installed(preset)
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no partial file left
    assert "non-commercial use only" in pulled.stderr
    assert "q8_0 vs transformers" in pulled.stderr  # the conversion's report, on stderr
    assert f"{PRESET} converted (verified against the transformers model)" in pulled.stderr
    info = read_info(target)
    assert info.file_type == "Q8_0"
    assert info.edgesql == {"edgesql.source": "cycloneboy/SLM-SQL-0.5B", "edgesql.protocol": "slm-sql-think"}

    again = runner.invoke(app, ["models", "pull", PRESET])  # now a plain pull finds it
    assert again.exit_code == 0 and again.stdout.strip() == str(target) and "already installed" in again.stderr

    rows = {row["name"]: row for row in json.loads(runner.invoke(app, ["models", "list", "-f", "json"]).stdout)}
    assert rows[PRESET]["installed"] and rows[PRESET]["path"] == str(target)

    shop = ROOT / "examples" / "shop.sqlite"
    # the tiny stand-in has 512 tokens of context: too few for the 1,024 a reasoning answer gets by default
    asked = runner.invoke(app, ["ask", "--db", str(shop), "--model", PRESET, "How many customers?", "-n", "1",
                                "--format", "json", "--threads", "2", "--max-tokens", "64", "--no-merge"])
    assert asked.exit_code in (0, 5), asked.output  # a random model: any documented ending
    assert json.loads(asked.stdout)["model"] == PRESET

    removed = runner.invoke(app, ["models", "rm", PRESET])
    assert removed.exit_code == 0 and not target.exists() and not installed(preset)
    assert (hub_cache_dir() / "models--cycloneboy--SLM-SQL-0.5B").is_dir()  # the safetensors stay, as it said
