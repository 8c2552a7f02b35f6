"""Fitting a confidence calibration from ``edgesql eval`` reports, and checking one.

Each answered question of a report carries the signals its confidence was computed from and whether it was right:
:func:`fit` finds the logistic weights that make the confidence the chance of being right (Newton's method with a
small L2 penalty, so that a hundred questions do not over-fit seven weights); :func:`calibration_error` says how far a
calibration's confidence is from the share right, bin by bin, on other questions.

>>> import random
>>> rng = random.Random(0)
>>> rows = []
>>> for _ in range(400):
...     s = Signals(agreement=rng.random(), lead=0.0, greedy=False, empty=False, logprob=0.0)
...     rows.append((s, rng.random() < s.agreement))  # right as often as the candidates agree
>>> fitted = fit(rows)
>>> sure, unsure = (fitted.probability(Signals(a, 0.0, False, False, 0.0)) for a in (0.9, 0.1))
>>> sure > 0.75 and unsure < 0.25 and calibration_error(fitted, rows) < 0.06
True
"""

from __future__ import annotations

import json
from pathlib import Path

from edge_sql.eval.report import reliability
from edge_sql.steps.confidence import FEATURES, Calibration, Signals


def answers(path: Path, candidates: tuple[int, ...] | None = None) -> list[tuple[Signals, bool]]:
    """The (signals, right) of every answered question in the report at ``path``, for the candidate counts asked
    (all by default)."""
    report = json.loads(Path(path).read_text(encoding="utf-8"))
    found = []
    for record in report.get("records", ()):
        for answer in record.get("answers", ()):
            if answer.get("signals") and (candidates is None or answer["candidates"] in candidates):
                found.append((Signals(**answer["signals"]), bool(answer["right"])))
    return found


def fit(rows: list[tuple[Signals, bool]], penalty: float = 1.0, source: str = "",
        without: tuple[str, ...] = ()) -> Calibration:
    """The logistic calibration of ``rows`` ((signals, right) pairs), L2 ``penalty`` on the weights, not the bias;
    the features named in ``without`` weigh 0 (one the data cannot tell apart from another, or never shows)."""
    import numpy as np

    kept = [i for i, name in enumerate(FEATURES) if name not in without]
    x = np.array([(1.0, *(signals.vector()[i] for i in kept)) for signals, _ in rows])
    y = np.array([float(right) for _, right in rows])
    ridge = np.eye(x.shape[1]) * penalty
    ridge[0, 0] = 0.0
    w = np.zeros(x.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        gradient = x.T @ (p - y) + ridge @ w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + ridge + np.eye(x.shape[1]) * 1e-9
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    weights = dict(zip(kept, (round(float(v), 4) for v in w[1:])))
    return Calibration(round(float(w[0]), 4), tuple(weights.get(i, 0.0) for i in range(len(FEATURES))), source)


def calibration_error(calibration: Calibration, rows: list[tuple[Signals, bool]]) -> float:
    """The expected calibration error: over the bins of the reliability table, the gap between the mean confidence
    and the share right, weighted by the bin's share of the answers."""
    bins = reliability([(calibration.probability(signals), right) for signals, right in rows])
    total = sum(b.questions for b in bins)
    return sum(b.questions * abs(b.confidence - b.ex) for b in bins) / total if total else 0.0


def describe(calibration: Calibration) -> str:
    """The calibration as the Python that states it in ``steps/confidence.py``."""
    weights = ", ".join(f"{w:g}" for w in calibration.weights)
    return f"Calibration({calibration.bias:g}, ({weights}),  # {', '.join(FEATURES)}"
