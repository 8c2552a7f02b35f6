"""``edgesql train``: teach a small model SQL on this machine (LoRA), and write the adapter ``ask`` runs."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_sql.cli.common import human_size, stderr_console, stdout_console

TrainThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, show_default=False, help="CPU threads "
                            "training, its rollouts and the held-back scoring run on. [default: torch's (every core) "
                            "for training, 2 for rollouts and scoring]")]


def train_command(
    data: Annotated[Path, typer.Option("--data", help="Training pairs: a Spider training folder (train_spider.json "
                                       "beside database/), a Spider-format JSON file, or a JSONL file of "
                                       "{question, query, db}. Never an evaluation set.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The folder for the adapter, its record and its "
                                      "checkpoints; run the same command again to continue an interrupted run.",
                                      show_default=False)],
    base: Annotated[str, typer.Option("--base", help="The model to adapt: a preset, a GGUF file, or a Hugging Face "
                                      "folder or repo id (Llama or Qwen2). A training base, not the model ask runs: "
                                      "the default, the untuned SmolLM2-135M-Instruct, is what ask's default "
                                      "smollm2-135m-sql adapts.")] = "smollm2-135m",
    epochs: Annotated[float, typer.Option("--epochs", min=0.0001, help="Passes over the data (a fraction is a part of "
                                          "one).")] = 1.0,
    rank: Annotated[int, typer.Option("--rank", min=1, max=256, help="LoRA rank.")] = 16,
    alpha: Annotated[int, typer.Option("--alpha", min=1, help="LoRA alpha (the update is scaled by alpha/rank).")] = 32,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", "--lr", min=1e-7, max=1.0,
                                                           help="Peak learning rate (warm-up, then cosine to zero). "
                                                           "[default: 1e-3 for sft, 2e-5 for grpo]",
                                                           show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed, data and settings give the same "
                                      "adapter.")] = 42,
    batch_tokens: Annotated[int, typer.Option("--batch-tokens", min=256, help="At most this many (schema + longest "
                                              "question) x questions in one batch: bounds memory.")] = 6000,
    layers: Annotated[Optional[int], typer.Option("--layers", min=1, show_default=False,
                                                  help="Adapt only the top N layers (faster). [default: all]")] = None,
    bf16: Annotated[bool, typer.Option("--bf16", help="bfloat16 autocast (CPUs with AVX512-BF16, GPUs).")] = False,
    device: Annotated[str, typer.Option("--device", help="Where to train: auto (a CUDA GPU when torch sees one, "
                                        "else the CPU), cpu, cuda or cuda:N.")] = "auto",
    paraphrases: Annotated[bool, typer.Option("--paraphrases", help="Also train on Spider-Syn's paraphrased "
                                              "questions (train_spider_syn.json).")] = False,
    pairs: Annotated[Optional[str], typer.Option("--pairs", show_default=False,
                                                 help="Also train on pairs written by rule from the training data's "
                                                 "own databases: dates (questions on dates and years: a year, a "
                                                 "month, a day, before, after, between, per year, the latest; in "
                                                 "SQLite's SQL and, on DuckDB copies, DuckDB's).")] = None,
    pairs_share: Annotated[float, typer.Option("--pairs-share", min=0.0, max=10.0,
                                               help="How many --pairs pairs, as a share of the training pairs "
                                               "(0.1: one for every ten).")] = 0.1,
    resume: Annotated[Optional[str], typer.Option("--resume", show_default=False,
                                                  help="Start from an adapter trained before: a folder edgesql "
                                                  "train wrote, a GGUF LoRA file, or a preset with one (e.g. "
                                                  "smollm2-135m-sql); its rank, alpha and layers are kept.")] = None,
    held_back: Annotated[int, typer.Option("--held-back", min=0, help="Questions of the data set aside and scored "
                                           "with the real pipeline at the end (0: none).")] = 200,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, show_default=False,
                                                 help="Use only the first N pairs. [default: all]")] = None,
    threads: TrainThreadsOpt = None,
    method: Annotated[str, typer.Option("--method", help="sft: learn to write the gold queries; grpo: learn from "
                                        "the execution of the model's own candidates (start it from an SFT adapter "
                                        "with --resume).")] = "sft",
    group: Annotated[int, typer.Option("--group", min=2, max=16, help="GRPO: candidates sampled for each "
                                       "question.")] = 8,
    questions: Annotated[int, typer.Option("--questions", min=1, help="GRPO: questions in each step.")] = 4,
    temperature: Annotated[float, typer.Option("--temperature", min=0.05, max=2.0, help="GRPO: sampling "
                                               "temperature of the candidates.")] = 1.0,
    kl: Annotated[float, typer.Option("--kl", min=0.0, help="GRPO: weight of the KL term that keeps the model near "
                                      "the adapter it started from.")] = 0.04,
    clip: Annotated[float, typer.Option("--clip", min=0.01, max=1.0, help="GRPO: the policy ratio is clipped to "
                                        "1 +/- this.")] = 0.2,
    iterations: Annotated[int, typer.Option("--iterations", min=1, max=8, help="GRPO: updates on each step's "
                                            "candidates.")] = 1,
    refresh: Annotated[int, typer.Option("--refresh", min=1, help="GRPO: steps between two adapters given to the "
                                         "sampler (llama.cpp).")] = 1,
) -> None:
    """Fine-tune a LoRA adapter that teaches the base model SQL, on this machine's CPU (or GPU), with the same
    prompts ask builds: from the gold queries (--method sft) or from the execution of its own candidates (--method
    grpo); write it as a GGUF LoRA file (ask --model OUT runs it) and score held-back questions."""
    from edge_sql.errors import UsageError
    from edge_sql.train.loop import Settings
    from edge_sql.train.run import train_adapter, train_policy

    if method not in METHODS:
        raise UsageError(f"--method {method}: give {' or '.join(METHODS)}")
    from edge_sql.train.pairs import KINDS, Mix

    if pairs is not None and pairs not in KINDS:
        raise UsageError(f"--pairs {pairs}: give {' or '.join(KINDS)}")
    settings = Settings(epochs=epochs, rank=rank, alpha=alpha, learning_rate=learning_rate or METHODS[method],
                        seed=seed, batch_tokens=batch_tokens, layers=layers, bf16=bf16, device=device)
    console = stderr_console()
    command = shlex.join(["edgesql", "train", *sys.argv[2:]]) if len(sys.argv) > 1 else "edgesql train"

    def say(line: str) -> None:
        console.print(f"edgesql: {line}", highlight=False, soft_wrap=True)

    options = dict(paraphrases=paraphrases, held_back=held_back, limit=limit, threads=threads, command=command,
                   say=say, resume=resume, mix=None if pairs is None else Mix(pairs, pairs_share))
    with training_progress(console) as on_step:
        if method == "grpo":
            from edge_sql.train.grpo import Policy

            policy = Policy(group=group, questions=questions, temperature=temperature, kl=kl, clip=clip,
                            iterations=iterations, refresh=refresh)
            trained = train_policy(data, base, out, settings, policy, on_step=on_step, **options)
        else:
            trained = train_adapter(data, base, out, settings, on_step=on_step, **options)
    summary = trained.summary
    rows = [("adapter", f"{trained.adapter} ({human_size(summary['adapter']['bytes'])})")]
    if method == "grpo":
        rewards, accuracy = summary["reward_by_step"], summary["accuracy_by_step"]
        rows += [("steps", f"{summary['steps']:,} ({summary['questions']:,} questions, "
                           f"{summary['rollout_questions_per_hour'] or 0:,} an hour sampled)"),
                 ("reward", f"{first_last(rewards)} (mean of the first and last tenth of the steps)"),
                 ("group accuracy", first_last(accuracy, percent=True)),
                 ("training", f"{summary['train_tokens_per_second'] or 0:,} tokens/s")]
    else:
        rows += [("examples", f"{summary['examples']:,} in {summary['batches']:,} batches"
                              + (f" ({summary['rule_pairs']['written']:,} written by rule: --pairs "
                                 f"{summary['rule_pairs']['kind']})" if summary.get("rule_pairs") else "")),
                 ("tokens an epoch", f"{summary['tokens_per_epoch']['shared_prefix']:,} (each schema once; "
                                     f"{summary['tokens_per_epoch']['plain']:,} without)"),
                 ("loss per epoch", ", ".join(f"{loss:.4f}" for loss in summary["loss_per_epoch"]))]
    rows += [("seconds", f"{summary['seconds']:,.0f} on {summary['device']}"),
            ("peak memory", f"{summary['peak_rss_mib']:,} MiB" + (f" ({summary['peak_gpu_mib']:,} MiB on the GPU)"
                                                                  if "peak_gpu_mib" in summary else ""))]
    if summary.get("held_back_ex"):
        rows.append(("held-back EX", ", ".join(f"{k} {v:.1%}" for k, v in summary["held_back_ex"].items()
                                               if v is not None)))
    out_console = stdout_console()
    for name, value in rows:
        out_console.print(f"{name:16} {value}", highlight=False, soft_wrap=True)
    out_console.print(f"{'use it':16} edgesql ask --model {shlex.quote(str(trained.folder))} --db FILE \"…\"",
                      highlight=False, soft_wrap=True)


#: The training methods, and the learning rate each starts from by default.
METHODS = {"sft": 1e-3, "grpo": 2e-5}


def first_last(values: list[float], percent: bool = False) -> str:
    """The mean of the first tenth of ``values`` and of the last, as "a -> b".

    >>> first_last([0.0, 0.1, 0.5, 0.6] * 5, percent=True)
    '5.0% -> 55.0%'
    """
    if not values:
        return "none"
    tenth = max(1, len(values) // 10)
    head, tail = sum(values[:tenth]) / tenth, sum(values[-tenth:]) / tenth
    return f"{head:.1%} -> {tail:.1%}" if percent else f"{head:.3f} -> {tail:.3f}"


class training_progress:
    """A progress bar with the loss and the time left on stderr; a line a minute when stderr is not a terminal."""

    def __init__(self, console):
        self.console, self.bar, self.task, self.said = console, None, None, 0.0

    def __enter__(self):
        if not self.console.is_terminal:
            return self.line
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rewarded]}"),
                            TimeRemainingColumn(), console=self.console)
        self.bar.start()
        self.task = self.bar.add_task("", total=None, loss=0.0, rewarded="")
        return self.update

    def line(self, progress) -> None:
        if progress.seconds - self.said < 60 and progress.step != progress.steps:
            return
        self.said = progress.seconds
        left = progress.seconds / progress.step * (progress.steps - progress.step)
        rewarded = "" if progress.reward is None else (f"reward {progress.reward:.3f}, group accuracy "
                                                        f"{progress.accuracy:.0%}, ")
        self.console.print(f"edgesql: training step {progress.step}/{progress.steps}, loss {progress.loss:.4f}, "
                           f"{rewarded}"
                           f"{progress.tokens / max(progress.seconds, 1e-9):.0f} tokens/s, {left / 60:.0f} min left",
                           highlight=False, soft_wrap=True)

    def update(self, progress) -> None:
        rewarded = "" if progress.reward is None else f"reward {progress.reward:.3f}, right {progress.accuracy:.0%}"
        self.bar.update(self.task, completed=progress.step, total=progress.steps, loss=progress.loss,
                        rewarded=rewarded)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
