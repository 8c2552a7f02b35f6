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

from edge_sql.backends import Model
from edge_sql.errors import DatabaseError, NoValidCandidate
from edge_sql.protocols import get_protocol
from edge_sql.remedies import Remedies
from edge_sql.steps.confidence import DEFAULT as CALIBRATION, Signals, signals_of
from edge_sql.steps.database import Database
from edge_sql.steps.generate import Sampling, answer_budget, generate
from edge_sql.steps.hints import render_hints, value_hints
from edge_sql.steps.judge import EarlyStop, Limits, describe_failure, judge, lap, nearest_failure
from edge_sql.steps.prompt import Prompt, build_prompt
from edge_sql.steps.question import clean_question
from edge_sql.steps.schema import Schema, render_schema
from edge_sql.steps.validate import validate
from edge_sql.steps.vote import Ballot, Entry, result_key, vote

__all__ = ["Answer", "Deliberation", "Limits", "Merger", "Setup", "View", "ask", "conclude", "decide", "deliberate",
           "describe_failure", "fit_prompt", "judge"]

@dataclass(frozen=True)
class Merger:
    """Who settles a split vote (``remedies.merge``): ``model`` (the answering model itself when None; CSC-SQL uses
    a merge-revision model of its own), asked for ``candidates`` queries at ``temperature`` (the first greedy), whose
    vote is the merged answer."""

    model: Model | None = None
    candidates: int = 1
    temperature: float = 0.0


@dataclass(frozen=True)
class Setup:
    """What a question is answered with: the open database, the loaded model, how candidates are sampled, what a
    query may cost, which remedies are on, and who merges a split vote."""

    db: Database
    model: Model
    sampling: Sampling
    limits: Limits = Limits()
    remedies: Remedies = Remedies()
    merger: Merger = Merger()


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
    signals: "Signals | None" = None  # what the ballot says about the answer (None when nothing won)
    confidence: float | None = None  # the calibrated chance that the answer is right

    @property
    def candidates(self) -> int:
        return len(self.ballot.entries)

    @property
    def ungrounded(self) -> tuple:
        """The values the chosen query compares text columns with that no row holds (``steps/ground.py``), each with
        the closest stored values: an answer that rests on one says so."""
        return self.ballot.winner.ungrounded if self.ballot.winner else ()


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
    check: object = None  # a constrain.Check of the schema shown, when ``remedies.constrain``
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
        sampling = replace(sampling, max_tokens=budget_for(model, question))
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    view = fit_prompt(question, setup, sampling.max_tokens, context=context)
    timings["prompt"] = lap(clock)

    clock = time.perf_counter()
    early = EarlyStop(db, limits, sampling.candidates) if sampling.early_stop and sampling.candidates > 2 else None
    generation = generate(model, view.prompt, sampling, on_candidate=early, grammar=view.grammar, check=view.check)
    timings["generate"] = lap(clock)
    timings.update(generation.timings())

    entries = early.entries(generation.candidates, timings) if early else judge(generation.candidates, db, limits, timings)
    return Deliberation(
        question=question,
        entries=tuple(entries),
        model=model.name,
        dialect=db.dialect,
        timings=timings,
        tokens=generation.tokens(),
        view=view,
    )


def budget_for(model: Model, question: str) -> int:
    """The tokens a candidate of ``model`` may take: the reasoning budget of its protocol, else one sized by the
    question."""
    return answer_budget(question, get_protocol(model.preset.protocol).reasoning)


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
    return assess(answer)


def assess(answer: Answer) -> Answer:
    """The answer with its signals and its calibrated confidence."""
    signals = signals_of(answer.ballot)
    return replace(answer, signals=signals, confidence=None if signals is None else CALIBRATION.probability(signals))


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
    """When no result has a majority, the merger is shown the two most-voted queries and what each returned and
    asked for the right one (CSC-SQL's corrective self-consistency); the vote of its candidates becomes the answer
    when one runs, else the first vote stands."""
    from edge_sql.steps.merge import drafts, merge_request, split_vote

    pair = split_vote(answer.ballot)
    if pair is None:
        return answer
    db, merger, view = setup.db, setup.merger, deliberation.view
    model = merger.model or setup.model
    preset = model.preset
    first, second = ((e.verdict.sql, e.result.columns, e.result.rows) for e in pair)
    rendered = view.rendered if preset.schema_style == setup.model.preset.schema_style else \
        render_schema(view.schema, preset.schema_style, samples=False)
    if get_protocol(preset.protocol).merge:
        prompt = build_prompt(preset.protocol, rendered, deliberation.question, db.dialect, preset.prefix,
                              drafts=drafts(first, second))
    else:
        prompt = build_prompt(preset.protocol, rendered, merge_request(deliberation.question, first, second),
                              db.dialect, preset.prefix)
    grammar = grammar_for(view.schema, db.dialect, prompt) if view.grammar is not None else None
    sampling = replace(setup.sampling, candidates=merger.candidates, temperature=merger.temperature,
                       max_tokens=setup.sampling.max_tokens or budget_for(model, deliberation.question))
    check = check_for(view.schema, prompt) if view.check is not None else None
    merged, timings, tokens = run_round(model, prompt, (grammar, check), sampling, "merge", setup, answer.timings,
                                        answer.tokens)
    ballot = vote(merged)
    winner = ballot.winner
    if winner is None:
        return replace(answer, ballot=Ballot(answer.ballot.entries + ballot.entries, answer.ballot.winner),
                       timings=timings, tokens=tokens)
    key = result_key(winner.result, winner.verdict.ordered)
    agreeing = sum(1 for e in answer.ballot.entries + ballot.entries
                   if e.result is not None and result_key(e.result, e.verdict.ordered) == key)
    chosen = replace(winner, votes=agreeing)
    entries = answer.ballot.entries + tuple(chosen if e is winner else e for e in ballot.entries)
    return replace(answer, sql=chosen.verdict.sql, columns=chosen.result.columns, rows=chosen.result.rows,
                   truncated=chosen.result.truncated, votes=agreeing, ballot=Ballot(entries, chosen),
                   timings=timings, tokens=tokens)


