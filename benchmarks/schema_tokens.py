"""How many tokens does each database's schema cost the prompt? Measured without running a model.

For every database given (by default the Spider dev half's and the shared real databases), the schema is rendered as
the default model sees it (its preset's style, sample values on) and counted with its tokenizer (vocabulary only, no
weights; characters only when it is not installed). Printed per database: tables, views, the columns whose dates
were read from their values (``-- stored as …``, ``unix seconds``), characters and tokens, and the totals.

    python benchmarks/schema_tokens.py [DATABASE ...] [--model smollm2-135m-sql]

Every question on a database starts with this text (a prompt prefix the model keeps evaluated between questions), so
each of its tokens is paid once per database with a warm cache and once per question without one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_sql.preset import get_preset
from edge_sql.steps.database import open_database
from edge_sql.steps.schema import render_schema
from edge_sql.weights import weights_path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"


def default_databases() -> list[Path]:
    spider = sorted((SHARED / "spider-dev" / "database").glob("*/*.sqlite"))
    real = sorted(p for p in (SHARED / "realdb").glob("*") if p.suffix in (".sqlite", ".duckdb"))
    return spider + real


def counter(preset_name: str):
    """The preset's token counter (vocabulary only), or None when its weights are not installed."""
    try:
        from llama_cpp import Llama

        llama = Llama(model_path=str(weights_path(get_preset(preset_name))), vocab_only=True, verbose=False)
    except Exception:
        return None
    return lambda text: len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("databases", nargs="*", type=Path, help="SQLite or DuckDB files (default: the shared ones)")
    parser.add_argument("--model", default="smollm2-135m-sql", help="the preset whose style and tokenizer count")
    args = parser.parse_args()
    preset = get_preset(args.model)
    count = counter(args.model)
    total_chars = total_tokens = 0
    counted = args.model if count else "(no tokenizer: characters only)"
    print(f"schema style {preset.schema_style!r}, tokens of {counted}\n")
    print("| database | tables | views | date columns read | characters | tokens |")
    print("| --- | --- | --- | --- | --- | --- |")
    for path in args.databases or default_databases():
        with open_database(path) as db:
            text = render_schema(db.schema, preset.schema_style)
            views = sum(1 for t in db.schema.tables if getattr(t, "view", False))
            dates = sum(1 for t in db.schema.tables for c in t.columns if getattr(c, "stored", ""))
            tokens = count(text) if count else 0
            total_chars += len(text)
            total_tokens += tokens
            print(f"| {path.name} | {len(db.schema.tables) - views} | {views} | {dates} | {len(text):,} | {tokens:,} |")
    print(f"| all | | | | {total_chars:,} | {total_tokens:,} |")


if __name__ == "__main__":
    main()
