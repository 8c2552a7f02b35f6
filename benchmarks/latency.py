"""Seconds per question, and where they go: the Spider dev half (the first questions on each database) and the
real-database questions on sakila (16 tables, 5 views), asked the two ways a user asks them.

- ``one``: every question in ONE process, as ``edgesql shell`` and ``edgesql eval`` ask them (the model loaded once,
  each database opened once, the schema prefix kept in memory between questions on a database);
- ``ask``: every question as its own ``edgesql ask --format json`` process (imports, model load, the schema prefix
  read back from the disk cache).

Both start with an empty prefix cache (a temporary ``EDGESQL_CACHE_DIR`` each), so the first question on each
database pays for reading its schema into the model, and the seconds reported are those of the questions after it
(p50/p95), with the stages the answer's ``timings`` name (means), the tokens each candidate wrote against the gold
query's, the prompt tokens evaluated and read from disk, and peak memory (the process's VmHWM; an ``ask`` process's
own maximum RSS).

Settings (``--settings``) are compared side by side: for every question each setting runs in turn (interleaved), so
a machine that gets busier or quieter slows them alike; quote the ratios, not the absolute seconds, on a shared CPU.
The load average is recorded beside every question.

    python benchmarks/latency.py --per-db 4 --sakila 8 --settings default,early-stop --modes one,ask --json lat.json

``--busy 1`` runs it all beside a busy core (``python3 -c 'while True: pass'``), as a laptop doing other work.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIDER = ROOT.parent / "shared" / "data" / "spider-dev"
REALDB = ROOT / "benchmarks" / "realdb" / "questions.jsonl"

#: A setting: the Sampling fields it changes (one process), the flags that change them (``edgesql ask``), and the
#: module constants it sets in the one process (a setting with any runs in one process only).
SETTINGS = {
    "default": ({}, [], {}),
    "early-stop": ({"early_stop": True}, ["--early-stop"], {}),
    # flash attention at every schema size (before batch.LONG_PREFIX turned it off beside long ones)
    "flash-always": ({}, [], {"edge_sql.backends.batch.LONG_PREFIX": 10**9}),
}
#: Stages of an answer's timings, in the order they happen (``start`` and ``load`` only in an ``ask`` process).
STAGES = ("start", "load", "prompt", "generate.cache", "generate.prompt_eval", "generate.decode", "generate.check",
          "generate", "validate", "execute", "ground", "vote")


@dataclass(frozen=True)
class Question:
    dataset: str  # "spider" or "sakila"
    db: str  # the database file
    question: str
    gold: str


def spider_questions(folder: Path, per_db: int) -> list[Question]:
    """The first ``per_db`` questions on each database of a Spider folder, in the file's order."""
    from edge_sql.eval.datasets import load_dataset

    taken: dict[str, int] = {}
    questions = []
    for example in load_dataset(folder).examples:
        if taken.get(example.db_id, 0) < per_db:
            taken[example.db_id] = taken.get(example.db_id, 0) + 1
            questions.append(Question("spider", str(example.db_path), example.question, example.gold))
    return questions


def sakila_questions(path: Path, count: int) -> list[Question]:
    """The first ``count`` questions on sakila in the real-database question set."""
    from edge_sql.eval.datasets import load_dataset

    examples = [e for e in load_dataset(path).examples if e.db_id == "sakila"]
    return [Question("sakila", str(e.db_path.resolve()), e.question, e.gold) for e in examples[:count]]


def by_database(questions: list[Question]) -> list[Question]:
    """The questions grouped by database (first-seen order), as a shell session or an eval meets them."""
    order: dict[str, list[Question]] = {}
    for question in questions:
        order.setdefault(question.db, []).append(question)
    return [q for group in order.values() for q in group]


def rotated(settings: list[str], number: int) -> list[str]:
    """The order the settings run in for question ``number``: each one goes first, second, … equally often (the one
    that runs right after another may find the cores still busy, and run on fewer threads).

    >>> [rotated(["a", "b", "c"], n) for n in range(3)]
    [['a', 'b', 'c'], ['b', 'c', 'a'], ['c', 'a', 'b']]
    """
    shift = number % len(settings)
    return settings[shift:] + settings[:shift]


# -- one process ------------------------------------------------------------------------------------------------------

