"""How much does GRPO's partial credit give a small model to learn from? Sparse against dense rewards, side by side on
the same rollouts.

GRPO learns only from a group whose candidates earned different rewards. With a 0/1 reward (right or not), a group
where every candidate is wrong — or every one right — teaches nothing; partial credit (``edge_sql.train.reward``)
separates wrong candidates by how near they came. This samples ``--group`` candidates for each of ``--questions``
training questions (never the held-back ones: the same ``hold_back`` as ``edgesql train --held-back 100 --seed
42``) with the product's sampler, scores each both ways, and prints: the share of groups with a learning signal,
how often each kind of candidate occurs, and — the check that partial credit points the right way — how the partial
reward of wrong candidates relates to the rightness of the group's best answer.

    python benchmarks/rewards.py --data ../shared/data/spider-train [--model smollm2-135m-sql] [--questions 40]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    from edge_sql.eval.scoring import Databases
    from edge_sql.preset import get_preset
    from edge_sql.train.examples import hold_back, read_pairs
    from edge_sql.train.rollout import Sampler
    from edge_sql.weights import adapter_path, weights_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", default="smollm2-135m-sql", help="a preset that ships an adapter")
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    preset = get_preset(args.model)
    training, _ = hold_back(read_pairs(args.data), 100, 42)
    chosen = random.Random(args.seed).sample(training, args.questions)
    groups, started = [], time.perf_counter()
    with Databases() as open_db, tempfile.TemporaryDirectory(prefix="edgesql-rewards-") as scratch:
        sampler = Sampler(weights_path(preset), preset, adapter_path(preset), threads=args.threads,
                          scratch=Path(scratch) / "prefix-cache", open_db=open_db)
        for n, example in enumerate(chosen):
            group = sampler.roll(example, args.group, args.temperature, seed=args.seed + n)
            if group is not None:
                groups.append(group)
    seconds = time.perf_counter() - started
    candidates = [r for g in groups for r in g.rewards]

    def signal(values) -> bool:
        return max(values) - min(values) > 1e-6

    sparse = sum(signal([float(r.right) for r in g.rewards]) for g in groups)
    dense = sum(signal([r.value for r in g.rewards]) for g in groups)
    all_wrong = [g for g in groups if not any(r.right for r in g.rewards)]
    report = {
        "groups": len(groups), "candidates": len(candidates), "seconds": round(seconds, 1),
        "questions_per_hour": round(len(groups) / seconds * 3600),
        "signal_sparse": round(sparse / max(1, len(groups)), 3), "signal_dense": round(dense / max(1, len(groups)), 3),
        "all_wrong_groups": len(all_wrong),
        "all_wrong_with_dense_signal": sum(signal([r.value for r in g.rewards]) for g in all_wrong),
        "right": share(candidates, lambda r: r.right), "ran_wrong": share(candidates, lambda r: r.ran and not r.right),
        "did_not_run": share(candidates, lambda r: not r.ran and r.value >= 0),
        "refused": share(candidates, lambda r: r.value < 0),
        "partial_mean_ran_wrong": mean([r.value for r in candidates if r.ran and not r.right]),
        "partial_mean_not_run": mean([r.value for r in candidates if not r.ran and r.value >= 0]),
        "parts_mean_ran_wrong": {part: mean([r.parts[part] for r in candidates if r.ran and not r.right])
                                 for part in ("names", "operations", "rows")},
        # Does partial credit point the right way? Wrong candidates in groups where some candidate was right
        # (the question is within reach) against those in groups where none was.
        "partial_wrong_in_groups_with_a_right": mean([r.value for g in groups if g.accuracy > 0
                                                      for r in g.rewards if not r.right]),
        "partial_wrong_in_groups_without": mean([r.value for g in all_wrong for r in g.rewards]),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    width = max(map(len, report))
    for key, value in report.items():
        print(f"{key:{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def share(items, test) -> float:
    return round(sum(1 for i in items if test(i)) / max(1, len(items)), 3)


def mean(values) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


if __name__ == "__main__":
    main()
