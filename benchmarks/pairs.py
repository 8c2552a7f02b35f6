"""What ``edgesql train --pairs dates`` can write from a training set's databases: every pair, counted by template, by
engine and by database, why the other drafts were dropped, and a few samples.

    python benchmarks/pairs.py [--data ../shared/data/spider-train] [--seed 42] [--samples 10] [--jsonl FILE]
    python benchmarks/pairs.py --count 670      # what a run with --pairs-share 0.1 on Spider train draws

Reads the training set as ``edgesql train --data`` reads it (an evaluation set is refused) and writes the pairs of
its databases as training does, each verified (``edge_sql/train/pairs.py``); the DuckDB copies go to a temporary
folder that is removed at the end unless ``--out`` names one (never a folder inside the project). ``--jsonl`` keeps the
pairs as a dataset ``edgesql eval --data`` and ``edgesql train --data`` read. Without the data, says so and exits 0.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIDER_TRAIN = ROOT.parent / "shared" / "data" / "spider-train"
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from edge_sql.train.examples import read_pairs  # noqa: E402
from edge_sql.train.date_drafts import TEMPLATES  # noqa: E402
from edge_sql.train.pairs import KINDS, write_jsonl, write_pairs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SPIDER_TRAIN, help=f"a training set (default {SPIDER_TRAIN})")
    parser.add_argument("--kind", choices=KINDS, default="dates")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--count", type=int, help="draw this many, as training does (default: write them all)")
    parser.add_argument("--samples", type=int, default=10, help="pairs to print, drawn with the seed")
    parser.add_argument("--out", type=Path, help="keep the DuckDB copies in this folder (default: a temporary one)")
    parser.add_argument("--jsonl", type=Path, help="write the pairs to this JSONL file")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"no training data at {args.data}: nothing to write from")
        return 0
    out = (args.out or Path(tempfile.mkdtemp(prefix="edgesql-pairs-"))).resolve()
    if out == ROOT or ROOT in out.parents:
        parser.error(f"--out {out} is inside the project; give a folder outside it")
    try:
        databases = {p.db_path for p in read_pairs(args.data) if p.db_path.is_file()}
        started = time.monotonic()
        written = write_pairs(args.kind, databases, out, args.seed, args.count)
        seconds = time.monotonic() - started
        if args.jsonl:
            write_jsonl(written.pairs, args.jsonl)
    finally:
        if args.out is None and not args.jsonl:
            shutil.rmtree(out, ignore_errors=True)
    report(written, len(databases), seconds)
    if args.out is None and args.jsonl:
        print(f"(the DuckDB databases its DuckDB pairs ask are in {out})")
    for pair in random.Random(args.seed).sample(written.pairs, min(args.samples, len(written.pairs))):
        print(f"\n[{pair.template}, {pair.engine}, {pair.db.stem}] {pair.question}\n    {pair.query}")
    return 0


def report(written, databases: int, seconds: float) -> None:
    pairs = written.pairs
    engines = Counter(p.engine for p in pairs)
    print(f"{len(pairs):,} pairs from {written.databases} of {databases} databases in {seconds:.0f} s "
          f"({', '.join(f'{engine} {n:,}' for engine, n in sorted(engines.items()))})\n")
    by = {template: Counter() for template in TEMPLATES}
    dbs = {template: set() for template in TEMPLATES}
    for pair in pairs:
        by[pair.template][pair.engine] += 1
        dbs[pair.template].add(pair.db.stem)
    print("| template | pairs | sqlite | duckdb | databases |\n|---|---|---|---|---|")
    for template in TEMPLATES:
        counts = by[template]
        print(f"| {template} | {sum(counts.values()):,} | {counts['sqlite']:,} | {counts['duckdb']:,} | "
              f"{len(dbs[template])} |")
    per_database = Counter(p.db.stem for p in pairs)
    if per_database:
        ranked = per_database.most_common()
        print(f"\npairs a database: median {ranked[len(ranked) // 2][1]}, most {ranked[0][1]} ({ranked[0][0]}), "
              f"fewest {ranked[-1][1]} ({ranked[-1][0]})")
    if written.dropped:
        print("dropped drafts: " + ", ".join(f"{why} {n}" for why, n in sorted(written.dropped.items())))


if __name__ == "__main__":
    sys.exit(main())
