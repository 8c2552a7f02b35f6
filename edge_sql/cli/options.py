"""The options that switch the pipeline's remedies (``pipeline.Remedies``), shared by ``ask``, ``shell`` and ``eval``.

A flag left out keeps the config file's setting (not read by ``eval``), else what the model's preset recommends (its
``[remedies]``), else the measured default (README, "What makes a small model right more often"); each option's help
names the presets that recommend another value than the default, read from the presets themselves.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from edge_sql.remedies import MAX_REPAIR_ROUNDS, PRUNE_MODES, Remedies

DEFAULTS = Remedies()


def on_off(value: bool) -> str:
    return "on" if value else "off"


def words(value) -> str:
    """A remedy's value as help says it: on or off, or the prune mode."""
    return value if isinstance(value, str) else on_off(bool(value))


def default_words(name: str) -> str:
    """A remedy's default as its help says it: the built-in one, then the presets that recommend another (the
    default model's first), as ``edgesql config show`` resolves it.

    >>> default_words("grammar")
    'on; off for smollm2-135m-sql (the default model), slm-sql-0.5b, slm-sql-1.5b: their presets say so'
    >>> default_words("merge")
    'off; on for slm-sql-0.5b, slm-sql-1.5b: their presets say so'
    >>> default_words("prune")
    'auto'
    """
    from edge_sql.preset import DEFAULT_PRESET, load_presets

    built_in = words(getattr(DEFAULTS, name))
    others: dict[str, list[str]] = {}
    presets = sorted(load_presets().values(), key=lambda p: (p.name != DEFAULT_PRESET, p.name))
    for preset in presets:
        if name in preset.remedies and words(preset.remedies[name]) != built_in:
            label = preset.name + (" (the default model)" if preset.name == DEFAULT_PRESET else "")
            others.setdefault(words(preset.remedies[name]), []).append(label)
    if not others:
        return built_in
    return f"{built_in}; " + "; ".join(f"{value} for {', '.join(names)}" for value, names in others.items()) + (
        ": their presets say so")


GrammarOpt = Annotated[Optional[bool], typer.Option(
    "--grammar/--no-grammar", show_default=False,
    help=f"Decode under a grammar built from the schema: only real tables and columns can be written. "
         f"[default: {default_words('grammar')}]")]
ConstrainOpt = Annotated[Optional[bool], typer.Option(
    "--constrain/--no-constrain", show_default=False,
    help=f"Check every token as it is decoded: a candidate can only name tables and aliases that exist and put each "
         f"column on a table that has it, and ends only as a valid query. [default: {default_words('constrain')}]")]
RepairOpt = Annotated[Optional[bool], typer.Option(
    "--repair/--no-repair", show_default=False,
    help=f"When no candidate runs, ask again with the failing SQL, its error and the valid names. "
         f"[default: {default_words('repair')}]")]
RepairRoundsOpt = Annotated[Optional[int], typer.Option(
    "--repair-rounds", min=1, max=MAX_REPAIR_ROUNDS, show_default=False,
    help=f"The most rounds of repair (implies --repair). [default: {max(1, DEFAULTS.repair)}]")]
MergeOpt = Annotated[Optional[bool], typer.Option(
    "--merge/--no-merge", show_default=False,
    help=f"When no result has a majority, ask the model to settle between the two most-voted queries. "
         f"[default: {default_words('merge')}]")]
PruneOpt = Annotated[Optional[str], typer.Option(
    "--prune", metavar="auto|always|never", show_default=False,
    help=f"Show the model only the tables and columns relevant to the question: auto = only when the whole schema "
         f"does not fit the model. [default: {default_words('prune')}]")]
HintsOpt = Annotated[Optional[bool], typer.Option(
    "--hints/--no-hints", show_default=False,
    help=f"Show the model the stored values closest to words of the question (e.g. 'Sales' for \"sales "
         f"department\"). [default: {default_words('hints')}]")]


def chosen_remedies(grammar: bool | None, repair: bool | None, repair_rounds: int | None, merge: bool | None,
                    prune: str | None, hints: bool | None, *, config: bool = True, preset=None,
                    constrain: bool | None = None) -> Remedies:
    """The remedies the flags ask for; for those not given, the config file's (with ``config``), else those the
    model's ``preset`` recommends (its ``[remedies]``), else the defaults. ``--repair-rounds N`` alone means
    ``--repair`` with N rounds.

    >>> chosen_remedies(True, True, 2, None, "never", None, config=False).repair
    2
    >>> chosen_remedies(None, False, None, None, None, None, config=False).repair
    0
    >>> chosen_remedies(None, None, 3, None, None, None, config=False).repair
    3
    """
    from edge_sql.config import effective_settings, resolve

    if prune is not None and prune not in PRUNE_MODES:
        raise typer.BadParameter(f"{prune!r} is not one of {', '.join(PRUNE_MODES)}", param_hint="--prune")
    if repair is False:
        rounds = 0
    elif repair is True:
        rounds = repair_rounds or 1
    else:
        rounds = repair_rounds
    flags = dict(constrain=constrain, grammar=grammar, repair=rounds, merge=merge, prune=prune, hints=hints)
    recommended = ("", {}) if preset is None else (preset.name, getattr(preset, "remedies", {}) or {})
    settings = effective_settings(recommended, **flags) if config else resolve(flags, {}, "", recommended)
    return Remedies(**{name: setting.value for name, setting in settings.items()})


MergeModelOpt = Annotated[Optional[str], typer.Option(
    "--merge-model", metavar="MODEL", show_default=False,
    help="The model that settles a split vote under --merge: a preset, a GGUF file or a server URL. [default: the "
         "merge model the model's preset names (SLM-SQL: its CscSQL-Merge), else the model itself]")]
MaxTokensOpt = Annotated[Optional[int], typer.Option(
    "--max-tokens", min=1, max=32768, show_default=False,
    help="The most tokens a candidate may write. [default: 64 + 3 a word of the question, at most 256; for a model "
         "that reasons before it answers, its protocol's budget (SLM-SQL: 1024)]")]


def chosen_merger(remedies: Remedies, model, merge_model: str | None, *, threads: int | None = None,
                  timeout: float | None = None):
    """Who settles a split vote (``pipeline.Merger``): ``--merge-model``, else the merge model the model's preset
    names (its ``[merge]`` table), else the model itself; nothing is loaded unless ``remedies.merge``.

    A merge model the preset names but that is not installed is said once on stderr, and the model merges itself;
    one given with ``--merge-model`` must load (its failure is the command's).
    """
    from edge_sql.backends import load_model
    from edge_sql.errors import ModelError
    from edge_sql.pipeline import Merger

    if not remedies.merge:
        return Merger()
    table = model.preset.merge
    asked = dict(candidates=table.get("candidates", 1), temperature=float(table.get("temperature", 0.0)))
    name = merge_model or table.get("model")
    if not name or name == model.name:
        return Merger(None, **asked)
    try:
        return Merger(load_model(name, threads=threads, timeout=timeout), **asked)
    except ModelError as error:
        if merge_model:  # the user's own choice: its failure is the command's
            raise
        import sys

        from edge_sql.preset import get_preset
        from edge_sql.weights import installed

        preset = get_preset(name)
        if preset is not None and not installed(preset):
            convert = " --convert" if preset.kind == "convert" else ""
            why = f"{name} is not installed: edgesql models pull {name}{convert}"
        else:
            why = str(error)
        sys.stderr.write(f"edgesql: {model.name}'s merge model is not available ({why}); it merges itself\n")
        return Merger(None, **asked)
