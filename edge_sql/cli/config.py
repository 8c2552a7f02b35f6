"""``edgesql config``: the config file, defaults for ask and shell that flags override."""

from __future__ import annotations

import sys

import typer

from edge_sql.cli.common import reports_errors

config_app = typer.Typer(help="The config file: defaults for ask and shell that flags override.",
                         no_args_is_help=True, rich_markup_mode=None)


@config_app.command("show")
@reports_errors
def config_show() -> None:
    """Print each setting's effective value and where it comes from (flag, environment, config file, the model's
    preset, default)."""
    from edge_sql.config import DEFAULT_WORDS, Setting, config_path, effective_settings
    from edge_sql.preset import get_preset
    from edge_sql.weights import choose_model

    path = config_path()
    sys.stdout.write(f"config file: {path}{'' if path.exists() else ' (none)'}\n")
    flags = dict(model=None, candidates=None, temperature=None, timeout=None, memory=None, threads=None,
                 model_timeout=None, max_tokens=None, merge_model=None, constrain=None, grammar=None, repair=None, merge=None, prune=None, hints=None)
    choice = choose_model(None, config=True)  # the model ask and shell run, and why: as they say it on stderr
    preset = get_preset(choice.model)
    recommended = ("", {}) if preset is None else (preset.name, preset.remedies)
    for setting in effective_settings(recommended, **flags).values():
        if setting.name == "model":
            setting = Setting("model", choice.model, choice.source)
        value = DEFAULT_WORDS.get(setting.name) if setting.value is None else setting.value
        sys.stdout.write(f"{setting.name} = {value}  ({setting.source})\n")

