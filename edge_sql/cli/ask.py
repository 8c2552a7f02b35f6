"""The commands that answer: ``ask`` (a question), ``run`` (one SQL query through the guard), ``schema`` (what the
model sees) and ``shell`` (one question a line). Each opens what it needs and makes one library call."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Optional

import typer

from edge_sql.cli.common import (CandidatesOpt, DbOpt, FormatOpt, LogOpt, LogRowsOpt, MaxRowsOpt, MemoryOpt, ModelOpt,
                                 Output, OutputOpt, SeedOpt, SettingMemoryOpt, SettingModelTimeoutOpt, SettingTimeoutOpt,
                                 TemperatureOpt, ThreadsOpt, TimeoutOpt, check_format, configured, from_config, status,
                                 stderr_console, stdout_console, writing_to)
from edge_sql.cli.models import chosen_model
from edge_sql.cli.options import (ConstrainOpt, GrammarOpt, HintsOpt, MaxTokensOpt, MergeModelOpt, MergeOpt, PruneOpt,
                                  RepairOpt, RepairRoundsOpt, chosen_merger, chosen_remedies)
from edge_sql.errors import NoValidCandidate, Unsure


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
    memory: SettingMemoryOpt = None,
    show_candidates: Annotated[bool, typer.Option("--show-candidates", help="Print every candidate and its verdict.")] = False,
    early_stop: Annotated[bool, typer.Option("--early-stop", help="Stop sampling once the vote is decided: one "
                                             "result leads by more votes than the candidates still running could "
                                             "give another (they cast no vote).")] = False,
    threads: ThreadsOpt = None,
    model_timeout: SettingModelTimeoutOpt = None,
    explain: Annotated[bool, typer.Option("--explain", help="Also print the chosen SQL pretty-printed, with what "
                                          "each clause does (read from the query, no model call).")] = False,
    output: OutputOpt = None,
    log: LogOpt = False,
    log_rows: LogRowsOpt = False,
    constrain: ConstrainOpt = None,
    grammar: GrammarOpt = None,
    repair: RepairOpt = None,
    repair_rounds: RepairRoundsOpt = None,
    merge: MergeOpt = None,
    merge_model: MergeModelOpt = None,
    prune: PruneOpt = None,
    hints: HintsOpt = None,
    max_tokens: MaxTokensOpt = None,
    min_confidence: Annotated[Optional[float], typer.Option(
        "--min-confidence", min=0.0, max=1.0, show_default=False,
        help="Decline to answer (exit 7, one line saying why) when edgesql's confidence in the answer is below "
             "this, 0-1 (e.g. 0.8); --show-candidates or --format json still shows the best guess. [default: 0, "
             "or the config file's min_confidence]")] = None,
) -> None:
    """Answer QUESTION about the database: generate candidate SQL, check it, run it read-only, vote by result."""
    from edge_sql.steps.database import open_database
    from edge_sql.steps.sandbox import isolate
    from edge_sql.steps.generate import Sampling
    from edge_sql.cli.output import answer_to_dict, print_answer, print_ballot, print_json
    from edge_sql.pipeline import Limits, Setup, ask as ask_question
    from edge_sql.steps.question import clean_question
    from edge_sql.cli.progress import since_start, with_startup, working

    check_format(fmt)
    chosen_remedies(grammar, repair, repair_rounds, merge, prune, hints)  # bad flags fail before the model loads
    candidates, temperature, timeout, memory, threads = configured(candidates, temperature, timeout, memory, threads)
    model_timeout, max_tokens, merge_model, min_confidence = from_config(
        model_timeout=model_timeout, max_tokens=max_tokens, merge_model=merge_model, min_confidence=min_confidence)
    question = clean_question(question)
    with isolate(open_database(db)) as database:
        startup, clock = {"start": since_start()}, time.perf_counter()
        loaded = load_chosen(model, threads, model_timeout)
        startup["load"] = round(time.perf_counter() - clock, 4)
        remedies = chosen_remedies(grammar, repair, repair_rounds, merge, prune, hints, preset=loaded.preset,
                                   constrain=constrain)
        merger = chosen_merger(remedies, loaded, merge_model, threads=threads, timeout=model_timeout)
        sampling = Sampling(
            candidates=candidates or loaded.preset.candidates,
            temperature=loaded.preset.temperature if temperature is None else temperature,
            seed=seed,
            max_tokens=max_tokens,
            early_stop=early_stop,
        )
        console = stdout_console()
        try:
            with working(f"Generating {sampling.candidates} candidate{'s' if sampling.candidates > 1 else ''}…",
                         database.path.name):
                limits = Limits(max_rows=max_rows, timeout=timeout, memory=memory)
                answer = with_startup(ask_question(question, Setup(database, loaded, sampling, limits, remedies,
                                                                   merger)), startup)
        except NoValidCandidate as failure:
            failure.answer = with_startup(failure.answer, startup)
            if failure.answer is not None:
                say_if_cut(failure.answer)
                if log:
                    from edge_sql.cli.log import record

                    record(db, failure.answer, error=str(failure), rows=log_rows)
                with writing_to(output):
                    if fmt == "json":
                        print_json(answer_to_dict(failure.answer, error=str(failure)))
                    elif show_candidates and fmt == "table":
                        print_ballot(stderr_console(), failure.answer)
            raise
        say_if_cut(answer)
        if log:
            from edge_sql.cli.log import record

            record(db, answer, rows=log_rows)
        if answer.confidence is not None and answer.confidence < min_confidence:
            declined = Unsure(answer.confidence, min_confidence, answer)
            with writing_to(output):
                if fmt == "json":
                    print_json(answer_to_dict(answer, error=str(declined)))
                elif show_candidates:
                    print_answer(answer, fmt, max_rows=max_rows, show_candidates=fmt == "table", console=console)
            raise declined
        explanation = None
        if explain:
            from edge_sql.steps.explain import explain as explain_sql

            explanation = explain_sql(answer.sql, answer.dialect)
        with writing_to(output):
            if explanation is not None and fmt == "json":
                print_json({**answer_to_dict(answer), "explanation": explanation.to_dict()})
                return
            print_answer(answer, fmt, max_rows=max_rows, show_candidates=show_candidates, console=console)
            if explanation is not None:  # csv keeps stdout to its rows: the explanation goes to stderr
                from edge_sql.cli.output import print_explanation

                print_explanation(console if fmt == "table" else stderr_console(), explanation)


def load_chosen(model: str | None, threads: int | None, model_timeout: float | None = None):
    """The model that --model, EDGESQL_MODEL, the config file or the installed presets choose (saying which),
    loaded."""
    from edge_sql.backends import load_model

    name = chosen_model(model, threads=threads)
    with status("Loading the model…"):
        return load_model(name, threads=threads, timeout=model_timeout)


def say_if_cut(answer) -> None:
    """One short line on stderr when the model was shown less of the schema only to fit its context (how much, not
    which: ``--show-candidates`` shows the schema it saw, ``edgesql schema --question`` names what a pruning leaves
    out)."""
    if answer.view is not None and answer.view.cut:
        stderr_console().print(f"edgesql: {answer.view.note} (--show-candidates shows the schema it saw)",
                               style="dim", highlight=False, soft_wrap=True)


def schema(
    db: DbOpt,
    model: ModelOpt = None,
    question: Annotated[Optional[str], typer.Option("--question", "-q", show_default=False, help="Show the schema "
                        "the model sees for this question, pruned with --prune always, and the stored values --hints shows after "
                        "the question.")] = None,
    prune: PruneOpt = None,
    hints: HintsOpt = None,
) -> None:
    """Print the database's schema exactly as the model sees it in the prompt."""
    from edge_sql.steps.database import open_database
    from edge_sql.preset import GENERIC, get_preset
    from edge_sql.steps.schema import render_schema
    from edge_sql.weights import choose_model

    with open_database(db) as database:
        name = choose_model(model, config=True).model  # ask's model, unsaid: schema only renders as its preset says
        if name.lower().startswith(("http://", "https://")):  # a server: the preset it is asked with
            from edge_sql.backends import load_model

            preset = load_model(name).preset
        else:
            preset = get_preset(name) or GENERIC
        shown, values = database.schema, ""
        if question is not None:
            from edge_sql.steps.focus import focus_schema, pruning_note
            from edge_sql.steps.question import clean_question

            remedies = chosen_remedies(None, None, None, None, prune, hints, preset=preset)
            question = clean_question(question)
            shown = focus_schema(database, question, prune=remedies.prune)
            if remedies.hints:
                from edge_sql.steps.hints import render_hints, value_hints

                values = render_hints(value_hints(shown, database, question), shown)
            sys.stderr.write(pruning_note(database.schema, shown, remedies.prune) + "\n")
        sys.stdout.write(render_schema(shown, preset.schema_style) + "\n" + (values + "\n" if values else ""))


