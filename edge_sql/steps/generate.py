"""Sample N candidate queries from a model, and strip what small models add around the SQL.

With N = 1 the one candidate is greedy. With N > 1 the first candidate is greedy and the others are sampled at
``temperature`` with seeds ``seed + 1 … seed + N - 1``, so a run is reproducible and the greedy answer always stands.

>>> clean_sql("```sql\\nSELECT name FROM products;\\n```\\nThis query lists the products.")
'SELECT name FROM products'
>>> clean_sql("SQL: SELECT 1")
'SELECT 1'
>>> clean_sql("<think>\\nCount the rows.\\n</think>\\n<answer>\\nSELECT COUNT(*) FROM orders;\\n</answer>")
'SELECT COUNT(*) FROM orders'

A model that reasons first (a protocol with a ``reasoning`` budget: SLM-SQL, CscSQL-Merge) is not stopped at a
statement's end, since its ``<think>`` block may hold semicolons and blank lines; the SQL is taken from its
``<answer>``, and a think block that never closed gives no SQL:

>>> clean_sql("<think>\\nSELECT a FROM t; is wrong.\\n\\nUse b.\\n</think>\\n<answer>SELECT b FROM t;</answer>")
'SELECT b FROM t'
>>> clean_sql("<think>\\nFirst SELECT a FROM t; then")
''
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from edge_sql.backends import Completion, Cost, Model
from edge_sql.steps.prompt import Prompt

#: Where a statement ends: its semicolon, a blank line, or the start of a new chat turn (not a code fence: a model
#: may open its answer with one).
#: The most tokens a candidate may take when no bound is given.
MAX_TOKENS = 256
STATEMENT_STOPS = (";", "\n\n", "<|im_start|>")
FENCE = re.compile(r"```(?:sql|sqlite|duckdb)?\s*\n?(.*?)(?:```|$)", re.IGNORECASE | re.DOTALL)
LABEL = re.compile(r"^\s*(?:sql(?:ite)?\s*(?:query)?|query|answer)\s*:\s*", re.IGNORECASE)
STATEMENT_START = re.compile(r"\b(SELECT|WITH)\b", re.IGNORECASE)
#: Reasoning models (SLM-SQL, CSC-SQL) answer ``<think>…</think><answer>SQL</answer>``; the answer may be unclosed
#: (its ``</answer>`` is a stop string). A think block that never closed ran out of tokens: nothing after it counts.
ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
UNCLOSED_THINK = re.compile(r"<think>(?!.*</think>)", re.DOTALL)
PROSE_AFTER = re.compile(r"\n\s*(?:this|the|here|note|explanation|it|which|that)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Sampling:
    candidates: int = 5
    temperature: float = 0.7
    seed: int = 42
    max_tokens: int | None = None  # None: the bound answer_budget() derives from the question
    early_stop: bool = False  # stop the other candidates once the vote is decided (``judge.EarlyStop``)


def answer_budget(question: str, reasoning: int = 0) -> int:
    """How many tokens a candidate may take: 64 + 3 per word of the question, at most 256; a model that reasons
    first gets its protocol's ``reasoning`` budget instead.

    Measured on the Spider dev half: this bound covers 99% of the gold queries (SmolLM2's tokenizer; p95 is 70
    tokens) while a weak model that loops stops at about 100 tokens instead of 192.

    >>> answer_budget("How many customers are there?"), answer_budget("How many customers are there?", 1024)
    (79, 1024)
    """
    return reasoning or min(256, 64 + 3 * len(question.split()))


def unfinished(text: str) -> bool:
    """Whether an answer stopped inside its think block (its token budget ran out while it reasoned).

    >>> unfinished("<think>\\nThe table is"), unfinished("<think>x</think><answer>SELECT 1</answer>")
    (True, False)
    """
    return bool(UNCLOSED_THINK.search(text))


@dataclass(frozen=True)
class Candidate:
    """One generated query: the model's raw text, the SQL taken from it, and the model's confidence in it."""

    text: str
    sql: str
    logprob: float = 0.0
    tokens: int = 0
    stopped: bool = False  # cut short because a majority of the others already agreed
    unfinished: bool = False  # its token budget ran out inside its think block: it never answered
    refused: int = 0  # tokens the schema check refused while it was written


@dataclass(frozen=True)
class Generation:
    candidates: tuple[Candidate, ...]
    prompt_tokens: int
    generated_tokens: int
    seconds: float
    cost: Cost | None = None  # what the model says the sampling cost; None for a model that does not count

    def timings(self) -> dict[str, float]:
        """Where the seconds of generating went, as far as the model counts them: reading the schema prefix's state
        from disk or writing it there (``generate.cache``), evaluating the prompt tokens not cached
        (``generate.prompt_eval``), decoding the candidates' tokens (``generate.decode``) and checking them against
        the schema (``generate.check``); the rest of ``generate`` is sampling and judging candidates as they end.

        >>> Generation((), 2181, 90, 5.0, Cost(17, 0.3, 3.9, 0.2, 2164, 0.06)).timings()
        {'generate.cache': 0.06, 'generate.prompt_eval': 0.3, 'generate.decode': 3.9, 'generate.check': 0.2}
        >>> Generation((), 2181, 90, 5.0).timings()
        {}
        """
        cost = self.cost
        if cost is None:
            return {}
        return {"generate.cache": round(cost.cache_seconds, 4), "generate.prompt_eval": round(cost.prompt_seconds, 4),
                "generate.decode": round(cost.decode_seconds, 4), "generate.check": round(cost.check_seconds, 4)}

    def tokens(self) -> dict[str, int]:
        """The prompt's tokens and the candidates' together; for a model that counts, also the prompt tokens it
        evaluated and those whose state it read from disk (the rest were already in its memory).

        >>> Generation((), 2181, 90, 5.0, Cost(17, restored=2164)).tokens()
        {'prompt': 2181, 'generated': 90, 'evaluated': 17, 'restored': 2164}
        """
        counts = {"prompt": self.prompt_tokens, "generated": self.generated_tokens}
        if self.cost is not None:
            counts.update(evaluated=self.cost.prompt_evaluated, restored=self.cost.restored)
        return counts


def generate(model: Model, prompt: Prompt, sampling: Sampling, on_candidate=None,
             grammar: str | None = None, check=None) -> Generation:
    """N candidates for ``prompt``: the greedy one first, then samples.

    ``on_candidate(i, candidate)`` is called as candidate i is finished; when it returns True the model stops the
    candidates still running (they come back with ``stopped=True``). ``grammar`` (GBNF, from
    ``grammar.schema_grammar`` for ``prompt.prefix``) constrains what the model may write after the prefix; so does
    ``check`` (a ``constrain.Check``), given only to a model that checks tokens as it decodes them (``model.checks``;
    ``pipeline.fit_prompt`` decides: a model server cannot, and its candidates are judged once written).
    """
    stop = stops_for(prompt)
    temperatures = [0.0] + [sampling.temperature] * (sampling.candidates - 1)

    def on_finish(index: int, text: str) -> bool:
        return bool(on_candidate(index, candidate_of(prompt, Completion(text))))

    started = time.perf_counter()
    max_tokens = sampling.max_tokens or prompt.reasoning or MAX_TOKENS
    constraint = {"grammar": grammar} if grammar else {}  # a model without grammars still serves the rest
    if check is not None:
        constraint["check"] = check
    completions = model.sample(prompt.text, temperatures, seed=sampling.seed, max_tokens=max_tokens,
                               stop=stop, cache_prefix=prompt.cache_prefix or None,
                               on_finish=on_finish if on_candidate else None, **constraint)
    seconds = time.perf_counter() - started
    completions += [Completion("", stopped=True)] * (len(temperatures) - len(completions))  # a loop that broke off
    return Generation(
        candidates=tuple(candidate_of(prompt, c) for c in completions),
        prompt_tokens=model.count_tokens(prompt.text),
        generated_tokens=sum(c.tokens for c in completions),
        seconds=seconds,
        cost=getattr(model, "last_cost", None),
    )


def stops_for(prompt: Prompt) -> tuple[str, ...]:
    """Where a candidate ends: the protocol's stops, and a statement's end unless the model reasons first."""
    return prompt.stop if prompt.reasoning else tuple(dict.fromkeys(prompt.stop + STATEMENT_STOPS))


def candidate_of(prompt: Prompt, completion: Completion) -> Candidate:
    """The candidate a completion of ``prompt`` makes: its SQL taken from the prefix and the text, and whether a
    reasoning answer ran out of tokens before it answered."""
    answer = prompt.prefix + completion.text
    return Candidate(text=completion.text, sql=clean_sql(answer), logprob=completion.logprob, tokens=completion.tokens,
                     stopped=completion.stopped, unfinished=bool(prompt.reasoning) and unfinished(answer),
                     refused=completion.refused)


def clean_sql(text: str) -> str:
    """The SQL statement inside a model's answer: think/answer tags, fences, labels, trailing prose and semicolons
    removed."""
    text = THINK.sub("", text)
    answers = ANSWER.findall(text)
    text = answers[-1] if answers else text
    fenced = FENCE.search(text)
    if fenced and fenced.group(1).strip():
        text = fenced.group(1)
    text = LABEL.sub("", text.strip())
    start = STATEMENT_START.search(text)
    if start and text[: start.start()].strip() and not text.lstrip().startswith("("):
        text = text[start.start():]
    prose = PROSE_AFTER.search(text)
    if prose:
        text = text[: prose.start()]
    text = text.split(";", 1)[0]
    return text.strip()
