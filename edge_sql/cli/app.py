"""The ``edgesql`` command: a thin shell over the library. Each command group lives in its own module; this one
puts them together and maps whatever escapes a command to one line on stderr and an exit code."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from edge_sql import __version__
from edge_sql.cli import ask as answering
from edge_sql.cli.common import debugging, reports_errors, silence_stdout, stdout_closed
from edge_sql.cli.config import config_app
from edge_sql.cli.convert import convert_command
from edge_sql.cli.eval import eval_command
from edge_sql.cli.models import models_app
from edge_sql.cli.train import train_command
from edge_sql.errors import BROKEN_PIPE, INTERRUPTED, USAGE

app = typer.Typer(
    name="edgesql",
    help="Ask a SQLite or DuckDB database questions in plain English, answered offline by a small local model.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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


for command in (answering.ask, answering.schema, answering.run, answering.shell):
    app.command()(reports_errors(command))
app.command("eval")(reports_errors(eval_command))
app.command("convert")(reports_errors(convert_command))
app.command("train")(reports_errors(train_command))
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")


def main() -> None:
    """The console script: runs the app and maps what escapes a command to one line and an exit code."""
    from edge_sql.backends.cores import mark

    mark()  # the cores other processes keep busy are measured from here: the model's threads need no pause of their own
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
    if code == BROKEN_PIPE or stdout_closed():
        silence_stdout()
        code = BROKEN_PIPE
    sys.exit(code)

