"""The one door for models: ``load_model(name_or_path)``.

A *model* is anything with the narrow interface of :class:`Model`: it counts tokens, samples completions and says
what its last sampling cost. Every backend enters through this door: a *backend* is a function that recognises the
names it serves (a preset, a GGUF path, …) and loads them; a single model (a test double) is registered by name with
:func:`register_model`. The built-in llama.cpp backend registers itself here like any other (``backends/__init__``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from edge_sql.backends.cores import free_cores, physical_cores  # noqa: F401 (physical_cores: its old home)
from edge_sql.errors import ModelError
from edge_sql.preset import Preset, load_presets


@dataclass(frozen=True)
class Cost:
    """What one ``sample`` call cost a model: the prompt tokens it evaluated (the rest came from a cache), the seconds
    spent on them, the seconds spent decoding, the seconds its schema check took (``steps/constrain``), and the
    prompt-prefix cache on disk: the tokens whose state it read from there instead of evaluating them, and the seconds
    spent reading or writing it."""

    prompt_evaluated: int = 0
    prompt_seconds: float = 0.0
    decode_seconds: float = 0.0
    check_seconds: float = 0.0
    restored: int = 0
    cache_seconds: float = 0.0


@dataclass(frozen=True)
class Completion:
    """One sampled continuation: its text, its log-probability under the model, its length in tokens."""

    text: str
    logprob: float = 0.0
    tokens: int = 0
    stopped: bool = False  # cut short: enough other candidates had already agreed
    refused: int = 0  # tokens the schema check refused (it wrote the next most likely allowed one instead)


class Model(Protocol):
    name: str
    preset: Preset
    context_length: int
    #: What the last ``sample`` call cost; None for a model that does not count (a test double).
    last_cost: Cost | None

    def count_tokens(self, text: str) -> int: ...

    def sample(
        self, prompt: str, temperatures: Sequence[float], *, seed: int, max_tokens: int, stop: tuple[str, ...],
        cache_prefix: str | None = None, on_finish: Callable[[int, str], bool] | None = None,
        grammar: str | None = None, check=None,
    ) -> list[Completion]:
        """One completion per temperature (0 = greedy); candidate i is seeded with ``seed + i``.

        ``cache_prefix`` is the head of ``prompt`` that later prompts repeat (the schema): a model may keep its
        state to skip evaluating it again. ``on_finish(i, text)`` is called as candidate i ends; a model that
        decodes candidates together stops the rest (``stopped=True``) once it returns True. ``grammar`` is a GBNF
        grammar (``grammar.schema_grammar``) every completion must follow. ``check`` (``constrain.Check``) is taken
        only by a model whose ``checks`` is True: every token is checked against the schema as it is decoded.
        """
        ...


_FACTORIES: dict[str, Callable[..., Model]] = {}
#: Backends in the order they are asked: each returns a loaded model for a name it serves, or None.
_BACKENDS: list[tuple[str, Callable[..., Model | None]]] = []


def register_model(name: str, factory: Callable[..., Model]) -> None:
    """Make ``--model name`` load ``factory(threads=...)``; registered names come before presets and paths."""
    _FACTORIES[name] = factory


def unregister_model(name: str) -> None:
    _FACTORIES.pop(name, None)


def register_backend(name: str, load: Callable[..., Model | None]) -> None:
    """Ask ``load(name_or_path, threads=..., timeout=...)`` for every model name not registered by
    :func:`register_model`; it returns a model for the names it serves and None for the others. Backends are asked in
    registration order."""
    _BACKENDS[:] = [(known, loader) for known, loader in _BACKENDS if known != name] + [(name, load)]


def default_threads() -> int:
    """One thread per physical core this process may use that other processes leave free now
    (:func:`edge_sql.backends.cores.free_cores`)."""
    return free_cores().threads


def load_model(name_or_path: str, *, threads: int | None = None, timeout: float | None = None) -> Model:
    """Load a registered model, or whatever a backend serves under that name (a preset, a GGUF file by path, a
    server's URL). ``timeout`` is the seconds a model server may take to answer (local models ignore it).
    ``threads`` None: a backend runs on the cores free as it loads, and may follow them as it runs (``cores``)."""
    if name_or_path in _FACTORIES:
        return _FACTORIES[name_or_path](threads=threads or default_threads())
    for _, load in _BACKENDS:
        model = load(name_or_path, threads=threads, timeout=timeout)
        if model is not None:
            return model
    known = ", ".join(sorted(set(load_presets()) | set(_FACTORIES)))
    raise ModelError(f"unknown model {name_or_path!r}: give a GGUF file path or a preset ({known})")
