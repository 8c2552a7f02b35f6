"""A model behind an OpenAI-compatible server: ``--model http://host:port/v1`` (or ``EDGESQL_MODEL=URL``).

Candidates are asked of the server's *completions* endpoint (``/v1/completions``, not chat): it gets the prompt text
the preset's protocol builds, answer prefix included, exactly as the local backend evaluates it, with the same
sampling (top-k 40, top-p 0.95, min-p 0.05, no repeat penalty), ``seed + i`` for candidate i, the stop strings and the
token bound. The N candidates are N requests in flight together (threads); ``logprobs`` are asked for and summed
where the server returns them (the vote's tie-break), except from llama-cpp-python's server (the one that answers
``/extras/tokenize``), which sorts the whole vocabulary in Python for every token it returns them for: 3-4 times the
time of a question with the demo model. ``?logprobs=1`` asks for them anyway, ``?logprobs=0`` never. With the grammar remedy on, the schema's GBNF grammar travels
in the ``grammar`` field (llama.cpp servers honour it); a server that refuses it is told once on stderr, and from then
on candidates are checked against the schema only after decoding.

Which preset (protocol, schema style, answer prefix, sampling) a server is asked with, in this order:

1. ``?preset=NAME`` in the URL (any of ``edgesql models list``);
2. the name the server gives its model in ``/v1/models``, matched against the presets: a preset's name, its
   repository (``Qwen/Qwen2.5-Coder-1.5B-Instruct``, with or without ``-GGUF``) or its GGUF file name;
3. otherwise the generic ChatML preset (protocol ``chatml-strict``), as for a GGUF file given by path.

``?protocol=NAME`` then overrides the protocol alone, ``?model=ID`` names the model to ask when the server serves
several (default: the first it lists), and ``?context=N`` gives the server's context in tokens (default: what
``/v1/models`` says, vLLM's ``max_model_len``, else the preset's, at most 4,096).

Tokens are counted by the server's tokenizer: llama-cpp-python's ``/extras/tokenize``, else ``/tokenize`` (llama.cpp's
``llama-server`` and vLLM); a server with neither gets an estimate of one token per 3 characters (more tokens than
English and SQL take, so a prompt is cut rather than refused). The API key comes from ``EDGESQL_API_KEY`` and is sent
as ``Authorization: Bearer``; it appears in no message, name or report.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from dataclasses import replace
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from edge_sql.backends.client import Client, ServerError, display_url
from edge_sql.backends.door import Completion
from edge_sql.errors import UsageError
from edge_sql.preset import GENERIC, Preset, get_preset, load_presets
from edge_sql.protocols import get_protocol

SCHEMES = ("http://", "https://")
#: Seconds a server may take to answer one request, queueing included (``--model-timeout``): a CPU server answers
#: the candidates of a question one after another.
DEFAULT_TIMEOUT = 300.0
#: The most requests one ``sample`` call has in flight together.
PARALLEL = 16
#: The URL's query parameters, and what each sets.
OPTIONS = ("preset", "protocol", "model", "context", "logprobs")
#: Sampling as the local backend samples (``backends/batch.py``, ``LlamaModel.complete``).
SAMPLING = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0}
#: Characters per token of the estimate used when the server cannot tokenize.
CHARS_PER_TOKEN = 3
#: The context a server gets when nothing says what it is (the local backend's largest, ``llama.MAX_CONTEXT``).
MAX_CONTEXT = 4096


def is_server_url(name: str) -> bool:
    """
    >>> is_server_url("http://127.0.0.1:8000/v1"), is_server_url("HTTPS://x/v1"), is_server_url("models/a.gguf")
    (True, True, False)
    """
    return name.lower().startswith(SCHEMES)


def load(name_or_path: str, *, threads: int | None = None, timeout: float | None = None,
         **_) -> "ServerModel | None":
    """A model served at the URL ``name_or_path``; None for a name that is not an http(s) URL."""
    if not is_server_url(name_or_path):
        return None
    return ServerModel(name_or_path, timeout=timeout or DEFAULT_TIMEOUT)


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """The API's base URL and the options in its query.

    >>> split_url("http://127.0.0.1:8000/v1/?preset=qwen2.5-coder-1.5b&context=2048")
    ('http://127.0.0.1:8000/v1', {'preset': 'qwen2.5-coder-1.5b', 'context': '2048'})
    """
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise UsageError(f"put the API key in EDGESQL_API_KEY, not in the model URL {display_url(url)}")
    if not parts.hostname:
        raise UsageError(f"the model URL {url!r} names no host: give e.g. http://127.0.0.1:8000/v1")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r} in the model URL; known: {', '.join(OPTIONS)}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")), options


def normal(name: str) -> str:
    """A model name as it is matched: the last path part, lower case, without ``.gguf`` or ``-gguf``.

    >>> normal("/models/Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"), normal("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF")
    ('qwen2.5-coder-1.5b-instruct-q4_k_m', 'qwen2.5-coder-1.5b-instruct')
    """
    name = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix in (".gguf", "-gguf"):
        name = name.removesuffix(suffix)
    return name


def match_preset(served: str) -> Preset | None:
    """The preset whose name, repository or GGUF file is the served model's name (an untuned preset before one with
    an adapter, which a server would not hold).

    >>> match_preset("Qwen/Qwen2.5-Coder-1.5B-Instruct").name, match_preset("tiny.gguf")
    ('qwen2.5-coder-1.5b', None)
    """
    wanted = normal(served)
    if not wanted:
        return None
    presets = sorted(load_presets().values(), key=lambda p: (bool(p.adapter), p.name))
    for preset in presets:
        names = (preset.name, preset.source.get("repo", ""), preset.source.get("file", ""))
        if wanted in {normal(name) for name in names if name}:
            return preset
    return None


class ServerModel:
    """A model served over HTTP by an OpenAI-compatible server (llama-cpp-python's, llama.cpp's, vLLM)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, api_key: str | None = None,
                 tries: int = 4, backoff: float = 0.5):
        self.base, options = split_url(url)
        key = api_key if api_key is not None else os.environ.get("EDGESQL_API_KEY", "")
        self.client = Client(self.base, api_key=key, timeout=timeout, tries=tries, backoff=backoff)
        self.url = self.client.shown
        listing = self.client.get("/models")
        entries = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("id") for e in entries):
            raise ServerError(f"the model server at {self.url} answered /models without a list of models: is it an "
                              "OpenAI-compatible API?")
        self.listing = entries  # what /v1/models says, as it said it
        self.served = [str(e["id"]) for e in entries]
        if not self.served and not options.get("model"):
            raise ServerError(f"the model server at {self.url} serves no model")
        self.model_id = options.get("model") or self.served[0]
        entry = next((e for e in entries if e["id"] == self.model_id), {})
        self.preset = chosen_preset(self.model_id, options)
        label = self.preset.name if self.preset is not GENERIC else normal(self.model_id) or self.model_id
        self.name = f"{label} at {urlsplit(self.base).netloc}"
        self.context_length = chosen_context(options, entry, self.preset)
        self.last_cost = None  # a server does not say what its prompt evaluation cost
        self.concurrent = True  # it may be asked from several threads at once (eval --workers)
        self.tokenizer: str | None = None  # how tokens are counted: "extras", "tokenize" or "estimate"
        self.grammar_taken: bool | None = None  # None until a server has answered a request with a grammar
        self.logprobs_taken = True  # False once the server refused them
        self.logprobs_wanted = {"1": True, "0": False}.get(options.get("logprobs", ""))  # None: as the server goes
        if options.get("logprobs", "") not in ("", "0", "1"):
            raise UsageError(f"logprobs={options['logprobs']} in the model URL: give 1 or 0")
        self._counted: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- tokens ------------------------------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        count = self._counted.get(text)
        if count is None:
            count = self.tokenize_count(text)
            if len(self._counted) > 256:
                self._counted.clear()
            self._counted[text] = count
        return count

    def tokenize_count(self, text: str) -> int:
        """Tokens in ``text`` by the server's tokenizer (the first of its endpoints that answers), else estimated."""
        ways = {"extras": ("/extras/tokenize", {"input": text, "model": self.model_id}),
                "tokenize": ("/tokenize", {"content": text, "prompt": text, "model": self.model_id})}
        for way in ([self.tokenizer] if self.tokenizer else list(ways)):
            if way == "estimate":
                break
            path, body = ways[way]
            try:
                answer = self.client.post(path, body, root=True)
            except ServerError as error:
                if error.status in (400, 404, 405, 422, 501) or (error.status == 0 and "not JSON" in str(error)):
                    continue  # this server has no such endpoint: try the next
                raise
            count = answer.get("count") if isinstance(answer, dict) else None
            tokens = answer.get("tokens") if isinstance(answer, dict) else None
            if isinstance(count, int) or isinstance(tokens, list):
                self.tokenizer = way
                return count if isinstance(count, int) else len(tokens)
        self.tokenizer = "estimate"
        return len(text) // CHARS_PER_TOKEN + 1

    # -- sampling ----------------------------------------------------------------------------------------------------

    def sample(self, prompt, temperatures, *, seed, max_tokens, stop, cache_prefix=None, on_finish=None,
               grammar=None):
        """One request per temperature, in flight together; candidate i is seeded ``seed + i``. With ``on_finish``
        returning True, the candidates not finished yet come back ``stopped`` (their requests are abandoned)."""
        if self.logprobs_wanted is None and self.tokenizer is None:
            self.count_tokens(prompt)  # tells which server this is (see asks_logprobs)
        if grammar and self.grammar_taken is not False:
            from edge_sql.backends.grammar_check import check_grammar

            check_grammar(grammar)  # a grammar llama.cpp cannot parse would crash the server, not only this process
        results: queue.Queue = queue.Queue()
        gate = threading.BoundedSemaphore(min(PARALLEL, max(1, len(temperatures))))
        stopping = threading.Event()

        def run(index: int, temperature: float) -> None:
            with gate:
                if stopping.is_set():
                    return results.put((index, None))
                try:
                    results.put((index, self.complete(prompt, temperature, seed + index, max_tokens, stop, grammar)))
                except BaseException as error:  # handed to the caller's thread, which raises it
                    results.put((index, error))

        for index, temperature in enumerate(temperatures):
            threading.Thread(target=run, args=(index, temperature), daemon=True,
                             name=f"edgesql-candidate-{index}").start()
        completions: dict[int, Completion] = {}
        for _ in temperatures:
            index, outcome = results.get()
            if isinstance(outcome, BaseException):
                stopping.set()
                raise outcome
            completions[index] = outcome or Completion("", stopped=True)
            if on_finish is not None and outcome is not None and on_finish(index, outcome.text):
                stopping.set()
                break
        return [completions.get(i, Completion("", stopped=True)) for i in range(len(temperatures))]

    def complete(self, prompt: str, temperature: float, seed: int, max_tokens: int, stop, grammar) -> Completion:
        """One completion; a request the server refuses for its logprobs or its grammar is asked again without
        them (remembered for the next ones)."""
        body = {"model": self.model_id, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                "seed": seed, "stop": list(stop), "stream": False, **SAMPLING}
        dropped: dict[str, ServerError] = {}  # what this server refused, and how
        while True:
            ask = dict(body)
            if self.asks_logprobs() and "logprobs" not in dropped:
                ask["logprobs"] = 1
            if grammar and self.grammar_taken is not False and "grammar" not in dropped:
                ask["grammar"] = grammar
            try:
                answer = self.client.post("/completions", ask)
            except ServerError as error:
                if error.status not in (400, 422, 500):
                    raise
                extra = next((name for name in ("logprobs", "grammar") if name in ask), None)
                if extra is not None:  # asked again without it (no logprobs, or no grammar, there)
                    dropped[extra] = error
                    continue
                if error.status == 400 and "context" in error.detail.lower():
                    raise ServerError(f"{error}; tell edgesql the server's context with ?context=N in the model "
                                      "URL", error.status, error.detail) from None
                raise
            if "logprobs" in dropped:
                self.logprobs_taken = False
            if "grammar" in dropped:
                self.refuse_grammar(dropped["grammar"])
            elif "grammar" in ask:
                self.grammar_taken = True
            return self.completion(answer)

    def asks_logprobs(self) -> bool:
        """Whether requests ask for logprobs: as ``?logprobs=`` says, else from every server but llama-cpp-python's
        (it answers ``/extras/tokenize``; its logprobs cost 3-4 times the time of a question), and never again from a
        server that refused them."""
        if not self.logprobs_taken:
            return False
        return self.logprobs_wanted if self.logprobs_wanted is not None else self.tokenizer != "extras"

    def refuse_grammar(self, error: ServerError) -> None:
        with self._lock:
            if self.grammar_taken is False:
                return
            self.grammar_taken = False
        reason = f"HTTP {error.status}" + (f": {error.detail}" if error.detail else "")
        sys.stderr.write(f"edgesql: the model server at {self.url} does not take the schema's grammar ({reason}); "
                         "its candidates are checked against the schema after decoding only\n")
        sys.stderr.flush()

    def completion(self, answer) -> Completion:
        """The :class:`Completion` in a ``/v1/completions`` answer."""
        choices = answer.get("choices") if isinstance(answer, dict) else None
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        text = choice.get("text")
        if not isinstance(text, str):
            raise ServerError(f"the model server at {self.url} answered without a completion text")
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        logprobs = token_logprobs(choice.get("logprobs"))
        tokens = usage.get("completion_tokens")
        return Completion(text, sum(logprobs), tokens if isinstance(tokens, int) else len(logprobs))

    # -- what the server says about itself ---------------------------------------------------------------------------

    def info(self) -> dict:
        """What ``edgesql models info URL`` shows: the server's models and how edgesql asks the one it uses."""
        self.count_tokens("SELECT 1")  # finds out how tokens are counted
        return {"url": self.url, "models": self.served, "model": self.model_id, "name": self.name,
                "preset": None if self.preset is GENERIC else self.preset.name, "protocol": self.preset.protocol,
                "context_length": self.context_length, "tokenizer": self.tokenizer,
                "api_key": "set (EDGESQL_API_KEY)" if self.client.api_key else "none", "listing": self.listing}


