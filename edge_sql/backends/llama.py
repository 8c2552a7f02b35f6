"""The built-in backend: a GGUF file run by llama.cpp (llama-cpp-python, imported lazily, on CPU).

It serves presets by name and GGUF files by path (:func:`load`), through the same door as every other backend.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import replace
from pathlib import Path
from edge_sql.backends.cores import Follower, free_cores
from edge_sql.backends.door import Completion, Cost
from edge_sql.errors import GrammarError, ModelError
from edge_sql.paths import cache_home
from edge_sql.preset import GENERIC, Preset, get_preset
from edge_sql.protocols import get_protocol
from edge_sql.remedies import TRAINED
from edge_sql.weights import adapter_path, weights_path

GGUF_MAGIC = b"GGUF"
#: The largest context edgesql asks llama.cpp for (memory grows with it; a schema prompt rarely needs more).
MAX_CONTEXT = 4096


def load(name_or_path: str, *, threads: int | None, **_) -> "LlamaModel | None":
    """A preset by name, a GGUF file by path, or the folder ``edgesql train`` wrote (its adapter over its base);
    None for a name this backend does not serve (other options, a server's timeout, mean nothing here)."""
    preset = get_preset(name_or_path)
    if preset is not None:
        return LlamaModel(weights_path(preset), preset=preset, threads=threads, adapter=adapter_path(preset))
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / TRAINED_ADAPTER).is_file():
        return trained_model(path, threads)
    if path.suffix.lower() == ".gguf" or path.exists() or os.sep in name_or_path:
        return LlamaModel(path, preset=GENERIC, threads=threads)
    return None


#: What ``edgesql train`` writes in its folder: the adapter, and the record of its base.
TRAINED_ADAPTER, TRAINING_RECORD = "adapter.gguf", "training.json"


def trained_model(folder: Path, threads: int | None) -> "LlamaModel":
    """The adapter ``edgesql train`` wrote in ``folder``, over the base model it was trained on."""
    import json

    try:
        base = json.loads((folder / TRAINING_RECORD).read_text(encoding="utf-8"))["base"]
    except (OSError, ValueError, KeyError):
        raise ModelError(f"{folder} holds an adapter but no readable {TRAINING_RECORD} naming its base model") from None
    preset = get_preset(base)
    weights = weights_path(preset) if preset is not None else Path(base)
    model = LlamaModel(weights, preset=as_trained(preset or GENERIC), threads=threads,
                       adapter=folder / TRAINED_ADAPTER)
    model.name = f"{Path(folder).resolve().name} ({Path(str(base)).name} + adapter)"  # what answers and reports name
    return model


def as_trained(preset: Preset, **changes) -> Preset:
    """``preset``'s prompt settings for a model ``edgesql train`` wrote, with a trained model's remedies
    (:data:`~edge_sql.remedies.TRAINED`) over the preset's own."""
    return replace(preset, remedies={**preset.remedies, **TRAINED}, **changes)


