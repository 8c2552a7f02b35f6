"""``edgesql eval``: the command over :mod:`edge_sql.eval.run`. Heavy imports (the pipeline, llama.cpp) happen inside
the command, so ``edgesql --help`` stays fast."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_sql.cli.common import (EvalModelOpt, MemoryOpt, ModelTimeoutOpt, TemperatureOpt, ThreadsOpt, status,
                                 stderr_console, stdout_console)
from edge_sql.cli.models import chosen_model
from edge_sql.cli.options import (ConstrainOpt, GrammarOpt, HintsOpt, MaxTokensOpt, MergeModelOpt, MergeOpt, PruneOpt, RepairOpt,
                                  RepairRoundsOpt, chosen_merger, chosen_remedies)

MAX_CANDIDATES = 64


def parse_counts(text: str) -> tuple[int, ...]:
    """``"1,5,8"`` → ``(1, 5, 8)``: the candidate counts to score, sorted, each from 1 to 64.

    >>> parse_counts("5, 1,5")
    (1, 5)
    """
    try:
        counts = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        counts = ()
    if not counts or not all(1 <= k <= MAX_CANDIDATES for k in counts):
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of counts from 1 to {MAX_CANDIDATES}, "
                                 "e.g. 1,5", param_hint="--candidates")
    return counts


def eval_command(
    data: Annotated[Optional[Path], typer.Option("--data", help="A Spider or BIRD folder (dev.json and its "
                                                 "databases), one of their JSON files, or a JSONL file of {question, "
                                                 "query, db}.", show_default=False)] = None,
    parts: Annotated[Optional[list[Path]], typer.Argument(metavar="[REPORT]...", show_default=False,
                                                          help="With --combine: the shard reports to merge.")] = None,
    model: EvalModelOpt = None,  # ask's default model; a measurement reads no config file, so not its model either
    candidates: Annotated[str, typer.Option("--candidates", "-n", metavar="COUNTS",
                                            help="Candidate counts to score, comma-separated: 1 = greedy, 5 = vote "
                                            "of 5; one sampling pass serves them all.")] = "1,5",
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Run only the first N questions (after "
                                                 "--db and --shuffle). [default: all]")] = None,
    db: Annotated[Optional[list[str]], typer.Option("--db", metavar="DB_ID", show_default=False,
                                                    help="Only questions on this database (its db_id); repeat for "
                                                    "several.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of sampling and of --shuffle.")] = 42,
    shuffle: Annotated[bool, typer.Option("--shuffle",
                                          help="Shuffle the questions (with --seed) before --limit.")] = False,
    temperature: TemperatureOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.01, help="Seconds a candidate query may run.")] = 10.0,
    memory: MemoryOpt = 1024,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the whole report, every question "
                                                   "included, as JSON to this file.", show_default=False)] = None,
    predictions: Annotated[Optional[Path], typer.Option("--predictions", help="Write the chosen SQL of every "
                                                        "question, one per line (Spider's format), and the matching "
                                                        "gold file.", show_default=False)] = None,
    threads: ThreadsOpt = None,
    model_timeout: ModelTimeoutOpt = 300.0,  # eval reads no config file
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Questions in flight together, for a "
                                         "model server (--model URL); the report is the same as with 1.")] = 1,
    constrain: ConstrainOpt = None,
    grammar: GrammarOpt = None,
    repair: RepairOpt = None,
    repair_rounds: RepairRoundsOpt = None,
    merge: MergeOpt = None,
    merge_model: MergeModelOpt = None,
    prune: PruneOpt = None,
    hints: HintsOpt = None,
    max_tokens: MaxTokensOpt = None,
    early_stop: Annotated[bool, typer.Option("--early-stop", help="Stop each question's sampling once its vote is "
                                             "decided, as ask --early-stop does; give one candidate count (-n 5): "
                                             "the first k of a stopped sampling are not a vote of k.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", metavar="K/N", show_default=False,
                                                 help="Run only the K-th of N contiguous slices of the questions "
                                                 "(after --db, --shuffle and --limit); merge the N reports with "
                                                 "--combine.")] = None,
    combine: Annotated[bool, typer.Option("--combine", help="Merge the reports of a --shard run (given as "
                                          "arguments) into the report of one run, and print it.")] = False,
) -> None:
    """Measure execution accuracy (EX) on a Spider, BIRD or JSONL dataset, scored as Spider's evaluator scores it.
    Without --model it measures the model ask runs (named on stderr); it reads no config file."""
    if combine or parts:
        return combine_command(parts or [], data, shard, report, predictions)
    if data is None:
        raise typer.BadParameter("give the questions to run (a Spider or BIRD folder, or a JSONL file)",
                                 param_hint="--data")
    from edge_sql.eval.datasets import load_dataset, parse_shard, select_examples, shard_examples
    from edge_sql.eval.report import report_to_dict, write_predictions
    from edge_sql.eval.run import evaluate
    from edge_sql.steps.generate import Sampling
    from edge_sql.backends import load_model
    from edge_sql.pipeline import Limits

    counts = parse_counts(candidates)
    if early_stop and len(counts) > 1:
        raise typer.BadParameter(f"--early-stop scores one candidate count, not {candidates!r}: give e.g. -n 5",
                                 param_hint="--candidates")
    chosen_remedies(grammar, repair, repair_rounds, merge, prune, hints, config=False)  # bad flags fail before loading
    for path, option in ((report, "--report"), (predictions, "--predictions")):
        check_writable(path, option)
    dataset = load_dataset(data)
    examples = select_examples(dataset.examples, db=tuple(db or ()), limit=limit, shuffle=shuffle, seed=seed)
    part = None if shard is None else parse_shard(shard)
    if part is not None:
        examples = shard_examples(examples, part)
    model = chosen_model(model, config=False, threads=threads)
    with status("Loading the model…"):
        loaded = load_model(model, threads=threads, timeout=model_timeout)
    if workers > 1 and not getattr(loaded, "concurrent", False):
        raise typer.BadParameter("a local model answers one question at a time: --workers needs a model server "
                                 "(--model http://host:port/v1)", param_hint="--workers")
    remedies = chosen_remedies(grammar, repair, repair_rounds, merge, prune, hints, config=False, preset=loaded.preset,
                                   constrain=constrain)
    merger = chosen_merger(remedies, loaded, merge_model, threads=threads, timeout=model_timeout)
    sampling = Sampling(candidates=max(counts), seed=seed, max_tokens=max_tokens, early_stop=early_stop,
                        temperature=loaded.preset.temperature if temperature is None else temperature)
    selection = {"questions": len(dataset.examples), "selected": len(examples), "db": list(db or []),
                 "limit": limit, "shuffle": shuffle, "seed": seed,
                 "shard": None if part is None else {"k": part[0], "of": part[1]}}
    with Progress(len(examples), counts) as progress:
        result = evaluate(dataset, examples, loaded, sampling, counts, Limits(timeout=timeout, memory=memory),
                          selection=selection, progress=progress.advance, remedies=remedies, workers=workers,
                          merger=merger)
    if report is not None:
        report.write_text(json.dumps(report_to_dict(result), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if predictions is not None:
        write_predictions(result, predictions)
    print_report(result, stdout_console())
    if result.interrupted:
        stderr_console().print("edgesql: interrupted: the report covers the questions done")
        raise typer.Exit(130)


def combine_command(parts: list[Path], data: Path | None, shard: str | None, report: Path | None,
                    predictions: Path | None) -> None:
    """``eval --combine part*.json``: the shards' reports merged into one run's, written and printed."""
    from edge_sql.eval.combine import combine
    from edge_sql.eval.report import report_to_dict, write_predictions

    if data is not None or shard is not None:
        raise typer.BadParameter("--combine merges reports already written; it runs no questions",
                                 param_hint="--data" if data is not None else "--shard")
    if not parts:
        raise typer.BadParameter("give the shard reports to merge, e.g. edgesql eval --combine part*.json",
                                 param_hint="--combine")
    for path, option in ((report, "--report"), (predictions, "--predictions")):
        check_writable(path, option)
    merged = combine(parts)
    if report is not None:
        report.write_text(json.dumps(report_to_dict(merged), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if predictions is not None:
        write_predictions(merged, predictions)
    print_report(merged, stdout_console())


def check_writable(path: Path | None, option: str) -> None:
    """Fail before a long run, not after it, when an output file cannot be written."""
    if path is None:
        return
    if path.is_dir() or not path.parent.is_dir():
        raise typer.BadParameter(f"cannot write {path}: {'it is a folder' if path.is_dir() else 'no such folder'}",
                                 param_hint=option)


class Progress:
    """A progress bar with the ETA and the running EX on stderr; on a non-terminal, a line every 30 seconds."""

    def __init__(self, total: int, counts: tuple[int, ...]):

        self.total, self.counts, self.done = total, counts, 0
        self.right = dict.fromkeys(counts, 0)
        self.scored = 0
        self.console = stderr_console()
        self.bar = None
        self.started = self.last_line = time.monotonic()

    def __enter__(self) -> "Progress":
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                           TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console,
                           transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def describe(self) -> str:
        if not self.scored:
            return ""
        return " ".join(f"{'greedy' if k == 1 else f'vote@{k}'} {self.right[k] / self.scored:.0%}" for k in self.counts)

    def advance(self, record) -> None:
        self.done += 1
        if record.skipped is None:
            self.scored += 1
            for outcome in record.outcomes:
                self.right[outcome.candidates] += outcome.right
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=self.describe())
            return
        now = time.monotonic()
        if now - self.last_line >= 30 or self.done == self.total:
            self.last_line = now
            elapsed = now - self.started
            eta = elapsed / self.done * (self.total - self.done)
            self.console.print(f"eval: {self.done}/{self.total} questions, {elapsed:.0f} s, ETA {eta:.0f} s; "
                               f"{self.describe()}", highlight=False)


def describe(remedies, merge_model: str | None = None) -> str:
    """The remedies of a run in a few words (and who merged, when another model did).

    >>> from edge_sql.remedies import Remedies
    >>> describe(Remedies(constrain=False, grammar=True, repair=1, prune="auto", hints=False))
    'grammar, repair×1, prune auto'
    >>> describe(Remedies(constrain=False, grammar=False, prune="never", hints=False))
    'no remedies'
    >>> describe(Remedies(grammar=False, prune="never", hints=False))
    'constrain'
    >>> describe(Remedies(constrain=False, grammar=False, merge=True, prune="never", hints=False), "cscsql-merge-0.5b")
    'merge by cscsql-merge-0.5b'
    """
    words = [name for name in ("constrain", "grammar", "merge", "hints") if getattr(remedies, name)]
    if merge_model and "merge" in words:
        words[words.index("merge")] = f"merge by {merge_model}"
    if remedies.repair:
        words.insert(remedies.constrain + remedies.grammar, f"repair×{remedies.repair}")
    if remedies.prune != "never":
        words.append(f"prune {remedies.prune}")
    return ", ".join(words) or "no remedies"


def breakdown(title: str, name: str, groups, summaries, counts):
    """A table of EX per group (a hardness level, a kind) for each candidate count; ``counts(summary)`` maps a group
    to its (questions, right)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column(name)
    table.add_column("questions", justify="right")
    for s in summaries:
        table.add_column(s.label, justify="right")
    for group in groups:
        count = counts(summaries[0])[group][0]
        table.add_row(group, str(count), *(f"{counts(s)[group][1] / count:.1%}" for s in summaries))
    return table


