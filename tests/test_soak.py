"""A long session does not grow: ``shell`` answering 500 questions in one process and ``eval`` over 500 questions, with
the tiny GGUF fixture. Resident memory after the first 50 questions and after the last differ by less than 10%, open
file descriptors do not grow, and the prefix cache stays under its cap.

Each run takes about a minute on a 2-core machine; ``-m "not soak"`` leaves them out. ``EDGESQL_SOAK_QUESTIONS``
changes the count (the checks stay the same: after 50, and after the last), ``EDGESQL_SOAK_MODEL`` the model.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT
from edge_sql.backends.prefix import PrefixStore

QUESTIONS = int(os.environ.get("EDGESQL_SOAK_QUESTIONS", "500"))
#: A preset or GGUF file to soak instead of the tiny fixture (the demo model: ``smollm2-135m-sql``, fewer questions).
MODEL = os.environ.get("EDGESQL_SOAK_MODEL")
FIRST = 50
ASKED = ["How many customers are there?", "Which products cost more than 100?", "How many orders were cancelled?",
         "List the customers from Spain.", "What is the average price of a product?", "now only for 2024",
         "Which city has the most customers?", "How many order items are there?", "Show the five newest orders.",
         "What does the most expensive product cost?", "How many products per category?"]
TESTS = Path(__file__).parent

pytestmark = pytest.mark.soak


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from fixtures.tiny_gguf import write_tiny_gguf

    return MODEL or write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context=4096)


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (the query worker, a grammar check)."""
    tree, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as children:
                found = [int(child) for child in children.read().split()]
        except OSError:
            found = []
        tree += found
        frontier += found
    return tree


def footprint(pid: int) -> dict[str, int]:
    """Resident bytes and open file descriptors of ``pid`` alone and of its whole process tree."""
    rss, fds = {}, {}
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/statm") as statm:
                rss[member] = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            fds[member] = len(os.listdir(f"/proc/{member}/fd"))
        except OSError:
            continue
    return {"rss": rss.get(pid, 0), "fds": fds.get(pid, 0), "tree_rss": sum(rss.values()),
            "tree_fds": sum(fds.values())}


def cache_size(cache: Path) -> tuple[int, int]:
    files = [p for p in (cache / "prefix").iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in files), len([p for p in files if p.suffix == ".state"])


def check_did_not_grow(first: dict[str, int], last: dict[str, int], what: str) -> None:
    print(f"{what}: after {FIRST} questions {first}, after {QUESTIONS}: {last}")
    assert abs(last["rss"] - first["rss"]) < 0.10 * first["rss"], (first, last)
    assert last["fds"] <= first["fds"], (first, last)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_a_shell_answering_many_questions_does_not_grow(tiny_gguf, tmp_path):
    db, cache = tmp_path / "shop.sqlite", tmp_path / "cache"
    shutil.copyfile(EXAMPLES / "shop.sqlite", db)
    env = {**os.environ, "EDGESQL_CACHE_DIR": str(cache), "EDGESQL_HISTORY": str(tmp_path / "history"),
           "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    shell = subprocess.Popen([sys.executable, "-m", "edge_sql", "shell", "--db", str(db), "--model", str(tiny_gguf),
                              "--threads", "1", "--format", "json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in shell.stdout], daemon=True).start()

    def ask(start: int, stop: int) -> dict[str, int]:
        for index in range(start, stop):
            shell.stdin.write((".reset\n" if index % 10 == 0 else "") + ASKED[index % len(ASKED)] + "\n")
        shell.stdin.write(f".sql SELECT 'checkpoint {stop}' AS c\n")
        shell.stdin.flush()
        while f"checkpoint {stop}" not in lines.get(timeout=600):
            pass
        return footprint(shell.pid)

    try:
        first = ask(0, FIRST)
        last = ask(FIRST, QUESTIONS)
        size, states = cache_size(cache)
        shell.stdin.write(".quit\n")
        shell.stdin.close()
        assert shell.wait(timeout=60) == 0
    finally:
        if shell.poll() is None:
            shell.kill()
    check_did_not_grow(first, last, "shell")
    assert last["tree_fds"] <= first["tree_fds"]
    assert size <= PrefixStore(cache, "").max_bytes and states == 1


def evaluate_in_child(data: str, model: str, cache: str, questions: int) -> None:
    """Run in a fresh interpreter: ``eval`` over ``data``; print the footprint after FIRST questions and at the end."""
    os.environ["EDGESQL_CACHE_DIR"] = cache
    from edge_sql.backends import load_model
    from edge_sql.eval.datasets import load_dataset
    from edge_sql.eval.run import evaluate
    from edge_sql.steps.generate import Sampling

    dataset = load_dataset(data)
    seen, marks = [], {}

    def progress(record) -> None:
        seen.append(record)
        if len(seen) in (FIRST, questions):
            marks[len(seen)] = footprint(os.getpid())

    evaluate(dataset, list(dataset.examples), load_model(model, threads=1), Sampling(candidates=5), (1, 5),
             progress=progress)
    print(json.dumps({"first": marks[FIRST], "last": marks[questions]}))


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_eval_over_many_questions_does_not_grow(tiny_gguf, tmp_path):
    shutil.copyfile(EXAMPLES / "shop.sqlite", tmp_path / "shop.sqlite")
    data = tmp_path / "questions.jsonl"
    gold = ["SELECT count(*) FROM customers", "SELECT name FROM products WHERE price > 100"]
    data.write_text("".join(json.dumps({"question": ASKED[i % len(ASKED)], "query": gold[i % 2], "db": "shop.sqlite"})
                            + "\n" for i in range(QUESTIONS)))
    code = (f"import sys; sys.path[:0] = [{str(TESTS)!r}, {str(ROOT)!r}]; import test_soak; "
            f"test_soak.evaluate_in_child({str(data)!r}, {str(tiny_gguf)!r}, {str(tmp_path / 'cache')!r}, {QUESTIONS})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    check_did_not_grow(marks["first"], marks["last"], "eval")
    size, states = cache_size(tmp_path / "cache")
    assert size <= PrefixStore(tmp_path, "").max_bytes and states == 1
