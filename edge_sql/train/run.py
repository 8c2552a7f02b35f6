"""``edgesql train``: read the pairs, render them as ``ask`` prompts, train a LoRA adapter, write it as a GGUF LoRA
file that ``ask`` applies over the base model, and score a held-back slice of the data with the real pipeline.

What a run leaves in its folder: ``adapter.gguf`` (what ``ask --model BASE --adapter …`` or a preset runs),
``training.json`` (the command's settings, data, tokens, seconds, loss per epoch, peak memory, held-back EX),
``held-back.jsonl`` and ``held-back.json`` (the slice and its eval report), ``checkpoints/`` (to continue an
interrupted run: the same command again).
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from edge_sql.backends.llama import TRAINED_ADAPTER
from edge_sql.digest import file_sha256
from edge_sql.errors import ModelError, UsageError
from edge_sql.preset import GENERIC, Preset, get_preset
from edge_sql.train.examples import PromptModel, hold_back, read_pairs, render
from edge_sql.train.loop import Settings

if TYPE_CHECKING:
    from edge_sql.train.pairs import Mix


@dataclass
class Base:
    """The model to train, in float32 with its tokenizer, and the GGUF file llama.cpp runs it from (if any)."""

    name: str
    model: object
    tokenizer: object
    preset: Preset
    gguf: Path | None
    arch: str
    blocks: int
    heads: int
    kv_heads: int


@dataclass(frozen=True)
class Trained:
    folder: Path
    adapter: Path | None
    summary: dict = field(default_factory=dict)


def load_base(base: str) -> Base:
    """A preset (its GGUF file, dequantized by transformers: the adapter learns the very weights llama.cpp runs), a
    GGUF file, or a Hugging Face folder or repo id."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from convert.source import load as load_hf
    from convert.source import quiet_libraries
    from edge_sql.weights import weights_path

    quiet_libraries()
    preset = get_preset(base)
    path = weights_path(preset) if preset is not None else Path(base).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelError(f"no such model file: {path}")
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # transformers' GGUF reader draws a progress bar
                tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
                model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ModelError(f"cannot read {path} as a model to train: {str(error).splitlines()[0]}") from None
        gguf, arch = path, model.config.model_type
    else:
        source = load_hf(base)
        model, tokenizer, gguf, arch = source.model, source.tokenizer, None, source.arch
    config = model.config
    if arch not in ("llama", "qwen2"):
        raise ModelError(f"{base} is a {arch} model; edgesql train adapts Llama and Qwen2 models")
    return Base(base, model, tokenizer, preset or GENERIC, gguf, arch, config.num_hidden_layers,
                config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads)


def context_of(base: Base) -> int:
    """The context ``ask`` gives this model."""
    from edge_sql.backends.llama import context_length

    return context_length(base.preset, getattr(base.model.config, "max_position_embeddings", 0) or 0)


@dataclass
class Start:
    """What every method starts from: the pairs (to train on and held back), the base on its device, the adapter to
    continue (if any) and the settings it imposes."""

    pairs: list
    training: list
    held: list
    device: str
    loaded: Base
    start: object
    start_path: Path | None
    start_digest: str
    settings: Settings
    rule_pairs: dict = field(default_factory=dict)  # what --pairs added to the training pairs


def begin(data: Path, base: str, out: Path, settings: Settings, *, paraphrases: bool, held_back: int,
          limit: int | None, threads: int | None, say: Callable[[str], None], resume,
          mix: Mix | None = None) -> Start:
    from convert.errors import require_extra

    require_extra("train", ("torch", "transformers", "peft"))
    import torch

    from edge_sql.train.loop import choose_device

    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; give a folder for the adapter")
    if threads:
        torch.set_num_threads(threads)
    pairs = read_pairs(data, paraphrases=paraphrases)
    if limit is not None:
        pairs = pairs[:limit]
    training, held = hold_back(pairs, held_back, settings.seed)
    device = choose_device(settings.device, torch)
    start_path = None if resume is None else starting_adapter(resume, out)
    loaded = load_base(base)
    loaded.model.to(device)
    say(f"{len(pairs)} pairs from {data}: {len(training)} to train on, {len(held)} held back to score")
    written: dict = {}
    if mix is not None:
        added, written = rule_pairs(mix, training, len(pairs), out, settings.seed, say)
        training = training + added
    start, start_digest = None, ""
    if start_path is not None:
        start = read_start(start_path, loaded)
        start_digest = file_sha256(start_path)
        layers = None if start.blocks == tuple(range(loaded.blocks)) else len(start.blocks)
        if layers is not None and start.blocks != tuple(range(loaded.blocks - layers, loaded.blocks)):
            raise UsageError(f"{start_path} adapts layers {list(start.blocks)}; edgesql train continues adapters of "
                             "all layers or of the top N")
        settings = replace(settings, rank=start.rank, alpha=round(start.alpha), layers=layers)
        say(f"continuing {start_path} (rank {start.rank}, alpha {start.alpha:g}, "
            f"{len(start.blocks)} of {loaded.blocks} layers)")
    return Start(pairs, training, held, device, loaded, start, start_path, start_digest, settings, written)


