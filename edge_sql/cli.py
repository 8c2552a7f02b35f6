"""The ``edgesql`` command: a thin shell over the library. Each command opens what it needs, makes one library call,
and turns library errors into one line on stderr and a documented exit code (see ``errors.EXIT_CODES``)."""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from edge_sql import __version__
from edge_sql.cli_eval import eval_command
from edge_sql.cli_convert import convert_command
from edge_sql.cli_models import chosen_model, models_app
from edge_sql.cli_remedies import GrammarOpt, HintsOpt, MergeOpt, PruneOpt, RepairOpt, RepairRoundsOpt, chosen_remedies
from edge_sql.errors import BROKEN_PIPE, INTERRUPTED, USAGE, EdgeSQLError, NoValidCandidate, UsageError

app = typer.Typer(
    name="edgesql",
    help="Ask a SQLite or DuckDB database questions in plain English, answered offline by a small local model.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DbOpt = Annotated[Path, typer.Option("--db", help="The SQLite or DuckDB file to query (opened read-only).",
                                     show_default=False)]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="A preset name or the path of a GGUF file. "
                     "[default: EDGESQL_MODEL, else the best installed preset, else smollm2-135m]", show_default=False)]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Output: table, json, csv or markdown.")]
MaxRowsOpt = Annotated[int, typer.Option("--max-rows", min=1, help="Show at most this many rows.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.01, help="Seconds a query may run before it is stopped.")]
SettingTimeoutOpt = Annotated[Optional[float], typer.Option("--timeout", min=0.01, show_default=False,
                              help="Seconds a query may run before it is stopped. [default: 10]")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the output to this file instead "
                      "of stdout (no colour).", show_default=False)]
CandidatesOpt = Annotated[Optional[int], typer.Option("--candidates", "-n", min=1, max=64, help="How many candidate "
                          "queries to sample and vote on (1 = greedy). [default: preset's]", show_default=False)]
TemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", min=0.0, max=2.0, show_default=False,
                           help="Sampling temperature for candidates after the first. [default: preset's]")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same answer.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads the model runs on. "
                       "[default: the physical cores this process may use]", show_default=False)]


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
    from edge_sql.output import FORMATS

    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format")
    return fmt


def configured(model, candidates, temperature, timeout, threads) -> tuple:
    """The flags, with what the config file sets for those not given (see ``edgesql config show``)."""
    from edge_sql.config import effective_settings

    settings = effective_settings(model=model, candidates=candidates, temperature=temperature, timeout=timeout,
                                  threads=threads)
    if settings["model"].source == "EDGESQL_MODEL":  # chosen_model() reads it, and says so
        settings["model"] = settings["model"].__class__("model", None, "EDGESQL_MODEL")
    return tuple(settings[name].value for name in ("model", "candidates", "temperature", "timeout", "threads"))


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


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"edgesql {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", callback=version_callback, is_eager=True,
                                                    help="Show the version and exit.")] = None,
) -> None:
    """Ask a SQLite or DuckDB database questions in plain English, answered offline by a small local model."""


