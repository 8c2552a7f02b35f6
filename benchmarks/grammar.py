"""What does schema-constrained decoding cost, and what does it buy? Measured side by side in one run.

Decode speed: the same prompt and seeds decoded with no grammar, with the grammar checked per sampled token
("check", llama.cpp's common-sampler arrangement) and with the grammar over all 49,152 candidates in the chain
("chain"), for N=1 and N=8 batched candidates, interleaved ``--repeat`` times; printed as tokens per second of
decoding (prompt evaluation excluded) and the ratios against no grammar, with peak RSS.

Valid share: the share of candidates that parse and validate (``edge_sql.steps.validate.validate``) with and without the
grammar, on the shop example and on Spider dev questions when ``../shared/data/spider-dev`` is there.

    python benchmarks/grammar.py [--model smollm2-135m] [--repeat 2] [--questions 10] [--candidates 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from edge_sql.steps.database import open_database
from edge_sql.steps.generate import STATEMENT_STOPS, Sampling, answer_budget, generate
from edge_sql.steps.grammar import schema_grammar
from edge_sql.backends import load_model
from edge_sql.steps.prompt import build_prompt
from edge_sql.steps.schema import render_schema
from edge_sql.steps.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop.sqlite"
SHOP_QUESTIONS = [
    "How many customers are there?",
    "What are the 3 most expensive products?",
    "Which customers live in Germany?",
    "How many products are there in each category?",
    "What is the average product price?",
    "How many orders were placed in 2024?",
]
SPEED_QUESTION = "List the names and prices of products in the Books category."


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def prompt_for(model, db, question):
    preset = model.preset
    return build_prompt(preset.protocol, render_schema(db.schema, preset.schema_style), question, db.dialect,
                        preset.prefix)


def decode_rate(model, prompt, grammar, arrangement, n, tokens):
    """Decoded tokens per second, sampling included, for n candidates of at most ``tokens`` tokens (wall clock less
    the prompt's evaluation, which the decoder keeps cached between calls)."""
    decoder = model.decoder()
    decoder.arrangement = arrangement
    temperatures = [0.0] + [0.7] * (n - 1)
    started = time.perf_counter()
    completions = model.sample(prompt.text, temperatures, seed=42, max_tokens=tokens,
                               stop=prompt.stop + STATEMENT_STOPS, grammar=grammar)
    seconds = time.perf_counter() - started - model.prompt_seconds
    generated = sum(c.tokens for c in completions)
    return generated / seconds, generated, decoder.resampled


def speed(model, repeat):
    with open_database(SHOP) as db:
        prompt = prompt_for(model, db, SPEED_QUESTION)
        grammar = schema_grammar(db.schema, db.dialect, model.preset.prefix)
    configs = [("no grammar", None, "check"), ("grammar, check", grammar, "check"), ("grammar, chain", grammar, "chain")]
    model.sample(prompt.text, [0.0], seed=1, max_tokens=1, stop=("<|im_end|>",), grammar=grammar)  # warm: prompt, compile
    rows = {}
    for n in (1, 8):
        rates = {name: [] for name, _, _ in configs}
        extra = {}
        for _ in range(repeat):
            for name, text, arrangement in configs:  # interleaved, so drift hits every configuration alike
                rate, generated, resampled = decode_rate(model, prompt, text, arrangement, n, 48)
                rates[name].append(rate)
                extra[name] = (generated, resampled)
        rows[n] = {name: (statistics.median(values), *extra[name]) for name, values in rates.items()}
    return rows


def spider_items(folder: Path, count: int):
    examples = json.loads((folder / "dev.json").read_text())
    step = max(1, len(examples) // count)
    return [(folder / "database" / e["db_id"] / f"{e['db_id']}.sqlite", e["question"]) for e in examples[::step][:count]]


def valid_share(model, items, candidates):
    """(valid, total, seconds) without and with the grammar ("check" arrangement), over the same questions."""
    model.decoder().arrangement = "check"
    counts = {"no grammar": [0, 0, 0.0], "grammar": [0, 0, 0.0]}
    for db_path, question in items:
        with open_database(db_path) as db:
            prompt = prompt_for(model, db, question)
            grammar = schema_grammar(db.schema, db.dialect, model.preset.prefix)
            sampling = Sampling(candidates=candidates, seed=42, max_tokens=answer_budget(question))
            for name, text in (("no grammar", None), ("grammar", grammar)):
                started = time.perf_counter()
                generation = generate(model, prompt, sampling, grammar=text)
                counts[name][2] += time.perf_counter() - started
                counts[name][0] += sum(validate(c.sql, db.schema).ok for c in generation.candidates)
                counts[name][1] += len(generation.candidates)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--questions", type=int, default=10, help="Spider questions")
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--spider", type=Path, default=ROOT.parent / "shared" / "data" / "spider-dev")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-valid", action="store_true")
    args = parser.parse_args()
    model = load_model(args.model)
    print(f"model {model.name}, threads {model.threads}")
    if not args.skip_speed:
        rows = speed(model, args.repeat)
        print(f"\ndecode speed, batched, 48 tokens a candidate, median of {args.repeat} interleaved runs "
              f"(question: {SPEED_QUESTION!r})")
        print(f"{'N':>2} {'configuration':16} {'tok/s':>7} {'slowdown':>9} {'tokens':>7} {'resampled':>10}")
        for n, row in rows.items():
            base = row["no grammar"][0]
            for name, (rate, generated, resampled) in row.items():
                print(f"{n:>2} {name:16} {rate:7.1f} {base / rate:8.2f}x {generated:7d} {resampled:10d}")
    if not args.skip_valid:
        sets = {"shop": [(SHOP, q) for q in SHOP_QUESTIONS]}
        if (args.spider / "dev.json").is_file():
            sets[f"spider-dev ({args.questions} q)"] = spider_items(args.spider, args.questions)
        else:
            print(f"(no Spider data at {args.spider}: skipped)")
        print(f"\nvalid candidates (parse and validate), {args.candidates} a question, batched, grammar 'check'")
        print(f"{'data':22} {'configuration':12} {'valid':>14} {'seconds':>8}")
        for label, items in sets.items():
            for name, (valid, total, seconds) in valid_share(model, items, args.candidates).items():
                print(f"{label:22} {name:12} {valid:>4}/{total:<4} {valid / total:4.0%} {seconds:8.1f}", flush=True)
    print(f"\npeak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
