"""The one door for models: ``load_model(name_or_path)``.

A *model* is anything with the narrow interface of :class:`Model`: it counts tokens and samples completions.
:class:`LlamaModel` runs a GGUF file with llama-cpp-python (imported lazily, on CPU). Other models — a test double,
a future backend — enter through :func:`register_model`, the same door the presets use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

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
    stopped: bool = False  # cut short: enough other candidates had already agreed


class Model(Protocol):
    name: str
    preset: Preset
    context_length: int

    def count_tokens(self, text: str) -> int: ...

    def sample(
        self, prompt: str, temperatures: Sequence[float], *, seed: int, max_tokens: int, stop: tuple[str, ...],
        cache_prefix: str | None = None, on_finish: Callable[[int, str], bool] | None = None,
        grammar: str | None = None,
    ) -> list[Completion]:
        """One completion per temperature (0 = greedy); candidate i is seeded with ``seed + i``.

        ``cache_prefix`` is the head of ``prompt`` that later prompts repeat (the schema): a model may keep its
        state to skip evaluating it again. ``on_finish(i, text)`` is called as candidate i ends; a model that
        decodes candidates together stops the rest (``stopped=True``) once it returns True. ``grammar`` is a GBNF
        grammar (``grammar.schema_grammar``) every completion must follow.
        """
        ...


_FACTORIES: dict[str, Callable[..., Model]] = {}


def register_model(name: str, factory: Callable[..., Model]) -> None:
    """Make ``--model name`` load ``factory(threads=...)``; registered names come before presets and paths."""
    _FACTORIES[name] = factory


def unregister_model(name: str) -> None:
    _FACTORIES.pop(name, None)


def default_threads() -> int:
    """One thread per physical core this process may use: llama.cpp gets slower, not faster, on hyper-threads."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    physical = physical_cores()
    return max(1, min(usable, physical) if physical else usable)


