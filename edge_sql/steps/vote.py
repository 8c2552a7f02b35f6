"""Majority vote by result: candidates whose queries return the same rows agree.

Rows are compared as a multiset (order ignored) unless the query has a top-level ORDER BY; numbers are compared
after rounding to 6 decimal places, so ``2`` and ``2.0000000001`` agree. The largest group wins; a tie goes to
the group whose best candidate the model was most confident in (mean log-probability per token), then to the
group seen first. Invalid or failing candidates cast no vote.

A result that rests on a value no row holds loses to one that rests on stored values (``steps/ground.py``): when
some candidate compares columns with values that are all stored, a group whose every candidate compares a column
with a value that is not stored ranks below every other group, whatever its size; a group's candidate without such
a value speaks for it. Without a grounded candidate (a question about a city no row holds, where 0 may be right)
the vote is by size alone.

>>> from edge_sql.steps.generate import Candidate
>>> from edge_sql.steps.validate import VALID, Verdict
>>> from edge_sql.steps.execute import Result
>>> def entry(sql, rows):
...     return Entry(Candidate(sql, sql), Verdict(VALID, sql=sql), Result(("n",), rows))
>>> ballot = vote([entry("SELECT 2", ((2,),)), entry("SELECT 1+1", ((2.0,),)), entry("SELECT 3", ((3,),))])
>>> ballot.winner.candidate.sql, ballot.winner.votes
('SELECT 2', 2)
"""

from __future__ import annotations

import datetime
import decimal
from dataclasses import dataclass, replace

from edge_sql.steps.execute import Result
from edge_sql.steps.generate import Candidate
from edge_sql.steps.validate import Verdict

DECIMALS = 6


@dataclass(frozen=True)
class Entry:
    """One candidate on the ballot: what the model wrote, its verdict, its result, and how many agree with it."""

    candidate: Candidate
    verdict: Verdict
    result: Result | None = None
    votes: int = 0
    stage: str = "sample"  # the round it came from: "sample", "repair 1", "repair 2", …, "merge"
    lookups: tuple = ()  # the values its query compares text columns with, looked up (``ground.Lookup``)

    @property
    def confidence(self) -> float:
        return self.candidate.logprob / max(1, self.candidate.tokens)

    @property
    def ungrounded(self) -> tuple:
        """The lookups of values no row holds."""
        return tuple(lookup for lookup in self.lookups if not lookup.grounded)

    @property
    def grounded(self) -> bool:
        """Its query compares columns with values, and each one is stored (none known not to be)."""
        return any(lookup.stored for lookup in self.lookups) and not self.ungrounded


@dataclass(frozen=True)
class Ballot:
    entries: tuple[Entry, ...]
    winner: Entry | None

    @property
    def valid(self) -> int:
        return sum(1 for e in self.entries if e.result is not None)


def vote(entries: list[Entry]) -> Ballot:
    groups: dict[object, list[int]] = {}
    for index, entry in enumerate(entries):
        if entry.result is not None and entry.verdict.ok:
            groups.setdefault(result_key(entry.result, entry.verdict.ordered), []).append(index)
    counted = list(entries)
    for members in groups.values():
        for index in members:
            counted[index] = replace(entries[index], votes=len(members))
    if not groups:
        return Ballot(tuple(counted), None)
    grounding = any(counted[i].grounded for members in groups.values() for i in members)

    def strength(members: list[int]):
        trusted = not grounding or any(not counted[i].ungrounded for i in members)
        best = max(counted[i].confidence for i in members)
        return (trusted, len(members), best, -members[0])

    chosen = max(groups.values(), key=strength)
    representative = max(chosen, key=lambda i: (not counted[i].ungrounded, counted[i].confidence, -i))
    return Ballot(tuple(counted), counted[representative])


def result_key(result: Result, ordered: bool):
    rows = tuple(tuple(normalize(value) for value in row) for row in result.rows)
    if not ordered:
        rows = tuple(sorted(rows, key=repr))
    return (len(result.columns), ordered, result.truncated, rows)


def normalize(value):
    """A value as voting compares it: numbers rounded, integral numbers as ints, dates as ISO text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, decimal.Decimal)):
        rounded = round(float(value), DECIMALS)
        return int(rounded) if rounded.is_integer() else rounded
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return value