def one_process(config: dict) -> None:
    """In a child: load the model once, then answer each question read from stdin (a JSON line) with one setting, as
    a shell does; one JSON line out for each, and the peak RSS at the end of input."""
    from dataclasses import replace

    from edge_sql.backends import load_model
    from edge_sql.cli.options import chosen_remedies
    from edge_sql.errors import NoValidCandidate
    from edge_sql.pipeline import Limits, Setup, ask
    from edge_sql.steps.database import open_database
    from edge_sql.steps.generate import Sampling
    from edge_sql.steps.sandbox import isolate

    import importlib

    name = config["setting"]
    for target, value in SETTINGS[name][2].items():
        module, attribute = target.rsplit(".", 1)
        setattr(importlib.import_module(module), attribute, value)
    clock = time.perf_counter()
    model = load_model(config["model"], threads=config.get("threads"))
    print(json.dumps({"load": time.perf_counter() - clock}), flush=True)
    remedies = chosen_remedies(None, None, None, None, None, None, preset=model.preset)
    sampling = replace(Sampling(candidates=model.preset.candidates, temperature=model.preset.temperature, seed=42),
                       **SETTINGS[name][0])
    database, opened = None, None
    try:
        for line in sys.stdin:
            question = Question(**json.loads(line))
            if question.db != opened:
                if database is not None:
                    database.__exit__(None, None, None)
                database, opened = isolate(open_database(Path(question.db))), question.db
                db = database.__enter__()
            load = os.getloadavg()[0]
            clock = time.perf_counter()
            try:
                answer = ask(question.question, Setup(db, model, sampling, Limits(), remedies))
                error = None
            except NoValidCandidate as failure:
                answer, error = failure.answer, str(failure)
            seconds = time.perf_counter() - clock
            print(json.dumps({
                "mode": "one", "setting": name, **asdict(question), "seconds": seconds, "load_average": load,
                "timings": answer.timings, "tokens": answer.tokens, "sql": answer.sql, "error": error,
                "candidates": [{"tokens": e.candidate.tokens, "sql": e.candidate.sql, "verdict": e.verdict.kind}
                               for e in answer.ballot.entries],
            }), flush=True)
    finally:
        if database is not None:
            database.__exit__(None, None, None)
        print(json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(questions: list[Question], settings: list[str], model: str, threads: int | None, log) -> tuple[list, dict]:
    """One long-lived process per setting (each with its own fresh prefix cache), asked in lock-step: a question goes
    to each setting's process in turn (the order rotating), never to two at once. Their records, and each
    process's peak RSS (MiB)."""
    records, peaks, children = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="edgesql-latency-") as folder:
        for name in settings:
            config = {"setting": name, "model": model, "threads": threads}
            children[name] = subprocess.Popen(
                [sys.executable, __file__, "--child", json.dumps(config)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True, env={**os.environ, "EDGESQL_CACHE_DIR": str(Path(folder) / name)})
            json.loads(children[name].stdout.readline())  # loaded
        try:
            for number, question in enumerate(questions):
                for name in rotated(settings, number):
                    child = children[name]
                    child.stdin.write(json.dumps(asdict(question)) + "\n")
                    child.stdin.flush()
                    record = json.loads(child.stdout.readline())
                    records.append(record)
                    log(record)
        finally:
            for name, child in children.items():
                child.stdin.close()
                for line in child.stdout:
                    peaks[f"one process ({name})"] = json.loads(line).get("peak_rss_mb", float("nan"))
                child.wait()
    return records, peaks


# -- separate ask processes -------------------------------------------------------------------------------------------

def run_asks(questions: list[Question], settings: list[str], model: str, threads: int | None, log) -> list:
    """Every question as its own ``edgesql ask`` process, settings interleaved, sharing one fresh prefix cache."""
    records = []
    settings = [name for name in settings if not SETTINGS[name][2]]  # a process of its own cannot be patched
    with tempfile.TemporaryDirectory(prefix="edgesql-latency-") as cache:
        for number, question in enumerate(questions):
            for name in rotated(settings, number):
                args = [sys.executable, "-m", "edge_sql", "ask", question.question, "--db", question.db,
                        "--model", model, "--format", "json", *SETTINGS[name][1]]
                if threads:
                    args += ["--threads", str(threads)]
                load = os.getloadavg()[0]
                clock = time.perf_counter()
                child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                         env={**os.environ, "EDGESQL_CACHE_DIR": cache})
                out = child.stdout.read()
                _, status, usage = os.wait4(child.pid, 0)
                child.returncode = os.waitstatus_to_exitcode(status)
                seconds = time.perf_counter() - clock
                try:
                    answer = json.loads(out)
                except json.JSONDecodeError:
                    answer = {"timings": {}, "tokens": {}, "ballot": [], "sql": None, "error": f"exit {child.returncode}"}
                record = {
                    "mode": "ask", "setting": name, **asdict(question), "seconds": seconds, "load_average": load,
                    "timings": answer["timings"], "tokens": answer["tokens"], "sql": answer["sql"],
                    "error": answer.get("error"), "exit": child.returncode, "rss_mb": usage.ru_maxrss / 1024,
                    "candidates": [{"tokens": e.get("tokens", 0), "sql": e["sql"], "verdict": e["verdict"]}
                                   for e in answer["ballot"]],
                }
                records.append(record)
                log(record)
    return records


