"""Fit edgesql's confidence on questions the model never trained on, and check it on others.

``--fit`` reports (``edgesql eval --report``, e.g. on the held-back training slice) give the (signals, right) pairs the
logistic calibration is fitted on; each ``--check`` report (e.g. the shared dev half, a real-database question set)
is scored with the fitted calibration and with the one edgesql ships: the reliability table (answers by confidence,
the share right in each bin) and the expected calibration error, side by side.

    python benchmarks/calibrate.py --fit held.json --check dev.json --check realdb.json [--candidates 1,5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_sql.eval.calibrate import answers, calibration_error, describe, fit
from edge_sql.eval.report import reliability
from edge_sql.steps.confidence import DEFAULT


def table(name: str, calibrations: dict, rows) -> None:
    print(f"\n{name}: {len(rows)} answers, {sum(r for _, r in rows)} right")
    bins = {label: {b.label: b for b in reliability([(c.probability(s), r) for s, r in rows])}
            for label, c in calibrations.items()}
    labels = sorted({key for found in bins.values() for key in found})
    print(f"{'confidence':>12} | " + " | ".join(f"{label:>32}" for label in calibrations))
    for key in labels:
        cells = []
        for label in calibrations:
            b = bins[label].get(key)
            cells.append(f"{'–':>32}" if b is None else
                         f"{b.ex:6.1%} right of {b.questions:4d} (say {b.confidence:4.0%})")
        print(f"{key:>12} | " + " | ".join(cells))
    print(f"{'ECE':>12} | " + " | ".join(f"{calibration_error(c, rows):>32.3f}" for c in calibrations.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", type=Path, action="append", default=[], help="a report to fit on (repeatable)")
    parser.add_argument("--check", type=Path, action="append", default=[], help="a report to check on (repeatable)")
    parser.add_argument("--candidates", default="1,5", help="the candidate counts whose answers count (1,5)")
    parser.add_argument("--penalty", type=float, default=1.0, help="L2 penalty on the weights (1.0)")
    parser.add_argument("--without", default="", help="features left out of the fit, comma-separated (weigh 0)")
    args = parser.parse_args()
    counts = tuple(int(k) for k in args.candidates.split(","))
    calibrations = {"shipped": DEFAULT}
    if args.fit:
        rows = [row for path in args.fit for row in answers(path, counts)]
        fitted = fit(rows, args.penalty, source=", ".join(p.name for p in args.fit),
                     without=tuple(name for name in args.without.split(",") if name))
        calibrations["fitted"] = fitted
        print(f"fitted on {len(rows)} answers of {', '.join(map(str, args.fit))}:\n{describe(fitted)}")
        table("fit data", calibrations, rows)
    for path in args.check:
        table(str(path), calibrations, answers(path, counts))


if __name__ == "__main__":
    main()
