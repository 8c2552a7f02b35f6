"""Two ``edgesql eval`` reports of the same questions, side by side: which questions each got right that the other
did not, and how likely so uneven a split is by chance (McNemar's exact test).

    python benchmarks/compare.py OLD.json NEW.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_sql.eval.compare import compare_files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="a report (edgesql eval --report)")
    parser.add_argument("second", type=Path, help="another report of the same questions")
    args = parser.parse_args()
    comparisons, common = compare_files(args.first, args.second)
    print(f"{common} questions scored in both: first {args.first}, second {args.second}")
    print(f"{'answer':>8} | {'first':>6} | {'second':>6} | {'both':>5} | {'only first':>10} | {'only second':>11} | "
          f"{'neither':>7} | p (sign test)")
    for c in comparisons:
        print(f"{c.label:>8} | {(c.both + c.only_first) / c.questions:6.1%} | {(c.both + c.only_second) / c.questions:6.1%}"
              f" | {c.both:5d} | {c.only_first:10d} | {c.only_second:11d} | {c.neither:7d} | {c.p_value:.3f}")


if __name__ == "__main__":
    main()
