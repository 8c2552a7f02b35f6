"""Batched sampling and the prompt-prefix cache, on the real llama.cpp path with a tiny random GGUF."""

from __future__ import annotations

import pytest

from edge_sql.backends.prefix import PrefixStore
from edge_sql.steps.generate import STATEMENT_STOPS
from edge_sql.backends.llama import LlamaModel
from edge_sql.steps.prompt import build_prompt
from fixtures.tiny_gguf import write_tiny_gguf

SCHEMA = "CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, name TEXT, country TEXT);"
STOP = ("<|im_end|>",) + STATEMENT_STOPS


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context=2048)


def prompt_for(question):
    return build_prompt("chatml-strict", SCHEMA, question, "sqlite", prefix="SELECT")


def sample(model, question, n=4, seed=3):
    prompt = prompt_for(question)
    return model.sample(prompt.text, [0.0] + [0.8] * (n - 1), seed=seed, max_tokens=16, stop=STOP,
                        cache_prefix=prompt.cache_prefix)


def test_batched_and_sequential_sampling_give_the_same_greedy_candidate(tiny, tmp_path):
    batched = LlamaModel(tiny, threads=1, cache_dir=tmp_path)
    sequential = LlamaModel(tiny, threads=1, batched=False)
    assert sample(batched, "How many customers?")[0].text == sample(sequential, "How many customers?")[0].text


def test_candidates_are_reproducible_and_independent_of_batch_size(tiny, tmp_path):
    model = LlamaModel(tiny, threads=1, cache_dir=tmp_path)
    four = sample(model, "How many customers?", n=4)
    again = sample(model, "How many customers?", n=4)
    two = sample(model, "How many customers?", n=2)
    assert [c.text for c in four] == [c.text for c in again]
    assert [c.text for c in four[:2]] == [c.text for c in two]  # candidate i depends only on seed + i
    assert all(c.tokens <= 16 and c.logprob <= 0 for c in four)


def question_tokens(model, question):
    """Tokens of the prompt after the schema prefix that every question repeats."""
    prompt = prompt_for(question)
    return model.count_tokens(prompt.text) - model.count_tokens(prompt.cache_prefix)


def test_the_next_question_on_the_same_schema_evaluates_only_the_question(tiny, tmp_path):
    model = LlamaModel(tiny, threads=1, cache_dir=tmp_path)
    sample(model, "How many customers?")
    assert model.last_cost.prompt_evaluated >= model.count_tokens(prompt_for("How many customers?").text) - 1
    sample(model, "Which countries do customers come from?")
    assert model.last_cost.prompt_evaluated <= question_tokens(model, "Which countries do customers come from?") + 1


def test_a_new_process_restores_the_schema_prefix_from_disk(tiny, tmp_path):
    sample(LlamaModel(tiny, threads=1, cache_dir=tmp_path), "How many customers?")
    assert len(list(tmp_path.glob("*.state"))) == 1
    fresh = LlamaModel(tiny, threads=1, cache_dir=tmp_path)  # as the next `edgesql ask` would
    texts = [c.text for c in sample(fresh, "How many customers?")]
    assert fresh.last_cost.prompt_evaluated <= question_tokens(fresh, "How many customers?") + 1
    uncached = LlamaModel(tiny, threads=1, cache_dir=tmp_path / "empty")
    assert texts == [c.text for c in sample(uncached, "How many customers?")]


def test_a_corrupt_cache_file_is_detected_and_rebuilt(tiny, tmp_path):
    sample(LlamaModel(tiny, threads=1, cache_dir=tmp_path), "How many customers?")
    (state,) = tmp_path.glob("*.state")
    state.write_bytes(state.read_bytes()[:1000])  # truncated on disk
    model = LlamaModel(tiny, threads=1, cache_dir=tmp_path)
    reference = LlamaModel(tiny, threads=1, cache_dir=tmp_path / "other")
    assert [c.text for c in sample(model, "How many customers?")] == [c.text for c in sample(reference, "How many customers?")]
    assert model.last_cost.prompt_evaluated > question_tokens(model, "How many customers?") + 1  # evaluated again, not loaded
    assert state.stat().st_size > 1000  # and written anew


