"""`edgesql shell`: the session logic in process with the fake model, and the real command in a pseudo-terminal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time

import pytest

from conftest import EXAMPLES, ROOT, FakeModel
from edge_sql.errors import ModelError
from edge_sql.steps.database import open_database
from edge_sql.backends import load_model
from edge_sql.cli.history import history_path
from edge_sql.cli.shell import Shell, run_loop


@pytest.fixture
def session(shop):
    """A shell on the shop database (both engines) with the fake model; ``load`` switches to another fake."""
    with open_database(shop) as db:
        yield lambda model, **options: Shell(db, model, load=load_model, **options)


def test_a_question_shows_the_sql_the_result_and_the_vote(session, fake_model):
    model = fake_model("SELECT count(*) FROM customers")
    output = session(model).handle("How many customers are there?")
    assert "SELECT COUNT(*) FROM customers" in output
    assert "40" in output and "5 of 5 candidates agreed · fake" in output


def test_a_follow_up_question_gets_the_previous_question_and_sql(session, fake_model):
    model = fake_model("SELECT count(*) FROM orders")
    shell = session(model)
    shell.handle("How many orders are there?")
    assert "Previous question" not in model.calls[0]["prompt"]
    shell.handle("now only for 2023")
    prompt = model.calls[1]["prompt"]
    assert ("Previous question: How many orders are there?\nPrevious SQL: SELECT COUNT(*) FROM orders\n"
            "Now: now only for 2023") in prompt
    assert model.calls[1]["cache_prefix"] == model.calls[0]["cache_prefix"]  # the schema prefix is still shared
    shell.handle(".reset")
    shell.handle("How many products?")
    assert "Previous question" not in model.calls[2]["prompt"]


def test_a_standalone_question_after_another_is_asked_alone(session, fake_model):
    """The question that names its own subject gets no context: the earlier filter cannot leak into its answer."""
    model = fake_model("SELECT count(*) FROM customers")
    notes = []
    shell = session(model, note=notes.append)
    shell.handle("Which customers signed up in 2023?")
    shell.handle("Which customers are from Canada?")
    assert "Previous question" not in model.calls[1]["prompt"]
    assert notes == []


def test_a_question_that_refers_back_gets_the_context_and_the_shell_says_so(session, fake_model):
    model = fake_model("SELECT count(*) FROM customers")
    notes = []
    shell = session(model, note=notes.append)
    shell.handle("Which customers signed up in 2023?")
    shell.handle("How many of them are from Canada?")
    assert ("Previous question: Which customers signed up in 2023?\nPrevious SQL: SELECT COUNT(*) FROM customers\n"
            "Now: How many of them are from Canada?") in model.calls[1]["prompt"]
    assert notes == ['(follow-up of the previous question: "them" points back)']


def test_followup_and_new_force_either_way(session, fake_model):
    model = fake_model("SELECT count(*) FROM customers")
    notes = []
    shell = session(model, note=notes.append)
    assert shell.handle(".followup And in 2023?") == ("error: there is no previous question to follow up; "
                                                      "ask one first")
    shell.handle("How many customers are there?")
    shell.handle(".new How many of them are from Canada?")  # it seems to follow up, but is asked alone
    assert "Previous question" not in model.calls[1]["prompt"] and notes == []
    shell.handle(".followup Which customers are from Canada?")  # it seems standalone, but follows up
    assert "Previous question: How many of them are from Canada?" in model.calls[2]["prompt"]
    assert notes == ["(follow-up of the previous question)"]
    assert shell.handle(".followup").startswith("error: .followup needs a question")
    assert shell.handle(".new").startswith("error: .new needs a question")
    assert ".followup QUESTION" in shell.handle(".help") and ".new QUESTION" in shell.handle(".help")


def test_the_command_says_on_stderr_which_question_follows_up(shop, fake_model):
    """``edgesql shell`` end to end: answers on stdout, the follow-up note on stderr, the context in the prompt."""
    from typer.testing import CliRunner

    from edge_sql.cli.app import app

    model = fake_model("SELECT count(*) FROM customers")
    questions = "How many customers are there?\nWhich customers are from Canada?\nWhat about France?\n"
    result = CliRunner().invoke(app, ["shell", "--db", str(shop), "--model", "fake", "-n", "1"], input=questions)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("SELECT COUNT(*) FROM customers") == 3
    assert result.stderr.strip().splitlines()[-1] == '(follow-up of the previous question: opens with "what about")'
    assert ["Previous question" in call["prompt"] for call in model.calls] == [False, False, True]
    assert "Previous question: Which customers are from Canada?" in model.calls[2]["prompt"]


def test_log_appends_every_question_of_the_session(session, fake_model, tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("EDGESQL_LOG", str(log))
    shell = session(fake_model("SELECT count(*) FROM customers", "SELECT nothing FROM nowhere"), candidates=1,
                    log=True, log_rows=True)
    shell.handle("How many customers?")
    assert shell.handle("Anything else?").startswith("error: ")
    first, second = [json.loads(line) for line in log.read_text().splitlines()]
    assert first["question"] == "How many customers?" and first["rows"] == [[40]] and first["error"] is None
    assert second["question"] == "Anything else?" and second["sql"] is None and second["error"]


def test_candidates_takes_effect_on_the_next_question(session, fake_model):
    model = fake_model("SELECT count(*) FROM customers")
    shell = session(model)
    assert shell.handle(".candidates 3") == "3 candidates per question"
    shell.handle("How many customers?")
    assert len(model.calls[-1]["temperatures"]) == 3
    assert shell.handle(".candidates zero").startswith("error: .candidates takes a whole number")


def test_format_json_prints_one_json_object(session, fake_model):
    shell = session(fake_model("SELECT count(*) FROM customers"))
    assert shell.handle(".format json") == "format: json"
    answer = json.loads(shell.handle("How many customers?"))
    assert answer["rows"] == [[40]] and answer["model"] == "fake"
    assert json.loads(shell.handle(".sql SELECT count(*) AS n FROM products"))["columns"] == ["n"]
    assert shell.handle(".format xml").startswith("error: .format takes one of table, json, csv")


def test_format_csv(session, fake_model):
    shell = session(fake_model("SELECT count(*) AS n FROM customers"), fmt="csv")
    assert shell.handle("How many customers?") == "n\n40"


def test_sql_goes_through_the_guard_and_the_executor(session, fake_model):
    shell = session(fake_model("SELECT 1"))
    assert "40" in shell.handle(".sql SELECT count(*) FROM customers")
    refused = shell.handle(".sql DROP TABLE customers")
    assert refused.startswith("error: refused") and "\n" not in refused
    assert shell.handle(".sql").startswith("error: .sql needs a query")
    assert "40" in shell.handle(".sql SELECT count(*) FROM customers")  # the table is still there


def test_errors_are_one_line_and_the_session_goes_on(session, fake_model):
    model = fake_model("SELECT colour FROM products")
    shell = session(model, candidates=2)
    failed = shell.handle("What colour are the products?")
    assert failed.startswith("error: none of the 2 candidates") and "\n" not in failed
    assert shell.handle(".nonsense") == "error: unknown command .nonsense; .help lists the commands"
    assert shell.handle("") == ""
    assert not shell.done
    assert shell.context is None  # a failed question is no context for the next one


class FailingOnce(FakeModel):
    """A fake model whose first sample fails as llama.cpp's decode does, and then answers."""

    failed: bool = False

    def sample(self, prompt, temperatures, **options):
        if not self.failed:
            self.failed = True
            raise ModelError("llama.cpp failed while decoding with shop.gguf: llama_decode returned -3; the model "
                             "may need more memory than is free, or its file may be damaged")
        return super().sample(prompt, temperatures, **options)


