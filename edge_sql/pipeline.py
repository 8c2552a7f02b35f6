"""The pipeline: the only place that knows the order of the steps.

question → schema (rendered for the model) → prompt → N candidates → verdicts → guarded execution → vote → answer.

What a question is answered with — the database, the model, sampling, limits and remedies — travels as one frozen
:class:`Setup`. ``ask`` is ``deliberate`` (everything up to the vote) then ``conclude``: ``decide`` (the vote and the answer), then
the second rounds the :class:`Remedies` switch on — a repair round when no candidate ran, a merge round when the vote
is split. ``edgesql eval`` deliberates once with N candidates and concludes for each candidate count k ≤ N on the
first k.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from edge_sql.steps.database import Database
from edge_sql.errors import DatabaseError, NoValidCandidate, QueryFailed, QueryTimeout
from edge_sql.steps.execute import DEFAULT_MEMORY, execute
from edge_sql.steps.generate import Sampling, answer_budget, generate
from edge_sql.steps.hints import render_hints, value_hints
from edge_sql.backends import Model
from edge_sql.steps.prompt import Prompt, build_prompt
from edge_sql.steps.question import clean_question
from edge_sql.remedies import Remedies
from edge_sql.steps.schema import Schema, render_schema
from edge_sql.steps.validate import (EXECUTION_ERROR, PARSE_ERROR, REFUSED, STOPPED, TIMEOUT, UNKNOWN_COLUMN,
                                     UNKNOWN_TABLE, Verdict, validate)
from edge_sql.steps.vote import Ballot, Entry, result_key, vote

@dataclass(frozen=True)
class Limits:
    """What a query may cost: its rows shown, its seconds, and its memory in MiB (held to by the database's worker
    process, ``steps/sandbox.py``; a query on the database's own connection has only the engines' limits)."""

    max_rows: int = 100
    timeout: float = 10.0
    memory: int = DEFAULT_MEMORY


@dataclass(frozen=True)
class Setup:
    """What a question is answered with: the open database, the loaded model, how candidates are sampled, what a
    query may cost, and which remedies are on."""

    db: Database
    model: Model
    sampling: Sampling
    limits: Limits = Limits()
    remedies: Remedies = Remedies()


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
    view: "View | None" = None  # what the model was shown

    @property
    def candidates(self) -> int:
        return len(self.ballot.entries)


@dataclass(frozen=True)
class Deliberation:
    """Every candidate for one question, judged, before the vote: enough to vote on any first k of them.

    The first candidate is greedy and candidate i is sampled with seed + i, so the first k entries of an N-candidate
    deliberation are exactly a k-candidate one: one sampling pass answers for every candidate count up to N.
    """

    question: str
    entries: tuple[Entry, ...]
    model: str
    dialect: str
    timings: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    view: "View | None" = None  # what the model was shown, for a second round

    def first(self, candidates: int) -> "Deliberation":
        """The deliberation a ``candidates``-candidate run would have made."""
        return replace(self, entries=self.entries[:candidates])


@dataclass(frozen=True)
class View:
    """What the model saw: the schema (pruned, with hints) and its rendering, the prompt, the grammar if any."""

    schema: Schema
    rendered: str
    prompt: Prompt
    grammar: str | None = None
    context: tuple[str, str] | None = None
    note: str = ""  # what was left out of the schema, and why
    cut: bool = False  # tables, columns or sample values were left out only so that the prompt would fit
    hints: str = ""  # the stored values the question points at, shown after it


def ask(question: str, setup: Setup, *, context: tuple[str, str] | None = None) -> Answer:
    """Answer ``question`` with ``setup``; raise :class:`NoValidCandidate` when no candidate runs.

    ``context`` is the previous question and its SQL, for a follow-up question that refers to them.
    """
    deliberation = deliberate(question, setup, context=context)
    answer = conclude(deliberation, setup)
    if answer.ballot.winner is None:
        raise NoValidCandidate(describe_failure(answer.ballot), answer)
    return answer


def deliberate(question: str, setup: Setup, *, context: tuple[str, str] | None = None) -> Deliberation:
    """Prompt the model, generate ``sampling.candidates`` candidates and judge each one: everything but the vote."""
    db, model, sampling, limits = setup.db, setup.model, setup.sampling, setup.limits
    question = clean_question(question)
    if sampling.max_tokens is None:
        sampling = replace(sampling, max_tokens=answer_budget(question))
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    view = fit_prompt(question, setup, sampling.max_tokens, context=context)
    timings["prompt"] = lap(clock)

    clock = time.perf_counter()
    early = EarlyStop(db, limits, sampling.candidates) if sampling.early_stop and sampling.candidates > 2 else None
    generation = generate_for(model, view, sampling, on_candidate=early)
    timings["generate"] = lap(clock)

    entries = early.entries(generation.candidates, timings) if early else judge(generation.candidates, db, limits, timings)
    return Deliberation(
        question=question,
        entries=tuple(entries),
        model=model.name,
        dialect=db.dialect,
        timings=timings,
        tokens={"prompt": generation.prompt_tokens, "generated": generation.generated_tokens},
        view=view,
    )


def generate_for(model: Model, view: View, sampling: Sampling, on_candidate=None, prompt: Prompt | None = None):
    """Candidates for ``prompt`` (the view's own by default), under the view's grammar when it has one."""
    return generate(model, prompt or view.prompt, sampling, on_candidate=on_candidate, grammar=view.grammar)


def conclude(deliberation: Deliberation, setup: Setup, candidates: int | None = None) -> Answer:
    """The answer for the first ``candidates`` entries (all by default): the vote, then a repair round while no
    candidate ran (up to ``remedies.repair`` rounds), then a merge round if the vote is split and ``remedies.merge``.

    Unlike :func:`ask` it does not raise when no candidate runs: the answer's ``sql`` is then None.
    """
    if candidates is not None:
        deliberation = deliberation.first(candidates)
    count = len(deliberation.entries)
    answer = decide(deliberation)
    rounds = 0
    while answer.ballot.winner is None and rounds < setup.remedies.repair and deliberation.view is not None:
        rounds += 1
        deliberation = repair_round(deliberation, replace(setup, sampling=replace(setup.sampling, candidates=count)),
                                    rounds)
        answer = decide(deliberation)
    if setup.remedies.merge and deliberation.view is not None:
        answer = merge_round(answer, deliberation, setup)
    return answer


def repair_round(deliberation: Deliberation, setup: Setup, round_number: int) -> Deliberation:
    """One more round of candidates, prompted with the nearest failure: its SQL, its error, the valid names."""
    from edge_sql.steps.repair import repair_request

    failing = nearest_failure(deliberation.entries)
    sql = failing.candidate.sql if failing else ""
    error = failing.verdict.error if failing else "the model wrote no SQL"
    request = repair_request(deliberation.question, sql, error or failing.verdict.kind, setup.db.schema,
                             kind=failing.verdict.kind if failing else None,
                             name=failing.verdict.name if failing else None)
    return second_round(deliberation, request, f"repair {round_number}", setup)


def merge_round(answer: Answer, deliberation: Deliberation, setup: Setup) -> Answer:
    """When no result has a majority, one greedy candidate asked to settle between the two most-voted queries; it
    becomes the answer when it runs, else the vote stands."""
    from edge_sql.steps.merge import merge_request, split_vote

    pair = split_vote(answer.ballot)
    if pair is None:
        return answer
    first, second = ((e.verdict.sql, e.result.columns, e.result.rows) for e in pair)
    request = merge_request(deliberation.question, first, second)
    merged = second_round(deliberation, request, "merge", replace(setup, sampling=replace(setup.sampling, candidates=1)))
    entry = merged.entries[-1]
    if entry.result is None:
        return replace(answer, ballot=Ballot(answer.ballot.entries + (entry,), answer.ballot.winner),
                       timings={**answer.timings, **merged.timings}, tokens=merged.tokens)
    key = result_key(entry.result, entry.verdict.ordered)
    agreeing = 1 + sum(1 for e in answer.ballot.entries
                       if e.result is not None and result_key(e.result, e.verdict.ordered) == key)
    entry = replace(entry, votes=agreeing)
    return replace(answer, sql=entry.verdict.sql, columns=entry.result.columns, rows=entry.result.rows,
                   truncated=entry.result.truncated, votes=agreeing,
                   ballot=Ballot(answer.ballot.entries + (entry,), entry),
                   timings={**answer.timings, **merged.timings}, tokens=merged.tokens)


def second_round(deliberation: Deliberation, request: str, stage: str, setup: Setup) -> Deliberation:
    """The deliberation with the candidates of one more round, asked ``request`` over the same schema, appended."""
    db, model, sampling = setup.db, setup.model, setup.sampling
    view = deliberation.view
    preset = model.preset
    prompt = build_prompt(preset.protocol, view.rendered, request, db.dialect, preset.prefix)
    sampling = replace(sampling, max_tokens=sampling.max_tokens or answer_budget(deliberation.question))
    timings = dict(deliberation.timings)
    clock = time.perf_counter()
    generation = generate_for(model, view, sampling, prompt=prompt)
    step = stage.split()[0]  # "repair 2" is timed with every repair round
    timings[step] = round(timings.get(step, 0.0) + lap(clock), 4)
    entries = [replace(entry, stage=stage) for entry in judge(generation.candidates, db, setup.limits, timings)]
    tokens = {name: deliberation.tokens.get(name, 0) + count for name, count in
              (("prompt", generation.prompt_tokens), ("generated", generation.generated_tokens))}
    return replace(deliberation, entries=deliberation.entries + tuple(entries), timings=timings, tokens=tokens)


def nearest_failure(entries) -> Entry | None:
    """The failed candidate that came nearest to an answer (it ran but failed, before wrong names, before bad SQL)."""
    failed = [e for e in entries if e.result is None and e.verdict.kind != STOPPED]
    return max(failed, key=lambda e: (CLOSENESS.get(e.verdict.kind, 0), e.confidence), default=None)


def judge(candidates, db: Database, limits: Limits = Limits(), timings: dict[str, float] | None = None) -> list[Entry]:
    """Validate each candidate and run the valid ones: one unvoted :class:`Entry` a candidate, in order.

    The seconds spent validating and executing are added to ``timings`` under ``validate`` and ``execute``.
    """
    entries, validate_seconds, execute_seconds = [], 0.0, 0.0
    for candidate in candidates:
        clock = time.perf_counter()
        verdict = validate(candidate.sql, db.schema)
        validate_seconds += lap(clock)
        result = None
        if verdict.ok:
            clock = time.perf_counter()
            try:
                result = execute(db, verdict.sql, max_rows=limits.max_rows, timeout=limits.timeout,
                                 memory=limits.memory)
            except QueryTimeout as error:
                verdict = verdict.failed(TIMEOUT, str(error))
            except QueryFailed as error:
                verdict = verdict.failed(EXECUTION_ERROR, str(error))
            execute_seconds += lap(clock)
        entries.append(Entry(candidate, verdict, result))
    if timings is not None:
        timings["validate"] = round(timings.get("validate", 0.0) + validate_seconds, 4)
        timings["execute"] = round(timings.get("execute", 0.0) + execute_seconds, 4)
    return entries


class EarlyStop:
    """Judges candidates as they finish, and says stop once a strict majority of all N agree on a result."""

    def __init__(self, db: Database, limits: Limits, candidates: int):
        self.db, self.limits, self.candidates = db, limits, candidates
        self.judged: dict[int, Entry] = {}
        self.counts: dict[object, int] = {}
        self.timings: dict[str, float] = {}

    def __call__(self, index: int, candidate) -> bool:
        (entry,) = judge([candidate], self.db, self.limits, self.timings)
        self.judged[index] = entry
        if entry.result is None:
            return False
        key = result_key(entry.result, entry.verdict.ordered)
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key] * 2 > self.candidates

    def entries(self, candidates, timings: dict[str, float]) -> list[Entry]:
        """Every candidate's entry: judged as it finished, marked stopped, or judged now."""
        entries = []
        for index, candidate in enumerate(candidates):
            if candidate.stopped:
                entries.append(Entry(candidate, Verdict(STOPPED, "stopped early: a majority had already agreed")))
            elif index in self.judged:
                entries.append(replace(self.judged[index], candidate=candidate))
            else:
                entries.extend(judge([candidate], self.db, self.limits, self.timings))
        for step in ("validate", "execute"):
            timings[step] = round(timings.get(step, 0.0) + self.timings.get(step, 0.0), 4)
        return entries


def decide(deliberation: Deliberation, candidates: int | None = None) -> Answer:
    """The answer the vote of the first ``candidates`` entries gives (all of them by default), no second round.

    Unlike :func:`ask` it does not raise when no candidate runs: the answer's ``sql`` is then None.
    """
    entries = deliberation.entries if candidates is None else deliberation.entries[:candidates]
    clock = time.perf_counter()
    ballot = vote(list(entries))
    timings = {**deliberation.timings, "vote": lap(clock)}
    winner = ballot.winner
    return Answer(
        question=deliberation.question,
        sql=winner.verdict.sql if winner else None,
        columns=winner.result.columns if winner else (),
        rows=winner.result.rows if winner else (),
        truncated=winner.result.truncated if winner else False,
        votes=winner.votes if winner else 0,
        ballot=ballot,
        model=deliberation.model,
        dialect=deliberation.dialect,
        timings=timings,
        tokens=dict(deliberation.tokens),
        view=deliberation.view,
    )


def fit_prompt(question: str, setup: Setup, max_tokens: int, *, context: tuple[str, str] | None = None) -> View:
    """What the model is shown: the first schema view that fits its context (with sample values, then without),
    its prompt, and the grammar of that schema when ``remedies.grammar``."""
    db, model, remedies = setup.db, setup.model, setup.remedies
    preset = model.preset
    budget = model.context_length - max_tokens
    found = value_hints(db.schema, db, question) if remedies.hints else ()
    for schema, samples in attempts(schema_views(db, question, remedies)):
        rendered = render_schema(schema, preset.schema_style, samples=samples)
        hints = render_hints(found, schema)
        asked = f"{question}\n{hints}" if hints else question
        prompt = build_prompt(preset.protocol, rendered, asked, db.dialect, preset.prefix, context=context)
        needed = model.count_tokens(prompt.text)
        if needed <= budget:
            grammar = None
            if remedies.grammar:
                from edge_sql.steps.grammar import schema_grammar

                grammar = schema_grammar(schema, db.dialect, preset.prefix)
            from edge_sql.steps.focus import pruning_note, size_of

            note = pruning_note(db.schema, schema, remedies.prune) + ("" if samples else "; no sample values")
            cut = not samples or (remedies.prune == "auto" and size_of(schema) != size_of(db.schema))
            return View(schema, rendered, prompt, grammar, context, note, cut, hints)
    room = f"the model's context leaves {budget:,}" if budget > 0 else (
        f"the model's context ({model.context_length:,} tokens) has no room beside the {max_tokens} tokens of the answer")
    raise DatabaseError(
        f"the schema of {db.path.name} is too large for {model.name}: the prompt needs {needed:,} tokens and "
        f"{room}; use a model with a longer context or a database with fewer tables"
    )


def attempts(views):
    """Each schema view with its sample values, then each again without them: a pruned schema that keeps its sample
    values comes before the whole schema without any. Views are computed only as far as they are needed.

    >>> list(attempts(iter("ab")))
    [('a', True), ('b', True), ('a', False), ('b', False)]
    """
    seen = []
    for view in views:
        seen.append(view)
        yield view, True
    for view in seen:
        yield view, False


def schema_views(db: Database, question: str, remedies: Remedies):
    """The schemas to show the model, best first: the whole schema (pruned to the question's tables when
    ``prune="always"``), then ever smaller prunings when ``prune="auto"`` and it does not fit."""
    from edge_sql.steps.focus import focus_schemas

    yield from focus_schemas(db, question, prune=remedies.prune)


#: How near a failed candidate came to an answer: the nearest one is shown to the user.
CLOSENESS = {TIMEOUT: 6, EXECUTION_ERROR: 5, UNKNOWN_COLUMN: 4, UNKNOWN_TABLE: 3, PARSE_ERROR: 2, REFUSED: 1}


def describe_failure(ballot: Ballot) -> str:
    """One line: how many candidates failed, and the best failing one with why."""
    if not ballot.entries:
        return "the model produced no candidates"
    best = nearest_failure(ballot.entries) or ballot.entries[0]
    sql = " ".join(best.candidate.sql.split()) or best.candidate.text.strip()[:200] or "(nothing)"
    return (f"none of the {len(ballot.entries)} candidates is a valid, executable query; "
            f"best: {sql!r} — {best.verdict.kind}: {best.verdict.error}")


def lap(started: float) -> float:
    return round(time.perf_counter() - started, 4)
