"""Does schema pruning keep what the gold query needs, and how much prompt does it save? Do value hints show the
gold query's string literals? Measured without a model: fast and reproducible.

For every question of a Spider-style dataset, the gold query's tables, columns and string literals are read with
sqlglot. Printed:

- for each pair of caps (max_tables × max_columns): the share of questions whose gold tables are all kept, whose
  gold columns are all kept too, and the rendered schema's size against the whole schema (characters, and SmolLM2
  tokens when the demo model is installed), in the ``smollm2-135m`` preset's style;
- for ``auto`` when it must prune and for ``always``: the share of questions whose gold tables (and columns) the
  schema shown keeps, taking the first of :func:`~edge_sql.steps.focus.schema_ladder`'s schemas that fits, with
  sample values then without, as ``pipeline.fit_prompt`` does, on the schema as read (hints go after the question,
  not into the schema). ``auto`` is measured two ways: with the schema's budget a share of its own size (Spider's
  schemas are small, so this is pruning hard), and *among distractors*: the question's database beside every other
  database's tables (those of another name), about 32 tables, with the budget its own schema's size (×1, ×1.5), as a
  large real schema is pruned;
- for value hints: the share of gold string literals (``WHERE name = 'France'``, ``LIKE '%x%'``, ``IN (...)``)
  shown among the right column's values, with hints and with the plain samples, and the prompt size either way.

    python benchmarks/pruning.py [--spider ../shared/data/spider-dev] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from edge_sql.pipeline import attempts
from edge_sql.steps.database import open_database
from edge_sql.steps.focus import ALWAYS, schema_ladder
from edge_sql.steps.hints import add_value_hints
from edge_sql.preset import get_preset
from edge_sql.weights import weights_path
from edge_sql.steps.prune import prune_schema
from edge_sql.steps.schema import Schema, render_schema

ROOT = Path(__file__).resolve().parents[1]
SPIDER = ROOT / ".." / "shared" / "data" / "spider-dev"
TABLE_CAPS = (None, 6, 4, 3, 2, 1)
COLUMN_CAPS = (None, 8, 6, 4, 2)
#: The schema budgets ``auto`` is measured under, as shares of the whole schema's size, and among distractors, as
#: multiples of the question's own schema's size.
BUDGETS = (0.75, 0.5, 0.35, 0.25)
AMONG = (1.0, 1.5)


def gold_parts(sql: str, schema: Schema):
    """The gold query's tables, (table, column) pairs and (table, column, literal) triples, lower-cased names."""
    tree = sqlglot.parse_one(sql, read="sqlite")
    columns_of = {t.name.lower(): {c.name.lower() for c in t.columns} for t in schema.tables}
    tables = {t.name.lower() for t in tree.find_all(exp.Table)}
    columns, literals = set(), set()
    for scope in traverse_scope(tree):
        sources = {alias.lower(): src.name.lower() for alias, src in scope.sources.items() if isinstance(src, exp.Table)}
        for column in scope.columns:
            owner = resolve(column, sources, columns_of)
            if owner:
                columns.add((owner, column.name.lower()))
                literals |= {(owner, column.name.lower(), *literal) for literal in compared_literals(column)}
    return tables, columns, literals


def resolve(column: exp.Column, sources: dict[str, str], columns_of: dict[str, set[str]]) -> str | None:
    name = column.name.lower()
    if column.table:
        owner = sources.get(column.table.lower())
        return owner if owner and name in columns_of.get(owner, ()) else None
    owners = [t for t in dict.fromkeys(sources.values()) if name in columns_of.get(t, ())]
    return owners[0] if len(owners) == 1 else None


