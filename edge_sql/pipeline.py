"""The pipeline: the only place that knows the order of the steps.

question → schema (rendered for the model) → prompt → N candidates → verdicts → guarded execution → vote → answer.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass, field

from edge_sql.database import Database
from edge_sql.errors import DatabaseError, NoValidCandidate, QueryFailed, QueryTimeout, UsageError
from edge_sql.execute import execute
from edge_sql.generate import Sampling, generate
from edge_sql.model import Model
from edge_sql.prompt import Prompt, build_prompt
from edge_sql.schema import render_schema
from edge_sql.validate import validate
from edge_sql.vote import Ballot, Entry, vote

#: The longest question edgesql accepts, in characters.
MAX_QUESTION = 2000


@dataclass(frozen=True)
class Limits:
    """What a query may cost: its rows shown and its seconds."""

    max_rows: int = 100
    timeout: float = 10.0


@dataclass(frozen=True)
class Answer:
    question: str
    sql: str | None
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    truncated: bool
    votes: int
    ballot: Ballot
    model: str
    dialect: str
    timings: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)

    @property
    def candidates(self) -> int:
        return len(self.ballot.entries)


def ask(question: str, db: Database, model: Model, sampling: Sampling, limits: Limits = Limits()) -> Answer:
    """Answer ``question`` on ``db`` with ``model``; raise :class:`NoValidCandidate` when no candidate runs."""
    question = clean_question(question)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    prompt = fit_prompt(question, db, model, sampling.max_tokens)
    timings["prompt"] = lap(clock)

    clock = time.perf_counter()
    generation = generate(model, prompt, sampling)
    timings["generate"] = lap(clock)

    entries, validate_seconds, execute_seconds = [], 0.0, 0.0
    for candidate in generation.candidates:
        clock = time.perf_counter()
        verdict = validate(candidate.sql, db.schema)
        validate_seconds += lap(clock)
        result = None
        if verdict.ok:
            clock = time.perf_counter()
            try:
                result = execute(db, verdict.sql, max_rows=limits.max_rows, timeout=limits.timeout)
            except QueryTimeout as error:
                verdict = verdict.failed("timeout", str(error))
            except QueryFailed as error:
                verdict = verdict.failed("execution_error", str(error))
            execute_seconds += lap(clock)
        entries.append(Entry(candidate, verdict, result))
    timings["validate"], timings["execute"] = round(validate_seconds, 4), round(execute_seconds, 4)

    clock = time.perf_counter()
    ballot = vote(entries)
    timings["vote"] = lap(clock)

    winner = ballot.winner
    answer = Answer(
        question=question,
        sql=winner.verdict.sql if winner else None,
        columns=winner.result.columns if winner else (),
        rows=winner.result.rows if winner else (),
        truncated=winner.result.truncated if winner else False,
        votes=winner.votes if winner else 0,
        ballot=ballot,
        model=model.name,
        dialect=db.dialect,
        timings=timings,
        tokens={"prompt": generation.prompt_tokens, "generated": generation.generated_tokens},
    )
    if winner is None:
        raise NoValidCandidate(describe_failure(ballot), answer)
    return answer


def fit_prompt(question: str, db: Database, model: Model, max_tokens: int) -> Prompt:
    """The prompt with sample values if it fits the model's context, without them if only that fits."""
    preset = model.preset
    budget = model.context_length - max_tokens
    for samples in (True, False):
        schema = render_schema(db.schema, preset.schema_style, samples=samples)
        prompt = build_prompt(preset.protocol, schema, question, db.dialect, preset.prefix)
        needed = model.count_tokens(prompt.text)
        if needed <= budget:
            return prompt
    raise DatabaseError(
        f"the schema of {db.path.name} is too large for {model.name}: the prompt needs {needed:,} tokens and the "
        f"model's context leaves {budget:,}; use a model with a longer context or a database with fewer tables"
    )


def clean_question(question: str) -> str:
    """The question as the model will read it: valid UTF-8, no control characters, not empty, not huge."""
    text = question.encode("utf-8", "replace").decode("utf-8")
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in text)
    text = " ".join(text.split())
    if not text:
        raise UsageError("the question is empty; ask something about the data, e.g. \"How many orders are there?\"")
    if len(text) > MAX_QUESTION:
        raise UsageError(f"the question is {len(text):,} characters long; at most {MAX_QUESTION:,} are accepted")
    return text


#: How near a failed candidate came to an answer: the nearest one is shown to the user.
CLOSENESS = {"timeout": 6, "execution_error": 5, "unknown_column": 4, "unknown_table": 3, "parse_error": 2, "refused": 1}


def describe_failure(ballot: Ballot) -> str:
    """One line: how many candidates failed, and the best failing one with why."""
    if not ballot.entries:
        return "the model produced no candidates"
    best = max(ballot.entries, key=lambda e: (CLOSENESS.get(e.verdict.kind, 0), e.confidence))
    sql = " ".join(best.candidate.sql.split()) or best.candidate.text.strip()[:200] or "(nothing)"
    return (f"none of the {len(ballot.entries)} candidates is a valid, executable query; "
            f"best: {sql!r} — {best.verdict.kind}: {best.verdict.error}")


def lap(started: float) -> float:
    return round(time.perf_counter() - started, 4)
