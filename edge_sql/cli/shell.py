"""An interactive session, ``edgesql shell``: the model and the schema are loaded once, each line is a question.

:class:`Shell` holds the session (database, model, settings, the previous answer) and turns one line into the text
to show; it knows nothing of terminals, so it is tested without one. :func:`run_loop` reads lines with readline,
keeps the history across sessions and handles Ctrl-C (cancel the question) and Ctrl-D (leave).

A question that refers to the previous answer ("now only for 2023", "how many of them?"; ``steps/followup.py``
decides) is sent with the previous question and its SQL as context, and the shell says so on stderr; a question that
names its own subject is sent alone. ``.followup QUESTION`` and ``.new QUESTION`` force either way; ``.reset``
forgets the previous question.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Callable

from rich.console import Console

from edge_sql.steps.database import Database
from edge_sql.errors import EdgeSQLError, UsageError
from edge_sql.backends import Model
from edge_sql.cli.history import read_history, save_history
from edge_sql.pipeline import Merger
from edge_sql.remedies import Remedies

HELP = """\
Type a question in plain English, or one of:
  .schema             the schema as the model sees it
  .sql QUERY          run QUERY through the guard and the read-only executor, as `edgesql run` does
  .candidates N       sample N candidate queries for each question (1 = greedy)
  .model NAME         switch to another preset, GGUF file or server URL
  .format FORMAT      table, json or csv
  .followup QUESTION  ask QUESTION as a follow-up of the previous question, with it and its SQL as context
  .new QUESTION       ask QUESTION alone, even if it seems to follow up the previous one
  .reset              forget the previous question (the next one is not a follow-up)
  .help               this help
  .quit               leave (Ctrl-D too); Ctrl-C cancels a question"""

#: The most candidates a question may sample (as ``ask --candidates``).
MAX_CANDIDATES = 64


class Shell:
    """One interactive session on one database: ``handle(line)`` returns what to show for that line."""

    def __init__(self, db: Database, model: Model, *, load: Callable[[str], Model] | None = None,
                 candidates: int | None = None, temperature: float | None = None, seed: int = 42,
                 fmt: str = "table", max_rows: int = 100, timeout: float = 10.0, memory: int = 1024,
                 console: Callable[[io.StringIO], Console] | None = None, remedies: Remedies = Remedies(),
                 log: bool = False, log_rows: bool = False, merger_for: Callable[[Model], object] | None = None,
                 max_tokens: int | None = None, note: Callable[[str], None] | None = None):
        from edge_sql.cli.output import FORMATS

        if fmt not in FORMATS:
            raise UsageError(f"{fmt!r} is not one of {', '.join(FORMATS)}")
        self.db, self.model, self.load = db, model, load
        self.candidates, self.temperature, self.seed = candidates, temperature, seed
        self.fmt, self.max_rows, self.timeout, self.memory = fmt, max_rows, timeout, memory
        self.remedies = remedies
        self.max_tokens = max_tokens
        self.merger_for = merger_for  # who settles a split vote for a model (cli/options.chosen_merger)
        self.merger = merger_for(model) if merger_for else Merger()
        self.log, self.log_rows = log, log_rows  # append each answer to the question log (cli/log.py)
        self.console = console or (lambda buffer: Console(file=buffer, highlight=False, soft_wrap=False, width=100))
        self.context: tuple[str, str] | None = None  # the previous question and its SQL
        self.note = note or (lambda text: None)  # what the session says beside the answers (stderr in a terminal)
        self.done = False

    # -- one line -----------------------------------------------------------------------------------------------------

    def handle(self, line: str) -> str:
        """What to show for ``line``: an answer, a command's output, or one line ``error: …``. Never raises an
        :class:`EdgeSQLError`; Ctrl-C (KeyboardInterrupt) passes through to the caller."""
        line = line.strip()
        if not line:
            return ""
        try:
            if line.startswith("."):
                return self.command(line)
            return self.ask(line)
        except EdgeSQLError as error:
            return f"error: {one_line(str(error))}"

    def command(self, line: str) -> str:
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        commands = {".schema": self.schema, ".sql": self.sql, ".candidates": self.set_candidates,
                    ".model": self.set_model, ".format": self.set_format, ".reset": self.reset,
                    ".followup": self.ask_follow_up, ".new": self.ask_new,
                    ".help": lambda _: HELP, ".quit": self.quit, ".exit": self.quit}
        if name not in commands:
            raise UsageError(f"unknown command {name}; .help lists the commands")
        return commands[name](argument)

    # -- questions ----------------------------------------------------------------------------------------------------

    def ask(self, question: str, *, follow_up: bool | None = None) -> str:
        """The answer to ``question``, sent with the previous question and its SQL when it refers to them
        (``follow_up``: None lets ``steps/followup.refers_back`` decide; True or False forces it)."""
        from edge_sql.errors import NoValidCandidate
        from edge_sql.steps.generate import Sampling
        from edge_sql.cli.log import record
        from edge_sql.cli.output import answer_to_dict, print_answer, print_json
        from edge_sql.pipeline import Limits, Setup, ask
        from edge_sql.steps.question import clean_question

        question = clean_question(question)
        context = self.context_for(question, follow_up)
        preset = self.model.preset
        sampling = Sampling(
            candidates=self.candidates or preset.candidates,
            temperature=preset.temperature if self.temperature is None else self.temperature,
            seed=self.seed,
            max_tokens=self.max_tokens,
        )
        limits = Limits(max_rows=self.max_rows, timeout=self.timeout, memory=self.memory)
        try:
            answer = ask(question, Setup(self.db, self.model, sampling, limits, self.remedies, self.merger),
                         context=context)
        except NoValidCandidate as failure:
            if self.log and failure.answer is not None:
                record(self.db.path, failure.answer, error=str(failure), rows=self.log_rows)
            if self.fmt == "json" and failure.answer is not None:
                return self.render(lambda console: print_json(answer_to_dict(failure.answer, error=str(failure))))
            raise
        if self.log:
            record(self.db.path, answer, rows=self.log_rows)
        self.context = (answer.question, answer.sql)
        return self.render(lambda console: print_answer(answer, self.fmt, max_rows=self.max_rows,
                                                        show_candidates=False, console=console))

    def context_for(self, question: str, follow_up: bool | None) -> tuple[str, str] | None:
        """The previous question and its SQL when ``question`` follows it up, said on :attr:`note`; else None."""
        from edge_sql.steps.followup import refers_back

        if self.context is None or follow_up is False:
            return None
        reason = None if follow_up else refers_back(question)
        if not follow_up and reason is None:
            return None
        self.note(f"(follow-up of the previous question: {reason})" if reason else
                  "(follow-up of the previous question)")
        return self.context

    # -- dot-commands -------------------------------------------------------------------------------------------------

    def ask_follow_up(self, question: str) -> str:
        if not question:
            raise UsageError(".followup needs a question, e.g. .followup and in 2023?")
        if self.context is None:
            raise UsageError("there is no previous question to follow up; ask one first")
        return self.ask(question, follow_up=True)

    def ask_new(self, question: str) -> str:
        if not question:
            raise UsageError(".new needs a question, e.g. .new How many orders are there?")
        return self.ask(question, follow_up=False)

    def schema(self, _: str) -> str:
        from edge_sql.steps.schema import render_schema

        return render_schema(self.db.schema, self.model.preset.schema_style)

    def sql(self, query: str) -> str:
        """Run a query exactly as ``edgesql run`` does: the guard, then the read-only executor."""
        from edge_sql.steps.execute import execute
        from edge_sql.steps.guard import check
        from edge_sql.cli.output import print_result

        if not query:
            raise UsageError(".sql needs a query, e.g. .sql SELECT count(*) FROM customers")
        checked = check(query, self.db.dialect).sql(dialect=self.db.dialect)
        result = execute(self.db, checked, max_rows=self.max_rows, timeout=self.timeout, memory=self.memory)
        return self.render(lambda console: print_result(result, checked, self.fmt, max_rows=self.max_rows,
                                                        console=console))

    def set_candidates(self, argument: str) -> str:
        try:
            count = int(argument)
        except ValueError:
            count = 0
        if not 1 <= count <= MAX_CANDIDATES:
            raise UsageError(f".candidates takes a whole number from 1 to {MAX_CANDIDATES}, not {argument!r}")
        self.candidates = count
        return f"{count} candidate{'s' if count > 1 else ''} per question"

    def set_model(self, name: str) -> str:
        if not name:
            return f"model: {self.model.name}"
        if self.load is None:
            raise UsageError("this session cannot switch models")
        self.model = self.load(name)
        if self.merger_for is not None:
            self.merger = self.merger_for(self.model)
        return f"model: {self.model.name}"

    def set_format(self, fmt: str) -> str:
        from edge_sql.cli.output import FORMATS

        if fmt not in FORMATS:
            raise UsageError(f".format takes one of {', '.join(FORMATS)}, not {fmt!r}")
        self.fmt = fmt
        return f"format: {fmt}"

    def reset(self, _: str) -> str:
        self.context = None
        return "the next question starts afresh"

    def quit(self, _: str) -> str:
        self.done = True
        return ""

    def render(self, show: Callable[[Console], None]) -> str:
        """What ``show`` prints, to a console or to stdout (json and csv), as text."""
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            show(self.console(buffer))
        return buffer.getvalue().rstrip("\n")


def one_line(text: str) -> str:
    return " ".join(text.split())


def run_loop(shell: Shell, *, write: Callable[[str], None], prompt: str = "edgesql> ",
             history: Path | None = None) -> None:
    """Read lines until ``.quit`` or end of input; Ctrl-C cancels the line or question under way, not the session."""
    readline = start_history(history)
    first = readline.get_current_history_length() if readline is not None else 0
    try:
        while not shell.done:
            line = None
            try:
                line = input(prompt)
                output = shell.handle(line)
                if output:
                    write(output + "\n")
            except EOFError:
                write("\n" if prompt else "")
                break
            except KeyboardInterrupt:  # at the prompt: drop the line; during a question: drop the question
                write("\n" if line is None else "cancelled\n")
    finally:
        if readline is not None and history is not None:
            typed = [readline.get_history_item(index)
                     for index in range(first + 1, readline.get_current_history_length() + 1)]
            try:
                save_history(history, [line for line in typed if line])
            except OSError:
                pass  # a history that cannot be written is not worth failing the session for


def start_history(history: Path | None):
    """readline with the previous sessions' lines, or None where readline is missing."""
    try:
        import readline
    except ImportError:  # pragma: no cover - Windows without pyreadline
        return None
    readline.clear_history()
    for line in read_history(history) if history is not None else ():
        readline.add_history(line)
    return readline