def compared_literals(column: exp.Column) -> list[tuple[str, bool]]:
    """String literals the column is compared with, and whether as a substring: ``=``, ``!=``, ``IN``, and ``LIKE``
    (without its ``%``)."""
    parent = column.parent
    if isinstance(parent, (exp.EQ, exp.NEQ)):
        other = parent.expression if parent.this is column else parent.this
        return [(other.this, False)] if isinstance(other, exp.Literal) and other.is_string else []
    if isinstance(parent, exp.In) and parent.this is column:
        return [(e.this, False) for e in parent.expressions if isinstance(e, exp.Literal) and e.is_string]
    if isinstance(parent, exp.Like) and parent.this is column and isinstance(parent.expression, exp.Literal):
        value = parent.expression.this.strip("%")
        return [(value, True)] if value and "%" not in value and "_" not in value else []
    return []


def kept(schema: Schema) -> tuple[set[str], set[tuple[str, str]]]:
    return ({t.name.lower() for t in schema.tables},
            {(t.name.lower(), c.name.lower()) for t in schema.tables for c in t.columns})


def shown(schema: Schema, table: str, column: str, literal: tuple[str, bool]) -> tuple[bool, bool]:
    """Whether the literal is among the column's samples (for LIKE: inside one), exactly and ignoring case."""
    value, substring = literal
    found = schema.table(table)
    col = next((c for c in found.columns if c.name.lower() == column), None) if found else None
    samples = col.samples if col else ()
    if substring:
        return any(value in s for s in samples), any(value.lower() in s.lower() for s in samples)
    return value in samples, value.lower() in {s.lower() for s in samples}


def among_others(own: Schema, others: list[Schema]) -> Schema:
    """``own`` with every table of ``others`` whose name it does not have after its own tables: distractors."""
    names = {t.name.lower() for t in own.tables}
    extra = [t for schema in others for t in schema.tables if t.name.lower() not in names]
    unique = {t.name.lower(): t for t in extra}  # a name two others share: the first
    return Schema(own.engine, own.tables + tuple(t for t in extra if unique[t.name.lower()] is t))


def fitted(schema: Schema, question: str, style: str, budget: float, size) -> Schema:
    """The schema ``auto`` shows when ``budget`` is what the schema may take: the first of the ladder's schemas that
    fits, with sample values then without (the last one when none fits)."""
    view = schema
    for view, samples in attempts(schema_ladder(schema, question)):
        if size(render_schema(view, style, samples=samples)) <= budget:
            return view
    return view


