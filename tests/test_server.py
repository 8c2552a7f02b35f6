"""The server backend (``--model http://host:port/v1``) against a small OpenAI-compatible server on 127.0.0.1
(``fixtures/model_server.py``): what it sends, what it makes of the answers, and every fault as one line, exit 4.

No HTTP layer is mocked: each test talks to a real server thread over a real socket.
"""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from edge_sql.backends import load_model
from edge_sql.backends.server import ServerModel
from edge_sql.cli import app
from edge_sql.errors import ModelError, UsageError
from edge_sql.steps.generate import Sampling, generate
from edge_sql.steps.prompt import build_prompt
from fixtures.model_server import ModelServer, Reply, unused_port

runner = CliRunner()
QUESTION = "How many customers are there?"


@pytest.fixture
def server():
    with ModelServer() as running:
        yield running


def ask(shop, url, *extra, env=None):
    return runner.invoke(app, ["ask", "--db", str(shop), "--model", url, QUESTION, *extra], env=env)


def one_line_error(result, code=4) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgesql: "), result.stderr
    return lines[0]


# -- the door and what goes over the wire ----------------------------------------------------------------------------


def test_a_url_loads_a_server_model_through_the_same_door(server):
    model = load_model(server.url)
    assert isinstance(model, ServerModel)
    assert model.name == f"fake-model at {server.url.split('/')[2]}"
    assert model.preset.protocol == "chatml-strict"  # the generic ChatML preset
    assert model.count_tokens("three words here") == 3 and model.tokenizer == "extras"


def test_candidates_are_concurrent_requests_seeded_as_locally(server):
    model = load_model(server.url + "?logprobs=1")
    prompt = build_prompt("chatml-strict", "CREATE TABLE customers (id INT);", QUESTION, "sqlite")
    generation = generate(model, prompt, Sampling(candidates=4, temperature=0.7, seed=42, max_tokens=20))
    assert [c.sql for c in generation.candidates] == ["SELECT COUNT(*) FROM customers"] * 4
    assert all(c.logprob == -2.0 for c in generation.candidates)  # the logprobs the server returned, summed
    sent = sorted((r.body for r in server.seen("/v1/completions")), key=lambda body: body["seed"])
    assert [body["seed"] for body in sent] == [42, 43, 44, 45]
    assert [body["temperature"] for body in sent] == [0.0, 0.7, 0.7, 0.7]
    assert all(body["prompt"] == prompt.text for body in sent)
    assert all(body["max_tokens"] == 20 and ";" in body["stop"] and "<|im_end|>" in body["stop"] for body in sent)
    assert all(body["logprobs"] == 1 and body["model"] == "fake-model" and "grammar" not in body for body in sent)


def test_the_served_name_or_the_url_chooses_the_preset():
    with ModelServer(models=["/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"]) as served:
        assert load_model(served.url).preset.name == "qwen2.5-coder-1.5b"
        chosen = load_model(served.url + "?preset=smollm2-135m&context=1024")
        assert (chosen.preset.name, chosen.context_length) == ("smollm2-135m", 1024)
        assert load_model(served.url + "?protocol=qwen-coder").preset.protocol == "qwen-coder"
        with pytest.raises(UsageError, match="unknown option 'colour'"):
            load_model(served.url + "?colour=red")
        with pytest.raises(UsageError, match="EDGESQL_API_KEY"):
            load_model(served.url.replace("http://", "http://user:secret@"))


