"""Judge candidates: validate each one against the schema, run the valid ones under the query limits and look up
the values each one that ran compares text columns with (``steps/ground.py``), as they come (``EarlyStop`` says
stop once a strict majority agree) or all at once; and say which failure came nearest to an answer when none ran."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from edge_sql.errors import QueryFailed, QueryTimeout
from edge_sql.steps.database import Database
from edge_sql.steps.execute import DEFAULT_MEMORY, execute
from edge_sql.steps.ground import ground
from edge_sql.steps.validate import (EXECUTION_ERROR, PARSE_ERROR, REFUSED, STOPPED, TIMEOUT, UNKNOWN_COLUMN,
                                     UNKNOWN_TABLE, Verdict, validate)
from edge_sql.steps.vote import Ballot, Entry, result_key


@dataclass(frozen=True)
class Limits:
    """What a query may cost: its rows shown, its seconds, and its memory in MiB (held to by the database's worker
    process, ``steps/sandbox.py``; a query on the database's own connection has only the engines' limits)."""

    max_rows: int = 100
    timeout: float = 10.0
    memory: int = DEFAULT_MEMORY



def judge(candidates, db: Database, limits: Limits = Limits(), timings: dict[str, float] | None = None) -> list[Entry]:
    """Validate each candidate, run the valid ones and look up their values: one unvoted :class:`Entry` a
    candidate, in order.

    The seconds spent validating, executing and looking values up are added to ``timings`` under ``validate``,
    ``execute`` and ``ground``.
    """
    entries, validate_seconds, execute_seconds, ground_seconds = [], 0.0, 0.0, 0.0
    for candidate in candidates:
        clock = time.perf_counter()
        verdict = validate(candidate.sql, db.schema)
        if candidate.unfinished and not verdict.ok:
            verdict = verdict.failed(verdict.kind, "the model was still reasoning when its token budget ran out: "
                                     "give it more with --max-tokens")
        validate_seconds += lap(clock)
        result, lookups = None, ()
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
        if result is not None:
            clock = time.perf_counter()
            lookups = ground(verdict.sql, db, timeout=limits.timeout, memory=limits.memory)
            ground_seconds += lap(clock)
        entries.append(Entry(candidate, verdict, result, lookups=lookups))
    if timings is not None:
        timings["validate"] = round(timings.get("validate", 0.0) + validate_seconds, 4)
        timings["execute"] = round(timings.get("execute", 0.0) + execute_seconds, 4)
        timings["ground"] = round(timings.get("ground", 0.0) + ground_seconds, 4)
    return entries



def nearest_failure(entries) -> Entry | None:
    """The failed candidate that came nearest to an answer (it ran but failed, before wrong names, before bad SQL)."""
    failed = [e for e in entries if e.result is None and e.verdict.kind != STOPPED]
    return max(failed, key=lambda e: (CLOSENESS.get(e.verdict.kind, 0), e.confidence), default=None)



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



class EarlyStop:
    """Judges candidates as they finish, and says stop once the vote is decided: a result has more votes than any
    other could still reach with the candidates still running (a strict majority of all N always is). Only a result
    that at least one candidate gave without comparing a column to a value no row holds can be decided early (a
    later candidate may find the value, and the vote prefers it); the vote of all N would choose the same result."""

    def __init__(self, db: Database, limits: Limits, candidates: int):
        self.db, self.limits, self.candidates = db, limits, candidates
        self.judged: dict[int, Entry] = {}
        self.counts: dict[object, int] = {}  # result -> the candidates that returned it
        self.trusted: set = set()  # the results some candidate gave that rests on no missing value
        self.timings: dict[str, float] = {}

    def __call__(self, index: int, candidate) -> bool:
        (entry,) = judge([candidate], self.db, self.limits, self.timings)
        self.judged[index] = entry
        if entry.result is not None and entry.verdict.ok:
            key = result_key(entry.result, entry.verdict.ordered)
            self.counts[key] = self.counts.get(key, 0) + 1
            if not entry.ungrounded:
                self.trusted.add(key)
        return self.decided()

    def decided(self) -> bool:
        """Whether a result rests on a stored value (or on none) and leads every other result by more votes than the
        candidates still running could give it.

        >>> stop = EarlyStop(None, Limits(), 5)
        >>> stop.judged, stop.counts, stop.trusted = dict.fromkeys(range(4)), {"a": 2}, {"a"}
        >>> stop.decided()  # 2 votes; the one still running could make another result 1 at most
        True
        >>> stop.counts = {"a": 2, "b": 1}
        >>> stop.decided()  # the last one could make it 2 against 2
        False
        """
        running = self.candidates - len(self.judged)
        for key in self.trusted:
            others = max((count for other, count in self.counts.items() if other != key), default=0)
            if self.counts[key] > others + running:
                return True
        return False

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
        for step in ("validate", "execute", "ground"):
            timings[step] = round(timings.get(step, 0.0) + self.timings.get(step, 0.0), 4)
        return entries



def lap(started: float) -> float:
    return round(time.perf_counter() - started, 4)
