"""Run queries where the operating system bounds them: a worker process with a memory ceiling, killed at its deadline.

The limits inside the engines (SQLite's progress handler and length limit, DuckDB's ``memory_limit`` and
``interrupt()``) stop most runaway queries, but not all: a string doubled in nine chained CTEs grew SQLite to 12.9 GB
in 66 s, and DuckDB answered its interrupt 14 s late at 5.0 GB. So a :class:`Worker` runs each query in a process of
its own:

- the worker opens the database itself, read-only and locked down exactly as :func:`~edge_sql.steps.database.
  open_database` does, and runs the query with :func:`~edge_sql.steps.execute.execute` (so every in-engine limit
  still applies);
- before each query it sets ``RLIMIT_AS`` (its address space) to what it uses idle plus ``memory`` MiB: an
  allocation past that fails inside the engine (an out-of-memory error), or ends the worker;
- ``RLIMIT_FSIZE`` is 0 (the worker cannot grow any file) and ``RLIMIT_CORE`` 0 (no core dump);
- the parent waits for the answer ``timeout`` + :data:`GRACE` seconds at most, then kills the worker (SIGKILL) and
  reports the time limit. A worker that was killed, died or ran out of memory is replaced at the next query.

One worker serves a whole session (every candidate of every question on that database), so a query costs a round trip
through a pipe, not a process start. A worker is started as soon as the database is opened and gets ready while the
model is loaded and generates.

The protocol is length-prefixed pickles on the worker's stdin and stdout; the worker writes nothing else there.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

from edge_sql.errors import DatabaseError, QueryFailed, QueryTimeout
from edge_sql.steps.database import Database, open_database
from edge_sql.steps.execute import Result, execute, timeout_message

#: Seconds the parent waits past a query's time limit before it kills the worker.
GRACE = 0.25

#: Seconds a new worker may take to open the database and say it is ready.
START_TIMEOUT = 60.0

HEADER = struct.Struct(">Q")

_SERVE = "import sys; from edge_sql.steps.sandbox import serve; serve(sys.argv[1])"


class QueryOutOfMemory(QueryFailed):
    """A query needed more memory than its ceiling allows (exit 6, like every stopped query)."""


def memory_message(memory: int) -> str:
    return (f"the query needed more than the {memory:,} MiB memory limit and was stopped; allow it more with "
            "--memory")


def isolate(db: Database) -> Database:
    """Start a worker for ``db``: from now on ``execute(db, …)`` runs there; ``db.close()`` stops it."""
    if db.worker is None:
        db.worker = Worker(db.path)
    return db


class Worker:
    """A process that runs queries on one database under a memory ceiling; see the module's docstring."""

    def __init__(self, path: Path):
        self.path = Path(path).absolute()  # the worker runs in /
        self.process: subprocess.Popen | None = None
        self.ready = False
        self.starts = 0  # how many processes this worker has started (a new one after each kill)
        self.start()

    # -- the parent's side --------------------------------------------------------------------------------------------

    def start(self) -> None:
        root = str(Path(__file__).resolve().parents[2])  # where edge_sql is, whatever the parent's sys.path
        paths = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": paths, "MALLOC_ARENA_MAX": "2"}
        self.process = subprocess.Popen([sys.executable, "-c", _SERVE, str(self.path)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd="/",
                                        close_fds=True)
        self.ready = False
        self.starts += 1

    def wait_ready(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.stop()
            self.start()
        if self.ready:
            return
        reply = receive(self.process.stdout, time.monotonic() + START_TIMEOUT)
        if reply is None or reply[0] != "ready":
            self.stop()
            detail = reply[1] if reply and reply[0] == "database" else "the query worker did not start"
            raise DatabaseError(detail)
        self.ready = True

    def execute(self, sql: str, *, max_rows: int, timeout: float, memory: int) -> Result:
        """Run ``sql`` in the worker: its :class:`Result`, or :class:`QueryTimeout`, :class:`QueryOutOfMemory`,
        :class:`QueryFailed`."""
        self.wait_ready()
        try:
            send(self.process.stdin, ("query", sql, max_rows, timeout, memory))
        except OSError:
            self.stop()
            raise QueryFailed("the query worker stopped before the query could run") from None
        deadline = time.monotonic() + timeout + GRACE
        try:
            reply = receive(self.process.stdout, deadline)
        except BaseException:  # Ctrl-C while waiting: the answer would come to the next query, so the worker goes
            self.stop()
            raise
        if reply is None:  # past the deadline, or the worker died (its output ended first)
            died = None if time.monotonic() >= deadline else exit_status(self.process)
            self.stop()
            if died is None:
                raise QueryTimeout(timeout_message(timeout))
            if died in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS):
                raise QueryOutOfMemory(memory_message(memory))  # killed by the kernel, or an allocation it lost
            raise QueryFailed(f"the query stopped the query worker (exit status {died})")
        kind = reply[0]
        if kind == "ok":
            _, columns, rows, truncated, seconds = reply
            return Result(columns=columns, rows=rows, truncated=truncated, seconds=seconds)
        if kind in ("memory", "broken"):
            self.stop()  # what it holds after an allocation failed is not worth keeping
        if kind == "memory":
            raise QueryOutOfMemory(memory_message(memory))
        if kind == "timeout":
            raise QueryTimeout(reply[1])
        raise QueryFailed(reply[1])

    def stop(self) -> None:
        """Kill the worker now (the next query starts another)."""
        process, self.process, self.ready = self.process, None, False
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        """Let the worker leave on its own (end of input), killing it if it does not at once."""
        process = self.process
        if process is not None and process.poll() is None:
            try:
                process.stdin.close()
                process.wait(timeout=1.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.stop()


def exit_status(process: subprocess.Popen) -> int | None:
    """How a worker whose output ended has ended (None if it has not within a second: it is then killed)."""
    try:
        return process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        return None


# -- the worker's side --------------------------------------------------------------------------------------------------


def serve(path: str) -> None:
    """The worker's loop: open ``path``, say ready, then answer each query until its input ends."""
    channel_in = os.fdopen(os.dup(0), "rb", buffering=0)
    channel_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # nothing else (an engine's message, a stray print) may write into the protocol
        os.dup2(devnull, fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the worker if need be
    resource = no_core_no_files()
    try:
        db = open_database(path)
    except DatabaseError as error:
        send(channel_out, ("database", str(error)))
        return
    idle = address_space()
    send(channel_out, ("ready",))
    while (request := receive(channel_in, None)) is not None:
        _, sql, max_rows, timeout, memory = request
        send(channel_out, answer(db, sql, max_rows, timeout, memory, idle, resource))


def answer(db: Database, sql: str, max_rows: int, timeout: float, memory: int, idle: int, resource) -> tuple:
    """What the worker sends back for one query (a memory failure anywhere is reported as such)."""
    ceiling(resource, idle + memory * (1 << 20) if idle else None)  # without /proc, only the kill bounds it
    try:
        result = execute(db, sql, max_rows=max_rows, timeout=timeout)
        reply = ("ok", result.columns, result.rows, result.truncated, result.seconds)
        pickle.dumps(reply)  # what cannot be sent (memory, an odd value) is found out while still under the ceiling
    except QueryTimeout as error:
        reply = ("timeout", str(error))
    except QueryFailed as error:
        reply = ("memory" if out_of_memory(str(error)) else "failed", str(error))
    except MemoryError:
        reply = ("memory", "")
    except Exception as error:  # the worker's own failure: reported as the query's, and the worker replaced
        reply = ("broken", f"the query worker failed: {type(error).__name__}")
    finally:
        ceiling(resource, None)
    return reply


def out_of_memory(message: str) -> bool:
    """SQLite's "out of memory", DuckDB's "Out of Memory Error", a C++ ``std::bad_alloc`` or Python's MemoryError."""
    lowered = message.lower()
    return any(sign in lowered for sign in ("out of memory", "bad_alloc", "memoryerror"))


def no_core_no_files():
    """Forbid core dumps and growing any file; the ``resource`` module, or None where there is none."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not a Unix: only the kill at the deadline bounds a query
        return None
    for limit in (resource.RLIMIT_CORE, resource.RLIMIT_FSIZE):
        resource.setrlimit(limit, (0, resource.getrlimit(limit)[1] if limit == resource.RLIMIT_CORE else 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    return resource


def ceiling(resource, size: int | None) -> None:
    """Set the address-space ceiling to ``size`` bytes, or back to the hard limit."""
    if resource is None:
        return
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = hard if size is None else (size if hard == resource.RLIM_INFINITY else min(size, hard))
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def address_space() -> int:
    """The bytes of address space this process uses now (``VmSize``); 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


# -- the protocol -------------------------------------------------------------------------------------------------------


def send(stream, message: tuple) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream, deadline: float | None) -> tuple | None:
    """The next message, or None at end of input or once ``deadline`` (``time.monotonic``) has passed."""
    header = read_exactly(stream, HEADER.size, deadline)
    if header is None:
        return None
    body = read_exactly(stream, HEADER.unpack(header)[0], deadline)
    return None if body is None else pickle.loads(body)


def read_exactly(stream, size: int, deadline: float | None) -> bytes | None:
    chunks, missing, fd = [], size, stream.fileno()
    while missing:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)