def second_round(deliberation: Deliberation, request: str, stage: str, setup: Setup) -> Deliberation:
    """The deliberation with the candidates of one more round, asked ``request`` over the same schema, appended."""
    db, model, sampling = setup.db, setup.model, setup.sampling
    view = deliberation.view
    preset = model.preset
    prompt = build_prompt(preset.protocol, view.rendered, request, db.dialect, preset.prefix)
    sampling = replace(sampling, max_tokens=sampling.max_tokens or budget_for(model, deliberation.question))
    check = check_for(view.schema, prompt) if view.check is not None else None
    entries, timings, tokens = run_round(model, prompt, (view.grammar, check), sampling, stage, setup,
                                         deliberation.timings, deliberation.tokens)
    return replace(deliberation, entries=deliberation.entries + tuple(entries), timings=timings, tokens=tokens)


def run_round(model: Model, prompt: Prompt, constraints: tuple, sampling: Sampling, stage: str, setup: Setup,
              timings: dict[str, float], tokens: dict[str, int]) -> tuple[list[Entry], dict, dict]:
    """The judged candidates of one more round (marked ``stage``), decoded under ``constraints`` (the grammar and the
    check, each None when off), and the timings and token counts with its own added (a stage's first word names its
    timing: "repair 2" is timed with every repair round)."""
    timings = dict(timings)
    clock = time.perf_counter()
    grammar, check = constraints
    generation = generate(model, prompt, sampling, grammar=grammar, check=check)
    step = stage.split()[0]
    timings[step] = round(timings.get(step, 0.0) + lap(clock), 4)
    entries = [replace(entry, stage=stage) for entry in judge(generation.candidates, setup.db, setup.limits, timings)]
    tokens = {**tokens, **{name: tokens.get(name, 0) + count for name, count in generation.tokens().items()}}
    return entries, timings, tokens


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
            grammar = grammar_for(schema, db.dialect, prompt) if remedies.grammar else None
            from edge_sql.steps.focus import fit_note, size_of

            note = fit_note(db.schema, schema, samples, remedies.prune)
            cut = not samples or (remedies.prune == "auto" and size_of(schema) != size_of(db.schema))
            # a model server cannot run a check per token: its candidates are judged once written, as without it
            check = check_for(schema, prompt) if remedies.constrain and getattr(model, "checks", False) else None
            return View(schema, rendered, prompt, grammar, check, context, note, cut, hints)
    room = f"the model's context leaves {budget:,}" if budget > 0 else (
        f"the model's context ({model.context_length:,} tokens) has no room beside the {max_tokens} tokens of the answer")
    raise DatabaseError(
        f"the schema of {db.path.name} is too large for {model.name}: the prompt needs {needed:,} tokens and "
        f"{room}; use a model with a longer context, a database with fewer tables, or fewer answer tokens "
        "(--max-tokens)"
    )


def grammar_for(schema: Schema, dialect: str, prompt: Prompt) -> str:
    """The schema grammar for what the model writes after ``prompt``'s prefix (a reasoning answer: after its think
    block)."""
    from edge_sql.steps.grammar import schema_grammar

    return schema_grammar(schema, dialect, prompt.prefix, reasoning=bool(prompt.reasoning))


def check_for(schema: Schema, prompt: Prompt):
    """The decoding-time check of what the model writes after ``prompt``'s prefix (a reasoning answer: inside its
    ``<answer>``)."""
    from edge_sql.steps.constrain import Check

    return Check(schema, prompt.prefix, reasoning=bool(prompt.reasoning), judge=lambda sql: validate(sql, schema).ok)


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
