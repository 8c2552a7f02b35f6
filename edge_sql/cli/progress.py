"""What ``ask`` and ``shell`` say on a terminal while a step is slow, and the seconds before a question starts.

A step the library marks (``edge_sql.progress``) is named on stderr only once it has run :data:`AFTER` seconds, and
only on a terminal: the first question on a large schema says why it waits; a quick one, or output to a pipe, says
nothing new.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import replace
from typing import Callable

from edge_sql.cli.common import stderr_console
from edge_sql.progress import Step, listening

#: Seconds a step runs before it is named.
AFTER = 1.5
#: Makes the timer that names a slow step: ``TIMER(seconds, function)``, started, and cancelled if the step ends first.
TIMER = threading.Timer


def describe(step: Step, database: str) -> str:
    """What a slow step is doing, in words.

    >>> describe(Step("schema", 2175), "sakila.sqlite")
    'Reading the schema of sakila.sqlite into the model (2,175 tokens, first time only)…'
    """
    if step.kind == "schema":
        return f"Reading the schema of {database} into the model ({step.tokens:,} tokens, first time only)…"
    return f"{step.kind.capitalize()}…"


class SlowSteps:
    """A progress listener that says what a step is doing once it has run ``after`` seconds (``say``, from the timer's
    thread), and calls ``done`` when a step it named ends; a step that ends sooner is never named."""

    def __init__(self, say: Callable[[str], None], database: str, *, after: float = AFTER,
                 done: Callable[[], None] | None = None):
        self.say, self.database, self.after, self.done = say, database, after, done
        self.lock = threading.Lock()
        self.current: Step | None = None
        self.shown = False
        self.timer = None

    def started(self, step: Step) -> None:
        with self.lock:
            self.current, self.shown = step, False
        self.timer = TIMER(self.after, self.show, args=(step,))
        self.timer.daemon = True
        self.timer.start()

    def show(self, step: Step) -> None:
        with self.lock:
            if self.current is not step:  # it ended while the timer fired
                return
            self.shown = True
            self.say(describe(step, self.database))

    def finished(self, step: Step) -> None:
        if self.timer is not None:
            self.timer.cancel()
        with self.lock:
            shown, self.current, self.shown = self.shown, None, False
        if shown and self.done is not None:
            self.done()


@contextmanager
def working(message: str, database: str):
    """A spinner saying ``message`` on stderr while the block runs, which names any step slower than :data:`AFTER`
    seconds while it runs; nothing at all when stderr is not a terminal."""
    console = stderr_console()
    if not console.is_terminal:
        yield
        return
    with console.status(message) as spinner:
        def say(text: str) -> None:  # one line, cut short on a narrow terminal: a spinner must not wrap
            spinner.update(one_line(text, console.width - 3))

        with listening(SlowSteps(say, database, done=lambda: spinner.update(message))):
            yield


@contextmanager
def noting(database: str):
    """Inside this block, a step slower than :data:`AFTER` seconds is named in a line on stderr (the shell has no
    spinner), only when stderr is a terminal."""
    console = stderr_console()
    if not console.is_terminal:
        yield
        return
    with listening(SlowSteps(lambda text: console.print(text, style="dim", markup=False, highlight=False),
                                 database)):
        yield


def one_line(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, an ellipsis marking the cut.

    >>> one_line("Reading the schema of sakila.sqlite into the model", 30)
    'Reading the schema of sakila.…'
    """
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def since_start() -> float | None:
    """Seconds since this process started (Linux: ``/proc``), to the hundredth; None where that cannot be read."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            started = int(handle.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime, in clock ticks
        with open("/proc/uptime", "rb") as handle:
            uptime = float(handle.read().split()[0])
        return round(max(0.0, uptime - started / os.sysconf("SC_CLK_TCK")), 2)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def with_startup(answer, startup: dict[str, float | None]):
    """``answer`` with the seconds before its question first in its timings: ``start`` (from the process start to
    loading the model: imports, options, the database) and ``load`` (the model), those that were measured."""
    if answer is None:
        return None
    return replace(answer, timings={**{k: v for k, v in startup.items() if v is not None}, **answer.timings})
