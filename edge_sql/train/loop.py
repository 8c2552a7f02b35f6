"""LoRA fine-tuning with PEFT on the attention and MLP projections (never the output head: SmolLM2 ties it to the
embeddings, and llama.cpp refuses such an adapter), loss on the SQL only.

Questions that share a schema share a prompt head (``TrainingExample.prefix``). A batch is one head and several
questions: the head is run once, its key-value cache repeated over the batch, and the questions run against it with
gradients flowing through it. The loss equals running each prompt whole (``tests/test_train.py`` checks it), for a
fraction of the tokens. A batch holds at most ``batch_tokens`` of (head + longest question) × questions, which bounds
memory.

torch, transformers and peft are imported here only (the ``train`` extra); nothing on the ``ask`` path imports this.
"""

from __future__ import annotations

import math
import os
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from edge_sql.errors import INTERRUPTED, EdgeSQLError, UsageError

#: The projections LoRA adapts (Llama and Qwen2 names).
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MLP = ("gate_proj", "up_proj", "down_proj")  # under ``mlp.``; the others under ``self_attn.``
IGNORE = -100


@dataclass(frozen=True)
class Settings:
    epochs: float = 1.0
    rank: int = 16
    alpha: int = 32
    learning_rate: float = 1e-3
    warmup: int = 4
    seed: int = 42
    batch_tokens: int = 6000
    layers: int | None = None  # LoRA on the top N layers only (the frozen ones below need no backward pass)
    bf16: bool = False  # bfloat16 autocast (CPUs with AVX512-BF16, and GPUs)
    device: str = "auto"  # "auto" (CUDA when torch sees a GPU, else the CPU), "cpu", "cuda" or "cuda:N"
    checkpoint_seconds: float = 300.0


@dataclass(frozen=True)
class Batch:
    prefix: tuple[int, ...]
    suffixes: tuple[tuple[int, ...], ...]
    labels: tuple[tuple[int, ...], ...]

    @property
    def tokens(self) -> int:
        """Tokens the model computes for this batch (the head once)."""
        return len(self.prefix) + sum(len(s) for s in self.suffixes)


@dataclass
class Progress:
    step: int
    steps: int
    loss: float
    tokens: int
    seconds: float
    reward: float | None = None  # GRPO: the mean reward of the recent groups
    accuracy: float | None = None  # GRPO: the share of their candidates that were right


class Interrupted(EdgeSQLError):
    """Ctrl-C during training: the checkpoint holds the work done."""

    exit_code = INTERRUPTED


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def make_batches(examples, tokenizer, batch_tokens: int) -> list[Batch]:
    """Token batches: the questions of one prompt head together, shortest first, within ``batch_tokens``."""
    groups: dict[str, list] = {}
    for example in examples:
        if not example.prompt.startswith(example.prefix):
            raise ValueError(f"example {example.index}: its prompt does not start with its prefix")
        groups.setdefault(example.prefix, []).append(example)
    batches = []
    for prefix, group in groups.items():
        head = tuple(encode(tokenizer, prefix))
        rows = []
        for example in group:
            question = encode(tokenizer, example.prompt[len(prefix):])
            answer = encode(tokenizer, example.completion)
            rows.append((tuple(question + answer), tuple([IGNORE] * len(question) + answer)))
        rows.sort(key=lambda row: len(row[0]))
        chunk: list = []
        for row in rows:
            longest = max([len(row[0])] + [len(r[0]) for r in chunk])
            if chunk and (len(chunk) + 1) * (len(head) + longest) > batch_tokens:
                batches.append(Batch(head, tuple(r[0] for r in chunk), tuple(r[1] for r in chunk)))
                chunk = []
            chunk.append(row)
        if chunk:
            batches.append(Batch(head, tuple(r[0] for r in chunk), tuple(r[1] for r in chunk)))
    return batches


def batch_logits(model, batch: Batch, torch, pad: int = 0, through_head: bool = True):
    """(logits, labels) of one batch's questions, the head run once and its cache shared: each row's logits at
    every position of its question and answer, and its labels (``IGNORE`` where no loss is taken). Without
    ``through_head`` the head's keys and values are computed without gradient (no activations kept for it)."""
    device = next(model.parameters()).device
    size, longest = len(batch.suffixes), max(len(s) for s in batch.suffixes)
    head = torch.tensor([batch.prefix], device=device)
    with torch.set_grad_enabled(through_head and torch.is_grad_enabled()):
        cache = model(input_ids=head, use_cache=True, logits_to_keep=1).cache
    cache.batch_repeat_interleave(size)
    ids = torch.full((size, longest), pad, device=device)
    labels = torch.full((size, longest), IGNORE, device=device)
    mask = torch.zeros((size, len(batch.prefix) + longest), dtype=torch.long, device=device)
    mask[:, : len(batch.prefix)] = 1
    for row, (suffix, label) in enumerate(zip(batch.suffixes, batch.labels)):
        ids[row, : len(suffix)] = torch.tensor(suffix)
        labels[row, : len(label)] = torch.tensor(label)
        mask[row, len(batch.prefix): len(batch.prefix) + len(suffix)] = 1
    positions = torch.arange(len(batch.prefix), len(batch.prefix) + longest, device=device).expand(size, -1)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache).logits.float()
    return logits, labels


