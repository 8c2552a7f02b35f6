"""The options that switch the pipeline's remedies (``pipeline.Remedies``), shared by ``ask``, ``shell`` and ``eval``.

A flag left out keeps the measured default (README, "What makes a small model right more often").
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from edge_sql.remedies import MAX_REPAIR_ROUNDS, PRUNE_MODES, Remedies

DEFAULTS = Remedies()


def on_off(value: bool) -> str:
    return "on" if value else "off"


GrammarOpt = Annotated[Optional[bool], typer.Option(
    "--grammar/--no-grammar", show_default=False,
    help=f"Decode under a grammar built from the schema: only real tables and columns can be written. "
         f"[default: {on_off(DEFAULTS.grammar)}]")]
RepairOpt = Annotated[Optional[bool], typer.Option(
    "--repair/--no-repair", show_default=False,
    help=f"When no candidate runs, ask again with the failing SQL, its error and the valid names. "
         f"[default: {on_off(bool(DEFAULTS.repair))}]")]
RepairRoundsOpt = Annotated[int, typer.Option(
    "--repair-rounds", min=1, max=MAX_REPAIR_ROUNDS, help="With --repair, the most rounds of repair.")]
MergeOpt = Annotated[Optional[bool], typer.Option(
    "--merge/--no-merge", show_default=False,
    help=f"When no result has a majority, ask the model to settle between the two most-voted queries. "
         f"[default: {on_off(DEFAULTS.merge)}]")]
PruneOpt = Annotated[Optional[str], typer.Option(
    "--prune", metavar="auto|always|never", show_default=False,
    help=f"Show the model only the tables and columns relevant to the question: auto = only when the whole schema "
         f"does not fit the model. [default: {DEFAULTS.prune}]")]
HintsOpt = Annotated[Optional[bool], typer.Option(
    "--hints/--no-hints", show_default=False,
    help=f"Show the model the stored values closest to words of the question (e.g. 'Sales' for \"sales "
         f"department\"). [default: {on_off(DEFAULTS.hints)}]")]


def chosen_remedies(grammar: bool | None, repair: bool | None, repair_rounds: int, merge: bool | None,
                    prune: str | None, hints: bool | None) -> Remedies:
    """The remedies the flags ask for, the defaults for those not given.

    >>> chosen_remedies(True, True, 2, None, "never", None).repair
    2
    >>> chosen_remedies(None, False, 1, None, None, None).repair
    0
    """
    if prune is not None and prune not in PRUNE_MODES:
        raise typer.BadParameter(f"{prune!r} is not one of {', '.join(PRUNE_MODES)}", param_hint="--prune")
    rounds = DEFAULTS.repair if repair is None else (repair_rounds if repair else 0)
    if repair is None and DEFAULTS.repair:
        rounds = repair_rounds
    return Remedies(
        grammar=DEFAULTS.grammar if grammar is None else grammar,
        repair=rounds,
        merge=DEFAULTS.merge if merge is None else merge,
        prune=DEFAULTS.prune if prune is None else prune,
        hints=DEFAULTS.hints if hints is None else hints,
    )
