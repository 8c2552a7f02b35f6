"""The config file: defaults for ``ask`` and ``shell`` that flags override.

``EDGESQL_CONFIG``, else ``$XDG_CONFIG_HOME/edgesql/config.toml``, else ``~/.config/edgesql/config.toml``::

    model = "qwen2.5-coder-1.5b"
    candidates = 8
    temperature = 0.5
    timeout = 20
    memory = 512        # MiB a query may use
    threads = 4
    model_timeout = 600 # seconds a model server (model = "http://…/v1") may take to answer one candidate
    max_tokens = 2048   # the most tokens a candidate may write (default: sized by the question, or the protocol's)
    merge_model = "http://gpu-box:8000/v1?preset=cscsql-merge-0.5b"  # who settles a split vote under merge
    constrain = true    # the remedies (README, "What makes a small model right more often")
    grammar = false
    repair = 1          # rounds; 0 = off
    merge = false
    prune = "auto"      # auto, always or never
    hints = true
    min_confidence = 0.8  # ask declines (exit 7) an answer less sure than this

Each setting comes from, in order: its flag, then (for ``model``) ``EDGESQL_MODEL``, then the config file, then the
built-in default.

>>> resolve({"candidates": 3, "timeout": None}, {"timeout": 20.0}, "config.toml")["timeout"]
Setting(name='timeout', value=20.0, source='config.toml')
>>> resolve({"candidates": 3}, {"candidates": 8}, "config.toml")["candidates"].source
'--candidates'
>>> resolve({"model_timeout": 60.0}, {}, "config.toml")["model_timeout"].source
'--model-timeout'
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from edge_sql.errors import UsageError
from edge_sql.remedies import MAX_REPAIR_ROUNDS, PRUNE_MODES, Remedies

#: Every setting the file may hold: its type and the range a number must be in.
SETTINGS: dict[str, tuple[type, tuple[float, float] | None]] = {
    "model": (str, None),
    "candidates": (int, (1, 64)),
    "temperature": (float, (0.0, 2.0)),
    "timeout": (float, (0.01, 86400.0)),
    "memory": (int, (16, 1 << 30)),
    "threads": (int, (1, 4096)),
    "model_timeout": (float, (0.1, 86400.0)),
    "max_tokens": (int, (1, 32768)),
    "merge_model": (str, None),
    "constrain": (bool, None),
    "grammar": (bool, None),
    "repair": (int, (0, MAX_REPAIR_ROUNDS)),
    "merge": (bool, None),
    "prune": (str, None),
    "hints": (bool, None),
    "min_confidence": (float, (0.0, 1.0)),
}
#: The settings that take one of a few words.
CHOICES: dict[str, tuple[str, ...]] = {"prune": PRUNE_MODES}

#: What a setting is when neither a flag, the environment nor the file sets it (None: decided later, as said).
DEFAULTS: dict[str, object] = {"model": None, "candidates": None, "temperature": None, "timeout": 10.0, "memory": 1024,
                               "threads": None, "model_timeout": 300.0, "max_tokens": None, "merge_model": None,
                               "constrain": Remedies().constrain, "grammar": Remedies().grammar, "repair": Remedies().repair, "merge": Remedies().merge,
                               "prune": Remedies().prune, "hints": Remedies().hints, "min_confidence": 0.0}
DEFAULT_WORDS = {
    "candidates": "the preset's",
    "temperature": "the preset's",
    "threads": "one per physical core this process may use that other processes leave free when the model loads, "
               "followed as it runs",
    "max_tokens": "64 + 3 a word of the question (at most 256), or a reasoning model's budget",
    "merge_model": "the model's preset's merge model, else the model itself",
}


@dataclass(frozen=True)
class Setting:
    name: str
    value: object
    source: str  # "--flag", "EDGESQL_MODEL", the config file's path, or "default"


def config_path() -> Path:
    """``EDGESQL_CONFIG``, else ``$XDG_CONFIG_HOME/edgesql/config.toml``, else ``~/.config/edgesql/config.toml``."""
    if os.environ.get("EDGESQL_CONFIG"):
        return Path(os.environ["EDGESQL_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "edgesql" / "config.toml"


def read_config(path: Path) -> dict[str, object]:
    """The settings in the file at ``path`` (none when there is no file), checked; a bad file is a usage error."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"cannot read the config file {path}: {error}") from None
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise UsageError(f"the config file {path} has unknown settings: {', '.join(unknown)}; "
                         f"known: {', '.join(SETTINGS)}")
    settings = {}
    for name, value in data.items():
        kind, bounds = SETTINGS[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            kind_name = {"bool": "true or false", "str": "string"}.get(kind.__name__, f"a {kind.__name__}")
            raise UsageError(f"{name} in the config file {path} must be {kind_name}, not {value!r}")
        if name in CHOICES and value not in CHOICES[name]:
            raise UsageError(f"{name} in the config file {path} must be one of {', '.join(CHOICES[name])}, "
                             f"not {value!r}")
        if bounds and not bounds[0] <= value <= bounds[1]:
            raise UsageError(f"{name} in the config file {path} must be from {bounds[0]} to {bounds[1]}, not {value}")
        settings[name] = value
    return settings


def resolve(flags: dict[str, object], config: dict[str, object], where: str,
            recommended: tuple[str, dict] = ("", {})) -> dict[str, Setting]:
    """Each setting of ``flags`` (None: not given) as the flag, the environment, the file, the model's preset
    (``recommended``: the preset's name and the settings it recommends) or the default has it."""
    resolved = {}
    for name in flags:
        if flags[name] is not None:
            resolved[name] = Setting(name, flags[name], "--" + name.replace("_", "-"))
        elif name == "model" and os.environ.get("EDGESQL_MODEL"):
            resolved[name] = Setting(name, os.environ["EDGESQL_MODEL"], "EDGESQL_MODEL")
        elif name in config:
            resolved[name] = Setting(name, config[name], where)
        elif name in recommended[1]:
            resolved[name] = Setting(name, recommended[1][name], f"the preset {recommended[0]}")
        else:
            resolved[name] = Setting(name, DEFAULTS[name], "default")
    return resolved


def effective_settings(recommended: tuple[str, dict] = ("", {}), **flags) -> dict[str, Setting]:
    """The settings a command runs with, given its flags (None where not given) and what its model's preset
    recommends."""
    path = config_path()
    return resolve(flags, read_config(path), str(path), recommended)