def batch_loss(model, batch: Batch, torch, pad: int = 0):
    """(summed loss over the SQL tokens, their count) for one batch: the head once, the questions against its cache."""
    logits, labels = batch_logits(model, batch, torch, pad)
    targets = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum())


def answer_logprobs(model, batch: Batch, torch, pad: int = 0):
    """(log-probability of each labelled token, a mask of where labels are): rows × positions, for GRPO. The
    gradient stops at the schema head: what is learnt is what the model writes after it (a head holds most of a
    batch's tokens; its backward pass would take most of the time and memory)."""
    logits, labels = batch_logits(model, batch, torch, pad, through_head=False)
    targets = labels[:, 1:]
    mask = targets != IGNORE
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logprobs, mask


def whole_loss(model, batch: Batch, torch):
    """The same loss with every prompt run whole, one at a time: the reference :func:`batch_loss` must equal."""
    total, count = 0.0, 0
    for suffix, label in zip(batch.suffixes, batch.labels):
        ids = torch.tensor([list(batch.prefix) + list(suffix)])
        labels = torch.tensor([[IGNORE] * len(batch.prefix) + list(label)])
        logits = model(input_ids=ids).logits.float()
        total = total + torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=IGNORE,
                                                          reduction="sum")
        count += int((labels[0, 1:] != IGNORE).sum())
    return total, count


def lora_model(model, settings: Settings, blocks: int):
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in TARGETS if t in present]
    if not targets:
        raise UsageError("the base model has none of the projections LoRA adapts "
                         f"({', '.join(TARGETS)}): only Llama and Qwen2 models can be trained")
    layers = None if settings.layers is None else list(range(max(0, blocks - settings.layers), blocks))
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, target_modules=targets, lora_dropout=0.0,
                        layers_to_transform=layers, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def load_start(peft_model, start, torch) -> None:
    """Set the LoRA weights to those of an adapter trained before (same rank, alpha and layers)."""
    state = peft_model.state_dict()
    wanted = {}
    for module, (a, b) in start.tensors.items():
        for half, value in (("A", a), ("B", b)):
            key = f"base_model.model.{module}.lora_{half}.default.weight"
            if key not in state or tuple(state[key].shape) != value.shape:
                raise UsageError(f"the adapter to continue does not fit this base: {module} "
                                 f"({'missing' if key not in state else 'another shape'})")
            wanted[key] = torch.from_numpy(value).to(state[key].dtype)
    lora_keys = {k for k in state if ".lora_" in k}
    if set(wanted) != lora_keys:
        raise UsageError("the adapter to continue adapts other projections than this training would "
                         f"({len(wanted)} LoRA tensors, {len(lora_keys)} expected)")
    peft_model.load_state_dict(wanted, strict=False)


