"""Where a question's seconds go, and what the user is told while they pass: the timings an answer carries, the
schema prefix cached on disk under a key that changes with the schema, and the note a slow step gets on a terminal.

Timed with a tiny random GGUF (llama.cpp runs it, writing garbage): these tests check which stages are counted and
what was cached, never how long anything took; the slow step is made slow by a fake timer, not by waiting.
"""

from __future__ import annotations

import json
import sqlite3
import sys

import pytest
from rich.console import Console
from typer.testing import CliRunner

from edge_sql import progress
from edge_sql.backends.llama import LlamaModel
from edge_sql.backends.prefix import PrefixStore
from edge_sql.cli import app
from edge_sql.cli import progress as cli_progress
from edge_sql.cli.progress import SlowSteps, describe, working
from edge_sql.progress import Step
from fixtures.tiny_gguf import write_tiny_gguf

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context=4096)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test starts with no prefix state on disk."""
    monkeypatch.setenv("EDGESQL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def ask_json(db, model, question="How many customers?"):
    result = runner.invoke(app, ["ask", "--db", str(db), "--model", str(model), question, "--format", "json",
                                 "--threads", "1", "-n", "3"])
    return json.loads(result.stdout)


def test_a_json_answer_says_where_its_seconds_went(shop, tiny):
    answer = ask_json(shop, tiny)  # a random model writes no valid SQL: the JSON still carries the ballot
    stages = {"load", "prompt", "generate", "generate.cache", "generate.prompt_eval", "generate.decode",
              "generate.check", "validate", "execute", "ground", "vote"}
    assert stages <= set(answer["timings"])
    if sys.platform == "linux":
        assert "start" in answer["timings"]
    assert all(value >= 0 for value in answer["timings"].values())
    assert set(answer["tokens"]) == {"prompt", "generated", "evaluated", "restored"}
    assert sum(entry["tokens"] for entry in answer["ballot"]) == answer["tokens"]["generated"]


def test_the_second_ask_restores_the_schema_prefix_from_disk(shop, tiny):
    first = ask_json(shop, tiny)
    assert first["tokens"]["restored"] == 0
    assert first["tokens"]["evaluated"] >= first["tokens"]["prompt"] - 1  # the whole prompt, the first time
    second = ask_json(shop, tiny, "Which countries do customers come from?")  # a new process, as a user runs it
    assert second["tokens"]["restored"] > 0
    assert second["tokens"]["evaluated"] + second["tokens"]["restored"] >= second["tokens"]["prompt"] - 1
    assert second["tokens"]["evaluated"] < second["tokens"]["prompt"] // 2  # only the question is evaluated


def test_a_changed_schema_gets_a_new_prefix_not_a_stale_one(tmp_path, tiny):
    db = tmp_path / "shop.sqlite"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, name TEXT)")
    first = ask_json(db, tiny)
    with sqlite3.connect(db) as connection:
        connection.execute("ALTER TABLE customers ADD COLUMN country TEXT")
    changed = ask_json(db, tiny)
    assert first["tokens"]["restored"] == 0 and changed["tokens"]["restored"] == 0  # read afresh, not restored
    assert changed["tokens"]["evaluated"] > changed["tokens"]["prompt"] // 2
    again = ask_json(db, tiny)
    assert again["tokens"]["restored"] > 0  # the new schema's prefix is the one on disk now


def test_a_prefix_key_is_the_model_and_the_exact_prefix_tokens():
    store = PrefixStore(".", "model-a")
    assert store.key_for([1, 2, 3]) == store.key_for([1, 2, 3])
    assert store.key_for([1, 2, 3]) != store.key_for([1, 2, 4])  # one token of the schema changed
    assert store.key_for([1, 2, 3]) != store.key_for([1, 2, 3, 4])
    assert store.key_for([1, 2, 3]) != PrefixStore(".", "model-a:adapter").key_for([1, 2, 3])  # another adapter


def test_the_model_counts_what_the_prefix_cache_saved(tiny, tmp_path):
    from edge_sql.steps.prompt import build_prompt

    def sample(model, question):
        prompt = build_prompt("chatml-strict", "CREATE TABLE t (a INTEGER, b TEXT);", question, "sqlite", "SELECT")
        model.sample(prompt.text, [0.0, 0.8], seed=1, max_tokens=4, stop=(";",), cache_prefix=prompt.cache_prefix)
        return model.last_cost, model.count_tokens(prompt.cache_prefix)

    cost, _ = sample(LlamaModel(tiny, threads=1, cache_dir=tmp_path), "How many rows?")
    assert cost.restored == 0
    cost, prefix = sample(LlamaModel(tiny, threads=1, cache_dir=tmp_path), "How many rows?")
    assert cost.restored == prefix and cost.cache_seconds >= 0


class FakeTimer:
    """Stands in for ``threading.Timer``: nothing happens until the test says the time has passed (``fire``)."""

    made: list["FakeTimer"] = []

    def __init__(self, seconds, function, args=()):
        self.seconds, self.function, self.args, self.cancelled, self.daemon = seconds, function, args, False, False
        FakeTimer.made.append(self)

    def start(self):
        pass

    def cancel(self):
        self.cancelled = True

    def fire(self):
        if not self.cancelled:
            self.function(*self.args)


class SlowTimer(FakeTimer):
    """A timer whose time passes at once: every step it times is slow."""

    def start(self):
        self.fire()


@pytest.fixture
def timers(monkeypatch):
    FakeTimer.made = []
    monkeypatch.setattr(cli_progress, "TIMER", FakeTimer)
    return FakeTimer.made


def test_a_quick_step_is_not_named(timers):
    said, done = [], []
    listener = SlowSteps(said.append, "sakila.sqlite", done=lambda: done.append(True))
    with progress.listening(listener), progress.step("schema", tokens=2175):
        pass  # ends before its timer fires
    timers[0].fire()  # too late: the step is over
    assert said == [] and done == [] and timers[0].cancelled


def test_a_slow_step_is_named_while_it_runs_and_the_spinner_goes_back_after(timers):
    said, done = [], []
    listener = SlowSteps(said.append, "sakila.sqlite", after=1.5, done=lambda: done.append(True))
    with progress.listening(listener), progress.step("schema", tokens=2175):
        assert timers[0].seconds == 1.5
        timers[0].fire()  # 1.5 seconds have passed and the step still runs
        assert said == ["Reading the schema of sakila.sqlite into the model (2,175 tokens, first time only)…"]
        assert done == []
    assert done == [True]


def test_the_words_of_a_step():
    assert describe(Step("schema", 1200), "shop.sqlite") == \
        "Reading the schema of shop.sqlite into the model (1,200 tokens, first time only)…"


def test_progress_is_heard_only_on_a_terminal(monkeypatch, timers):
    monkeypatch.setattr(cli_progress, "stderr_console", lambda: Console(file=sys.stderr, force_terminal=False))
    with working("Generating 5 candidates…", "shop.sqlite"):
        assert progress._listener.get() is None
    monkeypatch.setattr(cli_progress, "stderr_console", lambda: Console(file=sys.stderr, force_terminal=True))
    with working("Generating 5 candidates…", "shop.sqlite"):
        assert isinstance(progress._listener.get(), SlowSteps)
    assert progress._listener.get() is None


def shell(db, model, questions):
    return runner.invoke(app, ["shell", "--db", str(db), "--model", str(model), "--threads", "1", "-n", "2"],
                         input=questions)


def test_the_shell_names_the_first_reading_of_a_schema_on_a_terminal_only(shop, tiny, monkeypatch, tmp_path):
    monkeypatch.setattr(cli_progress, "TIMER", SlowTimer)  # as if every step took longer than AFTER seconds
    monkeypatch.setattr(cli_progress, "stderr_console", lambda: Console(file=sys.stderr, force_terminal=True,
                                                                          width=300))
    result = shell(shop, tiny, "How many customers?\nHow many orders?\n")
    note = f"Reading the schema of {shop.name} into the model ("
    assert result.stderr.count(note) == 1  # the second question finds it in memory
    assert "first time only" in result.stderr
    again = shell(shop, tiny, "How many customers?\n")
    assert note not in again.stderr  # a new process reads it from disk: nothing slow to name
    monkeypatch.setattr(cli_progress, "stderr_console", lambda: Console(file=sys.stderr, force_terminal=False))
    monkeypatch.setenv("EDGESQL_CACHE_DIR", str(tmp_path / "fresh"))
    piped = shell(shop, tiny, "How many customers?\n")  # read into the model again, but stderr is not a terminal
    assert note not in piped.stderr
    assert list((tmp_path / "fresh").rglob("*.state"))


def sample_on(model, schema, question="How many rows?"):
    from edge_sql.steps.prompt import build_prompt

    prompt = build_prompt("chatml-strict", schema, question, "sqlite", "SELECT")
    completions = model.sample(prompt.text, [0.0, 0.8], seed=1, max_tokens=4, stop=(";",),
                               cache_prefix=prompt.cache_prefix)
    return completions, model.count_tokens(prompt.cache_prefix)


def test_a_long_schema_is_decoded_without_flash_attention_and_cached_apart(tiny, tmp_path, monkeypatch):
    from edge_sql.backends import batch

    monkeypatch.setattr(batch, "LONG_PREFIX", 150)  # the tiny model's schemas count as long from 150 tokens
    short, long = "CREATE TABLE t (a INTEGER);", "CREATE TABLE t (a INTEGER, b TEXT, c REAL, d TEXT, e TEXT);" * 4
    model = LlamaModel(tiny, threads=1, cache_dir=tmp_path)
    _, tokens = sample_on(model, short)
    assert tokens < 150 and model.decoder().flash and model.decoder().layout == ""
    _, tokens = sample_on(model, long)
    assert tokens >= 150 and not model._decoder.flash and model._decoder.layout == "no-flash"
    _, tokens = sample_on(model, short)
    assert model._decoder.flash  # back, in a context of its own
    assert len(list(tmp_path.glob("*.state"))) == 2
    fresh = LlamaModel(tiny, threads=1, cache_dir=tmp_path)  # the next process finds each in its own layout
    _, tokens = sample_on(fresh, long)
    assert fresh.last_cost.restored == tokens and not fresh._decoder.flash
