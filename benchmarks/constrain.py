"""What does the decoding-time check (``--constrain``) cost, and what does it buy? Measured side by side in one run.

Each question is answered through the real pipeline (``pipeline.deliberate``: prompt, N batched candidates, judged)
once per configuration, the configurations interleaved question by question so that drift on a shared CPU hits
them alike: no check, the check, and (with ``--grammar``) the old GBNF schema grammar. Printed per configuration:
the share of candidates that validate and run, seconds per question (p50, p95) and their ratio to no check, decode
speed (generated tokens per second of the whole generation step), what the check itself took (milliseconds per
generated token and per question), the tokens it refused, and the peak RSS of the process.

    python benchmarks/constrain.py [--model smollm2-135m-sql] [--questions 40] [--candidates 5] [--threads 2]

Questions: every k-th of the shared Spider dev half (``../shared/data/spider-dev``) when it is there, else the
example shop database's. Measure with nothing else running: seconds mean nothing on busy cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from edge_sql.backends import load_model
from edge_sql.pipeline import Remedies, Setup, deliberate
from edge_sql.steps.database import open_database
from edge_sql.steps.generate import Sampling

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop.sqlite"
SHOP_QUESTIONS = [
    "How many customers are there?", "What are the 3 most expensive products?", "Which customers live in Germany?",
    "How many products are there in each category?", "What is the average product price?",
    "How many orders were placed in 2024?", "Which customers have never ordered?",
    "What is the total quantity sold per product name?",
]


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def questions(spider: Path, count: int) -> list[tuple[Path, str]]:
    if not (spider / "dev.json").is_file():
        print(f"(no Spider data at {spider}: the shop example's questions)")
        return [(SHOP, q) for q in SHOP_QUESTIONS]
    examples = json.loads((spider / "dev.json").read_text())
    step = max(1, len(examples) // count)
    return [(spider / "database" / e["db_id"] / f"{e['db_id']}.sqlite", e["question"]) for e in examples[::step][:count]]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-sql")
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--grammar", action="store_true", help="also the GBNF schema grammar, without the check")
    parser.add_argument("--spider", type=Path, default=ROOT.parent / "shared" / "data" / "spider-dev")
    args = parser.parse_args()
    model = load_model(args.model, threads=args.threads)
    configs = {"no check": Remedies(constrain=False, grammar=False), "check": Remedies(constrain=True, grammar=False)}
    if args.grammar:
        configs["grammar"] = Remedies(constrain=False, grammar=True)
    rows = {name: {"seconds": [], "generated": 0, "generate": 0.0, "check": 0.0, "refused": 0, "valid": 0, "all": 0}
            for name in configs}
    items = questions(args.spider, args.questions)
    print(f"model {model.name}, threads {model.threads}, {len(items)} questions, {args.candidates} candidates")
    for index, (path, question) in enumerate(items):
        with open_database(path) as db:
            for name, remedies in configs.items():  # interleaved: drift hits every configuration alike
                setup = Setup(db, model, Sampling(candidates=args.candidates), remedies=remedies)
                started = time.perf_counter()
                deliberation = deliberate(question, setup)
                row = rows[name]
                row["seconds"].append(time.perf_counter() - started)
                row["generated"] += deliberation.tokens.get("generated", 0)
                row["generate"] += deliberation.timings.get("generate", 0.0)
                cost = model.last_cost
                row["check"] += cost.check_seconds if cost else 0.0
                row["refused"] += sum(e.candidate.refused for e in deliberation.entries)
                row["valid"] += sum(e.result is not None for e in deliberation.entries)
                row["all"] += len(deliberation.entries)
        print(f"  {index + 1}/{len(items)}", end="\r", flush=True)
    base = statistics.median(rows["no check"]["seconds"])
    print(f"\n{'configuration':14} {'valid+ran':>10} {'p50 s/q':>8} {'ratio':>6} {'p95 s/q':>8} {'tok/s':>7} "
          f"{'check ms/tok':>12} {'check s/q':>9} {'refused':>8}")
    for name, row in rows.items():
        p50 = statistics.median(row["seconds"])
        print(f"{name:14} {row['valid'] / row['all']:10.1%} {p50:8.2f} {p50 / base:5.2f}x "
              f"{percentile(row['seconds'], 0.95):8.2f} {row['generated'] / row['generate']:7.1f} "
              f"{1000 * row['check'] / max(1, row['generated']):12.2f} {row['check'] / len(items):9.3f} "
              f"{row['refused']:8d}")
    print(f"peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