def test_a_model_failure_is_one_line_and_the_next_question_is_answered(session, tmp_path, monkeypatch):
    shell = session(FailingOnce(["SELECT count(*) FROM customers"]), candidates=1)
    lines = iter(["How many customers?", "How many customers?"])

    def typed(prompt):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", typed)
    written = []
    run_loop(shell, write=written.append, prompt="", history=tmp_path / "history")
    failed, answered = written[0], written[1]
    assert failed == ("error: llama.cpp failed while decoding with shop.gguf: llama_decode returned -3; the model "
                      "may need more memory than is free, or its file may be damaged\n")
    assert "SELECT COUNT(*) FROM customers" in answered and "40" in answered
    assert not shell.done and shell.context == ("How many customers?", "SELECT COUNT(*) FROM customers")


def test_schema_model_help_and_quit(session, fake_model):
    fake_model("SELECT 1")
    other = fake_model("SELECT count(*) FROM products", name="other")
    shell = session(load_model("fake"))
    assert "customers" in shell.handle(".schema")
    assert shell.handle(".model other") == "model: other"
    assert "other" in shell.handle("How many products?")
    assert len(other.calls) == 1
    assert shell.handle(".model nowhere-model").startswith("error: unknown model 'nowhere-model'")
    assert ".candidates N" in shell.handle(".help")
    assert shell.handle(".quit") == "" and shell.done


