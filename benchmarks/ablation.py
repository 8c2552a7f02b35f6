"""The ablation of issue 9: the pipeline without remedies, with each one, and with all — same model, same seed, same
questions — scored exactly as ``edgesql eval`` scores them.

Each question is answered by every configuration in turn before the next question, in one process with the model
loaded once, so the machine's noise (2 shared cores) falls on all of them alike and the seconds per question compare
side by side. Each row is what ``edgesql eval`` prints for the same flags (the EX figures are the same; its seconds are
measured alone).

    python benchmarks/ablation.py --data ../shared/data/spider-dev --limit 120 [--configs base,grammar,...]
        [--model smollm2-135m] [--candidates 1,5] [--report ablation.json]

Printed: a Markdown table with EX (greedy and vote), the share of candidates that were valid and ran, seconds per
question (mean, and relative to ``base``), and the peak RSS of the process.

Runs split in two (say, the grammar configurations in a second process) are put in one table, over the questions
both runs finished, with each run's seconds relative to its own ``base``:

    python benchmarks/ablation.py --combine run1.json run2.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

from edge_sql.eval.datasets import load_dataset, select_examples
from edge_sql.eval.report import summarize
from edge_sql.eval.run import evaluate_variants
from edge_sql.eval.scoring import Databases
from edge_sql.steps.generate import Sampling
from edge_sql.backends import load_model
from edge_sql.pipeline import Limits
from edge_sql.remedies import Remedies

#: Each configuration. ``base`` is the pipeline before the remedies.
CONFIGS = {name: Remedies(**{"prune": "never", **fields}) for name, fields in (
    ("base", {}), ("grammar", {"grammar": True}), ("repair", {"repair": 1}), ("merge", {"merge": True}),
    ("prune", {"prune": "always"}), ("hints", {"hints": True}),
    ("all", {"grammar": True, "repair": 1, "merge": True, "prune": "always", "hints": True}),
)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
                        / "spider-dev")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--candidates", default="1,5")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=FLAGS",
                        help="another configuration, e.g. 'best=grammar,repair,hints' (names of Remedies fields; "
                             "prune=always/never)")
    parser.add_argument("--threads", type=int, help="CPU threads for the model [default: the physical cores]")
    parser.add_argument("--report", type=Path)
    parser.add_argument("--combine", type=Path, nargs="+", metavar="REPORT",
                        help="print one table from the --report files of earlier runs, and exit")
    args = parser.parse_args()
    if args.combine:
        combine(args.combine)
        return

    configs = {name: (CONFIGS[name], flags_for(CONFIGS[name])) for name in args.configs.split(",") if name}
    for extra in args.extra:
        name, _, fields = extra.partition("=")
        configs[name] = parse_extra(fields)
    counts = tuple(sorted({int(k) for k in args.candidates.split(",")}))
    dataset = load_dataset(args.data)
    examples = select_examples(dataset.examples, limit=args.limit, shuffle=True, seed=args.seed)
    model = load_model(args.model, threads=args.threads)
    sampling = Sampling(candidates=max(counts), seed=args.seed, temperature=model.preset.temperature)
    records = {name: [] for name in configs}
    groups: dict[tuple, list[str]] = {}  # configurations that prompt alike share one deliberation
    for name, (remedies, _) in configs.items():
        groups.setdefault((remedies.grammar, remedies.prune, remedies.hints), []).append(name)
    started = time.perf_counter()
    with Databases() as open_db:
        for number, example in enumerate(examples, 1):
            for names in groups.values():
                variants = tuple(configs[name][0] for name in names)
                for name, record in zip(names, evaluate_variants(example, dataset.layout, dataset.metric, model,
                                                                 sampling, counts, Limits(), open_db, variants)):
                    records[name].append(record)
            if number % 10 == 0 or number == len(examples):
                print(f"{number}/{len(examples)} questions, {time.perf_counter() - started:.0f} s", file=sys.stderr)
                summary(configs, records, counts, args, started, final=number == len(examples))


def summary(configs, records, counts, args, started, final: bool) -> None:
    """The table so far (on stderr while running, on stdout at the end), and the JSON report."""
    out = sys.stdout if final else sys.stderr
    rows = []
    base_seconds = None
    for name, (remedies, flags) in configs.items():
        scored = [r for r in records[name] if r.skipped is None]
        summaries = [summarize(scored, k) for k in counts]
        seconds = statistics.mean(r.seconds for r in scored) if scored else 0.0
        base_seconds = base_seconds or seconds
        rows.append({"config": name, "flags": flags, "remedies": asdict(remedies), "questions": len(scored),
                     **{f"ex_{s.label}": s.ex for s in summaries}, **{f"right_{s.label}": s.right for s in summaries},
                     **{f"valid_{s.label}": s.share(s.valid) for s in summaries},
                     "seconds": seconds, "relative_seconds": seconds / base_seconds if base_seconds else None})
    print_table(rows, counts, out)
    questions = len(next(iter(records.values())))
    print(f"\n{questions} questions (shuffled with seed {args.seed}) of {args.data}, model {args.model}, "
          f"peak RSS {peak_rss_mib():.0f} MiB, {time.perf_counter() - started:.0f} s in all", file=out)
    if args.report:
        per_question = {name: [{"index": r.index, "seconds": r.seconds, "skipped": r.skipped,
                                 **{f"right@{o.candidates}": o.right for o in r.outcomes},
                                 **{f"valid@{o.candidates}": o.valid for o in r.outcomes},
                                 **{f"all@{o.candidates}": o.valid + o.invalid + o.failed for o in r.outcomes}}
                                for r in records[name]] for name in configs}
        args.report.write_text(json.dumps({"rows": rows, "questions": questions, "limit": args.limit,
                                           "seed": args.seed, "model": args.model, "threads": args.threads,
                                           "records": per_question}, indent=1) + "\n")


def parse_extra(fields: str):
    """A configuration from remedy names: ``"grammar,repair,hints"`` (``prune`` means ``--prune always``)."""
    words = {w.strip() for w in fields.split(",") if w.strip()}
    remedies = Remedies(prune="always" if "prune" in words else "never", grammar="grammar" in words,
                        repair=1 if "repair" in words else 0, merge="merge" in words, hints="hints" in words)
    return remedies, flags_for(remedies)


def flags_for(remedies: Remedies) -> str:
    """The ``edgesql eval`` flags that give ``remedies``, every one spelled out.

    >>> flags_for(Remedies(prune="never", repair=1))
    '--no-grammar --repair --no-merge --prune never --no-hints'
    """
    def switch(name, on):
        return f"--{name}" if on else f"--no-{name}"

    return " ".join((switch("grammar", remedies.grammar), switch("repair", remedies.repair),
                     switch("merge", remedies.merge), f"--prune {remedies.prune}", switch("hints", remedies.hints)))


def print_table(rows, counts, out) -> None:
    labels = ["greedy" if k == 1 else f"vote@{k}" for k in counts]
    header = ["pipeline", *(f"EX {label}" for label in labels), *(f"valid {label}" for label in labels),
              "s / question", "× base"]
    print("| " + " | ".join(header) + " |", file=out)
    print("|" + "---|" * len(header), file=out)
    for row in rows:
        cells = [row["config"]]
        cells += [f"{row[f'ex_{label}']:.1%} ({row[f'right_{label}']}/{row['questions']})" for label in labels]
        cells += [f"{row[f'valid_{label}']:.1%}" for label in labels]
        cells += [f"{row['seconds']:.2f}", f"{row['relative_seconds']:.2f}"]
        print("| " + " | ".join(cells) + " |", file=out)
    print(file=out)
    for row in rows:
        print(f"- {row['config']}: edgesql eval --candidates {','.join(map(str, counts))} {row['flags']}", file=out)


def combine(paths: list[Path]) -> None:
    """One table from several reports, over the questions every run finished; seconds relative to each run's base."""
    reports = [json.loads(path.read_text()) for path in paths]
    common = None
    for report in reports:
        for records in report["records"].values():
            done = {r["index"] for r in records if r["skipped"] is None}
            common = done if common is None else common & done
    counts = sorted({int(key.split("@")[1]) for report in reports for records in report["records"].values()
                     for key in records[0] if key.startswith("right@")})
    labels = {k: "greedy" if k == 1 else f"vote@{k}" for k in counts}
    header = ["pipeline", *(f"EX {labels[k]}" for k in counts), f"valid candidates ({labels[counts[-1]]})",
              f"questions answered ({labels[counts[-1]]})", "s / question", "× base"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    seen = set()
    for path, report in zip(paths, reports):
        base = None
        for name, records in report["records"].items():
            chosen = [r for r in records if r["index"] in common]
            seconds = statistics.mean(r["seconds"] for r in chosen)
            base = base or seconds
            if name in seen:
                continue
            seen.add(name)
            k = counts[-1]
            valid = sum(r[f"valid@{k}"] for r in chosen) / max(1, sum(r[f"all@{k}"] for r in chosen))
            answered = sum(1 for r in chosen if r[f"valid@{k}"] > 0)
            cells = [name, *(f"{sum(r[f'right@{c}'] for r in chosen) / len(chosen):.1%} "
                             f"({sum(r[f'right@{c}'] for r in chosen)})" for c in counts),
                     f"{valid:.1%}", f"{answered / len(chosen):.0%}", f"{seconds:.2f}", f"{seconds / base:.2f}"]
            print("| " + " | ".join(cells) + " |")
    print(f"\n{len(common)} questions finished by every run ({', '.join(str(p) for p in paths)})")


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