def context_length(preset: Preset, trained: int, asked: int | None = None) -> int:
    """The context a model gets: what was asked, else its preset's, at most :data:`MAX_CONTEXT` (plus room for the
    preset's candidates to reason, for a model that reasons first) and at most what it was trained for (when known).

    >>> context_length(Preset(name="p", context=8192), trained=2048), context_length(Preset(name="p"), trained=0, asked=512)
    (2048, 512)
    >>> context_length(Preset(name="r", context=32768, protocol="slm-sql-think", candidates=8), trained=32768)
    12288
    """
    ceiling = MAX_CONTEXT + preset.candidates * get_protocol(preset.protocol).reasoning
    wanted = min(asked or preset.context or ceiling, ceiling)
    return min(wanted, trained) if trained > 0 else wanted


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

    ``threads`` None: as many as the cores free when it loads, and, on the batched path, as many as are free as each
    sampling starts (``cores.Follower``); a number pins them.
    """

    def __init__(self, path: Path, *, preset: Preset = GENERIC, threads: int | None = 2, context: int | None = None,
                 batched: bool = True, cache_dir: Path | None = None, adapter: Path | None = None):
        path = Path(path)
        check_gguf(path)
        if adapter is not None:
            adapter = Path(adapter)
            check_gguf(adapter)
        try:
            from llama_cpp import Llama
        except ImportError as error:  # pragma: no cover - a broken install
            raise ModelError(f"llama-cpp-python is not usable: {error}") from None
        self.path = path
        self.adapter = adapter
        self.preset = preset
        self.name = preset.name if preset is not GENERIC else path.name
        self.follower = None if threads is not None else Follower(free_cores())
        self.threads = threads or self.follower.reading.threads
        self.batched = batched
        self.checks = batched  # sample() takes a schema check (``steps/constrain``): the batched decoder applies it
        wanted = context_length(preset, 0, context)  # before the model says what it was trained for
        try:
            self._llama = Llama(
                model_path=str(path), n_ctx=64 if batched else wanted, n_threads=self.threads,
                n_threads_batch=self.threads, n_batch=512, seed=0, use_mmap=True, verbose=False,
                lora_path=str(adapter) if adapter else None,
            )
        except (ValueError, RuntimeError, OSError) as error:
            if adapter is not None and "lora" in str(error).lower():
                raise ModelError(f"cannot apply the adapter {adapter} to {path.name}: it was not trained on this "
                                 "model, or it is damaged") from None
            raise ModelError(f"cannot load {path}: {error}; the file may be truncated or of an unsupported architecture") from None
        import llama_cpp

        if preset is GENERIC:
            self.preset = preset = recorded_preset(self._llama.metadata, path)
        self.context_length = context_length(preset, llama_cpp.llama_model_n_ctx_train(self._llama.model), context)
        self._decoder = None
        self._store = prefix_store(path, cache_dir, adapter)
        self.last_cost: Cost | None = None  # what the last sample() cost (not counted on the sequential path)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def sample(self, prompt, temperatures, *, seed, max_tokens, stop, cache_prefix=None, on_finish=None,
               grammar=None, check=None):
        if grammar:
            from edge_sql.backends.grammar_check import check_grammar

            check_grammar(grammar)  # a grammar llama.cpp cannot parse would crash this process: refused before use
        self.last_cost = None
        if not self.batched:
            completions = []
            for index, temperature in enumerate(temperatures):
                completions.append(self.complete(prompt, temperature, seed + index, max_tokens, stop, grammar))
                if on_finish is not None and on_finish(index, completions[-1].text):
                    break
            return completions
        decoder = self.decoder(flash=self.flash_for(prompt, cache_prefix))
        self.follow_cores(decoder)
        decoder.evaluated, decoder.prompt_seconds, decoder.decode_seconds, decoder.check_seconds = 0, 0.0, 0.0, 0.0
        try:
            tokens = self.tokenize(prompt)
            restored, cache_seconds = 0, 0.0
            if cache_prefix and self._store is not None:
                restored, cache_seconds = self.restore_prefix(decoder, tokens, cache_prefix)
        except (RuntimeError, ValueError, OSError) as error:  # the decoder's own failures are ModelErrors already
            decoder.forget()
            raise self.failure("evaluating the prompt", error) from None
        completions = []
        # Candidates decoded together share the context: as many at a time as their token budgets fit beside the
        # prompt (a reasoning model's 1,024 tokens each would otherwise be cut when the cache fills), at most 16.
        group = max(1, min(decoder.max_sequences, (decoder.context - len(tokens)) // max(1, max_tokens)))
        for start in range(0, len(temperatures), group):
            chunk = list(temperatures[start: start + group])
            finish = None if on_finish is None else (lambda i, text, start=start: on_finish(start + i, text))
            for text, logprob, count, stopped, refused in decoder.sample(tokens, chunk, seed + start, max_tokens,
                                                                         stop, self.is_eog, finish, grammar, check):
                completions.append(Completion(text, logprob, count, stopped, refused))
            if any(c.stopped for c in completions) or len(completions) < start + len(chunk):
                break
        if self.follower is not None:
            self.follower.done()
        self.last_cost = Cost(decoder.evaluated, decoder.prompt_seconds, decoder.decode_seconds, decoder.check_seconds,
                              restored, cache_seconds)
        return completions

    def follow_cores(self, decoder) -> None:
        """Run on the cores free now (unless the threads were pinned), and on those free as the sampling goes on:
        llama.cpp takes a new count between two decodes. A decode held up on several threads by a load that started
        during it (OpenMP's threads wait for each other at every step of the graph: one that lost its core stalls
        them all, 5 tokens took 7.7 s beside a busy core) is stopped once a look finds a core taken, and done again
        on fewer threads."""
        if self.follower is None:
            return
        self.set_threads(decoder, self.follower.threads())
        if decoder.between is None:
            import llama_cpp

            owner = weakref.ref(self)  # held weakly: a decoder must not keep its model alive (GRPO reloads models)
            decoder.between = lambda decoder: (model := owner()) and model.set_threads(decoder,
                                                                                       model.follower.during())
            decoder.stalled = llama_cpp.ggml_abort_callback(lambda _: bool((model := owner()) and model.stalled()))
            llama_cpp.llama_set_abort_callback(decoder.ctx, decoder.stalled, None)

    def stalled(self) -> bool:
        """Called by llama.cpp between two steps of a decode's graph (hundreds of times a decode: cheap until a look is
        due): whether the cores free now are fewer than the threads it runs on."""
        return self.threads > 1 and self.follower.during() < self.threads

    def set_threads(self, decoder, threads: int) -> None:
        if threads != self.threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(decoder.ctx, threads, threads)
            self.threads = threads

    def restore_prefix(self, decoder, tokens: list[int], cache_prefix: str) -> tuple[int, float]:
        """Put the cached prefix's state in place (from disk, or computed now and saved) unless it already is; return
        the tokens whose state was read from disk and the seconds spent reading or writing there."""
        import time

        from edge_sql import progress

        head = self.tokenize(cache_prefix)
        if not head or tokens[: len(head)] != head or decoder.cached[: len(head)] == head:
            return 0, 0.0
        clock = time.perf_counter()
        if self._store.restore(decoder, head):
            return len(head), time.perf_counter() - clock
        spent = time.perf_counter() - clock
        kept = next((i for i, pair in enumerate(zip(decoder.cached, head)) if pair[0] != pair[1]),
                    min(len(decoder.cached), len(head)))  # tokens of another schema's prefix it starts with
        with progress.step("schema", tokens=len(head) - kept):  # the first time this schema is seen: it takes a while
            decoder.load_prompt(head)
        clock = time.perf_counter()
        self._store.store(decoder, head)
        return 0, spent + time.perf_counter() - clock

    def flash_for(self, prompt: str, cache_prefix: str | None) -> bool:
        """Whether candidates are decoded with flash attention: unless the schema prefix (the prompt, without one) is
        ``batch.LONG_PREFIX`` tokens or more."""
        from edge_sql.backends.batch import LONG_PREFIX

        return self.count_tokens(cache_prefix or prompt) < LONG_PREFIX

    def decoder(self, flash: bool = True):
        """The batched decoder, with flash attention or without (a new llama.cpp context when that changes)."""
        if self._decoder is not None and self._decoder.flash != flash:
            self._decoder.close()
            self._decoder = None
        if self._decoder is None:
            from edge_sql.backends.batch import BatchDecoder

            try:
                self._decoder = BatchDecoder(self._llama.model, context=self.context_length, threads=self.threads,
                                             adapter=getattr(self._llama, "_lora_adapter", None),
                                             name=self.path.name, flash=flash)
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

        try:
            compiled = LlamaGrammar.from_string(grammar) if grammar else None
        except (ValueError, RuntimeError) as error:
            raise GrammarError(f"llama.cpp does not accept the grammar: {error}") from None
        recorder = LogprobRecorder()
        try:
            result = self._llama.create_completion(
                prompt, max_tokens=max_tokens, temperature=temperature, top_k=40, top_p=0.95, min_p=0.05,
                repeat_penalty=1.0, seed=seed, stop=list(stop), logits_processor=LogitsProcessorList([recorder]),
                grammar=compiled,
            )
        except (RuntimeError, ValueError, OSError) as error:
            self._llama.reset()  # forget the tokens it holds: the next completion evaluates its prompt afresh
            raise self.failure("decoding", error) from None
        return Completion(result["choices"][0]["text"], recorder.total, result["usage"]["completion_tokens"])

    def failure(self, what: str, error: Exception) -> ModelError:
        """One line for a failure of llama.cpp while ``what``, naming the model file."""
        reason = " ".join(str(error).split()) or type(error).__name__
        return ModelError(f"llama.cpp failed while {what} with {self.path.name}: {reason}")


def recorded_preset(metadata: dict[str, str], path: Path) -> Preset:
    """The preset of a GGUF file given by path: what ``edgesql convert`` recorded in it (``edgesql.protocol``), else
    the generic one. An adapter merged into its base (``edgesql convert --lora``) is asked as it was trained: with
    the prompt settings (protocol, schema, prefix, sampling) of the preset whose adapter it is, else of its base's
    preset, when the file names one, and the remedies of a trained model (:data:`~edge_sql.remedies.TRAINED`).

    >>> recorded_preset({"edgesql.protocol": "slm-sql-think"}, Path("m.gguf")).protocol
    'slm-sql-think'
    >>> recorded_preset({"edgesql.protocol": "no-such-protocol"}, Path("m.gguf")).protocol
    'chatml-strict'
    >>> merged = recorded_preset({"edgesql.protocol": "chatml-strict", "edgesql.source": "smollm2-135m",
    ...                           "edgesql.lora": "runs/my-rl/adapter.gguf"}, Path("my-rl.q4_1.gguf"))
    >>> merged.prefix, merged.adapter, merged.source, merged.remedies
    ('SELECT', {}, {}, {'constrain': True, 'grammar': False})
    """
    from edge_sql.protocols import PROTOCOLS

    protocol = metadata.get("edgesql.protocol", "")
    if protocol not in PROTOCOLS:
        return GENERIC
    for key in ("edgesql.lora", "edgesql.source"):
        trained = get_preset(metadata.get(key, "")) if "edgesql.lora" in metadata else None
        if trained is not None and trained.protocol == protocol:
            return as_trained(trained, source={}, adapter={}, description=f"{path.name}, {metadata[key]}'s prompt "
                              "settings (an adapter merged by edgesql convert)")
    return replace(GENERIC, protocol=protocol, description=f"{path.name}, converted by edgesql ({protocol})")


def prefix_store(path: Path, cache_dir: Path | None, adapter: Path | None = None):
    """The on-disk cache of prompt-prefix states for this model file (and adapter: it changes every state), or None
    when caching is off."""
    if os.environ.get("EDGESQL_PREFIX_CACHE", "1") == "0":
        return None
    from edge_sql.backends.prefix import PrefixStore

    directory = Path(cache_dir) if cache_dir else cache_home() / "prefix"
    key = model_fingerprint(path) + (":" + model_fingerprint(adapter) if adapter is not None else "")
    return PrefixStore(directory, key)




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
