"""How much slower is one model's answer than another's? ``ask`` speed of models side by side, with peak memory.

Built for the question "what does the trained adapter cost?": ``smollm2-135m-sql`` (the demo model with edgesql's
LoRA adapter applied by llama.cpp) against ``smollm2-135m`` (the same base, untuned). Each measurement runs in a
fresh child process (its own peak RSS, no cache shared), the models alternate within each round, and the table shows
medians and ratios to the first model. Absolute times drift on a shared 2-core machine; quote the ratios.

    python benchmarks/models.py [--models smollm2-135m,smollm2-135m-sql] [--repeat 3] [-n 5] [--json out.json]

Any ``--model`` value works: presets, GGUF files, folders written by ``edgesql train``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from speed import median, peak_rss_mb  # beside this file: the same medians and peak memory as the speed benchmark

ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / "examples" / "shop.sqlite"
QUESTIONS = ("How many customers are there?", "Which customers spent the most?", "How many orders were cancelled?")


def child(config: dict) -> dict:
    """Run in the child: load the model as ``ask`` does, answer each question once, report its costs."""
    from edge_sql.backends import load_model
    from edge_sql.errors import NoValidCandidate
    from edge_sql.pipeline import Setup, ask
    from edge_sql.steps.database import open_database
    from edge_sql.steps.generate import Sampling

    started = time.perf_counter()
    model = load_model(config["model"], threads=config["threads"])
    load = time.perf_counter() - started
    runs = []
    with open_database(DB) as db:
        for question in QUESTIONS:
            clock = time.perf_counter()
            try:
                answer = ask(question, Setup(db, model, Sampling(candidates=config["n"], seed=42)))
            except NoValidCandidate as failure:
                answer = failure.answer
            cost = model.last_cost
            runs.append({"wall": time.perf_counter() - clock, "generated": answer.tokens["generated"],
                         "decode_rate": (answer.tokens["generated"] / cost.decode_seconds
                                         if cost and cost.decode_seconds else None),
                         "sql": answer.sql})
    return {"load": load, "runs": runs, "rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m,smollm2-135m-sql")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("-n", type=int, default=5, help="candidates per question")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    models = args.models.split(",")
    results: dict[str, list] = {m: [] for m in models}
    for round_ in range(args.repeat):
        print(f"round {round_ + 1}/{args.repeat}", file=sys.stderr, flush=True)
        for m in models:
            config = {"model": m, "n": args.n, "threads": args.threads}
            done = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)], capture_output=True,
                                  text=True, check=True)
            results[m].append(json.loads(done.stdout.strip().splitlines()[-1]))

    def per_question(m: str, key: str) -> float:
        return median([run[key] for r in results[m] for run in r["runs"]])

    first = models[0]
    print(f"\n{len(QUESTIONS)} questions on {DB.name}, vote of {args.n}, {args.threads} threads, {args.repeat} rounds "
          f"(medians; ratios to {first})")
    print(f"{'model':28} {'s/question':>10} {'ratio':>6} {'tokens':>7} {'decode tok/s':>12} {'ratio':>6} "
          f"{'load s':>7} {'peak RSS MB':>12}")
    for m in models:
        wall, rate = per_question(m, "wall"), per_question(m, "decode_rate")
        print(f"{m:28} {wall:10.2f} {wall / per_question(first, 'wall'):6.2f} {per_question(m, 'generated'):7.0f} "
              f"{rate:12.1f} {rate / per_question(first, 'decode_rate'):6.2f} "
              f"{median([r['load'] for r in results[m]]):7.2f} {max(r['rss_mb'] for r in results[m]):12.0f}")
    for m in models:
        print(f"{m}: " + " | ".join(run["sql"] or "(no answer)" for run in results[m][0]["runs"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