def print_report(report, console) -> None:
    """The report for people: EX per candidate count, EX per hardness level and per kind (a JSONL set's tags), then
    speed and memory."""
    from rich.table import Table

    from edge_sql.eval.hardness import LEVELS

    summaries = report.summaries
    name = Path(report.dataset).name if report.layout == "jsonl" else Path(report.dataset).parent.name

    def percent(value):
        return "–" if value is None else f"{value:.1%}"

    table = Table(title=f"EX on {name} · {report.model} · {len(report.scored)} questions · "
                        f"{describe(report.remedies, report.merge_model)}",
                  title_justify="left")
    for column in ("answer", "EX", "right", "EX non-empty", "valid", "invalid", "failed"):
        table.add_column(column, justify="left" if column == "answer" else "right")
    for s in summaries:
        table.add_row(s.label, percent(s.ex), f"{s.right}/{s.questions}",
                      f"{percent(s.ex_nonempty)} ({s.nonempty[1]}/{s.nonempty[0]})", percent(s.share(s.valid)),
                      percent(s.share(s.invalid)), percent(s.share(s.failed)))
    console.print(table)
    console.print("EX non-empty: on the questions whose gold result has rows (two empty results are equal, so a wrong "
                  "query that returns nothing scores on the others); valid, invalid, failed: shares of all candidates "
                  "(invalid = parse or schema errors, failed = errors or timeouts when run)", style="dim",
                  highlight=False)

    levels = [lv for lv in (*LEVELS, "unknown") if summaries and lv in summaries[0].by_hardness]
    if levels:
        console.print(breakdown("EX by Spider hardness", "hardness", levels, summaries, lambda s: s.by_hardness))
    kinds = list(summaries[0].by_kind) if summaries else []
    if kinds:
        console.print(breakdown("EX by kind (the dataset's own tags)", "kind", kinds, summaries, lambda s: s.by_kind))

    answered = [s for s in summaries if s.reliability]
    if answered:
        trust = Table(title="Reliability: answers by the confidence edgesql gave them", title_justify="left")
        trust.add_column("confidence")
        for s in answered:
            trust.add_column(f"{s.label}: right", justify="right")
        bins = sorted({b.label: b for s in answered for b in s.reliability}.values(), key=lambda b: b.low)
        for shown in bins:
            cells = []
            for s in answered:
                found = next((b for b in s.reliability if b.label == shown.label), None)
                cells.append("–" if found is None else f"{percent(found.ex)} ({found.right}/{found.questions})")
            trust.add_row(shown.label, *cells)
        console.print(trust)

    def seconds(value):
        return "–" if value is None else f"{value:.2f} s"

    speed = report.speed
    rates = ", ".join(f"{label} {value:,.0f} tok/s" for label, value in
                      (("prompt", speed.prompt_per_second), ("generated", speed.generated_per_second))
                      if value is not None)
    memory = "–" if report.peak_rss_mib is None else f"{report.peak_rss_mib:,.0f}"
    console.print(f"latency per question ({report.sampling.candidates} candidates): p50 {seconds(report.latency(0.5))}"
                  f", p95 {seconds(report.latency(0.95))} · {rates or 'no token rates'} ({speed.source}) · "
                  f"peak RSS {memory} MiB · {report.wall_seconds:,.0f} s in all", highlight=False)
    if report.skipped:
        reasons = {}
        for record in report.skipped:
            reasons.setdefault(record.skipped.split(":")[0], []).append(record.index)
        console.print(f"skipped {len(report.skipped)}: " + "; ".join(
            f"{reason} (#{', #'.join(map(str, indices[:5]))}{', …' if len(indices) > 5 else ''})"
            for reason, indices in reasons.items()), highlight=False)
