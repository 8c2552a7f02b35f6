"""Batched sampling: N candidates for little more than the price of one.

The prompt is evaluated once on sequence 0 and its KV cache copied to sequences 1…N-1; then every step decodes one
token for every live sequence in a single ``llama_decode``, so the weights are read once a step for all N. Each
sequence has its own sampler chain and seed (greedy for temperature 0), and leaves the batch at an end-of-generation
token, a stop string, or its token limit.

With a grammar (``grammar.py``), each sequence also has its own copy of the compiled grammar, cloned from one
compiled once per decoder. How it is applied is :data:`GRAMMAR_ARRANGEMENT`: ``"check"`` (the default, as llama.cpp's
own common sampler does it) samples from the unconstrained chain, checks only that token against the grammar, and
applies the grammar to the whole vocabulary and samples again only when it is refused; ``"chain"`` puts the grammar
first in the chain, over every candidate at every step. Greedy candidates are the same either way.

With a schema check (``steps/constrain``, PICARD's idea), the token sampled is tested first; only when the check
refuses it are the next most likely tokens tested, in order of their logits (for a greedy candidate, until one is
allowed; for a sampled one, every token its own chain could still pick), and the sequence's chain picks among those
allowed. A sequence whose most likely tokens are all refused (``checking.WALK``) ends where it is.

Between calls the prompt stays in sequence 0: the next prompt decodes only what differs after the common prefix
(the schema, for the next question on the same database). :class:`PrefixStore` keeps that state on disk between
processes, keyed by the model file and the prefix, checked by hash before it is trusted.

Uses llama-cpp-python's low-level API; ``llama_cpp`` is imported only when a model is loaded.
"""

from __future__ import annotations

import ctypes
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import llama_cpp as L

from edge_sql.backends.chain import MIN_P, TOP_K, make_chain
from edge_sql.backends.checking import checked_sample, follows
from edge_sql.errors import ModelError


#: How a grammar constrains sampling: "check" (the sampled token only, the whole vocabulary when it is refused) or
#: "chain" (the whole vocabulary every step). Measured in benchmarks/grammar.py.
GRAMMAR_ARRANGEMENT = "check"
ARRANGEMENTS = ("check", "chain")
#: From a schema prefix this long (tokens), no flash attention (llama.cpp's CPU default): it decoded 1.44x slower beside
#: sakila's 2,160 tokens, as fast beside 480 (README, "Seconds per question"); shorter prefixes keep it.
LONG_PREFIX = 1024


@dataclass
class Sequence:
    index: int
    chain: object
    tokens: list
    data: bytearray
    logprob: float = 0.0
    row: int = -1  # where this sequence's logits are in the last batch
    done: bool = False
    stopped: bool = False  # ended early because the others had already agreed
    text: str = ""
    grammar: object = None  # this sequence's grammar state, when it is checked outside the chain
    resampled: int = 0  # tokens the grammar refused, sampled again from the constrained vocabulary
    cursor: object = None  # what the schema check (``steps/constrain``) made of this sequence's text so far
    refused: int = 0  # tokens the schema check refused
    greedy: bool = False


