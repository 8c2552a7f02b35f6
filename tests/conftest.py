"""Shared fixtures: the example database on both engines, and a fake model that enters through the real door."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_sql.backends import Completion, register_model, unregister_model
from edge_sql.preset import Preset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ENGINES = ("sqlite", "duckdb")


@dataclass
class FakeModel:
    """A model that answers with queued texts, in order, and records every call it gets.

    It honours stop strings as llama.cpp does (the text ends before the first one), so what reaches the pipeline
    looks like a real model's output.
    """

    responses: list[str]
    name: str = "fake"
    preset: Preset = field(default_factory=lambda: Preset(name="fake", candidates=5, temperature=0.7))
    context_length: int = 4096
    calls: list[dict] = field(default_factory=list)
    served: int = 0
    last_cost: None = None  # a double does not count what sampling costs

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def sample(self, prompt, temperatures, *, seed, max_tokens, stop, cache_prefix=None, on_finish=None,
               grammar=None):
        self.calls.append(dict(prompt=prompt, temperatures=list(temperatures), seed=seed, max_tokens=max_tokens,
                               stop=stop, cache_prefix=cache_prefix, grammar=grammar))
        completions, stopping = [], False
        for index, _ in enumerate(temperatures):
            if stopping:  # as a batched model does: the rest come back cut short
                completions.append(Completion(text="", stopped=True))
                continue
            text = self.responses[self.served % len(self.responses)]
            self.served += 1
            for marker in stop:
                text = text.split(marker, 1)[0]
            completions.append(Completion(text=text, logprob=-float(len(text)) / 10, tokens=len(text.split())))
            stopping = bool(on_finish and on_finish(index, text))
        return completions


@pytest.fixture(autouse=True)
def private_homes(tmp_path_factory, monkeypatch):
    """Caches and downloaded models are looked for in folders of the test run, never in the user's home: a model
    a developer pulled, or their EDGESQL_MODEL, does not change what a test sees."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("EDGESQL_CACHE_DIR", str(base / "edgesql-cache"))
    monkeypatch.setenv("EDGESQL_HOME", str(base / "edgesql-home"))
    monkeypatch.setenv("HF_HOME", str(base / "hf-home"))
    monkeypatch.setenv("EDGESQL_CONFIG", str(base / "no-config.toml"))  # a user's config file changes no test
    for name in ("EDGESQL_MODEL", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def quiet_cores(tmp_path_factory, monkeypatch):
    """Threads chosen for the machine (``backends/cores``) see a quiet one: no /proc or cgroup files to read (every
    core this process may use is free), so no test depends on what else the machine runs."""
    from edge_sql.backends import cores

    monkeypatch.setattr(cores, "ROOT", tmp_path_factory.getbasetemp() / "no-proc")
    cores.forget()
    yield
    cores.forget()


@pytest.fixture
def fake_model():
    """Register a fake model as ``--model fake``; call it with the texts the model should answer."""
    registered = []

    def make(*responses: str, **options) -> FakeModel:
        model = FakeModel(list(responses), **options)
        register_model(model.name, lambda threads=None: model)
        registered.append(model.name)
        return model

    yield make
    for name in registered:
        unregister_model(name)


@pytest.fixture(params=ENGINES)
def shop(request, tmp_path) -> Path:
    """A private copy of the example shop database, once as SQLite and once as DuckDB."""
    source = EXAMPLES / f"shop.{request.param}"
    target = tmp_path / source.name
    shutil.copyfile(source, target)
    return target


def snapshot(directory: Path) -> dict[str, str]:
    """Every file in ``directory`` with the hash of its bytes: to prove that nothing was written."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
