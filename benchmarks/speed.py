"""How fast is an answer on this CPU? Ratios measured side by side in one run, with peak memory.

Every measurement runs in a fresh child process (so peak RSS is its own and no cache leaks between them), the
configurations are interleaved, and each is repeated ``--repeat`` times; the table shows medians and the ratios the
speed issue targets. Absolute times drift on a shared 2-core machine; the ratios are what to quote.

    python benchmarks/speed.py [--model smollm2-135m] [--repeat 3] [--json speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / "examples" / "shop.sqlite"
QUESTIONS = ("How many customers are there?", "How many orders were cancelled?")


def child(config: dict) -> dict:
    """Run in the child: answer the questions with one model, report per-question costs and peak RSS."""
    from edge_sql.steps.database import open_database
    from edge_sql.errors import NoValidCandidate
    from edge_sql.steps.generate import Sampling
    from edge_sql.backends import default_threads
    from edge_sql.backends.llama import LlamaModel
    from edge_sql.pipeline import Setup, ask
    from edge_sql.preset import get_preset
    from edge_sql.weights import weights_path

    started = time.perf_counter()
    preset = get_preset(config["model"])
    model = LlamaModel(weights_path(preset), preset=preset, threads=default_threads(), batched=config["batched"],
                       cache_dir=Path(config["cache"]) if config.get("cache") else None)
    load = time.perf_counter() - started
    runs = []
    with open_database(DB) as db:
        for question in config["questions"]:
            clock = time.perf_counter()
            try:
                answer = ask(question, Setup(db, model, Sampling(candidates=config["n"], seed=42,
                                                                early_stop=config.get("early_stop", False))))
            except NoValidCandidate as failure:
                answer = failure.answer
            runs.append({
                "wall": time.perf_counter() - clock,
                "generated": answer.tokens["generated"],
                "prompt_tokens": answer.tokens["prompt"],
                "prompt_evaluated": model.last_cost.prompt_evaluated if config["batched"] else None,
                "prompt_seconds": model.last_cost.prompt_seconds if config["batched"] else None,
                "decode_seconds": model.last_cost.decode_seconds if config["batched"] else None,
            })
    return {"load": load, "runs": runs, "rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(config: dict) -> dict:
    cache = "1" if config.get("cache") else "0"  # no cache folder given: a cold schema, nothing read or written
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)], capture_output=True, text=True,
                         check=True, env={**os.environ, "EDGESQL_PREFIX_CACHE": cache})
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_command(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, capture_output=True, check=True)
    return time.perf_counter() - started


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    from edge_sql.preset import get_preset
    from edge_sql.weights import weights_path

    model_mb = weights_path(get_preset(args.model)).stat().st_size / 2**20
    configs = {
        "greedy (N=1)": dict(n=1, batched=True),
        "vote@5 batched": dict(n=5, batched=True),
        "vote@8 batched": dict(n=8, batched=True),
        "vote@8 batched, early stop": dict(n=8, batched=True, early_stop=True),
        "vote@5 sequential": dict(n=5, batched=False),
        "vote@8 sequential": dict(n=8, batched=False),
    }
    results: dict[str, list] = {name: [] for name in configs}
    cache_runs, help_times, import_times = [], [], []
    for round_ in range(args.repeat):
        print(f"round {round_ + 1}/{args.repeat}", file=sys.stderr, flush=True)
        for name, config in configs.items():
            # cold schema: a fresh process with no prefix cache on disk
            results[name].append(run_child({**config, "model": args.model, "questions": QUESTIONS[:1]}))
        with tempfile.TemporaryDirectory() as cache:
            # first and second question in one process, then a new process on the same disk cache
            same = run_child(dict(n=5, batched=True, model=args.model, questions=QUESTIONS, cache=cache))
            other = run_child(dict(n=5, batched=True, model=args.model, questions=QUESTIONS[1:], cache=cache))
            cache_runs.append((same, other))
        help_times.append(time_command([sys.executable, "-m", "edge_sql", "--help"]))
        import_times.append(time_command([sys.executable, "-c", "import edge_sql.cli"]))

    def wall(name):
        return median([r["runs"][0]["wall"] for r in results[name]])

    def decode_rate(name):
        return median([r["runs"][0]["generated"] / r["runs"][0]["decode_seconds"] for r in results[name]
                       if r["runs"][0]["decode_seconds"]])

    rows = []
    greedy = wall("greedy (N=1)")
    for name in configs:
        rss = max(r["rss_mb"] for r in results[name])
        rows.append((name, wall(name), wall(name) / greedy, median([r["runs"][0]["generated"] for r in results[name]]),
                     rss))
    print(f"\nmodel {args.model} ({model_mb:.0f} MB), {args.repeat} repetitions, medians; question: {QUESTIONS[0]!r}")
    print(f"{'configuration':28} {'wall s':>8} {'× greedy':>9} {'tokens':>7} {'peak RSS MB':>12}")
    for name, seconds, ratio, tokens, rss in rows:
        print(f"{name:28} {seconds:8.2f} {ratio:9.2f} {tokens:7.0f} {rss:12.0f}")

    first_prompt = median([same["runs"][0]["prompt_seconds"] for same, _ in cache_runs])
    second_prompt = median([same["runs"][1]["prompt_seconds"] for same, _ in cache_runs])
    other_prompt = median([other["runs"][0]["prompt_seconds"] for _, other in cache_runs])
    single_rate = decode_rate("greedy (N=1)")
    eight_rate = decode_rate("vote@8 batched")
    summary = {
        "vote@8 batched / greedy wall": wall("vote@8 batched") / greedy,
        "vote@8 sequential / greedy wall": wall("vote@8 sequential") / greedy,
        "vote@8 sequential / batched wall": wall("vote@8 sequential") / wall("vote@8 batched"),
        "vote@5 sequential / batched wall": wall("vote@5 sequential") / wall("vote@5 batched"),
        "vote@8 batched / with early stop wall": wall("vote@8 batched") / wall("vote@8 batched, early stop"),
        "decode tok/s N=8 / N=1": eight_rate / single_rate,
        "prompt eval, 1st / 2nd question (in process)": first_prompt / max(second_prompt, 1e-9),
        "prompt eval, 1st / 2nd question (new process, disk cache)": first_prompt / max(other_prompt, 1e-9),
        "edgesql --help seconds": median(help_times),
        "import edge_sql.cli seconds": median(import_times),
        "peak RSS - model file, MB (ask, vote@8 batched)": max(r["rss_mb"] for r in results["vote@8 batched"]) - model_mb,
    }
    prompt_rate = median([r["runs"][0]["prompt_evaluated"] / r["runs"][0]["prompt_seconds"]
                          for r in results["greedy (N=1)"] if r["runs"][0]["prompt_seconds"]])
    print(f"\nprompt tok/s (cold schema): {prompt_rate:.1f}")
    print(f"decode tok/s: N=1 {single_rate:.1f}, N=8 aggregate {eight_rate:.1f}")
    print(f"prompt eval seconds: 1st question {first_prompt:.2f}, 2nd in process {second_prompt:.3f}, "
          f"2nd in a new process {other_prompt:.3f}")
    for key, value in summary.items():
        print(f"{key:60} {value:8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "cache_runs": cache_runs, "help": help_times,
                                         "import": import_times, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