def schedule(step: int, total: int, warmup: int) -> float:
    """Warm-up, then cosine to zero.

    >>> [round(schedule(s, 10, 2), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def plan(batches: list[Batch], epochs: float, seed: int) -> list[int]:
    """The order batches are taken in: each epoch shuffled with ``seed`` + epoch; a fraction of an epoch at the end."""
    order: list[int] = []
    whole = math.floor(epochs)
    for epoch in range(math.ceil(epochs)):
        indexes = list(range(len(batches)))
        random.Random(seed + epoch).shuffle(indexes)
        if epoch >= whole:
            indexes = indexes[: max(1, round(len(batches) * (epochs - whole)))]
        order.extend(indexes)
    return order


def choose_device(asked: str, torch) -> str:
    """The device to train on: ``auto`` is the first CUDA GPU when torch sees one, else the CPU."""
    if asked == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if asked.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {asked}: this torch sees no CUDA GPU (a CPU build of torch, or no driver)")
    if asked != "cpu" and not re.fullmatch(r"cuda(:\d+)?", asked):
        raise UsageError(f"--device {asked}: give auto, cpu, cuda or cuda:N")
    return asked


def train(model, tokenizer, batches: list[Batch], settings: Settings, *, checkpoints: Path,
          on_step: Callable[[Progress], None] | None = None, blocks: int, initial=None, initial_digest: str = ""):
    """Train a LoRA adapter on ``batches``, from ``initial`` (an :class:`~edge_sql.train.adapter.Adapter`) when
    given; resumes from ``checkpoints`` when it holds one for the same batches, settings and initial adapter. Returns the PEFT model
    and the mean loss of each epoch (or part of one)."""
    import torch

    torch.manual_seed(settings.seed)
    peft_model = lora_model(model, settings, blocks)
    if initial is not None:
        load_start(peft_model, initial, torch)
    peft_model.train()
    parameters = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, betas=(0.9, 0.98), weight_decay=0.0)
    order = plan(batches, settings.epochs, settings.seed)
    identity = {"settings": {k: v for k, v in asdict(settings).items() if k != "device"},
                "batches": len(batches), "tokens": sum(b.tokens for b in batches), "start": initial_digest}
    start, losses, window = 0, [], []  # window: this epoch's (summed loss, tokens) per batch
    saved = checkpoints / "checkpoint.pt"
    state = read_checkpoint(saved, identity, torch, next(model.parameters()).device)
    if state is not None:
        peft_model.load_state_dict(state["lora"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        start, losses, window = state["step"], state["losses"], state["window"]
    autocast = torch.autocast(device_type=next(model.parameters()).device.type, dtype=torch.bfloat16,
                              enabled=settings.bf16)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    per_epoch = max(1, len(batches))
    started, done_tokens = time.monotonic(), 0
    recent: list[tuple[float, int]] = []  # the last 20 batches', for the progress line

    def save(step: int) -> None:
        write_checkpoint(saved, {"identity": identity, "lora": lora_state(peft_model), "step": step,
                                 "optimizer": optimizer.state_dict(), "losses": losses, "window": window}, torch)

    with Checkpointing(save, settings.checkpoint_seconds, len(order), checkpoints, start) as run:
        for step in range(start, len(order)):
            for group in optimizer.param_groups:
                group["lr"] = settings.learning_rate * schedule(step, len(order), settings.warmup)
            batch = batches[order[step]]
            with autocast:
                loss, count = batch_loss(peft_model, batch, torch, pad)
            (loss / max(count, 1)).backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            run.completed = step + 1
            window.append((float(loss.detach()), count))
            recent = (recent + [window[-1]])[-20:]
            done_tokens += batch.tokens
            if (step + 1) % per_epoch == 0 or step + 1 == len(order):
                losses.append(round(sum(l for l, _ in window) / max(1, sum(c for _, c in window)), 5))
                window = []
            if on_step is not None:
                on_step(Progress(step + 1, len(order), sum(l for l, _ in recent) / max(1, sum(c for _, c in recent)),
                                 done_tokens, time.monotonic() - started))
            run.tick(step + 1)
    save(len(order))
    return peft_model, losses


def lora_state(peft_model) -> dict:
    """The trained weights of a PEFT model (its LoRA halves), by name."""
    return {k: v for k, v in peft_model.state_dict().items() if "lora_" in k}


def write_checkpoint(saved: Path, state: dict, torch) -> None:
    """Write ``state`` to ``saved`` whole or not at all (a temporary file renamed into place)."""
    saved.parent.mkdir(parents=True, exist_ok=True)
    partial = saved.with_suffix(f".tmp{os.getpid()}")
    try:
        torch.save(state, partial)
        os.replace(partial, saved)
    except RuntimeError as error:  # torch reports a short write (a full disk) as a RuntimeError
        partial.unlink(missing_ok=True)
        raise OSError(f"the checkpoint could not be written ({str(error).splitlines()[0]})") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def read_checkpoint(saved: Path, identity: dict, torch, device) -> dict | None:
    """The checkpoint in ``saved`` when it is one of the run ``identity`` describes; None when there is none; a
    :class:`UsageError` when it is another run's."""
    if not saved.is_file():
        return None
    state = torch.load(saved, weights_only=False, map_location=device)
    if state["identity"] != identity:
        raise UsageError(f"{saved.parent} holds a checkpoint of another run (other data or settings); give a new "
                         "--out folder, or the same data and settings to continue it")
    return state


class Checkpointing:
    """A run's checkpoints: ``save(step)`` every ``seconds`` (:meth:`tick`), and when Ctrl-C or a SIGTERM stops the run
    inside the ``with`` block — then after the last step completed, and :class:`Interrupted` is raised."""

    def __init__(self, save: Callable[[int], None], seconds: float, steps: int, checkpoints: Path, start: int):
        self.save, self.seconds, self.steps, self.checkpoints = save, seconds, steps, checkpoints
        self.completed, self.last = start, time.monotonic()

    def tick(self, step: int) -> None:
        if time.monotonic() - self.last > self.seconds:
            self.save(step)
            self.last = time.monotonic()

    def __enter__(self) -> "Checkpointing":
        self.previous = stop_on_sigterm()
        return self

    def __exit__(self, kind, error, trace) -> None:
        restore_sigterm(self.previous)
        if kind is KeyboardInterrupt:
            self.save(self.completed)
            raise Interrupted(f"interrupted after step {self.completed} of {self.steps}; the checkpoint in "
                              f"{self.checkpoints} keeps it: run the same command again to continue") from None


def stop_on_sigterm():
    """A SIGTERM (``timeout``, a batch scheduler, ``kill``) stops training as Ctrl-C does: the checkpoint is kept."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        return None


def restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