def rule_pairs(mix: Mix, training: list, first_index: int, out: Path, seed: int, say) -> tuple[list, dict]:
    """``--pairs``: pairs written by rule from the training pairs' databases (:mod:`edge_sql.train.pairs`), a share
    of the training pairs in number, drawn with ``seed``; written to ``OUT/pairs/<kind>.jsonl`` (with the DuckDB
    copies they ask, in ``OUT/pairs/database``). The held-back pairs are not touched."""
    from collections import Counter

    from edge_sql.train.pairs import as_examples, write_jsonl, write_pairs

    count = round(mix.share * len(training))
    folder = out / "pairs"
    try:
        written = write_pairs(mix.kind, {p.db_path for p in training if p.db_path.is_file()}, folder, seed, count,
                              say)
        write_jsonl(written.pairs, folder / f"{mix.kind}.jsonl")
    except OSError as error:
        raise UsageError(f"cannot write to {out}: {error.strerror or error}") from None
    if len(written.pairs) < count:
        say(f"--pairs {mix.kind}: {len(written.pairs)} pairs, fewer than the {count} asked for: that is all the "
            "databases give")
    record = {"kind": mix.kind, "share": mix.share, "asked": count, "written": len(written.pairs),
              "databases": written.databases, "file": f"pairs/{mix.kind}.jsonl",
              "templates": dict(Counter(p.template for p in written.pairs).most_common()),
              "engines": dict(Counter(p.engine for p in written.pairs).most_common()), "dropped": written.dropped}
    return as_examples(list(written.pairs), first_index), record


def train_adapter(data: Path, base: str, out: Path, settings: Settings = Settings(), *, paraphrases: bool = False,
                  held_back: int = 200, limit: int | None = None, threads: int | None = None,
                  command: str = "", say: Callable[[str], None] = lambda line: None,
                  on_step=None, resume: str | Path | None = None, mix: Mix | None = None) -> Trained:
    """Supervised fine-tuning (``--method sft``): the model learns to write the gold queries (and, with ``mix``,
    pairs written by rule)."""
    from edge_sql.train.loop import make_batches, train

    out = Path(out).expanduser()
    started = time.monotonic()
    run = begin(data, base, out, settings, paraphrases=paraphrases, held_back=held_back, limit=limit,
                threads=threads, say=say, resume=resume, mix=mix)
    loaded, settings = run.loaded, run.settings
    prompts = PromptModel(loaded.name, loaded.preset, context_of(loaded), loaded.tokenizer)
    rendered = render(run.training, prompts)
    if not rendered.examples:
        raise UsageError(f"none of the pairs in {data} can be trained on ({rendered.skipped})")
    batches = make_batches(rendered.examples, loaded.tokenizer, settings.batch_tokens)
    shared = sum(b.tokens for b in batches)
    plain = sum(len(b.prefix) * len(b.suffixes) + sum(len(s) for s in b.suffixes) for b in batches)
    say(f"{len(rendered.examples)} examples in {len(batches)} batches: {shared:,} tokens an epoch with each schema "
        f"computed once ({plain:,} with every question carrying its own)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        model, losses = train(loaded.model, loaded.tokenizer, batches, settings, checkpoints=out / "checkpoints",
                              on_step=on_step, blocks=loaded.blocks, initial=run.start,
                              initial_digest=run.start_digest)
        seconds = time.monotonic() - started
        adapter, size = export(model, loaded, out / TRAINED_ADAPTER, command)
    except OSError as error:
        raise UsageError(f"cannot write to {out}: {error.strerror or error}") from None
    summary = {
        **common_summary(command, data, paraphrases, run, "sft"),
        "examples": len(rendered.examples), "skipped": rendered.skipped, "batches": len(batches),
        "tokens_per_epoch": {"shared_prefix": shared, "plain": plain}, "loss_per_epoch": losses,
        **finish_summary(seconds, run.device, adapter, size),
    }
    return conclude(summary, run, adapter, out, threads, say)


