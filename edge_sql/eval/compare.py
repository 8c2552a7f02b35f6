"""Two ``edgesql eval`` reports of the same questions, compared question by question.

Two models a few points apart on a few hundred questions may differ by chance. What decides it is the questions one
got right and the other did not: with no real difference each of them is a coin toss, so the chance of a split at
least as uneven is McNemar's exact test (a two-sided sign test on the discordant questions).

>>> sign_test(10, 10)
1.0
>>> round(sign_test(2, 12), 4)  # 14 questions split 2 to 12: unlikely by chance
0.0129
>>> round(sign_test(8, 13), 2)  # 21 questions split 8 to 13: a coin does that a third of the time
0.38
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from math import comb
from pathlib import Path


@dataclass(frozen=True)
class Comparison:
    """One answer (``greedy``, ``vote@5``) of the questions both reports scored: who got which right."""

    label: str
    both: int
    only_first: int
    only_second: int
    neither: int

    @property
    def questions(self) -> int:
        return self.both + self.only_first + self.only_second + self.neither

    @property
    def p_value(self) -> float:
        return sign_test(self.only_first, self.only_second)


def sign_test(first: int, second: int) -> float:
    """Two-sided exact p-value of ``first`` against ``second`` successes of a fair coin (1.0 when both are 0)."""
    n, low = first + second, min(first, second)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(comb(n, k) for k in range(low + 1)) / 2 ** n)


def rights(report: dict) -> dict[tuple, dict[str, bool]]:
    """Each scored question of a report → {answer label: right}. A question is its database, wording and gold query
    (the same question asked twice in a dataset is told apart by its turn), not its index: a held-back slice written
    out and scored again numbers its questions anew."""
    found: dict[tuple, dict[str, bool]] = {}
    turns: Counter = Counter()
    for record in report.get("records", ()):
        if record.get("skipped") or not record.get("answers"):
            continue
        key = (record.get("db_id"), record.get("question"), record.get("gold"))
        found[key + (turns[key],)] = {label(answer["candidates"]): bool(answer["right"]) for answer in record["answers"]}
        turns[key] += 1
    return found


def label(candidates: int) -> str:
    return "greedy" if candidates == 1 else f"vote@{candidates}"


def compare(first: dict, second: dict) -> tuple[tuple[Comparison, ...], int]:
    """(a comparison for each answer label both reports have, the number of questions both scored)."""
    a, b = rights(first), rights(second)
    common = [key for key in a if key in b]
    labels = [name for name in a[common[0]] if all(name in a[k] and name in b[k] for k in common)] if common else []
    comparisons = []
    for name in labels:
        pairs = [(a[key][name], b[key][name]) for key in common]
        comparisons.append(Comparison(name, both=sum(x and y for x, y in pairs),
                                      only_first=sum(x and not y for x, y in pairs),
                                      only_second=sum(y and not x for x, y in pairs),
                                      neither=sum(not x and not y for x, y in pairs)))
    return tuple(comparisons), len(common)


def compare_files(first: Path, second: Path) -> tuple[tuple[Comparison, ...], int]:
    return compare(*(json.loads(Path(p).read_text(encoding="utf-8")) for p in (first, second)))
