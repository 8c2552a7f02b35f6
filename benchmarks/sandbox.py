"""What the query worker holds, and what it costs: the attacks of issue 18 run through ``edgesql run`` with their
peak memory measured from outside, and the cost of running a question's 5 candidates in the worker as a ratio to
running them on the database's own connection, measured side by side.

    python benchmarks/sandbox.py [--timeout 2] [--questions 30] [--model smollm2-135m-sql] [--json sandbox.json]

Peak memory of an attack is taken two ways: ``/usr/bin/time -v``'s "Maximum resident set size" (the largest single
process of the tree) and the sum of resident memory over the whole ``edgesql`` process tree, sampled every 20 ms
from /proc. Absolute times drift on a shared machine; quote the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
EDGESQL = [sys.executable, "-m", "edge_sql"]

#: Nine chained CTEs, each concatenating the previous string with itself ten times (10^10 bytes at the end).
CHAIN = ("WITH a AS (SELECT 'xxxxxxxxxx' AS s), " + ", ".join(
    f"{b} AS (SELECT {'||'.join(['s'] * 10)} AS s FROM {a})" for a, b in zip("abcdefghi", "bcdefghij"))
    + " SELECT length(s) FROM j")
#: Rows that double at each step of a recursive CTE, each a kilobyte wide, sorted (so all are held).
EXPONENTIAL = ("WITH RECURSIVE r(n, s) AS (SELECT 1, '" + "x" * 1000 + "' UNION ALL SELECT r.n + 1, r.s FROM r, "
               "(SELECT 1 AS k UNION ALL SELECT 2) AS two) SELECT n, length(s) FROM r ORDER BY n DESC LIMIT 1")
ATTACKS = {"nine chained CTEs": CHAIN, "exponential recursive CTE": EXPONENTIAL}

#: Five candidates as a model writes them for one question on the example database.
CANDIDATES = (
    "SELECT COUNT(*) FROM customers",
    "SELECT c.country, COUNT(*) AS n FROM customers AS c GROUP BY c.country ORDER BY n DESC",
    ("SELECT p.name, SUM(i.quantity) AS sold FROM products AS p JOIN order_items AS i ON i.product_id = p.product_id "
     "GROUP BY p.name ORDER BY sold DESC LIMIT 5"),
    "SELECT o.order_id, o.order_date FROM orders AS o WHERE o.status = 'cancelled' ORDER BY o.order_date",
    ("SELECT AVG(total) FROM (SELECT o.order_id, SUM(i.quantity * i.unit_price) AS total FROM orders AS o "
     "JOIN order_items AS i ON i.order_id = o.order_id GROUP BY o.order_id) AS t"),
)


# -- the process tree's memory, from outside ----------------------------------------------------------------------------


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            pass
    return total


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def attack(engine: str, name: str, sql: str, timeout: float, model: str | None = None) -> dict:
    """``edgesql run --timeout T SQL`` as its own process; with ``model``, ``edgesql shell`` with that model loaded
    running ``.sql SQL`` and then a plain query in the same session (the tree then holds the model too)."""
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / f"shop.{engine}"
        shutil.copyfile(EXAMPLES / db.name, db)
        before = snapshot(Path(folder))
        if model:
            command = [*EDGESQL, "shell", "--db", str(db), "--model", model, "--timeout", str(timeout), "-f", "json"]
            given = f".sql {sql}\n.sql SELECT count(*) FROM customers\n.quit\n"
        else:
            command, given = [*EDGESQL, "run", "--db", str(db), "--timeout", str(timeout), "--", sql], None
        started = time.perf_counter()
        process = subprocess.Popen(["/usr/bin/time", "-v", *command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if given:
            process.stdin.write(given)
        process.stdin.close()
        peak = 0
        while process.poll() is None:
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - started
        out, err = process.stdout.read(), process.stderr.read()
        maxrss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1)) * 1024
        unchanged = snapshot(Path(folder)) == before
        if model:
            message = next((line for line in out.splitlines() if line.startswith("error: ")), "")
            works = '"rows": [[40]]' in out
        else:
            message = next((line for line in err.splitlines() if line.startswith("edgesql: ")), "")
            after = subprocess.run([*EDGESQL, "run", "--db", str(db), "--format", "json",
                                    "SELECT count(*) FROM customers"], capture_output=True, text=True,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
            works = after.returncode == 0 and json.loads(after.stdout)["rows"] == [[40]]
    return {"engine": engine, "attack": name, "via": f"shell with {model}" if model else "run",
            "exit": process.returncode, "wall": wall, "tree_peak": peak, "time_maxrss": maxrss, "message": message,
            "unchanged": unchanged, "next_query_works": works}


# -- the cost of a question's candidates ---------------------------------------------------------------------------------


def question_costs(engine: str, questions: int, timeout: float) -> dict:
    """Seconds per question (5 candidates) three ways, interleaved: on the connection; in a warm worker (a shell
    session); in a worker started for the question and closed after it (a one-question ``ask``)."""
    from edge_sql.steps.database import open_database
    from edge_sql.steps.execute import execute
    from edge_sql.steps.sandbox import isolate

    # DuckDB opens a file once per process: each way gets its own copy of the same bytes.
    folder = Path(tempfile.mkdtemp())
    copies = [shutil.copyfile(EXAMPLES / f"shop.{engine}", folder / f"{name}.{engine}") for name in "abc"]
    direct, warm = open_database(copies[0]), isolate(open_database(copies[1]))
    path = copies[2]
    times: dict[str, list[float]] = {"connection": [], "warm worker": [], "new worker": []}

    def run(db) -> None:
        for sql in CANDIDATES:
            execute(db, sql, max_rows=100, timeout=timeout)

    run(direct), run(warm)  # first use: caches filled, the worker ready
    for index in range(questions):
        names = list(times)
        for name in names[index % 3:] + names[:index % 3]:  # each way first as often as the others
            clock = time.perf_counter()
            if name == "new worker":
                with isolate(open_database(path)) as fresh:
                    run(fresh)
            else:
                run(direct if name == "connection" else warm)
            times[name].append(time.perf_counter() - clock)
    worker_peak = high_water(warm.worker.process.pid)
    direct.close(), warm.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    # A new worker also means opening the database a second time; count it against the connection too.
    clock = time.perf_counter()
    for _ in range(questions):
        open_database(path).close()
    opening = (time.perf_counter() - clock) / questions
    shutil.rmtree(folder)
    return {"engine": engine, "medians": medians, "open_database": opening, "worker_peak": worker_peak,
            "ratios": {name: medians[name] / medians["connection"] for name in medians}}


def ask_costs(model_name: str, questions: int) -> dict:
    """Seconds per question through the whole pipeline (the demo model, 5 candidates), interleaved: the database's own
    connection; a warm worker (a shell session); a worker started with the question (a one-question ``ask``)."""
    from edge_sql.backends import load_model
    from edge_sql.errors import NoValidCandidate
    from edge_sql.pipeline import Setup, ask
    from edge_sql.steps.database import open_database
    from edge_sql.steps.generate import Sampling
    from edge_sql.steps.sandbox import isolate

    model = load_model(model_name, threads=1)
    folder = Path(tempfile.mkdtemp())
    copies = [shutil.copyfile(EXAMPLES / "shop.sqlite", folder / f"{name}.sqlite") for name in "abc"]
    direct, warm = open_database(copies[0]), isolate(open_database(copies[1]))
    asked = ["How many customers are there?", "How many orders were cancelled?", "Which products cost more than 100?",
             "How many customers live in Spain?", "What is the average price of a product?"]
    times: dict[str, list[float]] = {"connection": [], "warm worker": [], "new worker": []}

    def answer(db, question: str) -> None:
        try:
            ask(question, Setup(db, model, Sampling(candidates=5, seed=42)))
        except NoValidCandidate:
            pass

    answer(direct, asked[0]), answer(warm, asked[0])  # the schema prefix evaluated once
    for index in range(questions):
        question = asked[index % len(asked)]
        names = list(times)
        for name in names[index % 3:] + names[:index % 3]:  # each way first as often as the others
            clock = time.perf_counter()
            if name == "new worker":
                with isolate(open_database(copies[2])) as fresh:
                    answer(fresh, question)
            else:
                answer(direct if name == "connection" else warm, question)
            times[name].append(time.perf_counter() - clock)
    direct.close(), warm.close()
    shutil.rmtree(folder)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"model": model_name, "medians": medians,
            "ratios": {name: medians[name] / medians["connection"] for name in medians}}


def high_water(pid: int) -> int:
    """A live process's peak resident bytes (``VmHWM``)."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+) kB", status.read()).group(1)) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--skip-attacks", action="store_true")
    parser.add_argument("--model", help="also time whole questions through the pipeline with this model")
    parser.add_argument("--model-questions", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ways = [None] + ([args.model] if args.model else [])  # edgesql run; edgesql shell with the model loaded
    attacks = [] if args.skip_attacks else [attack(engine, name, sql, args.timeout, model) for model in ways
                                            for engine in ("sqlite", "duckdb") for name, sql in ATTACKS.items()]
    for row in attacks:
        print(f"{row['via']:9.9} {row['engine']:7} {row['attack']:26} exit {row['exit']}  {row['wall']:5.2f} s (limit "
              f"{args.timeout:g} s)  tree peak {row['tree_peak'] / 2**20:6.0f} MiB  largest process "
              f"{row['time_maxrss'] / 2**20:6.0f} MiB  unchanged {row['unchanged']}  next query works "
              f"{row['next_query_works']}\n        {row['message']}")
    costs = [question_costs(engine, args.questions, args.timeout) for engine in ("sqlite", "duckdb")]
    for row in costs:
        m, r = row["medians"], row["ratios"]
        print(f"{row['engine']:7} 5 candidates: connection {m['connection'] * 1000:.2f} ms, warm worker "
              f"{m['warm worker'] * 1000:.2f} ms (x{r['warm worker']:.2f}), new worker per question "
              f"{m['new worker'] * 1000:.1f} ms (x{r['new worker']:.1f}); opening the database "
              f"{row['open_database'] * 1000:.1f} ms; peak RSS of the warm worker {row['worker_peak'] / 2**20:.0f} MiB")
    asks = ask_costs(args.model, args.model_questions) if args.model else None
    if asks:
        m, r = asks["medians"], asks["ratios"]
        print(f"{asks['model']}, a whole question (5 candidates): connection {m['connection']:.3f} s, warm worker "
              f"{m['warm worker']:.3f} s (x{r['warm worker']:.3f}), new worker with the question "
              f"{m['new worker']:.3f} s (x{r['new worker']:.3f})")
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (both engines' connections): {peak:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"attacks": attacks, "costs": costs, "asks": asks, "peak_rss_mib": peak}, indent=1) + "\n")


if __name__ == "__main__":
    main()