# -- the report -------------------------------------------------------------------------------------------------------

def percentile(values, share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank), NaN when there are none.

    >>> percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.95), percentile([4, 1, 3], 0.5)
    (10, 3)
    """
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(share * len(values) + 0.5) - 1))]


def after_first(records: list[dict]) -> list[dict]:
    """The records of each setting's questions after the first on each database."""
    seen, kept = set(), []
    for record in records:
        key = (record["mode"], record["setting"], record["db"])
        if key in seen:
            kept.append(record)
        seen.add(key)
    return kept


def token_counter(model: str):
    """Count tokens with the model's own vocabulary (llama.cpp, vocabulary only: no weights read)."""
    import llama_cpp

    from edge_sql.preset import get_preset
    from edge_sql.weights import weights_path

    vocab = llama_cpp.Llama(model_path=str(weights_path(get_preset(model))), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0


def summarize(records: list[dict], count, prefix: str = "SELECT") -> dict:
    """p50/p95 seconds, mean seconds per stage, tokens per candidate against the gold query's, prompt tokens
    evaluated and restored, and how many candidates reached their budget."""
    from edge_sql.steps.generate import answer_budget

    seconds = [r["seconds"] for r in records]
    stages = {stage: statistics.mean(r["timings"].get(stage, 0.0) for r in records) for stage in STAGES
              if any(stage in r["timings"] for r in records)}
    written, needed, at_budget, stopped = [], [], 0, 0
    for record in records:
        budget = answer_budget(record["question"])
        for candidate in record["candidates"]:
            if candidate["verdict"] == "stopped":
                stopped += 1
                continue
            written.append(candidate["tokens"])
            needed.append(max(0, count(candidate["sql"]) - count(prefix)) if candidate["sql"] else 0)
            at_budget += candidate["tokens"] >= budget
    gold = [max(0, count(r["gold"]) - count(prefix)) for r in records]
    return {
        "questions": len(records), "p50": percentile(seconds, 0.5), "p95": percentile(seconds, 0.95),
        "mean": statistics.mean(seconds) if seconds else float("nan"), "stages": stages,
        "tokens_written_p50": percentile(written, 0.5), "tokens_written_p95": percentile(written, 0.95),
        "tokens_written_mean": statistics.mean(written) if written else float("nan"),
        "tokens_of_its_sql_mean": statistics.mean(needed) if needed else float("nan"),
        "gold_tokens_p50": percentile(gold, 0.5), "gold_tokens_p95": percentile(gold, 0.95),
        "gold_tokens_mean": statistics.mean(gold) if gold else float("nan"),
        "longest_candidate_mean": statistics.mean(max((c["tokens"] for c in r["candidates"]), default=0)
                                                  for r in records) if records else float("nan"),
        "at_budget": at_budget / max(1, len(written)), "stopped": stopped,
        "evaluated_mean": statistics.mean(r["tokens"].get("evaluated", 0) for r in records) if records else 0,
        "restored_mean": statistics.mean(r["tokens"].get("restored", 0) for r in records) if records else 0,
        "prompt_mean": statistics.mean(r["tokens"].get("prompt", 0) for r in records) if records else 0,
        "load_average_mean": statistics.mean(r["load_average"] for r in records) if records else float("nan"),
    }


def print_report(records: list[dict], settings: list[str], peaks: dict, count) -> dict:
    report = {}
    kept = after_first(records)
    groups = sorted({(r["mode"], r["dataset"]) for r in kept})
    for mode, dataset in groups:
        print(f"\n## {mode}: {dataset} (questions after the first on each database)")
        print(f"{'setting':<15} {'n':>3} {'p50 s':>7} {'p95 s':>7} {'mean s':>7} {'ratio':>6} {'tok/cand':>8} "
              f"{'its SQL':>7} {'gold':>5} {'longest':>7} {'@budget':>7} {'stopped':>7} {'evaluated':>9} "
              f"{'restored':>8} {'load':>5}")
        first = None
        for name in settings:
            rows = [r for r in kept if (r["mode"], r["dataset"], r["setting"]) == (mode, dataset, name)]
            if not rows:
                continue
            s = summarize(rows, count)
            first = first or s
            report[f"{mode}/{dataset}/{name}"] = s
            print(f"{name:<15} {s['questions']:>3} {s['p50']:>7.2f} {s['p95']:>7.2f} {s['mean']:>7.2f} "
                  f"{s['mean'] / first['mean']:>6.2f} {s['tokens_written_mean']:>8.1f} {s['tokens_of_its_sql_mean']:>7.1f} "
                  f"{s['gold_tokens_mean']:>5.1f} {s['longest_candidate_mean']:>7.1f} {s['at_budget']:>7.1%} "
                  f"{s['stopped']:>7} {s['evaluated_mean']:>9.0f} {s['restored_mean']:>8.0f} "
                  f"{s['load_average_mean']:>5.1f}")
        for name in settings:
            s = report.get(f"{mode}/{dataset}/{name}")
            if s:
                print(f"  {name} stages (mean s): " + ", ".join(f"{k} {v:.3f}" for k, v in s["stages"].items()))
    firsts = [r for r in records if r not in kept]
    if firsts:
        print("\n## the first question on each database")
        for r in firsts:
            t = r["timings"]
            print(f"{r['mode']:<4} {r['setting']:<14} {Path(r['db']).name:<28} {r['seconds']:7.2f} s  prompt "
                  f"{r['tokens'].get('prompt', 0)} tokens, evaluated {r['tokens'].get('evaluated', 0)}, restored "
                  f"{r['tokens'].get('restored', 0)}; generate.prompt_eval {t.get('generate.prompt_eval', 0):.2f} s, "
                  f"generate.cache {t.get('generate.cache', 0):.2f} s")
    print("\n## peak memory (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    report["peak_rss_mb"] = peaks
    return report


@contextmanager
def busy_cores(count: int):
    """``count`` busy loops for as long as the block runs, each in its own process group, stopped at the end (also
    when the benchmark is interrupted)."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
             for _ in range(count)]
    try:
        if loops:
            time.sleep(1.0)  # under way before the first question
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider", type=Path, default=SPIDER, help="a Spider folder (default: the shared dev half)")
    parser.add_argument("--per-db", type=int, default=4, help="questions per Spider database (0: none)")
    parser.add_argument("--realdb", type=Path, default=REALDB, help="the real-database question set (JSONL)")
    parser.add_argument("--sakila", type=int, default=8, help="questions on sakila (0: none)")
    parser.add_argument("--model", default="smollm2-135m-sql")
    parser.add_argument("--threads", type=int, help="pin the threads (default: edgesql's own choice)")
    parser.add_argument("--settings", default="default", help=f"comma-separated, of {', '.join(SETTINGS)}")
    parser.add_argument("--modes", default="one,ask", help="one (one process), ask (a process per question)")
    parser.add_argument("--busy", type=int, default=0,
                        help="busy cores beside the run (python3 -c 'while True: pass', each in its own process)")
    parser.add_argument("--json", type=Path, help="write every record and the summary here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: the busy loops are stopped too
    if args.child:
        one_process(json.loads(args.child))
        return
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings: {', '.join(unknown)}")
    questions = []
    if args.per_db and args.spider.exists():
        questions += spider_questions(args.spider, args.per_db)
    if args.sakila and args.realdb.exists():
        questions += sakila_questions(args.realdb, args.sakila)
    if not questions:
        parser.error("no questions: the Spider folder and the question set are missing, or --per-db and --sakila are 0")
    questions = by_database(questions)

    def log(record):
        print(f"{record['mode']:<4} {record['setting']:<14} {Path(record['db']).stem:<24} {record['seconds']:7.2f} s  "
              f"load {record['load_average']:.1f}  {record['question'][:60]}", file=sys.stderr, flush=True)

    records, peaks = [], {}
    modes = args.modes.split(",")
    started = time.time()
    print(f"# {len(questions)} questions, settings {settings}, modes {modes}, model {args.model}, threads "
          f"{args.threads or 'edgesql default'}, {args.busy} busy cores beside it; load average at start "
          f"{os.getloadavg()}", flush=True)
    with busy_cores(args.busy):
        if "one" in modes:
            one, peaks = run_one(questions, settings, args.model, args.threads, log)
            records += one
        if "ask" in modes:
            asks = run_asks(questions, settings, args.model, args.threads, log)
            records += asks
            peaks["ask process (max)"] = max((r["rss_mb"] for r in asks), default=float("nan"))
    print(f"# {time.time() - started:.0f} s in all; load average at the end {os.getloadavg()}")
    summary = print_report(records, settings, peaks, token_counter(args.model))
    if args.json:
        args.json.write_text(json.dumps({"records": records, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