@app.command()
@reports_errors
def ask(
    question: Annotated[str, typer.Argument(help="The question, in plain English.", show_default=False)],
    db: DbOpt,
    model: ModelOpt = None,
    candidates: CandidatesOpt = None,
    temperature: TemperatureOpt = None,
    seed: SeedOpt = 42,
    fmt: FormatOpt = "table",
    max_rows: MaxRowsOpt = 100,
    timeout: SettingTimeoutOpt = None,
    show_candidates: Annotated[bool, typer.Option("--show-candidates", help="Print every candidate and its verdict.")] = False,
    early_stop: Annotated[bool, typer.Option("--early-stop", help="Stop sampling once a strict majority of the "
                                             "candidates agree on a result.")] = False,
    threads: ThreadsOpt = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also print the chosen SQL pretty-printed, with what "
                                          "each clause does (read from the query, no model call).")] = False,
    output: OutputOpt = None,
    log: Annotated[bool, typer.Option("--log", help="Append the question, its SQL and its vote to the local "
                                      "question log (EDGESQL_LOG, else ~/.local/state/edgesql/log.jsonl).")] = False,
    log_rows: Annotated[bool, typer.Option("--log-rows", help="With --log, also log the result rows.")] = False,
    grammar: GrammarOpt = None,
    repair: RepairOpt = None,
    repair_rounds: RepairRoundsOpt = None,
    merge: MergeOpt = None,
    prune: PruneOpt = None,
    hints: HintsOpt = None,
) -> None:
    """Answer QUESTION about the database: generate candidate SQL, check it, run it read-only, vote by result."""
    from edge_sql.database import open_database
    from edge_sql.generate import Sampling
    from edge_sql.model import load_model
    from edge_sql.output import answer_to_dict, print_answer, print_ballot, print_json
    from edge_sql.pipeline import Limits, ask as ask_question, clean_question

    check_format(fmt)
    remedies = chosen_remedies(grammar, repair, repair_rounds, merge, prune, hints)
    model, candidates, temperature, timeout, threads = configured(model, candidates, temperature, timeout, threads)
    question = clean_question(question)
    with open_database(db) as database:
        model = chosen_model(model)
        with status("Loading the model…"):
            loaded = load_model(model, threads=threads)
        sampling = Sampling(
            candidates=candidates or loaded.preset.candidates,
            temperature=loaded.preset.temperature if temperature is None else temperature,
            seed=seed,
            early_stop=early_stop,
        )
        console = stdout_console()
        try:
            with status(f"Generating {sampling.candidates} candidate{'s' if sampling.candidates > 1 else ''}…"):
                answer = ask_question(question, database, loaded, sampling, Limits(max_rows=max_rows, timeout=timeout),
                                      remedies=remedies)
        except NoValidCandidate as failure:
            if failure.answer is not None:
                say_if_cut(failure.answer)
                if log:
                    from edge_sql.log import record

                    record(db, failure.answer, error=str(failure), rows=log_rows)
                with writing_to(output):
                    if fmt == "json":
                        print_json(answer_to_dict(failure.answer, error=str(failure)))
                    elif show_candidates and fmt == "table":
                        print_ballot(stderr_console(), failure.answer)
            raise
        say_if_cut(answer)
        if log:
            from edge_sql.log import record

            record(db, answer, rows=log_rows)
        explanation = None
        if explain:
            from edge_sql.explain import explain as explain_sql

            explanation = explain_sql(answer.sql, answer.dialect)
        with writing_to(output):
            if explanation is not None and fmt == "json":
                print_json({**answer_to_dict(answer), "explanation": explanation.to_dict()})
                return
            print_answer(answer, fmt, max_rows=max_rows, show_candidates=show_candidates, console=console)
            if explanation is not None:  # csv keeps stdout to its rows: the explanation goes to stderr
                from edge_sql.output import print_explanation

                print_explanation(console if fmt == "table" else stderr_console(), explanation)


def say_if_cut(answer) -> None:
    """One line on stderr when the model was shown less of the schema than it asked for, only to fit its context."""
    if answer.view is not None and answer.view.cut:
        stderr_console().print(f"edgesql: the schema does not fit {answer.model}'s context whole: {answer.view.note}",
                               style="dim", highlight=False, soft_wrap=True)


@app.command()
@reports_errors
def schema(
    db: DbOpt,
    model: ModelOpt = None,
    question: Annotated[Optional[str], typer.Option("--question", "-q", show_default=False, help="Show the schema "
                        "the model sees for this question: with --hints, and pruned with --prune always.")] = None,
    prune: PruneOpt = None,
    hints: HintsOpt = None,
) -> None:
    """Print the database's schema exactly as the model sees it in the prompt."""
    from edge_sql.database import open_database
    from edge_sql.preset import GENERIC, get_preset
    from edge_sql.schema import render_schema

    with open_database(db) as database:
        preset = get_preset(chosen_model(model)) or GENERIC
        shown = database.schema
        if question is not None:
            from edge_sql.focus import focus_schema, pruning_note
            from edge_sql.pipeline import clean_question

            remedies = chosen_remedies(None, None, None, None, prune, hints)
            question = clean_question(question)
            shown = focus_schema(database, question, prune=remedies.prune, hints=remedies.hints)
            sys.stderr.write(pruning_note(database.schema, shown, remedies.prune) + "\n")
        sys.stdout.write(render_schema(shown, preset.schema_style) + "\n")


@app.command()
@reports_errors
def run(
    sql: Annotated[str, typer.Argument(help="The SQL query to run.", show_default=False)],
    db: DbOpt,
    fmt: FormatOpt = "table",
    max_rows: MaxRowsOpt = 100,
    timeout: TimeoutOpt = 10.0,
    output: OutputOpt = None,
) -> None:
    """Run one SQL query through the same guard and read-only executor that ask uses."""
    from edge_sql.database import open_database
    from edge_sql.execute import execute
    from edge_sql.guard import check
    from edge_sql.output import print_result

    check_format(fmt)
    with open_database(db) as database:
        checked = check(sql, database.dialect).sql(dialect=database.dialect)
        result = execute(database, checked, max_rows=max_rows, timeout=timeout)
        with writing_to(output):
            print_result(result, checked, fmt, max_rows=max_rows, console=stdout_console())