def run(
    sql: Annotated[str, typer.Argument(help="The SQL query to run.", show_default=False)],
    db: DbOpt,
    fmt: FormatOpt = "table",
    max_rows: MaxRowsOpt = 100,
    timeout: TimeoutOpt = 10.0,
    memory: MemoryOpt = 1024,
    output: OutputOpt = None,
) -> None:
    """Run one SQL query through the same guard and read-only executor that ask uses."""
    from edge_sql.steps.database import open_database
    from edge_sql.steps.sandbox import isolate
    from edge_sql.steps.execute import execute
    from edge_sql.steps.guard import check
    from edge_sql.cli.output import print_result

    check_format(fmt)
    with isolate(open_database(db)) as database:
        checked = check(sql, database.dialect).sql(dialect=database.dialect)
        result = execute(database, checked, max_rows=max_rows, timeout=timeout, memory=memory)
        with writing_to(output):
            print_result(result, checked, fmt, max_rows=max_rows, console=stdout_console())


def shell(
    db: DbOpt,
    model: ModelOpt = None,
    candidates: CandidatesOpt = None,
    temperature: TemperatureOpt = None,
    seed: SeedOpt = 42,
    fmt: FormatOpt = "table",
    max_rows: MaxRowsOpt = 100,
    timeout: SettingTimeoutOpt = None,
    memory: SettingMemoryOpt = None,
    threads: ThreadsOpt = None,
    log: LogOpt = False,
    log_rows: LogRowsOpt = False,
    model_timeout: SettingModelTimeoutOpt = None,
    constrain: ConstrainOpt = None,
    grammar: GrammarOpt = None,
    repair: RepairOpt = None,
    repair_rounds: RepairRoundsOpt = None,
    merge: MergeOpt = None,
    merge_model: MergeModelOpt = None,
    prune: PruneOpt = None,
    hints: HintsOpt = None,
    max_tokens: MaxTokensOpt = None,
) -> None:
    """An interactive session: load the model and the schema once, then answer one question a line (.help)."""
    import shutil

    from edge_sql.steps.database import open_database
    from edge_sql.steps.sandbox import isolate
    from edge_sql.backends import load_model
    from edge_sql.cli.history import history_path
    from edge_sql.cli.shell import Shell, run_loop

    check_format(fmt)
    chosen_remedies(grammar, repair, repair_rounds, merge, prune, hints)  # bad flags fail before the model loads
    candidates, temperature, timeout, memory, threads = configured(candidates, temperature, timeout, memory, threads)
    model_timeout, max_tokens, merge_model = from_config(model_timeout=model_timeout, max_tokens=max_tokens,
                                                         merge_model=merge_model)
    interactive = sys.stdin.isatty()
    with isolate(open_database(db)) as database:
        loaded = load_chosen(model, threads, model_timeout)
        remedies = chosen_remedies(grammar, repair, repair_rounds, merge, prune, hints, preset=loaded.preset,
                                   constrain=constrain)

        def load(name: str):
            with status(f"Loading {name}…"):
                return load_model(name, threads=threads, timeout=model_timeout)

        terminal = sys.stdout.isatty()
        console = (lambda buffer: Output(file=buffer, highlight=False, soft_wrap=False, force_terminal=terminal,
                                         width=shutil.get_terminal_size().columns))
        def merger_for(model):
            return chosen_merger(remedies, model, merge_model, threads=threads, timeout=model_timeout)

        session = Shell(database, loaded, load=load, candidates=candidates, temperature=temperature, seed=seed,
                        fmt=fmt, max_rows=max_rows, timeout=timeout, memory=memory, console=console,
                        remedies=remedies, log=log, log_rows=log_rows, merger_for=merger_for, max_tokens=max_tokens,
                        note=lambda text: stderr_console().print(text, style="dim", markup=False))
        if interactive:
            stderr_console().print(f"edgesql shell on {database.path.name} with {loaded.name}; .help for help, "
                                   ".quit or Ctrl-D to leave")

        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        from edge_sql.cli.progress import noting

        with noting(database.path.name):
            run_loop(session, write=write, prompt="edgesql> " if interactive else "", history=history_path())

