"""The one door for models: ``load_model(name_or_path)``.

A *model* is anything with the narrow interface of :class:`Model`: it counts tokens and samples completions.
:class:`LlamaModel` runs a GGUF file with llama-cpp-python (imported lazily, on CPU). Other models — a test double,
a future backend — enter through :func:`register_model`, the same door the presets use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from edge_sql.errors import ModelError
from edge_sql.preset import GENERIC, Preset, get_preset, load_presets, weights_path

GGUF_MAGIC = b"GGUF"
#: The largest context edgesql asks llama.cpp for (memory grows with it; a schema prompt rarely needs more).
MAX_CONTEXT = 4096


@dataclass(frozen=True)
class Completion:
    """One sampled continuation: its text, its log-probability under the model, its length in tokens."""

    text: str
    logprob: float = 0.0
    tokens: int = 0


class Model(Protocol):
    name: str
    preset: Preset
    context_length: int

    def count_tokens(self, text: str) -> int: ...

    def sample(
        self, prompt: str, n: int, *, temperature: float, seed: int, max_tokens: int, stop: tuple[str, ...]
    ) -> list[Completion]: ...


_FACTORIES: dict[str, Callable[..., Model]] = {}


def register_model(name: str, factory: Callable[..., Model]) -> None:
    """Make ``--model name`` load ``factory(threads=...)``; registered names come before presets and paths."""
    _FACTORIES[name] = factory


def unregister_model(name: str) -> None:
    _FACTORIES.pop(name, None)


def default_threads() -> int:
    """One thread per core this process may use (llama.cpp does best with physical cores)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def load_model(name_or_path: str, *, threads: int | None = None) -> Model:
    """Load a registered model, a preset by name, or a GGUF file by path."""
    threads = threads or default_threads()
    if name_or_path in _FACTORIES:
        return _FACTORIES[name_or_path](threads=threads)
    preset = get_preset(name_or_path)
    if preset is not None:
        return LlamaModel(weights_path(preset), preset=preset, threads=threads)
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".gguf" or path.exists() or os.sep in name_or_path:
        return LlamaModel(path, preset=GENERIC, threads=threads)
    known = ", ".join(sorted(set(load_presets()) | set(_FACTORIES)))
    raise ModelError(f"unknown model {name_or_path!r}: give a GGUF file path or a preset ({known})")


def check_gguf(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"no such model file: {path}")
    if path.is_dir():
        raise ModelError(f"{path} is a directory; give the path of a .gguf file")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ModelError(f"{path} is not a GGUF model file")


class LlamaModel:
    """A GGUF model run by llama.cpp on CPU. Candidates are sampled one after another, sharing the prompt's cache."""

    def __init__(self, path: Path, *, preset: Preset = GENERIC, threads: int = 2, context: int | None = None):
        path = Path(path)
        check_gguf(path)
        try:
            from llama_cpp import Llama
        except ImportError as error:  # pragma: no cover - a broken install
            raise ModelError(f"llama-cpp-python is not usable: {error}") from None
        self.path = path
        self.preset = preset
        self.name = preset.name if preset is not GENERIC else path.name
        self.context_length = min(context or preset.context or MAX_CONTEXT, MAX_CONTEXT)
        try:
            self._llama = Llama(
                model_path=str(path), n_ctx=self.context_length, n_threads=threads, n_threads_batch=threads,
                n_batch=512, seed=0, use_mmap=True, verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as error:
            raise ModelError(f"cannot load {path}: {error}; the file may be truncated or of an unsupported architecture") from None
        self.context_length = self._llama.n_ctx()

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def sample(self, prompt, n, *, temperature, seed, max_tokens, stop):
        completions = []
        for index in range(n):
            recorder = LogprobRecorder()
            from llama_cpp import LogitsProcessorList

            result = self._llama.create_completion(
                prompt, max_tokens=max_tokens, temperature=temperature, top_k=40, top_p=0.95, min_p=0.05,
                repeat_penalty=1.0, seed=seed + index, stop=list(stop),
                logits_processor=LogitsProcessorList([recorder]),
            )
            choice = result["choices"][0]
            tokens = result["usage"]["completion_tokens"]
            completions.append(Completion(choice["text"], recorder.total, tokens))
        return completions


class LogprobRecorder:
    """A logits processor that adds up the log-probability of each token the sampler picked."""

    def __init__(self):
        self.total = 0.0
        self._previous = None

    def __call__(self, input_ids, scores):
        import numpy as np

        if self._previous is not None:
            logsumexp, previous = self._previous
            self.total += float(previous[int(input_ids[-1])] - logsumexp)
        top = float(scores.max())
        self._previous = (top + float(np.log(np.exp(scores - top).sum())), scores.copy())
        return scores