def physical_cores(cpuinfo: str | None = None) -> int:
    r"""Distinct (package, core) pairs in /proc/cpuinfo; 0 when it cannot tell.

    >>> physical_cores("physical id : 0\ncore id : 0\n\nphysical id : 0\ncore id : 0\n\nphysical id : 0\ncore id : 1\n")
    2
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return 0
    cores, package = set(), None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            cores.add((package, value.strip()))
    return len(cores)


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
    """A GGUF model run by llama.cpp on CPU.

    Candidates are decoded together in one batch (``batch.BatchDecoder``) that keeps the prompt's KV cache for the
    next call; with ``batched=False`` they are sampled one after another through ``Llama.create_completion``, the
    plain llama-cpp-python loop kept as the reference.
    """

    def __init__(self, path: Path, *, preset: Preset = GENERIC, threads: int = 2, context: int | None = None,
                 batched: bool = True, cache_dir: Path | None = None):
        path = Path(path)
        check_gguf(path)
        try:
            from llama_cpp import Llama
        except ImportError as error:  # pragma: no cover - a broken install
            raise ModelError(f"llama-cpp-python is not usable: {error}") from None
        self.path = path
        self.preset = preset
        self.name = preset.name if preset is not GENERIC else path.name
        self.threads = threads
        self.batched = batched
        wanted = min(context or preset.context or MAX_CONTEXT, MAX_CONTEXT)
        try:
            self._llama = Llama(
                model_path=str(path), n_ctx=64 if batched else wanted, n_threads=threads, n_threads_batch=threads,
                n_batch=512, seed=0, use_mmap=True, verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as error:
            raise ModelError(f"cannot load {path}: {error}; the file may be truncated or of an unsupported architecture") from None
        import llama_cpp

        if preset is GENERIC:
            self.preset = preset = recorded_preset(self._llama.metadata, path)
        trained = llama_cpp.llama_model_n_ctx_train(self._llama.model)
        self.context_length = min(wanted, trained) if trained > 0 else wanted
        self._decoder = None
        self._store = prefix_store(path, cache_dir)
        self.prompt_evaluated = 0  # prompt tokens the last sample() had to evaluate (the rest came from a cache)
        self.prompt_seconds = self.decode_seconds = 0.0  # and the time it spent on them, and on decoding

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def sample(self, prompt, temperatures, *, seed, max_tokens, stop, cache_prefix=None, on_finish=None,
               grammar=None):
        if grammar:
            from edge_sql.grammar import check_grammar

            check_grammar(grammar)  # a grammar llama.cpp cannot parse would crash this process: refused before use
        if not self.batched:
            completions = []
            for index, temperature in enumerate(temperatures):
                completions.append(self.complete(prompt, temperature, seed + index, max_tokens, stop, grammar))
                if on_finish is not None and on_finish(index, completions[-1].text):
                    break
            return completions
        decoder = self.decoder()
        decoder.evaluated, decoder.prompt_seconds, decoder.decode_seconds = 0, 0.0, 0.0
        tokens = self.tokenize(prompt)
        if cache_prefix and self._store is not None:
            self.restore_prefix(decoder, tokens, cache_prefix)
        completions = []
        for start in range(0, len(temperatures), decoder.max_sequences):
            chunk = list(temperatures[start: start + decoder.max_sequences])
            finish = None if on_finish is None else (lambda i, text, start=start: on_finish(start + i, text))
            for text, logprob, count, stopped in decoder.sample(tokens, chunk, seed + start, max_tokens, stop,
                                                                self.is_eog, finish, grammar):
                completions.append(Completion(text, logprob, count, stopped))
            if any(c.stopped for c in completions) or len(completions) < start + len(chunk):
                break
        self.prompt_evaluated = decoder.evaluated
        self.prompt_seconds, self.decode_seconds = decoder.prompt_seconds, decoder.decode_seconds
        return completions

    def restore_prefix(self, decoder, tokens: list[int], cache_prefix: str) -> None:
        """Put the cached prefix's state in place (from disk, or computed now and saved) unless it already is."""
        head = self.tokenize(cache_prefix)
        if not head or tokens[: len(head)] != head or decoder.cached[: len(head)] == head:
            return
        if not self._store.restore(decoder, head):
            decoder.load_prompt(head)
            self._store.store(decoder, head)

    def decoder(self):
        if self._decoder is None:
            from edge_sql.batch import BatchDecoder

            try:
                self._decoder = BatchDecoder(self._llama.model, context=self.context_length, threads=self.threads)
            except RuntimeError as error:
                raise ModelError(f"cannot run {self.path.name}: {error}") from None
        return self._decoder

    def is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(self._llama.model), token))

    def complete(self, prompt, temperature, seed, max_tokens, stop, grammar=None) -> Completion:
        """One completion through the high-level API (the sequential reference path); ``grammar`` must have passed
        ``grammar.check_grammar`` (llama-cpp-python does not check that it compiled)."""
        from llama_cpp import LlamaGrammar, LogitsProcessorList

        recorder = LogprobRecorder()
        result = self._llama.create_completion(
            prompt, max_tokens=max_tokens, temperature=temperature, top_k=40, top_p=0.95, min_p=0.05,
            repeat_penalty=1.0, seed=seed, stop=list(stop), logits_processor=LogitsProcessorList([recorder]),
            grammar=LlamaGrammar.from_string(grammar) if grammar else None,
        )
        return Completion(result["choices"][0]["text"], recorder.total, result["usage"]["completion_tokens"])


def recorded_preset(metadata: dict[str, str], path: Path) -> Preset:
    """The preset of a GGUF file given by path: what ``edgesql convert`` recorded in it (``edgesql.protocol``), else
    the generic one.

    >>> recorded_preset({"edgesql.protocol": "slm-sql-think"}, Path("m.gguf")).protocol
    'slm-sql-think'
    >>> recorded_preset({"edgesql.protocol": "no-such-protocol"}, Path("m.gguf")).protocol
    'chatml-strict'
    """
    from dataclasses import replace

    from edge_sql.prompt import PROTOCOLS

    protocol = metadata.get("edgesql.protocol", "")
    if protocol not in PROTOCOLS:
        return GENERIC
    return replace(GENERIC, protocol=protocol, description=f"{path.name}, converted by edgesql ({protocol})")


def prefix_store(path: Path, cache_dir: Path | None):
    """The on-disk cache of prompt-prefix states for this model file, or None when caching is off."""
    if os.environ.get("EDGESQL_PREFIX_CACHE", "1") == "0":
        return None
    from edge_sql.batch import PrefixStore

    directory = Path(cache_dir) if cache_dir else cache_home() / "prefix"
    return PrefixStore(directory, model_fingerprint(path))


def cache_home() -> Path:
    """Where edgesql keeps caches: ``EDGESQL_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgesql``, else ``~/.cache/edgesql``."""
    if os.environ.get("EDGESQL_CACHE_DIR"):
        return Path(os.environ["EDGESQL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgesql"


def model_fingerprint(path: Path) -> str:
    """A cheap identity for a model file: its size and the hashes of its first and last MiB."""
    import hashlib

    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()


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