def common_summary(command: str, data: Path, paraphrases: bool, run: Start, method: str) -> dict:
    return {"command": command, "method": method, "data": str(data), "paraphrases": paraphrases,
            "base": str(run.loaded.name), "settings": asdict(run.settings),
            "resumed_from": None if run.start_path is None else str(run.start_path), "pairs": len(run.pairs),
            "held_back": len(run.held), "rule_pairs": run.rule_pairs or None}


def finish_summary(seconds: float, device: str, adapter: Path, size: int) -> dict:
    import torch

    summary = {"seconds": round(seconds, 1), "device": device_name(device, torch),
               "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               "adapter": {"file": adapter.name, "bytes": size}}
    if device.startswith("cuda"):
        summary["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return summary


def conclude(summary: dict, run: Start, adapter: Path, out: Path, threads: int | None, say) -> Trained:
    """Score the held-back pairs with the trained adapter, write ``training.json``."""
    if run.held and run.loaded.gguf is not None:
        summary["held_back_ex"] = score_held_back(run.held, run.loaded.gguf, run.loaded.preset, adapter, out,
                                                  threads, say)
    write_summary(out, summary)
    return Trained(out, adapter, summary)


def export(peft_model, loaded: Base, path: Path, command: str) -> tuple[Path, int]:
    """Write the PEFT model's LoRA weights as the GGUF LoRA file ``path``; (path, bytes)."""
    from edge_sql.train.adapter import adapter_tensors, write_adapter

    tensors = adapter_tensors(peft_model.state_dict(), arch=loaded.arch, heads=loaded.heads,
                              kv_heads=loaded.kv_heads)
    alpha = peft_model.peft_config["default"].lora_alpha
    size = write_adapter(path, tensors, arch=loaded.arch, blocks=loaded.blocks, alpha=alpha,
                         name=f"{Path(str(loaded.name)).stem} SQL LoRA",
                         metadata={"edgesql.base": str(loaded.name), "edgesql.protocol": loaded.preset.protocol,
                                   "edgesql.training": command})
    return path, size


def train_policy(data: Path, base: str, out: Path, settings: Settings = Settings(), policy=None, *,
                 paraphrases: bool = False, held_back: int = 200, limit: int | None = None,
                 threads: int | None = None, command: str = "", say: Callable[[str], None] = lambda line: None,
                 on_step=None, resume: str | Path | None = None, mix: Mix | None = None) -> Trained:
    """GRPO (``--method grpo``): the model learns from the execution of its own candidates
    (:mod:`edge_sql.train.grpo`); the sampler is llama.cpp with the adapter the trainer writes."""
    from edge_sql.eval.scoring import Databases
    from edge_sql.train.grpo import Policy, reinforce
    from edge_sql.train.rollout import Sampler

    policy = policy or Policy()
    out = Path(out).expanduser()
    started = time.monotonic()
    run = begin(data, base, out, settings, paraphrases=paraphrases, held_back=held_back, limit=limit,
                threads=threads, say=say, resume=resume, mix=mix)
    loaded, settings = run.loaded, run.settings
    if loaded.gguf is None:
        raise UsageError(f"--method grpo samples with llama.cpp: give --base a preset or a GGUF file (edgesql convert "
                         f"makes one of {base})")
    if run.start is None:
        say("no --resume: GRPO starts from the untuned base, which is rarely right; start from an SFT adapter")
    say(f"GRPO on {len(run.training)} questions x {settings.epochs:g} epochs: {policy.group} candidates a "
        f"question, {policy.questions} questions a step")
    try:
        out.mkdir(parents=True, exist_ok=True)
        log = out / "grpo.jsonl"
        policy_file = out / "policy.gguf"
        with Databases() as open_db:
            def sampler_for(path: Path) -> Sampler:
                return Sampler(loaded.gguf, loaded.preset, path, threads=threads or 2, scratch=out / "rollout-cache",
                               open_db=open_db)

            model, records = reinforce(loaded.model, loaded.tokenizer, run.training, sampler_for,
                                       lambda peft_model: export(peft_model, loaded, policy_file, command)[0],
                                       settings, policy, checkpoints=out / "checkpoints", blocks=loaded.blocks,
                                       initial=run.start, initial_digest=run.start_digest, on_step=on_step, log=log)
        seconds = time.monotonic() - started
        adapter, size = export(model, loaded, out / TRAINED_ADAPTER, command)
        policy_file.unlink(missing_ok=True)
    except OSError as error:
        raise UsageError(f"cannot write to {out}: {error.strerror or error}") from None
    rollout = sum(r.rollout_seconds for r in records)
    trained = sum(r.train_seconds for r in records)
    questions = min(len(run.training), len(records) * policy.questions)
    summary = {
        **common_summary(command, data, paraphrases, run, "grpo"), "policy": asdict(policy),
        "steps": len(records), "questions": questions,
        "rollout_questions_per_hour": round(questions / rollout * 3600) if rollout else None,
        "train_tokens_per_second": round(sum(r.tokens for r in records) / trained) if trained else None,
        "reward_by_step": [r.reward for r in records], "accuracy_by_step": [r.accuracy for r in records],
        **finish_summary(seconds, run.device, adapter, size),
    }
    return conclude(summary, run, adapter, out, threads, say)


def starting_adapter(resume: str | Path, out: Path) -> Path:
    """The adapter file ``--resume`` names: a folder ``edgesql train`` wrote, a GGUF LoRA file, or a preset that
    ships one (``smollm2-135m-sql``: go on teaching edgesql's own model your database's questions)."""
    from edge_sql.weights import adapter_path

    preset = get_preset(str(resume))
    if preset is not None:
        path = adapter_path(preset)
        if path is None:
            raise UsageError(f"--resume {resume}: that preset has no adapter to continue")
        return path
    path = Path(resume).expanduser()
    if path.is_dir():
        if out.resolve() == path.resolve():
            raise UsageError(f"--resume {path} and --out are the same folder; give a new --out folder (the adapter "
                             "you continue stays as it is)")
        path = path / TRAINED_ADAPTER
    if not path.is_file():
        raise UsageError(f"--resume {resume}: no adapter there (give a folder edgesql train wrote, a GGUF LoRA file "
                         "or a preset with an adapter)")
    return path


def read_start(path: Path, loaded: Base):
    from edge_sql.train.adapter import read_adapter

    start = read_adapter(path, arch=loaded.arch, blocks=loaded.blocks, heads=loaded.heads, kv_heads=loaded.kv_heads)
    if start.base and Path(start.base).stem != Path(str(loaded.name)).stem:
        raise UsageError(f"{path} was trained on {start.base}, not {loaded.name}: give --base {start.base}")
    return start


def score_held_back(held, gguf: Path, preset: Preset, adapter: Path, out: Path, threads: int | None, say) -> dict:
    """EX of the trained model on the held-back pairs, through the real pipeline (greedy and vote of 5) with the
    remedies edgesql's own model runs with (the decoding-time check, no grammar)."""
    import importlib.util

    from edge_sql.backends.llama import LlamaModel
    from edge_sql.eval.datasets import Dataset
    from edge_sql.eval.report import report_to_dict
    from edge_sql.eval.run import evaluate
    from edge_sql.steps.generate import Sampling

    lines = [{"question": p.question, "query": p.gold, "db": str(p.db_path)} for p in held]
    (out / "held-back.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    if importlib.util.find_spec("llama_cpp") is None:  # a training box with the train extra only (a GPU server)
        say(f"llama-cpp-python is not installed here, so the held-back questions are not scored; on a machine with "
            f"edgesql installed: edgesql eval --data {out / 'held-back.jsonl'} --model {out}")
        return {}
    model = LlamaModel(gguf, preset=preset, threads=threads or 2, adapter=adapter)
    say(f"scoring the {len(held)} held-back questions with the trained model")
    dataset = Dataset(out / "held-back.jsonl", "jsonl", tuple(replace(p, index=i) for i, p in enumerate(held)))
    from edge_sql.train.rollout import ROLLOUT_REMEDIES

    report = evaluate(dataset, list(dataset.examples), model, Sampling(), (1, 5), remedies=ROLLOUT_REMEDIES)
    data = report_to_dict(report)
    (out / "held-back.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return {r["label"]: r["ex"] for r in data["results"]}


def device_name(device: str, torch) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def write_summary(out: Path, summary: dict) -> None:
    try:
        (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write {out / 'training.json'}: {error.strerror or error}") from None


def command_line() -> str:
    return " ".join(["edgesql", *sys.argv[1:]])

