"""``edgesql train --method grpo``: the model learns from the execution of its own candidates.

What is checked here, each part on its own and then the whole command on a tiny random Llama:
- a candidate's reward: right beats ran-but-wrong (with partial credit for how near it came), which beats a query
  that did not run, which beats one the guard refused;
- the sampler is the product's own: llama.cpp writes the candidates (a scripted model whose text the test knows),
  the pipeline judges them and ``eval``'s metric scores them;
- one update makes the better-rewarded candidate more likely and the worse one less likely;
- the command writes an adapter ``ask`` runs, a log of reward and accuracy per step, and continues after Ctrl-C.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from edge_sql.cli import app
from edge_sql.steps.generate import Candidate
from edge_sql.train.grpo import advantages
from edge_sql.train.reward import Weights, reward_of
from fixtures.scripted_gguf import write_scripted_gguf
from fixtures.tiny_hf import needs_extra, session_tokenizer, tiny_model

runner = CliRunner()
GOLD = "SELECT name FROM products WHERE price > 10"
QUESTIONS = [
    ("How many customers are there?", "SELECT count(*) FROM customers"),
    ("How many products are there?", "SELECT count(*) FROM products"),
    ("List the names of all products.", "SELECT name FROM products"),
    ("Which countries do customers come from?", "SELECT DISTINCT country FROM customers"),
]


def judged(sql: str):
    from edge_sql.steps.database import open_database
    from edge_sql.steps.judge import judge

    with open_database(EXAMPLES / "shop.sqlite") as db:
        return judge([Candidate(text=sql, sql=sql)], db)[0]


def reward(sql: str, right: bool = False) -> float:
    from edge_sql.eval.metric import fetch

    gold_rows = fetch(EXAMPLES / "shop.sqlite", GOLD)
    return reward_of(judged(sql), GOLD, gold_rows, right).value


def test_a_right_query_beats_a_near_one_which_beats_one_that_fails_which_beats_a_refused_one():
    right = reward(GOLD, right=True)
    near = reward("SELECT name FROM products WHERE price > 20")  # same tables, operations, some of the rows
    far = reward("SELECT count(*) FROM customers")
    failed = reward("SELECT name FROM products WHERE colour = 'red'")  # no such column: never ran
    refused = reward("DELETE FROM products")
    assert right == Weights().right == 1.0
    assert right > near > far > failed >= 0 > refused == Weights().refused


def test_advantages_are_relative_to_the_group():
    assert advantages([1.0, 1.0, 1.0]) == [0.0, 0.0, 0.0]  # nothing to learn from a group that agrees
    gains = advantages([1.0, 0.2, 0.0, 0.0])
    assert gains[0] > gains[1] > gains[2] == gains[3] and abs(sum(gains)) < 1e-9


# -- the sampler: llama.cpp writes, the pipeline judges, eval's metric scores --------------------------------------

@pytest.mark.parametrize("script, right", [(["SELECT ", "name ", "FROM ", "products"], True),
                                           (["SELECT ", "price ", "FROM ", "products"], False)])
def test_the_sampler_rewards_what_the_model_writes(tmp_path, script, right):
    from edge_sql.eval.datasets import Example
    from edge_sql.eval.scoring import Databases
    from edge_sql.preset import GENERIC
    from edge_sql.train.rollout import Sampler

    model = write_scripted_gguf(tmp_path / "scripted.gguf", script)
    adapter = no_adapter(tmp_path)
    example = Example(0, "List the names of all products.", "SELECT name FROM products", "shop",
                      EXAMPLES / "shop.sqlite")
    with Databases() as open_db:
        sampler = Sampler(model, GENERIC, adapter, threads=1, scratch=tmp_path / "cache", open_db=open_db)
        group = sampler.roll(example, 3, 1.0, seed=7)
    assert group.completions == ("SELECT name FROM products<|im_end|>" if right else
                                 "SELECT price FROM products<|im_end|>",) * 3
    assert group.accuracy == (1.0 if right else 0.0)
    assert all(r.ran for r in group.rewards)
    assert all((r.value == 1.0) if right else (0 < r.value < 1) for r in group.rewards)
    assert group.prompt.startswith(group.prefix) and "products" in group.prefix  # the schema head, shared


def no_adapter(folder: Path) -> Path:
    """A LoRA file for the scripted model that changes nothing (its B halves are zero)."""
    import numpy as np

    from edge_sql.train.adapter import write_adapter

    path = folder / "zero.gguf"
    write_adapter(path, {"model.layers.0.self_attn.q_proj": (np.ones((2, 64), np.float32),
                                                              np.zeros((64, 2), np.float32))},
                  arch="llama", blocks=1, alpha=2, name="zero", metadata={})
    return path


# -- one update ------------------------------------------------------------------------------------------------

@needs_extra
def test_an_update_makes_the_rewarded_candidate_more_likely(tmp_path_factory):
    import torch

    from edge_sql.train.grpo import Policy, learn, prepare
    from edge_sql.train.loop import Settings, answer_logprobs, lora_model
    from edge_sql.train.reward import Reward
    from edge_sql.train.rollout import Group

    tokenizer = session_tokenizer(tmp_path_factory)
    model = tiny_model("llama", tmp_path_factory.mktemp("tiny"), tokenizer)
    peft_model = lora_model(model, Settings(rank=4), blocks=2)
    with torch.no_grad():  # PEFT starts B at zero, where A gets no gradient: start from a trained-looking adapter
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    good, bad = " name FROM products<|im_end|>", " price FROM orders<|im_end|>"
    group = Group(0, "<|im_start|>system\nCREATE TABLE products (name TEXT)", "<|im_start|>system\nCREATE TABLE "
                  "products (name TEXT)\n<|im_start|>user\nWhich products?<|im_end|>\n<|im_start|>assistant\nSELECT",
                  (good, bad, bad), (Reward(1.0, True, True, {}), Reward(0.1, False, True, {}),
                                     Reward(0.1, False, True, {})), 0)
    policy = Policy(kl=0.04)
    noop = torch.autocast("cpu", enabled=False)

    def logprobs():
        from edge_sql.train.grpo import group_batch

        with torch.no_grad():
            values, mask = answer_logprobs(peft_model, group_batch(group, tokenizer), torch)
        return (values * mask).sum(dim=1).tolist()

    before = logprobs()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    reference = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
    lessons = prepare(peft_model, tokenizer, [group], policy, reference, None, fresh=True, torch=torch,
                      autocast=noop, pad=0)
    assert len(lessons) == 1
    loss, kl, tokens = learn(peft_model, lessons, policy, torch=torch, autocast=noop, pad=0)
    assert kl == pytest.approx(0.0, abs=1e-6) and tokens > 0  # the reference is where it starts
    optimizer.step()
    after = logprobs()
    assert after[0] > before[0] and after[1] < before[1]


# -- the command -----------------------------------------------------------------------------------------------

def pairs_file(folder: Path) -> Path:
    db = folder / "shop.sqlite"
    shutil.copyfile(EXAMPLES / "shop.sqlite", db)
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps({"question": q, "query": sql, "db": db.name}) + "\n" for q, sql in QUESTIONS))
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny random Llama as an f16 GGUF file (made by edgesql convert)."""
    from convert import convert

    folder = tmp_path_factory.mktemp("tiny-base")
    tiny_model("llama", folder / "hf", session_tokenizer(tmp_path_factory))
    return convert(str(folder / "hf"), quant="none", out=folder / "tiny.f16.gguf", threads=2, verify=False).path


