"""Which steering makes the demo model write valid SQL most often? Measured, not guessed.

For each question, N candidates are sampled with each steering (the answer prefix the preset writes for the model)
and every candidate is validated and run exactly as `edgesql ask` does. Printed: the share of candidates that are
valid and executable, and the share of questions with at least one, per steering, side by side.

    python benchmarks/steering.py --questions 20 [--model smollm2-135m] [--spider ../shared/data/spider-dev]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from edge_sql.steps.database import open_database
from edge_sql.errors import QueryFailed
from edge_sql.steps.execute import execute
from edge_sql.steps.generate import Sampling, generate
from edge_sql.backends import load_model
from edge_sql.pipeline import Setup, fit_prompt
from edge_sql.steps.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SHOP_QUESTIONS = [
    "How many customers are there?",
    "How many orders were cancelled?",
    "What are the 3 most expensive products?",
    "List the names of all products in the Books category.",
    "Which customers live in Germany?",
    "How many products are there in each category?",
    "What is the average product price?",
    "Which customers have no email address?",
    "How many orders were placed in 2024?",
    "What is the total quantity of items ordered?",
]
STEERINGS = {"none": "", "SELECT": "SELECT"}


def spider_questions(folder: Path, count: int):
    examples = json.loads((folder / "dev.json").read_text())
    step = max(1, len(examples) // count)
    for example in examples[::step][:count]:
        yield folder / "database" / example["db_id"] / f"{example['db_id']}.sqlite", example["question"]


def measure(model, items, steering: str, candidates: int):
    valid = total = answered = 0
    started = time.perf_counter()
    model.preset = dataclasses.replace(model.preset, prefix=steering)
    for db_path, question in items:
        with open_database(db_path) as db:
            prompt = fit_prompt(question, Setup(db, model, Sampling()), 192).prompt
            generation = generate(model, prompt, Sampling(candidates=candidates, seed=42))
            good = 0
            for candidate in generation.candidates:
                verdict = validate(candidate.sql, db.schema)
                if verdict.ok:
                    try:
                        execute(db, verdict.sql, max_rows=10, timeout=5)
                        good += 1
                    except QueryFailed:
                        pass
            valid, total, answered = valid + good, total + len(generation.candidates), answered + (good > 0)
    return valid, total, answered, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--questions", type=int, default=20, help="Spider questions (the shop has 10)")
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--spider", type=Path, default=ROOT.parent / "shared" / "data" / "spider-dev")
    args = parser.parse_args()
    model = load_model(args.model)
    sets = {"shop (examples/shop.sqlite)": [(ROOT / "examples" / "shop.sqlite", q) for q in SHOP_QUESTIONS]}
    if (args.spider / "dev.json").is_file():
        sets[f"spider-dev ({args.questions} questions)"] = list(spider_questions(args.spider, args.questions))
    else:
        print(f"(no Spider data at {args.spider}: skipped)")
    print(f"model {model.name}, {args.candidates} candidates a question")
    print(f"{'data':32} {'steering':9} {'valid candidates':>18} {'questions answered':>20} {'seconds':>8}")
    for label, items in sets.items():
        for name, steering in STEERINGS.items():
            valid, total, answered, seconds = measure(model, items, steering, args.candidates)
            print(f"{label:32} {name:9} {valid:>4}/{total:<4} ({valid / total:4.0%}) {answered:>7}/{len(items):<4}"
                  f" ({answered / len(items):4.0%}) {seconds:8.1f}", flush=True)


if __name__ == "__main__":
    main()
