"""GRPO (group relative policy optimization, DeepSeekMath; as SLM-SQL, CSC-SQL and FINER-SQL use it for SQL): learn
from execution instead of from gold text.

Each step takes ``questions`` training questions; for each, the sampler (:mod:`edge_sql.train.rollout`, llama.cpp
running the policy's adapter) writes ``group`` candidates, each rewarded by execution (:mod:`edge_sql.train.reward`).
A candidate's advantage is its reward against its own group's: (r − mean) / (std + ε); a group whose candidates all
earned the same teaches nothing and is skipped. The loss, over every token of the candidates (DAPO's token-level
mean), is the clipped policy objective

    −min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A) + β·KL(π ‖ π_ref),   ρ = π / π_sampled

with KL estimated per token as exp(r) − r − 1, r = log π_ref − log π (Schulman's k3), π_ref the adapter training
started from (SFT's). ρ differs from 1 when the sampler's adapter is older than the trainer's (``refresh`` > 1) and
on the second and later of ``iterations`` passes over the same groups. LoRA weights only, in torch (PEFT); each group's
schema head is computed once as in supervised training (:func:`edge_sql.train.loop.answer_logprobs`).
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from edge_sql.train.loop import (IGNORE, Batch, Checkpointing, Progress, Settings, answer_logprobs, encode,
                                 lora_model, lora_state, load_start, read_checkpoint, schedule, write_checkpoint)


@dataclass(frozen=True)
class Policy:
    """GRPO's own settings (the LoRA shape, learning rate, seed and device are :class:`Settings`')."""

    group: int = 8  # candidates a question
    questions: int = 4  # questions a step
    temperature: float = 1.0
    kl: float = 0.04  # β
    clip: float = 0.2  # ε
    iterations: int = 1  # passes over a step's groups
    refresh: int = 1  # steps between two adapters given to the sampler


@dataclass(frozen=True)
class StepRecord:
    step: int
    reward: float
    accuracy: float
    ran: float
    refused: float
    trained: int  # groups whose rewards differed
    loss: float
    kl: float
    tokens: int  # the policy's forward and backward tokens
    rollout_seconds: float
    train_seconds: float


def advantages(rewards: list[float]) -> list[float]:
    """Each reward against its group's: (r − mean) / (std + 1e-4); all zeros when they are all equal.

    >>> [round(a, 3) for a in advantages([1.0, 0.0, 0.0, 1.0])]
    [1.0, -1.0, -1.0, 1.0]
    >>> advantages([0.3, 0.3])
    [0.0, 0.0]
    """
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))
    if std < 1e-6:
        return [0.0] * len(rewards)
    return [(r - mean) / (std + 1e-4) for r in rewards]


def group_batch(group, tokenizer) -> Batch:
    """A group as a training batch: its schema head once, then the question and each candidate, loss on what the
    candidate wrote."""
    head = tuple(encode(tokenizer, group.prefix))
    question = encode(tokenizer, group.prompt[len(group.prefix):])
    suffixes, labels = [], []
    for text in group.completions:
        answer = encode(tokenizer, text) or encode(tokenizer, " ")
        suffixes.append(tuple(question + answer))
        labels.append(tuple([IGNORE] * len(question) + answer))
    return Batch(head, tuple(suffixes), tuple(labels))


def objective(logprobs, sampled, reference, mask, advantage, policy: Policy, torch):
    """(summed per-token loss, summed KL) of one group; ``advantage`` is one value per row."""
    ratio = torch.exp(logprobs - sampled)
    gain = advantage.unsqueeze(-1)
    surrogate = torch.minimum(ratio * gain, torch.clamp(ratio, 1 - policy.clip, 1 + policy.clip) * gain)
    loss = -surrogate
    kl = torch.zeros_like(logprobs)
    if reference is not None:
        gap = reference - logprobs
        kl = torch.exp(gap) - gap - 1
        loss = loss + policy.kl * kl
    return (loss * mask).sum(), (kl.detach() * mask).sum()


@contextmanager
def weights_of(peft_model, state: dict, torch):
    """The model with its LoRA weights set to ``state`` for the block, its own put back after (None: its own)."""
    if state is None:
        yield
        return
    parameters = dict(peft_model.named_parameters())
    saved = {name: parameters[name].detach().clone() for name in state}
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                parameters[name].copy_(value)


def lora_parameters(peft_model, torch) -> dict:
    """The LoRA weights by parameter name (as :func:`weights_of` sets them), copied."""
    return {name: p.detach().clone() for name, p in peft_model.named_parameters() if "lora_" in name}


def reinforce(model, tokenizer, pairs: list, sampler_for: Callable, write_policy: Callable, settings: Settings,
              policy: Policy, *, checkpoints: Path, blocks: int, initial=None, initial_digest: str = "",
              on_step: Callable[[Progress], None] | None = None, log: Path | None = None):
    """Train a LoRA adapter with GRPO on ``pairs`` (questions with gold queries). ``write_policy(peft_model)``
    writes the current adapter as a GGUF file and returns its path; ``sampler_for(path)`` makes the sampler that runs
    it (later ones are given to its ``refresh``). Resumes from ``checkpoints``. Returns the PEFT model and the step
    records."""
    import torch

    torch.manual_seed(settings.seed)
    peft_model = lora_model(model, settings, blocks)
    if initial is not None:
        load_start(peft_model, initial, torch)
    peft_model.train()
    reference = lora_parameters(peft_model, torch) if policy.kl > 0 else None
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, betas=(0.9, 0.99), weight_decay=0.0)
    order = list(range(len(pairs)))
    random.Random(settings.seed).shuffle(order)
    order = order[: max(1, round(len(pairs) * settings.epochs))]
    steps = math.ceil(len(order) / policy.questions)
    identity = {"method": "grpo", "settings": {k: v for k, v in asdict(settings).items() if k != "device"},
                "policy": asdict(policy), "pairs": len(pairs), "start": initial_digest}
    saved = checkpoints / "checkpoint.pt"
    device = next(model.parameters()).device
    state = read_checkpoint(saved, identity, torch, device)
    start, records = 0, []
    if state is not None:
        peft_model.load_state_dict(state["lora"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        reference = state["reference"]
        start, records = state["step"], [StepRecord(**r) for r in state["records"]]
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=settings.bf16)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sampler = sampler_for(write_policy(peft_model))
    # the sampler's weights, when they can differ from the model's as a step's lessons are prepared (None: the same)
    sampled = lora_parameters(peft_model, torch) if policy.refresh > 1 else None
    started, done_tokens = time.monotonic(), 0

    def save(step: int) -> None:
        write_checkpoint(saved, {"identity": identity, "lora": lora_state(peft_model), "step": step,
                                 "optimizer": optimizer.state_dict(), "reference": reference,
                                 "records": [asdict(r) for r in records]}, torch)

    with Checkpointing(save, settings.checkpoint_seconds, steps, checkpoints, start) as run:
        for step in range(start, steps):
            for group in optimizer.param_groups:
                group["lr"] = settings.learning_rate * schedule(step, steps, settings.warmup)
            if step > start and step % policy.refresh == 0:
                sampler.refresh(write_policy(peft_model))
                sampled = lora_parameters(peft_model, torch) if policy.refresh > 1 else None
            clock = time.monotonic()
            chosen = order[step * policy.questions: (step + 1) * policy.questions]
            groups = [sampler.roll(pairs[i], policy.group, policy.temperature, settings.seed + 1000 * step + n)
                      for n, i in enumerate(chosen)]
            groups = [g for g in groups if g is not None]
            rollout_seconds = time.monotonic() - clock
            clock = time.monotonic()
            lessons = prepare(peft_model, tokenizer, groups, policy, reference, sampled,
                              fresh=step % policy.refresh == 0 or step == start, torch=torch, autocast=autocast,
                              pad=pad)
            loss = kl = 0.0
            tokens = 0
            for _ in range(policy.iterations if lessons else 0):  # each pass over the groups is an update
                loss, kl, computed = learn(peft_model, lessons, policy, torch=torch, autocast=autocast, pad=pad)
                tokens += computed
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            taught = len(lessons)
            run.completed = step + 1
            done_tokens += tokens
            rewards = [r for g in groups for r in g.rewards]
            record = StepRecord(step + 1, mean([r.value for r in rewards]), mean([r.right for r in rewards]),
                                mean([r.ran for r in rewards]), mean([r.value < 0 for r in rewards]), taught,
                                round(loss, 5), round(kl, 6), tokens, round(rollout_seconds, 2),
                                round(time.monotonic() - clock, 2))
            records.append(record)
            if log is not None:
                with log.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(asdict(record)) + "\n")
            if on_step is not None:
                recent = records[-10:]
                on_step(Progress(step + 1, steps, mean([r.loss for r in recent]), done_tokens,
                                 time.monotonic() - started, mean([r.reward for r in recent]),
                                 mean([r.accuracy for r in recent])))
            run.tick(step + 1)
    save(steps)
    return peft_model, records


@dataclass
class Lesson:
    """A group ready to learn from: its batch, each candidate's advantage, and the log-probabilities of what it
    wrote under the sampler's weights (None: the trainer's own are the sampler's) and the reference's."""

    batch: Batch
    gains: object
    sampled: object
    reference: object


def prepare(peft_model, tokenizer, groups, policy: Policy, reference, sampled, *, fresh: bool, torch, autocast,
            pad: int) -> list[Lesson]:
    """The groups whose rewards differ, as lessons (computing what the update compares against)."""
    lessons = []
    for group in groups:
        gains = advantages([r.value for r in group.rewards])
        if not any(gains):
            continue
        batch = group_batch(group, tokenizer)
        old = ref = None
        with torch.no_grad(), autocast:
            if not fresh or policy.iterations > 1:
                with weights_of(peft_model, sampled, torch):
                    old = answer_logprobs(peft_model, batch, torch, pad)[0]
            if reference is not None:
                with weights_of(peft_model, reference, torch):
                    ref = answer_logprobs(peft_model, batch, torch, pad)[0]
        lessons.append(Lesson(batch, torch.tensor(gains), old, ref))
    return lessons


def learn(peft_model, lessons: list[Lesson], policy: Policy, *, torch, autocast, pad: int) -> tuple[float, float, int]:
    """One pass over the lessons, gradients accumulated: (loss per token, KL per token, tokens computed)."""
    device = next(peft_model.parameters()).device
    answer_tokens = max(1, sum(sum(1 for t in labels if t != IGNORE) for lesson in lessons
                               for labels in lesson.batch.labels))
    total_loss, total_kl, tokens = 0.0, 0.0, 0
    for lesson in lessons:
        with autocast:
            logprobs, mask = answer_logprobs(peft_model, lesson.batch, torch, pad)
        sampled = lesson.sampled if lesson.sampled is not None else logprobs.detach()
        loss, kl = objective(logprobs, sampled, lesson.reference, mask, lesson.gains.to(device), policy, torch)
        (loss / answer_tokens).backward()
        total_loss += float(loss.detach())
        total_kl += float(kl)
        tokens += lesson.batch.tokens
    return total_loss / answer_tokens, total_kl / answer_tokens, tokens


def mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else 0.0
