"""The server backend against llama-cpp-python's own server (``python -m llama_cpp.server``) on 127.0.0.1, serving the
tiny random-weight GGUF: ``ask`` and ``eval`` run through it, and its candidates are compared with the local backend's.

Where they must agree, and where not (both read the same file with the same seeds):

* every candidate equals the local backend's *sequential* path (``LlamaModel(batched=False)``): the server samples
  with the same ``Llama.create_completion`` and the same sampling settings, grammar included;
* the greedy candidate also equals the local *batched* decoder's (the default of ``ask``), so ``--candidates 1``
  answers alike; the sampled ones do not: the batched decoder draws from its own sampler chains (one per sequence,
  ``backends/batch.py``), whose random stream differs from ``create_completion``'s for the same seed;
* log-probabilities are not compared: the server sums them as the batched decoder does, the sequential path's
  recorder counts them differently.

The server takes a few seconds to start once for the module; the tests together take well under a minute.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from edge_sql.backends import load_model
from edge_sql.backends.llama import LlamaModel
from edge_sql.cli import app
from edge_sql.steps.generate import Sampling, generate
from edge_sql.steps.grammar import schema_grammar
from edge_sql.steps.database import open_database
from edge_sql.steps.prompt import build_prompt
from edge_sql.steps.schema import render_schema
from fixtures.llama_server import llama_server
from fixtures.tiny_gguf import write_tiny_gguf

runner = CliRunner()
pytestmark = pytest.mark.skipif(importlib.util.find_spec("uvicorn") is None or
                                importlib.util.find_spec("fastapi") is None,
                                reason="llama-cpp-python's server extra is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context=4096)


@pytest.fixture(scope="module")
def served(tiny, tmp_path_factory):
    """llama-cpp-python's server on the tiny model, on a free port of 127.0.0.1; its URL."""
    with llama_server(tiny, tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


@pytest.fixture
def shop_copy(tmp_path):
    target = tmp_path / "shop.sqlite"
    shutil.copyfile(EXAMPLES / "shop.sqlite", target)
    return target


def test_the_server_model_reports_its_tokenizer_and_preset(served):
    model = load_model(served)
    assert model.name == f"tiny at {served.split('/')[2]}"
    assert model.preset.protocol == "chatml-strict"
    text = "<|im_start|>user\nHow many?<|im_end|>"
    assert model.count_tokens(text) > 0 and model.tokenizer == "extras"


def test_candidates_equal_the_local_backends_for_the_same_seed(served, tiny, shop_copy):
    with open_database(shop_copy) as db:
        schema = render_schema(db.schema, "ddl")
        grammar = schema_grammar(db.schema, db.dialect, "SELECT")
    prompt = build_prompt("chatml-strict", schema, "How many customers?", "sqlite", prefix="SELECT")
    sampling = Sampling(candidates=4, temperature=0.8, seed=5, max_tokens=16)
    remote = load_model(served)
    sequential = LlamaModel(tiny, threads=1, batched=False)
    batched = LlamaModel(tiny, threads=1)
    for constraint in (None, grammar):
        over_http = generate(remote, prompt, sampling, grammar=constraint).candidates
        in_process = generate(sequential, prompt, sampling, grammar=constraint).candidates
        assert [(c.text, c.tokens) for c in over_http] == [(c.text, c.tokens) for c in in_process]
        assert over_http[0].text == generate(batched, prompt, sampling, grammar=constraint).candidates[0].text
    assert remote.grammar_taken is True and remote.count_tokens(prompt.text) == sequential.count_tokens(prompt.text)


def test_ask_through_the_server_answers_as_in_process_when_greedy(served, tiny, shop_copy):
    args = ["ask", "--db", str(shop_copy), "How many customers?", "--candidates", "1", "--format", "json"]
    remote = runner.invoke(app, args + ["--model", served])
    local = runner.invoke(app, args + ["--model", str(tiny)])
    assert remote.exit_code == local.exit_code and remote.exit_code in (0, 5), remote.output
    remote_answer, local_answer = json.loads(remote.stdout), json.loads(local.stdout)
    assert [e["sql"] for e in remote_answer["ballot"]] == [e["sql"] for e in local_answer["ballot"]]
    assert remote_answer["model"].startswith("tiny at 127.0.0.1:")
    several = runner.invoke(app, ["ask", "--db", str(shop_copy), "How many customers?", "--candidates", "3",
                                  "--model", served, "--format", "json"])
    assert several.exit_code in (0, 5) and len(json.loads(several.stdout)["ballot"]) == 3


def test_eval_through_the_server_is_reproducible_and_matches_in_process_greedy(served, tiny, shop_copy, tmp_path):
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps({"question": q, "query": sql, "db": shop_copy.name}) + "\n" for q, sql in (
        ("How many customers are there?", "SELECT COUNT(*) FROM customers"),
        ("List the product names.", "SELECT name FROM products"),
    )), encoding="utf-8")

    def run(model: str, name: str) -> list[tuple]:
        report = tmp_path / f"{name}.json"
        result = runner.invoke(app, ["eval", "--data", str(data), "--model", model, "--candidates", "1,3",
                                     "--report", str(report)])
        assert result.exit_code == 0, result.output
        records = json.loads(report.read_text())["records"]
        return [tuple((a["candidates"], a["sql"], a["right"]) for a in r["answers"]) for r in records]

    first = run(served, "server")
    assert len(first) == 2 and all(len(answers) == 2 for answers in first)
    assert run(served, "again") == first  # the same seed, the same report
    greedy = lambda records: [answers[0] for answers in records]  # noqa: E731
    assert greedy(run(str(tiny), "local")) == greedy(first)


def test_eval_with_workers_writes_the_report_of_a_sequential_run(served, shop_copy, tmp_path):
    data = tmp_path / "questions.jsonl"
    questions = ["How many customers are there?", "List the product names.", "How many orders were cancelled?",
                 "Which city has the most customers?", "What is the average price of a product?"]
    data.write_text("".join(json.dumps({"question": q, "query": "SELECT COUNT(*) FROM customers",
                                        "db": shop_copy.name}) + "\n" for q in questions), encoding="utf-8")

    def run(workers: int) -> list:
        report = tmp_path / f"workers{workers}.json"
        result = runner.invoke(app, ["eval", "--data", str(data), "--model", served, "--candidates", "1,3",
                                     "--workers", str(workers), "--report", str(report)])
        assert result.exit_code == 0, result.output
        records = json.loads(report.read_text())["records"]
        return [(r["index"], r["question"], r["answers"], r["tokens"]) for r in records]

    assert run(3) == run(1)