def tokenizer():
    """SmolLM2's tokenizer (vocabulary only, no weights), or None when the demo model is not installed."""
    try:
        from llama_cpp import Llama

        llama = Llama(model_path=str(weights_path(get_preset("smollm2-135m"))), vocab_only=True, verbose=False)
    except Exception:
        return None
    return lru_cache(maxsize=4096)(lambda text: len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spider", type=Path, default=SPIDER, help="a Spider-style folder (dev.json, database/)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    args = parser.parse_args()
    examples = json.loads((args.spider / "dev.json").read_text())[: args.limit]
    style = get_preset("smollm2-135m").schema_style
    count = tokenizer()
    size = (lambda text: (len(text), count(text) if count else 0))

    by_caps = defaultdict(lambda: [0, 0, 0, 0])  # tables kept, columns kept, characters, tokens
    by_mode = defaultdict(lambda: [0, 0, 0])  # tables kept, columns kept, tables shown
    measure = (lambda text: count(text)) if count else len
    whole = [0, 0]
    plain_size = [0, 0]
    hinted_size = [0, 0]
    literals = hinted_exact = hinted_any = plain_exact = plain_any = 0
    questions = 0
    hint_seconds = 0.0
    by_db = defaultdict(list)
    for example in examples:
        by_db[example["db_id"]].append(example)
    schemas = {}
    for db_id in by_db:
        with open_database(args.spider / "database" / db_id / f"{db_id}.sqlite") as db:
            schemas[db_id] = db.schema
    for db_id, items in by_db.items():
        crowded = among_others(schemas[db_id], [s for other, s in schemas.items() if other != db_id])
        with open_database(args.spider / "database" / db_id / f"{db_id}.sqlite") as db:
            for example in items:
                question = example["question"]
                tables, columns, gold_literals = gold_parts(example["query"], db.schema)
                started = time.perf_counter()
                hinted = add_value_hints(db.schema, db, question)
                hint_seconds += time.perf_counter() - started
                questions += 1
                full = size(render_schema(hinted, style))
                whole[0] += full[0]
                whole[1] += full[1]
                plain = size(render_schema(db.schema, style))
                plain_size[0] += plain[0]
                plain_size[1] += plain[1]
                hinted_size[0] += full[0]
                hinted_size[1] += full[1]
                for table, column, *value in gold_literals:
                    literals += 1
                    exact, loose = shown(hinted, table, column, tuple(value))
                    hinted_exact += exact
                    hinted_any += loose
                    exact, loose = shown(db.schema, table, column, tuple(value))
                    plain_exact += exact
                    plain_any += loose
                whole_size = measure(render_schema(db.schema, style))
                views = {f"auto, budget {share:.0%}": fitted(db.schema, question, style, share * whole_size, measure)
                         for share in BUDGETS}
                for factor in AMONG:
                    views[f"auto among distractors, budget ×{factor:g} its own schema"] = fitted(
                        crowded, question, style, factor * whole_size, measure)
                views[f"always ({ALWAYS.tables} tables, {ALWAYS.columns} columns)"] = prune_schema(
                    db.schema, question, max_tables=ALWAYS.tables, max_columns=ALWAYS.columns)
                for mode, view in views.items():
                    kept_tables, kept_columns = kept(view)
                    row = by_mode[mode]
                    row[0] += tables <= kept_tables
                    row[1] += tables <= kept_tables and columns <= kept_columns
                    row[2] += len(view.tables)
                for max_tables in TABLE_CAPS:
                    for max_columns in COLUMN_CAPS:
                        pruned = prune_schema(hinted, question, max_tables=max_tables, max_columns=max_columns)
                        kept_tables, kept_columns = kept(pruned)
                        row = by_caps[max_tables, max_columns]
                        row[0] += tables <= kept_tables
                        row[1] += tables <= kept_tables and columns <= kept_columns
                        chars, tokens = size(render_schema(pruned, style))
                        row[2] += chars
                        row[3] += tokens

    print(f"{questions} questions of {args.spider}, schema style {style!r}; sizes relative to the whole schema "
          f"with hints ({whole[0] / questions:.0f} characters, {whole[1] / questions:.0f} tokens a question)\n")
    print("| max_tables | max_columns | gold tables kept | gold tables and columns kept | characters | tokens |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (max_tables, max_columns), (tables_ok, columns_ok, chars, tokens) in by_caps.items():
        print(f"| {max_tables or '-'} | {max_columns or '-'} | {tables_ok / questions:.1%} | "
              f"{columns_ok / questions:.1%} | {chars / whole[0]:.0%} | "
              f"{tokens / whole[1]:.0%} |" if whole[1] else "| n/a |")
    print(f"\npruning as the pipeline does it, on the schema as read ({'tokens' if count else 'characters'}):\n")
    mean_tables = sum(len(s.tables) for s in schemas.values()) / len(schemas)
    print(f"| mode | gold tables kept | gold tables and columns kept | tables shown ({mean_tables:.1f} a database) |")
    print("| --- | --- | --- | --- |")
    for mode, (tables_ok, columns_ok, shown_tables) in by_mode.items():
        print(f"| {mode} | {tables_ok / questions:.1%} | {columns_ok / questions:.1%} | "
              f"{shown_tables / questions:.1f} |")
    print(f"\nvalue hints: {literals} gold string literals; shown for the right column with hints "
          f"{hinted_exact / literals:.1%} exactly ({hinted_any / literals:.1%} ignoring case), with the plain samples "
          f"{plain_exact / literals:.1%} ({plain_any / literals:.1%})")
    print(f"prompt schema size: plain {plain_size[0] / questions:.0f} characters / {plain_size[1] / questions:.0f} "
          f"tokens a question, with hints {hinted_size[0] / questions:.0f} / {hinted_size[1] / questions:.0f}; "
          f"hints took {hint_seconds / questions * 1000:.1f} ms a question")


if __name__ == "__main__":
    main()
