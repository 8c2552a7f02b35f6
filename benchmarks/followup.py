"""How well does ``steps/followup.refers_back`` tell a follow-up from a standalone question? Measured without a
model on the cases of tests/fixtures/followups.cases (pairs of a previous and a next question, written by hand).

Printed: precision (of the questions sent with context, the share that are follow-ups), recall (of the
follow-ups, the share sent with context), and every case it gets wrong. A standalone question sent with context
(a false follow-up) is the costly mistake: an earlier filter leaks into its answer.

    python benchmarks/followup.py [--cases PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.followups import CASES, read_cases  # noqa: E402

from edge_sql.steps.followup import refers_back  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=Path, default=CASES)
    cases = read_cases(parser.parse_args().cases)
    found = {case: refers_back(case.next) for case in cases}
    follow_ups = [case for case in cases if case.expect == "follow-up"]
    flagged = [case for case in cases if found[case] is not None]
    right = [case for case in flagged if case.expect == "follow-up"]
    print(f"{len(cases)} cases: {len(follow_ups)} follow-ups, {len(cases) - len(follow_ups)} standalone")
    for label, found_right, among in (("precision", right, flagged), ("recall   ", right, follow_ups)):
        print(f"{label} {len(found_right) / len(among):.3f} ({len(found_right)}/{len(among)})" if among else
              f"{label} -")
    for case in cases:
        if (found[case] is not None) != (case.expect == "follow-up"):
            print(f"wrong: {case.next!r} is {case.expect}; found {found[case] or 'standalone'}")


if __name__ == "__main__":
    main()