def test_ctrl_c_cancels_a_question_and_the_session_goes_on(session, fake_model, tmp_path, monkeypatch):
    shell = session(fake_model("SELECT count(*) FROM customers"))
    lines = iter(["How many customers?", ".candidates 2", "interrupted at the prompt", ".quit", "never read"])

    def typed(prompt):
        line = next(lines)
        if line == "interrupted at the prompt":
            raise KeyboardInterrupt
        return line

    def slow_question(line, handle=shell.handle):
        if not line.startswith("."):
            raise KeyboardInterrupt  # Ctrl-C while the model generates
        return handle(line)

    monkeypatch.setattr("builtins.input", typed)
    monkeypatch.setattr(shell, "handle", slow_question)
    written = []
    run_loop(shell, write=written.append, history=tmp_path / "history")
    assert written == ["cancelled\n", "2 candidates per question\n", "\n"]
    assert shell.done and next(lines) == "never read"


def test_history_lives_under_xdg_state_home(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGESQL_HISTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert history_path() == tmp_path / "edgesql" / "history"
    monkeypatch.setenv("EDGESQL_HISTORY", str(tmp_path / "h"))
    assert history_path() == tmp_path / "h"


# -- the real command, in a pseudo-terminal, with a tiny random GGUF model ------------------------------------------

@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from fixtures.tiny_gguf import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context=4096)


def test_a_session_in_a_terminal(tiny_gguf, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    db = tmp_path / "shop.sqlite"
    shutil.copyfile(EXAMPLES / "shop.sqlite", db)
    history = tmp_path / "state" / "history"
    env = {**os.environ, "EDGESQL_HISTORY": str(history), "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    # a random-weight model writes up to its token budget under the check: a short budget keeps the session quick
    # on a busy machine (the terminal is under test here, not the model)
    # Ctrl-C as a person at a terminal sends it: a test run started in the background (`… &` in a script) ignores
    # SIGINT, and a child would inherit that and never see the Ctrl-C
    child = pexpect.spawn(sys.executable, ["-m", "edge_sql", "shell", "--db", str(db), "--model", str(tiny_gguf),
                                           "--candidates", "1", "--threads", "1", "--max-tokens", "16"],
                          env=env, encoding="utf-8", timeout=240, dimensions=(40, 120),
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        child.expect_exact("edgesql> ")
        child.sendline(".schema")
        child.expect("CREATE TABLE customers")
        child.expect_exact("edgesql> ")
        child.sendline(".sql SELECT count(*) FROM customers")
        child.expect(r"│ 40 +│")
        child.expect_exact("edgesql> ")
        child.sendline("How many customers are there?")  # random weights: an answer, or one line saying why not
        child.expect_exact("edgesql> ")
        assert "Traceback" not in child.before
        child.send("half a question")
        time.sleep(0.5)
        child.sendintr()  # Ctrl-C at the prompt: drops the line, not the session
        child.expect_exact("edgesql> ")
        child.sendline(".sql SELECT count(*) FROM products")
        child.expect(r"│ \d+ +│")
        child.expect_exact("edgesql> ")
        child.sendline(".quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    lines = history.read_text(encoding="utf-8").splitlines()
    assert ".schema" in lines and ".quit" in lines


def test_end_of_input_leaves_with_0(tiny_gguf, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    env = {**os.environ, "EDGESQL_HISTORY": str(tmp_path / "history"), "PYTHONPATH": str(ROOT)}
    child = pexpect.spawn(sys.executable, ["-m", "edge_sql", "shell", "--db", str(EXAMPLES / "shop.sqlite"),
                                           "--model", str(tiny_gguf), "--threads", "1"],
                          env=env, encoding="utf-8", timeout=240)
    child.expect_exact("edgesql> ")
    child.sendeof()  # Ctrl-D
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