def test_the_cache_keeps_to_its_size_cap(tmp_path):
    store = PrefixStore(tmp_path, "model", max_bytes=250)
    for index in range(5):
        (tmp_path / f"{index}.state").write_bytes(b"x" * 100)
        (tmp_path / f"{index}.json").write_text("{}")
    store.evict()
    assert len(list(tmp_path.glob("*.state"))) == 2
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_on_finish_can_stop_the_candidates_still_running(tiny, tmp_path):
    model = LlamaModel(tiny, threads=1, cache_dir=tmp_path)
    prompt = prompt_for("How many customers?")
    finished = []

    def stop_after_first(index, text):
        finished.append(index)
        return True

    completions = model.sample(prompt.text, [0.0, 0.8, 0.8, 0.8], seed=3, max_tokens=16, stop=STOP,
                               on_finish=stop_after_first)
    assert len(completions) == 4 and len(finished) >= 1
    assert sum(c.stopped for c in completions) == 4 - len(finished)
    assert all(not completions[i].stopped for i in finished)


# -- a failure of llama.cpp while decoding is a ModelError, and the next call starts clean --------------------------

def failing_decode(monkeypatch, module, fail_at=1, times=1, status=-3):
    """Make ``module.llama_decode`` return ``status`` on its ``fail_at``-th call (and the ``times - 1`` after it)."""
    real = module.llama_decode
    calls = []

    def decode(ctx, batch):
        calls.append(len(calls) + 1)
        if fail_at <= len(calls) < fail_at + times:
            return status
        return real(ctx, batch)

    monkeypatch.setattr(module, "llama_decode", decode)
    return calls


@pytest.mark.parametrize("fail_at", [1, 2, 4], ids=["prefix", "prompt", "candidates"])
def test_a_failed_decode_is_a_model_error_and_the_next_sample_works(tiny, tmp_path, monkeypatch, fail_at):
    from edge_sql.backends import batch
    from edge_sql.errors import ModelError

    expected = [c.text for c in sample(LlamaModel(tiny, threads=1, cache_dir=tmp_path / "reference"),
                                       "How many customers?")]
    model = LlamaModel(tiny, threads=1, cache_dir=tmp_path / "cache")
    calls = failing_decode(monkeypatch, batch.L, fail_at=fail_at)
    with pytest.raises(ModelError) as failed:
        sample(model, "How many customers?")
    message = str(failed.value)
    assert message.startswith("llama.cpp failed while") and "tiny.gguf" in message and "returned -3" in message
    assert "\n" not in message and failed.value.exit_code == 4
    assert len(calls) == fail_at
    assert [c.text for c in sample(model, "How many customers?")] == expected  # the cache was not left half-done
    assert len(calls) > fail_at


def test_a_failed_decode_on_the_sequential_path_is_a_model_error_too(tiny, monkeypatch):
    import llama_cpp.llama_cpp as low_level

    from edge_sql.errors import ModelError

    model = LlamaModel(tiny, threads=1, batched=False)
    expected = [c.text for c in sample(model, "How many customers?", n=2)]
    failing_decode(monkeypatch, low_level, fail_at=1)
    with pytest.raises(ModelError, match=r"^llama.cpp failed while decoding with tiny.gguf: llama_decode returned -3"):
        sample(model, "How many customers?", n=2)
    assert [c.text for c in sample(model, "How many customers?", n=2)] == expected


def test_ask_ends_with_4_and_one_line_when_llama_cpp_fails(tiny, tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from conftest import EXAMPLES
    from edge_sql.backends import batch
    from edge_sql.cli import app

    db = tmp_path / "shop.sqlite"
    shutil.copyfile(EXAMPLES / "shop.sqlite", db)
    failing_decode(monkeypatch, batch.L, fail_at=1, times=1000)
    result = CliRunner().invoke(app, ["ask", "--db", str(db), "--model", str(tiny), "--threads", "1",
                                      "--candidates", "2", "How many customers?"])
    assert result.exit_code == 4, result.output
    assert result.stderr.startswith("edgesql: llama.cpp failed while") and "tiny.gguf" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