@needs_extra
def test_grpo_writes_an_adapter_ask_runs_and_a_log_of_each_step(base, tmp_path):
    data = pairs_file(tmp_path)
    result = runner.invoke(app, ["train", "--method", "grpo", "--threads", "2", "--data", str(data), "--base",
                                 str(base), "--out", str(tmp_path / "run"), "--questions", "2", "--group", "3",
                                 "--held-back", "0", "--learning-rate", "1e-3"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["method"] == "grpo" and record["steps"] == 2 and record["questions"] == 4
    assert len(record["reward_by_step"]) == len(record["accuracy_by_step"]) == 2
    log = [json.loads(line) for line in (tmp_path / "run" / "grpo.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2]
    assert all(-1 <= entry["reward"] <= 1 and 0 <= entry["accuracy"] <= 1 for entry in log)
    assert "group accuracy" in result.stdout and "no --resume" in result.stderr
    assert not (tmp_path / "run" / "policy.gguf").exists()  # the sampler's copy is gone: adapter.gguf is the result
    asked = runner.invoke(app, ["ask", "--db", str(tmp_path / "shop.sqlite"), "--model", str(tmp_path / "run"),
                                "-n", "2", "How many customers are there?"])
    assert asked.exit_code in (0, 5) and "Traceback" not in asked.output  # a random model may write nothing valid


@needs_extra
def test_an_interrupted_grpo_run_continues_where_it_stopped(base, tmp_path):
    from edge_sql.train.grpo import Policy
    from edge_sql.train.loop import Interrupted, Settings
    from edge_sql.train.run import train_policy

    data = pairs_file(tmp_path)
    settings, policy = Settings(rank=4, learning_rate=1e-3, checkpoint_seconds=0.0), Policy(group=3, questions=1)

    def stop_at_2(progress):
        if progress.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="run the same command again"):
        train_policy(data, str(base), tmp_path / "run", settings, policy, held_back=0, threads=2, on_step=stop_at_2)
    steps = []
    trained = train_policy(data, str(base), tmp_path / "run", settings, policy, held_back=0, threads=2,
                           on_step=lambda p: steps.append(p.step))
    assert steps == [3, 4] and trained.summary["steps"] == 4
    other = Policy(group=4, questions=1)
    with pytest.raises(Exception, match="another run"):
        train_policy(data, str(base), tmp_path / "run", settings, other, held_back=0, threads=2)


def test_an_unknown_method_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(app, ["train", "--method", "ppo", "--data", str(pairs_file(tmp_path)), "--out",
                                 str(tmp_path / "run")])
    assert result.exit_code == 2 and "--method ppo" in result.output and "Traceback" not in result.output
