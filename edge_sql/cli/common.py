"""What every command shares: the consoles (data to stdout, talk to stderr), the option types, and the one place
that turns a library error into one line on stderr and its exit code (``errors.EXIT_CODES``)."""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from edge_sql.config import DEFAULT_WORDS
from edge_sql.errors import BROKEN_PIPE, INTERRUPTED, EdgeSQLError, UsageError
from edge_sql.preset import DEFAULT_PRESET



DbOpt = Annotated[Path, typer.Option("--db", help="The SQLite or DuckDB file to query (opened read-only).",
                                     show_default=False)]
MODEL_HELP = "A preset name, the path of a GGUF file, or the URL of an OpenAI-compatible server (http://host:port/v1)."
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", show_default=False, help=f"{MODEL_HELP} [default: "
                     f"EDGESQL_MODEL, else the config file's, else the best installed preset, else {DEFAULT_PRESET}]")]
EvalModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", show_default=False, help=f"{MODEL_HELP} "
                         f"[default: ask's: EDGESQL_MODEL, else the best installed preset, else {DEFAULT_PRESET} "
                         f"(eval reads no config file)]")]
ModelTimeoutOpt = Annotated[float, typer.Option("--model-timeout", min=0.1, help="Seconds a model server (--model URL) "
                            "may take to answer one candidate, queueing included.")]
SettingModelTimeoutOpt = Annotated[Optional[float], typer.Option("--model-timeout", min=0.1, show_default=False,
                                   help="Seconds a model server (--model URL) may take to answer one candidate, "
                                   "queueing included. [default: 300]")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Output: table, json, csv or markdown.")]
MaxRowsOpt = Annotated[int, typer.Option("--max-rows", min=1, help="Show at most this many rows.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.01, help="Seconds a query may run before it is stopped.")]
SettingTimeoutOpt = Annotated[Optional[float], typer.Option("--timeout", min=0.01, show_default=False,
                              help="Seconds a query may run before it is stopped. [default: 10]")]
MemoryOpt = Annotated[int, typer.Option("--memory", min=16, help="MiB of memory a query may use before it is "
                     "stopped (it runs in a worker process that the operating system holds to this).")]
SettingMemoryOpt = Annotated[Optional[int], typer.Option("--memory", min=16, show_default=False,
                             help="MiB of memory a query may use before it is stopped (it runs in a worker process "
                             "that the operating system holds to this). [default: 1024]")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the output to this file instead "
                      "of stdout (no colour).", show_default=False)]
CandidatesOpt = Annotated[Optional[int], typer.Option("--candidates", "-n", min=1, max=64, help="How many candidate "
                          "queries to sample and vote on (1 = greedy). [default: preset's]", show_default=False)]
TemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", min=0.0, max=2.0, show_default=False,
                           help="Sampling temperature for candidates after the first. [default: preset's]")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same answer.")]
LogOpt = Annotated[bool, typer.Option("--log", help="Append the question, its SQL and its vote to the local "
                  "question log (EDGESQL_LOG, else ~/.local/state/edgesql/log.jsonl).")]
LogRowsOpt = Annotated[bool, typer.Option("--log-rows", help="With --log, also log the result rows.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads the model runs on; a "
                       f"number pins them. [default: {DEFAULT_WORDS['threads']}]", show_default=False)]


class Output(Console):
    """stdout for data. A closed pipe is reported like any other (rich's own handling exits with 1)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def stdout_console() -> Console:
    return Output(highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def debugging() -> bool:
    return os.environ.get("EDGESQL_DEBUG", "") not in ("", "0")


def fail(message: str, code: int) -> None:
    sys.stderr.write(f"edgesql: {message}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def reports_errors(command):
    """Every user error ends a command as one line on stderr and its exit code; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EdgeSQLError as error:
            if debugging():
                raise
            fail(str(error), error.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", INTERRUPTED)
        except BrokenPipeError:  # the reader of stdout went away (`edgesql ask … | head -1`): not an error to report
            silence_stdout()
            raise typer.Exit(BROKEN_PIPE) from None

    return wrapper


def check_format(fmt: str) -> str:
    from edge_sql.cli.output import FORMATS

    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format")
    return fmt


def configured(candidates, temperature, timeout, memory, threads) -> tuple:
    """The flags, with what the config file sets for those not given (see ``edgesql config show``); the model is
    ``models.chosen_model``'s to choose."""
    from edge_sql.config import effective_settings

    settings = effective_settings(candidates=candidates, temperature=temperature, timeout=timeout, memory=memory,
                                  threads=threads)
    return tuple(settings[name].value for name in ("candidates", "temperature", "timeout", "memory", "threads"))


def from_config(**flags) -> tuple:
    """Each flag's value, else the config file's, else the default (``edgesql config show``), in the order given."""
    from edge_sql.config import effective_settings

    settings = effective_settings(**flags)
    return tuple(settings[name].value for name in flags)


@contextmanager
def writing_to(path: Path | None):
    """stdout goes to ``path`` inside this block (when given): ``--output FILE``."""
    if path is None:
        yield
        return
    try:
        handle = open(path, "w", encoding="utf-8")
    except OSError as problem:
        raise UsageError(f"cannot write {path}: {problem.strerror}") from None
    with handle, redirect_stdout(handle):
        yield


@contextmanager
def status(message: str):
    """A spinner on stderr while something slow runs, only when stderr is a terminal."""
    console = stderr_console()
    with console.status(message) if console.is_terminal else nullcontext():
        yield


def human_size(size: int) -> str:
    """Bytes as people read them.

    >>> human_size(98_362_432), human_size(1_120_000_000), human_size(0)
    ('98 MB', '1.1 GB', '-')
    """
    if size <= 0:
        return "-"
    for scale, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if size >= scale:
            return f"{size / scale:.1f} {unit}" if size < 10 * scale else f"{size / scale:.0f} {unit}"
    return f"{size} B"


def stdout_closed() -> bool:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    return False


def silence_stdout() -> None:
    """After the reader of stdout went away, point stdout at /dev/null so Python's exit flush stays quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