class BatchDecoder:
    """A llama.cpp context that holds up to ``max_sequences`` sequences sharing one prompt."""

    def __init__(self, model, *, context: int, threads: int, max_sequences: int = 16, n_batch: int = 512,
                 name: str = "the model", adapter=None, flash: bool = True):
        self.model = model  # a llama_model pointer (kept alive by its owner)
        self.name = name  # the model file, for error messages
        self.vocab = L.llama_model_get_vocab(model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        params = L.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = context, n_batch, n_batch
        params.n_seq_max, params.kv_unified = max_sequences, True
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        params.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_AUTO if flash else L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.flash, self.layout = flash, "" if flash else "no-flash"  # the KV layout a saved state's key names
        self.ctx = L.llama_init_from_model(model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context for batched decoding")
        if adapter is not None:  # a LoRA adapter (llama_adapter_lora_init), applied at full scale
            adapters, scales = (L.llama_adapter_lora_p_ctypes * 1)(adapter), (ctypes.c_float * 1)(1.0)
            if L.llama_set_adapters_lora(self.ctx, adapters, 1, scales):
                L.llama_free(self.ctx)
                raise RuntimeError("llama.cpp could not apply the LoRA adapter")
        self.context = L.llama_n_ctx(self.ctx)
        self.max_sequences = max_sequences
        self.memory = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(max(n_batch, max_sequences), 0, max_sequences)
        self.n_batch = n_batch
        self.cached: list[int] = []  # the tokens sequence 0 holds in the KV cache
        self.evaluated = 0  # prompt tokens decoded since the owner last reset these counts
        self.prompt_seconds = 0.0  # time spent evaluating them
        self.decode_seconds = 0.0  # time spent decoding candidates' tokens
        self.recurrent = bool(L.llama_model_is_recurrent(model) or L.llama_model_is_hybrid(model))
        self.arrangement = GRAMMAR_ARRANGEMENT
        self.grammars: dict[str, object] = {}  # grammar text -> compiled sampler, never used itself: only cloned
        self.resampled = 0  # tokens the grammar refused in the last sample() ("check" arrangement)
        self.candidates = (L.llama_token_data * self.n_vocab)()  # the whole vocabulary, for a refused token
        self.candidate_view = np.frombuffer(self.candidates, dtype=np.dtype(
            [("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
        self.token_ids = np.arange(self.n_vocab, dtype=np.int32)
        self.one = (L.llama_token_data * 1)()  # a single token, to ask the grammar about it
        self.texts: dict[int, str] = {}  # token -> its text, for the schema check
        self.check_seconds = 0.0  # time the schema check took, since the owner last reset it
        self.between = self.stalled = None  # the owner's hooks before and during a decode (llama.follow_cores)

    def close(self) -> None:
        if self.ctx:
            for sampler in self.grammars.values():
                L.llama_sampler_free(sampler)
            self.grammars.clear()
            L.llama_batch_free(self.batch)
            L.llama_free(self.ctx)
            self.ctx = None

    def __del__(self):
        self.close()

    # -- the prompt ------------------------------------------------------------------------------------------------

    def load_prompt(self, tokens: list[int]) -> int:
        """Make sequence 0 hold ``tokens`` with logits ready for the last one; return how many were decoded."""
        common = 0
        for a, b in zip(self.cached, tokens):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)  # the last prompt token is decoded again for its logits
        if common == 0 or self.recurrent or not L.llama_memory_seq_rm(self.memory, -1, common, -1):
            L.llama_memory_clear(self.memory, True)
            common = 0
        self.cached = list(tokens[:common])
        started = time.perf_counter()
        try:
            self.decode_prompt(tokens[common:], start=common)
        except ContextFull:
            self.forget()
            raise ModelError(f"llama.cpp failed while evaluating the prompt with {self.name}: no room in its "
                             f"{self.context}-token context for a prompt of {len(tokens)} tokens") from None
        except Exception:
            self.forget()
            raise
        self.prompt_seconds += time.perf_counter() - started
        self.cached = list(tokens)
        self.evaluated += len(tokens) - common
        return len(tokens) - common

    def decode_prompt(self, tokens: list[int], start: int) -> None:
        for offset in range(0, len(tokens), self.n_batch):
            chunk = tokens[offset: offset + self.n_batch]
            last = offset + len(chunk) == len(tokens)
            self.fill(
                [(token, start + offset + i, 0, last and i == len(chunk) - 1) for i, token in enumerate(chunk)]
            )
            self.decode()

    def fill(self, entries) -> None:
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits

    def decode(self) -> None:
        """Decode the filled batch: :class:`ContextFull` when the KV cache has no room, else a :class:`ModelError`
        for any failure (the caller forgets the cache: what it holds is no longer known). A decode the owner's
        ``stalled`` stopped (llama.cpp's abort callback) is done again: one ubatch, of which llama.cpp keeps nothing."""
        while True:
            if self.between is not None:
                self.between(self)
            try:
                with quiet(self.stalled is not None):  # a stopped decode is not an error to print
                    status = L.llama_decode(self.ctx, self.batch)
            except (OSError, RuntimeError, ValueError) as error:
                reason = " ".join(str(error).split()) or type(error).__name__
                raise ModelError(f"llama.cpp failed while decoding with {self.name}: {reason}") from None
            if status != 2 or self.stalled is None:
                break
        if status == 1:
            raise ContextFull()
        if status != 0:
            raise ModelError(f"llama.cpp failed while decoding with {self.name}: llama_decode returned {status}; "
                             "the model may need more memory than is free, or its file may be damaged")

    def forget(self) -> None:
        """Empty the KV cache after a failure, so that the next call starts clean."""
        L.llama_memory_clear(self.memory, True)
        self.cached = []

    # -- prefix state on disk -----------------------------------------------------------------------------------------

    def save_prefix(self, path: Path, tokens: list[int]) -> bool:
        """Write sequence 0's state for ``tokens`` (already decoded) to ``path``."""
        array = (L.llama_token * len(tokens))(*tokens)
        written = L.llama_state_seq_save_file(self.ctx, str(path).encode(), 0, array, len(tokens))
        return written > 0

    def load_prefix(self, path: Path, tokens: list[int]) -> bool:
        """Fill sequence 0 from a state file that must hold exactly ``tokens``; False if it does not."""
        L.llama_memory_clear(self.memory, True)
        self.cached = []
        capacity = len(tokens) + 1
        array = (L.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        read = L.llama_state_seq_load_file(self.ctx, str(path).encode(), 0, array, capacity, ctypes.byref(count))
        if read == 0 or count.value != len(tokens) or list(array[: count.value]) != tokens:
            L.llama_memory_clear(self.memory, True)
            return False
        self.cached = list(tokens)
        return True

    # -- sampling -----------------------------------------------------------------------------------------------------

    def sample(self, prompt_tokens, temperatures, seed, max_tokens, stop, is_eog, on_finish=None, grammar=None,
               check=None):
        """One completion per temperature; candidate i is seeded with ``seed + i``.

        Returns ``(text, logprob, tokens, stopped, refused)`` for each (refused: the tokens the check refused).
        ``on_finish(i, text)`` is called as each candidate ends; when it returns True the candidates still running are stopped (``stopped`` is True for them).
        ``grammar`` (GBNF text, checked by ``grammar.check_grammar`` first) constrains every candidate; so does
        ``check`` (a ``constrain.Check``: every candidate may only write a query over the schema's names).
        """
        n = len(temperatures)
        if n > self.max_sequences:
            raise ValueError(f"at most {self.max_sequences} candidates can be sampled together")
        compiled = self.compiled_grammar(grammar) if grammar else None
        self.resampled = 0
        self.load_prompt(prompt_tokens)
        for s in range(1, n):
            L.llama_memory_seq_rm(self.memory, s, -1, -1)
            L.llama_memory_seq_cp(self.memory, 0, s, -1, -1)
        in_chain = compiled is not None and self.arrangement == "chain"
        sequences = [
            Sequence(i, make_chain(t, seed + i, compiled if in_chain else None), [], bytearray(),
                     grammar=L.llama_sampler_clone(compiled) if compiled is not None and not in_chain else None,
                     greedy=t <= 0)
            for i, t in enumerate(temperatures)
        ]
        for sequence in sequences:
            sequence.row = -1  # the last prompt token's logits
            sequence.cursor = check.start() if check is not None else None
        position = len(prompt_tokens)
        cells = len(prompt_tokens)  # KV cells in use: the prompt's (shared by all sequences), then one a token each
        try:
            while True:
                live = [s for s in sequences if not s.done]
                for sequence in live:
                    if sequence.done:  # stopped by another's finish in this same step
                        continue
                    self.step(sequence, stop, is_eog, max_tokens)
                    if sequence.done and on_finish is not None and on_finish(sequence.index, sequence.text):
                        for other in sequences:
                            if not other.done:
                                other.done, other.stopped = True, True
                                other.text = other.data.decode("utf-8", "ignore")
                live = [s for s in sequences if not s.done]
                if not live or cells + len(live) > self.context:  # full: end here, as llama.cpp would refuse
                    break
                cells += len(live)
                self.fill([(s.tokens[-1], position, s.index, True) for s in live])
                for row, sequence in enumerate(live):
                    sequence.row = row
                started = time.perf_counter()
                try:
                    self.decode()
                except ContextFull:
                    break
                finally:
                    self.decode_seconds += time.perf_counter() - started
                position += 1
        except Exception:
            self.forget()  # a failed step leaves the cache in a state not worth keeping
            raise
        finally:
            for sequence in sequences:
                L.llama_sampler_free(sequence.chain)
                if sequence.grammar is not None:
                    L.llama_sampler_free(sequence.grammar)
                self.resampled += sequence.resampled
            # keep only the prompt, on sequence 0, for the next call (a recurrent state cannot be cut back: drop it)
            if self.recurrent:
                L.llama_memory_clear(self.memory, True)
                self.cached = []
            else:
                L.llama_memory_seq_rm(self.memory, 0, len(prompt_tokens), -1)
                for s in range(1, n):
                    L.llama_memory_seq_rm(self.memory, s, -1, -1)
        results = []
        for sequence in sequences:
            if not sequence.done:
                sequence.text = sequence.data.decode("utf-8", "ignore")
            results.append((sequence.text, sequence.logprob, len(sequence.tokens), sequence.stopped, sequence.refused))
        return results

    def step(self, sequence: Sequence, stop, is_eog, max_tokens) -> None:
        """Sample this sequence's next token from its logits, and decide whether it is finished."""
        token = L.llama_sampler_sample(sequence.chain, self.ctx, sequence.row)
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, sequence.row), shape=(self.n_vocab,))
        if sequence.grammar is not None and not self.allows(sequence.grammar, token):
            token = self.constrained_sample(sequence, logits)
            sequence.resampled += 1
        if sequence.cursor is not None:
            started = time.perf_counter()
            cursor = follows(self, sequence, token, stop, is_eog)
            if cursor is None:
                sequence.refused += 1
                token, cursor = checked_sample(self, sequence, logits, stop, is_eog, TOP_K, MIN_P)
            self.check_seconds += time.perf_counter() - started
            if token is None:  # nothing the model would write can go on: the candidate ends here
                sequence.done, sequence.text = True, sequence.data.decode("utf-8", "ignore")
                return
            sequence.cursor = cursor
        top = float(logits.max())
        sequence.logprob += float(logits[token]) - top - float(np.log(np.exp(logits - top).sum()))
        if is_eog(token):
            sequence.done, sequence.text = True, sequence.data.decode("utf-8", "ignore")
            return
        if sequence.grammar is not None:
            L.llama_sampler_accept(sequence.grammar, token)  # only ever a token the grammar allows
        sequence.tokens.append(token)
        sequence.data += self.piece(token)
        text = sequence.data.decode("utf-8", "ignore")
        cut = min((text.find(s) for s in stop if s and s in text), default=-1)
        if cut >= 0:
            sequence.done, sequence.text = True, text[:cut]
        elif len(sequence.tokens) >= max_tokens:
            sequence.done, sequence.text = True, text

    # -- grammars ----------------------------------------------------------------------------------------------------

    def compiled_grammar(self, text: str):
        """The grammar compiled for this model's vocabulary, once per decoder (callers clone it)."""
        sampler = self.grammars.get(text)
        if sampler is None:
            from edge_sql.backends.grammar_check import check_grammar
            from edge_sql.errors import GrammarError

            check_grammar(text)  # in a child process: a grammar llama.cpp cannot parse must not crash this one
            sampler = L.llama_sampler_init_grammar(self.vocab, text.encode("utf-8"), b"root")
            if not sampler:
                raise GrammarError("llama.cpp does not accept the grammar")
            if len(self.grammars) >= 8:
                L.llama_sampler_free(self.grammars.pop(next(iter(self.grammars))))
            self.grammars[text] = sampler
        return sampler

    def allows(self, grammar, token: int) -> bool:
        """Whether ``grammar``, in its current state, allows ``token`` next (end of generation included)."""
        one = self.one
        one[0].id, one[0].logit, one[0].p = token, 0.0, 0.0
        array = L.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)
        L.llama_sampler_apply(grammar, ctypes.byref(array))
        return one[0].logit != float("-inf")

    def constrained_sample(self, sequence: Sequence, logits) -> int:
        """Sample again with the grammar applied to the whole vocabulary, then the sequence's own chain."""
        view = self.candidate_view
        view["id"], view["logit"], view["p"] = self.token_ids, logits, 0.0
        array = L.llama_token_data_array(data=self.candidates, size=self.n_vocab, selected=-1, sorted=False)
        L.llama_sampler_apply(sequence.grammar, ctypes.byref(array))
        L.llama_sampler_apply(sequence.chain, ctypes.byref(array))
        return int(self.candidates[array.selected].id)

    def piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = L.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = L.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:size]


@contextmanager
def quiet(wanted: bool = True):
    """llama.cpp's error lines not printed within (llama-cpp-python prints them on stderr; a failure here becomes a
    :class:`ModelError` that says what failed)."""
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    logger.setLevel(logging.CRITICAL if wanted else level)
    try:
        yield
    finally:
        logger.setLevel(level)


class ContextFull(Exception):
    """The KV cache has no room for another step."""
