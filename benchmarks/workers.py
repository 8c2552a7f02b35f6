"""Does ``eval --workers N`` pay against one llama-cpp-python server? Questions per second with 1, 2 and 4 workers,
and in-process, measured side by side in one run, with the peak memory of the eval client and of the server.

The benchmark starts ``python -m llama_cpp.server`` itself on the preset's GGUF file (``--n_threads`` and
``--n_threads_batch`` as ``--threads``, ``--n_ctx 4096``: the context the client assumes), then runs ``edgesql eval``
on a fixed slice of the Spider dev half (``--shuffle --limit N`` with ``--seed``) once per configuration, each in a
fresh process, the configurations interleaved (the order reversed every other round). In-process means ``--model
PRESET --threads T``, the local backend. Questions per second come from the eval loop's own wall time (the report's
``wall_seconds``: no start-up or model loading); peak RSS is the eval process's (its report's ``peak_rss_mib``; the
query worker process is not counted) and the server process's ``VmHWM``. Reports of every worker count are checked to
hold the same records (same chosen SQL and verdicts) as ``--workers 1``'s, since the seed is the same. Every run
starts with an empty cache folder (``EDGESQL_CACHE_DIR``): no run inherits another's prompt-prefix states or grammar
checks.

llama-cpp-python's server decodes one request at a time, so more workers can only overlap the client's own work
(prompt building, validation, execution) with the server's decoding.

    python benchmarks/workers.py [--data ../shared/data/spider-dev] [--limit 30] [-n 5] [--workers 1,2,4]
                                 [--threads 2] [--repeat 1] [--json out.json] [-- EXTRA EVAL ARGS]

Absolute times drift on a shared 2-core machine; quote the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from speed import median  # beside this file: the same medians as the speed benchmark

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "spider-dev"
IN_PROCESS = "in-process"


def model_file(preset_name: str) -> Path:
    from edge_sql.preset import get_preset
    from edge_sql.weights import weights_path

    return weights_path(get_preset(preset_name))


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(gguf: Path, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    """llama-cpp-python's server on ``gguf``, on a free port of 127.0.0.1, once it answers; and its base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                                "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads),
                                "--n_threads_batch", str(threads)],
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(1200):
        if process.poll() is not None:
            sys.exit(f"llama_cpp.server exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"llama_cpp.server did not start within two minutes; see {log}")


def peak_rss_of(pid: int) -> float:
    """A running process's peak resident memory (``VmHWM``) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_eval(config: str, args, url: str, report: Path) -> dict:
    """One ``edgesql eval`` run in a fresh process; what its report says, and the process's wall time."""
    command = [sys.executable, "-m", "edge_sql", "eval", "--data", str(args.data.resolve()), "--shuffle", "--limit",
               str(args.limit), "--seed", str(args.seed), "-n", str(args.n), "--report", str(report)]
    if config == IN_PROCESS:
        command += ["--model", args.preset, "--threads", str(args.threads)]
    else:
        command += ["--model", f"{url}?preset={args.preset}", "--workers", config]
    cache = report.with_suffix(".cache")  # cold for every run: prompt-prefix states and grammar checks alike
    started = time.perf_counter()
    subprocess.run(command + args.extra, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=ROOT, env={**os.environ, "EDGESQL_CACHE_DIR": str(cache)})
    wall = time.perf_counter() - started
    data = json.loads(report.read_text())
    ex = next(r["ex"] for r in data["results"] if r["candidates"] == args.n)
    records = [(r["index"], [(a["sql"], a["right"], a["valid"], a["invalid"], a["failed"]) for a in r["answers"]])
               for r in data["records"]]
    return {"loop_s": data["wall_seconds"], "process_s": wall, "questions": data["scored"], "ex": ex,
            "rss_mib": data["peak_rss_mib"], "records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--preset", default="smollm2-135m")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("-n", type=int, default=5, help="candidates per question")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--threads", type=int, default=2, help="the server's threads, and the in-process model's")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("extra", nargs="*", help="more edgesql eval arguments, after --")
    args = parser.parse_args()
    if not (args.data / "dev.json").is_file():
        sys.exit(f"no Spider dev data at {args.data}")
    workers = [w.strip() for w in args.workers.split(",")]
    configs = workers + [IN_PROCESS]
    load_before = os.getloadavg()
    results: dict[str, list] = {c: [] for c in configs}
    server_rss = {}
    with tempfile.TemporaryDirectory(prefix="edgesql-workers-") as folder:
        server, url = start_server(model_file(args.preset), args.threads, Path(folder) / "server.log")
        try:
            for round_ in range(args.repeat):
                order = configs if round_ % 2 == 0 else configs[::-1]
                for config in order:
                    print(f"round {round_ + 1}/{args.repeat}: {config}", file=sys.stderr, flush=True)
                    report = Path(folder) / f"{config}-{round_ + 1}.json"
                    results[config].append(run_eval(config, args, url, report))
                    done = results[config][-1]
                    print(f"  {done['questions']} questions in {done['loop_s']:.1f} s "
                          f"({done['questions'] / done['loop_s']:.3f}/s), EX {done['ex']:.1%}, client peak RSS "
                          f"{done['rss_mib']:.0f} MiB; load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
                    if config != IN_PROCESS:
                        server_rss[config] = peak_rss_of(server.pid)  # the server's peak so far
        finally:
            server.terminate()
            server.wait(timeout=30)
    load_after = os.getloadavg()

    def rate(config: str) -> float:  # questions a second, median over rounds
        return median([r["questions"] / r["loop_s"] for r in results[config]])

    first, local = workers[0], rate(IN_PROCESS)
    print(f"\n{args.limit} questions of {args.data.resolve().name} (--shuffle --limit {args.limit} --seed "
          f"{args.seed}), vote of {args.n}, preset {args.preset}; llama-cpp-python's server and the in-process model "
          f"on {args.threads} threads; {args.repeat} round(s), medians")
    print(f"{'run':12} {'questions/s':>11} {'× workers=' + first:>12} {'× in-process':>12} {'s/question':>10} "
          f"{'process s':>9} {'client peak RSS MiB':>19} {'EX':>6}")
    for config in configs:
        q = rate(config)
        label = IN_PROCESS if config == IN_PROCESS else f"workers={config}"
        print(f"{label:12} {q:11.3f} {q / rate(first):12.2f} {q / local:12.2f} {1 / q:10.2f} "
              f"{median([r['process_s'] for r in results[config]]):9.1f} "
              f"{max(r['rss_mib'] for r in results[config]):19.0f} "
              f"{median([r['ex'] for r in results[config]]):6.1%}")
    print(f"server peak RSS (VmHWM): {max(server_rss.values()):.0f} MiB")
    baseline = results[first][0]["records"]
    same = {c: all(r["records"] == baseline for r in results[c]) for c in workers}
    print("records equal to workers=" + first + "'s: " + ", ".join(f"workers={c} {'yes' if same[c] else 'NO'}"
                                                                   for c in workers))
    print(f"load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
          f"after: {', '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                                         "server_rss_mib": server_rss, "load": [load_before, load_after]}, indent=1))


if __name__ == "__main__":
    main()