def test_ask_goes_through_the_server_and_shows_the_grammar_it_sent(shop, server):
    result = ask(shop, server.url, "--candidates", "3", "--format", "json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["sql"] == "SELECT COUNT(*) FROM customers" and answer["rows"] == [[40]]
    assert answer["votes"] == 3 and answer["model"].startswith("fake-model at 127.0.0.1:")
    sent = server.seen("/v1/completions")
    assert len(sent) == 3 and all(body.body["grammar"].startswith("root ::=") for body in sent)


def test_a_server_that_refuses_the_grammar_is_said_once_and_validation_goes_on(shop):
    with ModelServer(grammar=False) as served:
        result = ask(shop, served.url, "--candidates", "4", "--grammar")
        assert result.exit_code == 0, result.output
        assert result.stderr.count("does not take the schema's grammar") == 1
        assert "checked against the schema after decoding only" in result.stderr


def test_the_api_key_is_sent_as_a_bearer_token_and_shown_nowhere(shop):
    secret = "sk-test-0123456789"
    with ModelServer(api_key=secret) as served:
        result = ask(shop, served.url, "--show-candidates", "--format", "json", env={"EDGESQL_API_KEY": secret})
        assert result.exit_code == 0, result.output
        assert secret not in result.output
        assert all(r.headers.get("Authorization") == f"Bearer {secret}" for r in served.requests)
        info = runner.invoke(app, ["models", "info", served.url, "--format", "json"], env={"EDGESQL_API_KEY": secret})
        assert info.exit_code == 0 and secret not in info.output
        assert json.loads(info.stdout)["api_key"] == "set (EDGESQL_API_KEY)"


def test_models_info_shows_what_the_server_lists(server):
    result = runner.invoke(app, ["models", "info", server.url, "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["models"] == ["fake-model"] and info["listing"][0]["id"] == "fake-model"
    assert (info["protocol"], info["tokenizer"], info["preset"]) == ("chatml-strict", "extras", None)
    table = runner.invoke(app, ["models", "info", server.url])
    assert "fake-model" in table.stdout and "/extras/tokenize" in table.stdout


def test_tokens_are_estimated_when_the_server_cannot_count_them():
    with ModelServer(tokenize=False) as served:
        model = load_model(served.url)
        assert model.count_tokens("x" * 30) == 11 and model.tokenizer == "estimate"


def test_logprobs_are_asked_for_except_from_llama_cpp_pythons_server():
    with ModelServer(tokenize=False) as other, ModelServer() as llama_cpp_python:  # it answers /extras/tokenize
        for served, asked in ((other, True), (llama_cpp_python, False)):
            model = load_model(served.url)
            assert model.sample("SELECT", [0.0, 0.7], seed=1, max_tokens=4, stop=(";",))[0].text
            assert [("logprobs" in r.body) for r in served.seen("/v1/completions")] == [asked, asked]
        with pytest.raises(UsageError, match="logprobs=yes"):
            load_model(llama_cpp_python.url + "?logprobs=yes")


def test_a_server_without_logprobs_is_asked_again_without_them(server):
    server.script("/v1/completions", Reply(500, {"error": {"message": "logprobs is not supported"}}),
                  Reply(body={"choices": [{"text": " 1"}], "usage": {"completion_tokens": 1}}))
    model = load_model(server.url + "?logprobs=1")
    completions = model.sample("SELECT", [0.0], seed=1, max_tokens=4, stop=(";",))
    assert completions[0].text == " 1" and not model.logprobs_taken
    assert [("logprobs" in r.body) for r in server.seen("/v1/completions")] == [True, False]


# -- faults: one line, exit 4, never a traceback or a hang -----------------------------------------------------------


def test_a_refused_connection(shop):
    line = one_line_error(ask(shop, f"http://127.0.0.1:{unused_port()}/v1"))
    assert "connection refused" in line


def test_a_host_name_that_does_not_resolve(shop):
    line = one_line_error(ask(shop, "http://edgesql-no-such-host.invalid:8000/v1"))
    assert "does not resolve" in line


def test_a_tls_failure(shop, server):
    line = one_line_error(ask(shop, server.url.replace("http://", "https://")))
    assert "TLS failed" in line


def test_a_server_that_does_not_answer_in_time(shop, server):
    server.script("/v1/completions", Reply(delay=3.0))
    line = one_line_error(ask(shop, server.url, "--model-timeout", "0.5", "--candidates", "2"))
    assert "no answer within 0.5 s (--model-timeout)" in line


def test_a_server_that_trickles_its_answer_is_cut_off(shop, server):
    server.script("/v1/completions", Reply(body={"choices": [{"text": "SELECT 1" + " " * 200}]}, trickle=0.05))
    line = one_line_error(ask(shop, server.url, "--model-timeout", "0.5", "--candidates", "1"))
    assert "no answer within 0.5 s (--model-timeout)" in line


def test_a_server_that_trickles_its_status_line_and_headers_is_cut_off_at_the_timeout(shop, server):
    """Each byte comes well within the timeout (a byte every 0.5 s: 35 s for the whole head), but the call as a whole
    has one deadline: ask ends about --model-timeout after the request went out."""
    server.script("/v1/completions", Reply(trickle_head=0.5))
    started = time.monotonic()
    result = ask(shop, server.url, "--model-timeout", "1", "--candidates", "1", "--no-grammar")
    elapsed = time.monotonic() - started
    assert "no answer within 1 s (--model-timeout)" in one_line_error(result)
    assert elapsed < 1 + 1.5, elapsed


def test_a_redirect_is_followed_within_the_same_deadline(server):
    server.script("/v1/models", Reply(307, headers={"Location": "/v1/moved"}))
    server.script("/v1/moved", Reply(body={"data": [{"id": "moved-model"}]}))
    assert load_model(server.url).model_id == "moved-model"
    server.script("/v1/moved", Reply(trickle_head=0.5))
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"no answer within 1 s \(--model-timeout\)"):
        ServerModel(server.url, timeout=1)
    assert time.monotonic() - started < 1 + 1.5


def test_a_busy_server_is_not_waited_for_past_the_timeout(shop, server):
    server.script("/v1/completions", Reply(503, {"error": {"message": "loading"}}, headers={"Retry-After": "5"}))
    started = time.monotonic()
    line = one_line_error(ask(shop, server.url, "--model-timeout", "1", "--candidates", "1", "--no-grammar"))
    elapsed = time.monotonic() - started
    assert "busy (HTTP 503: loading) after 1 try within 1 s (--model-timeout)" in line
    assert len(server.seen("/v1/completions")) == 1 and elapsed < 1 + 1.5, elapsed


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_api_key(shop, server, status):
    server.script("/v1/models", Reply(status, {"detail": "Invalid API key"}))
    line = one_line_error(ask(shop, server.url))
    assert f"HTTP {status}" in line and "set EDGESQL_API_KEY" in line
    line = one_line_error(ask(shop, server.url, env={"EDGESQL_API_KEY": "wrong"}))
    assert "EDGESQL_API_KEY is not accepted" in line and "wrong" not in line


def test_a_url_that_is_not_the_api(shop, server):
    line = one_line_error(ask(shop, server.url.removesuffix("/v1")))
    assert "HTTP 404" in line and "/v1" in line


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_server_is_asked_again_a_bounded_number_of_times(shop, server, status):
    server.script("/v1/completions", Reply(status, {"error": {"message": "busy"}}, headers={"Retry-After": "0"}))
    line = one_line_error(ask(shop, server.url, "--candidates", "1"))
    assert f"busy (HTTP {status}: busy) after 4 tries" in line
    assert len(server.seen("/v1/completions")) == 4


def test_a_busy_server_that_recovers_answers(shop, server):
    server.script("/v1/completions", Reply(503, headers={"Retry-After": "0"}),
                  Reply(body={"choices": [{"text": "SELECT COUNT(*) FROM customers"}]}))
    result = ask(shop, server.url, "--candidates", "1")
    assert result.exit_code == 0, result.output


def test_a_server_error(shop, server):
    server.script("/v1/completions", Reply(500, {"error": {"message": "CUDA out of memory"}}))
    line = one_line_error(ask(shop, server.url))
    assert "failed (HTTP 500): CUDA out of memory" in line


def test_an_answer_that_is_not_json(shop, server):
    server.script("/v1/models", Reply(200, "<html><body>Welcome to nginx</body></html>"))
    line = one_line_error(ask(shop, server.url))
    assert "not JSON (text/html" in line


def test_an_answer_without_text(shop, server):
    server.script("/v1/completions", Reply(body={"choices": [{"index": 0}]}))
    line = one_line_error(ask(shop, server.url))
    assert "answered without a completion text" in line


def test_a_dropped_connection(shop, server):
    server.script("/v1/completions", Reply(drop=True))
    line = one_line_error(ask(shop, server.url))
    assert "closed" in line


def test_a_prompt_larger_than_the_servers_context_names_the_fix(shop, server):
    server.script("/v1/completions", Reply(400, {"error": {"message": "Requested tokens (900) exceed context "
                                                           "window of 512"}}))
    line = one_line_error(ask(shop, server.url))
    assert "exceed context window of 512" in line and "?context=N" in line


def test_faults_are_model_errors_for_every_command(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "How many?", "query": "SELECT 1", "db": "none.sqlite"}\n')
    url = f"http://127.0.0.1:{unused_port()}/v1"
    for args in (["models", "info", url], ["eval", "--data", str(data), "--model", url],
                 ["schema", "--db", str(EXAMPLES / "shop.sqlite"), "--model", url]):
        assert "connection refused" in one_line_error(runner.invoke(app, args))
    with pytest.raises(ModelError):
        load_model(url)


def test_eval_workers_need_a_model_server(fake_model, tmp_path):
    fake_model("SELECT 1")
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "How many?", "query": "SELECT 1", "db": "none.sqlite"}\n')
    result = runner.invoke(app, ["eval", "--data", str(data), "--model", "fake", "--workers", "2"])
    assert result.exit_code == 2 and "--workers needs a model server" in result.output


def test_edgesql_model_may_be_a_url_and_schema_renders_as_its_preset_says(shop):
    with ModelServer(models=["SS-350M-SQL-Strict"]) as served:
        result = runner.invoke(app, ["ask", "--db", str(shop), QUESTION], env={"EDGESQL_MODEL": served.url})
        assert result.exit_code == 0, result.output
        assert f"edgesql: model {served.url} (EDGESQL_MODEL)\n" in result.stderr
        strict = runner.invoke(app, ["schema", "--db", str(shop), "--model", served.url + "?preset=ss-350m-sql-strict"])
        assert strict.exit_code == 0 and strict.stdout.startswith("Table ")


def test_eval_workers_on_both_engines_report_as_one_worker(shop, server, tmp_path):
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps({"question": f"How many customers are there? ({i})",
                                        "query": "SELECT COUNT(*) FROM customers", "db": str(shop)}) + "\n"
                            for i in range(6)), encoding="utf-8")

    def run(workers: int) -> list:
        report = tmp_path / f"workers{workers}.json"
        result = runner.invoke(app, ["eval", "--data", str(data), "--model", server.url, "--candidates", "1,3",
                                     "--workers", str(workers), "--report", str(report)])
        assert result.exit_code == 0, result.output
        records = json.loads(report.read_text())["records"]
        return [(r["index"], r["answers"]) for r in records]

    together = run(4)
    assert together == run(1) and [index for index, _ in together] == list(range(6))
    assert all(answer["right"] for _, answers in together for answer in answers)