def chosen_preset(served: str, options: dict[str, str]) -> Preset:
    """The preset a server's model is asked with: ``?preset=``, else the served name's, else the generic one; then
    ``?protocol=`` over it."""
    if options.get("preset"):
        preset = get_preset(options["preset"])
        if preset is None:
            raise UsageError(f"unknown preset {options['preset']!r} in the model URL; known: "
                             f"{', '.join(load_presets())}")
    else:
        preset = match_preset(served) or GENERIC
    if options.get("protocol"):
        get_protocol(options["protocol"])  # a UsageError naming the known ones
        preset = replace(preset, protocol=options["protocol"])
    return preset


def chosen_context(options: dict[str, str], entry: dict, preset: Preset) -> int:
    """The server's context in tokens: ``?context=``, else what ``/v1/models`` says, else the preset's (at most
    :data:`MAX_CONTEXT`)."""
    if options.get("context"):
        try:
            context = int(options["context"])
        except ValueError:
            context = 0
        if context < 256:
            raise UsageError(f"context={options['context']} in the model URL is not a context length (≥ 256 tokens)")
        return context
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    for said in (entry.get("max_model_len"), meta.get("n_ctx")):
        if isinstance(said, int) and said > 0:
            return said
    return min(preset.context or MAX_CONTEXT, MAX_CONTEXT)


def token_logprobs(logprobs) -> list[float]:
    """The log-probabilities of the tokens of a choice: OpenAI's ``token_logprobs`` or llama-server's ``content``.

    >>> token_logprobs({"token_logprobs": [-0.5, None, -1.0]}), token_logprobs({"content": [{"logprob": -2.0}]})
    ([-0.5, -1.0], [-2.0])
    """
    if not isinstance(logprobs, dict):
        return []
    values = logprobs.get("token_logprobs")
    if values is None and isinstance(logprobs.get("content"), list):
        values = [item.get("logprob") for item in logprobs["content"] if isinstance(item, dict)]
    return [float(v) for v in values or [] if isinstance(v, (int, float))]


__all__ = ["DEFAULT_TIMEOUT", "ServerModel", "is_server_url", "load", "match_preset", "split_url"]