@app.command()
@reports_errors
def shell(
    db: DbOpt,
    model: ModelOpt = None,
    candidates: CandidatesOpt = None,
    temperature: TemperatureOpt = None,
    seed: SeedOpt = 42,
    fmt: FormatOpt = "table",
    max_rows: MaxRowsOpt = 100,
    timeout: SettingTimeoutOpt = None,
    threads: ThreadsOpt = None,
    grammar: GrammarOpt = None,
    repair: RepairOpt = None,
    repair_rounds: RepairRoundsOpt = None,
    merge: MergeOpt = None,
    prune: PruneOpt = None,
    hints: HintsOpt = None,
) -> None:
    """An interactive session: load the model and the schema once, then answer one question a line (.help)."""
    import shutil

    from edge_sql.database import open_database
    from edge_sql.model import load_model
    from edge_sql.shell import Shell, history_path, run_loop

    check_format(fmt)
    remedies = chosen_remedies(grammar, repair, repair_rounds, merge, prune, hints)
    model, candidates, temperature, timeout, threads = configured(model, candidates, temperature, timeout, threads)
    interactive = sys.stdin.isatty()
    with open_database(db) as database:
        model = chosen_model(model)
        with status("Loading the model…"):
            loaded = load_model(model, threads=threads)

        def load(name: str):
            with status(f"Loading {name}…"):
                return load_model(name, threads=threads)

        terminal = sys.stdout.isatty()
        console = (lambda buffer: Output(file=buffer, highlight=False, soft_wrap=False, force_terminal=terminal,
                                         width=shutil.get_terminal_size().columns))
        session = Shell(database, loaded, load=load, candidates=candidates, temperature=temperature, seed=seed,
                        fmt=fmt, max_rows=max_rows, timeout=timeout, console=console, remedies=remedies)
        if interactive:
            stderr_console().print(f"edgesql shell on {database.path.name} with {loaded.name}; .help for help, "
                                   ".quit or Ctrl-D to leave")

        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        run_loop(session, write=write, prompt="edgesql> " if interactive else "", history=history_path())


app.command("eval")(reports_errors(eval_command))
app.command("convert")(reports_errors(convert_command))

config_app = typer.Typer(help="The config file: defaults for ask and shell that flags override.",
                         no_args_is_help=True, rich_markup_mode=None)


@config_app.command("show")
@reports_errors
def config_show() -> None:
    """Print each setting's effective value and where it comes from (flag, environment, config file, default)."""
    from edge_sql.config import DEFAULT_WORDS, config_path, effective_settings

    path = config_path()
    sys.stdout.write(f"config file: {path}{'' if path.exists() else ' (none)'}\n")
    for setting in effective_settings(model=None, candidates=None, temperature=None, timeout=None, threads=None,
                                      grammar=None, repair=None, merge=None, prune=None, hints=None).values():
        value = DEFAULT_WORDS.get(setting.name) if setting.value is None else setting.value
        sys.stdout.write(f"{setting.name} = {value}  ({setting.source})\n")


app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")


def main() -> None:
    """The console script: runs the app and maps what escapes a command to one line and an exit code."""
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        sys.stderr.write("edgesql: interrupted\n")
        code = INTERRUPTED
    except BrokenPipeError:
        code = BROKEN_PIPE
    except Exception as error:
        if debugging():
            raise
        message = getattr(error, "format_message", None)
        if type(error).__name__ == "NoArgsIsHelpError":  # plain `edgesql`: the help, as a usage error
            sys.stdout.write(message() + "\n")
            code = USAGE
        elif message is None:
            if type(error).__name__ == "Abort":
                sys.stderr.write("edgesql: interrupted\n")
                code = INTERRUPTED
            else:
                sys.stderr.write(f"edgesql: internal error: {type(error).__name__}: {error} "
                                 "(run with EDGESQL_DEBUG=1 for details)\n")
                code = 1
        else:
            sys.stderr.write(f"edgesql: {message()} (see 'edgesql --help')\n")
            code = getattr(error, "exit_code", USAGE)
    code = code if isinstance(code, int) else 0
    if code == BROKEN_PIPE or _stdout_closed():
        silence_stdout()
        code = BROKEN_PIPE
    sys.exit(code)


def _stdout_closed() -> bool:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    return False


def silence_stdout() -> None:
    """After the reader of stdout went away, point stdout at /dev/null so Python's exit flush stays quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
