"""Spider dev on DuckDB: convert the shared Spider dev databases to DuckDB files and write their questions as a JSONL
dataset that ``edgesql eval --data`` reads, to measure the pipeline on the other engine (issue 23).

    python benchmarks/duckdb_dev.py [--out DIR] [--db concert_singer --db singer ...]
    edgesql eval --data DIR/dev.jsonl --model smollm2-135m-sql -n 1,5 --limit 40

Reads ``../shared/data/spider-dev`` beside the project (``dev.json`` and ``database/<db>/<db>.sqlite``); without it,
says so and exits 0. Writes ``DIR/database/<db>/<db>.duckdb`` and ``DIR/dev.jsonl`` (one ``{"question", "query",
"db"}`` a line, ``db`` relative to the file); ``DIR`` is a new temporary folder unless ``--out`` names one, never a
folder inside the project.

The tables are copied by :func:`edge_sql.eval.duckdb_copy.convert` (each column the DuckDB type of its SQLite
affinity and values; keys kept where DuckDB accepts them): what could not be kept is said.

Gold queries are Spider's, written for SQLite: each is run on the DuckDB file as ``edgesql eval`` scores it. One
that fails is normalised as edgesql normalises a candidate (``steps/validate.py``: a double-quoted word that names no
column is a string, the tree written in DuckDB's dialect) and kept if that runs; one that still fails is dropped and
counted. A kept gold whose rows differ from the SQLite gold's on the SQLite file (DuckDB divides integers exactly, for
one) is kept, and counted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIDER = ROOT.parent / "shared" / "data" / "spider-dev"
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from edge_sql.errors import QueryFailed  # noqa: E402
from edge_sql.eval.datasets import Example  # noqa: E402
from edge_sql.eval.duckdb_copy import convert  # noqa: E402
from edge_sql.eval.metric import fetch, order_matters, prediction_line, results_match, rewrite  # noqa: E402
from edge_sql.eval.scoring import Databases, run_gold  # noqa: E402
from edge_sql.steps.validate import validate  # noqa: E402

#: The Spider dev databases of the shared data.
DATABASES = ("battle_death", "concert_singer", "cre_Doc_Template_Mgt", "employee_hire_evaluation", "museum_visit",
             "orchestra", "poker_player", "singer", "tvshow", "world_1")


def golds(examples: list[dict], db_id: str, duckdb_path: Path, sqlite_path: Path, open_db) -> tuple[list, Counter]:
    """The dataset lines of ``examples`` whose gold runs on the DuckDB file, and the counts of what became of them."""
    lines, counts = [], Counter()
    for item in examples:
        query = item["query"]
        chosen, error = runs(query, duckdb_path, open_db)
        if chosen is None:
            verdict = validate(query, open_db(duckdb_path).schema)
            if verdict.ok and verdict.sql != query:
                chosen, error = runs(verdict.sql, duckdb_path, open_db)
            if chosen is None:
                counts["dropped"] += 1
                print(f"  dropped: {' '.join(query.split())}\n    {verdict.error or error}")
                continue
            counts["normalised"] += 1
        else:
            counts["as written"] += 1
        expected = fetch(sqlite_path, rewrite(prediction_line(query)))
        if not results_match(expected, chosen[1], ordered=order_matters(rewrite(prediction_line(query)))):
            counts["rows differ from SQLite"] += 1
            print(f"  rows differ from SQLite's: {' '.join(chosen[0].split())}")
        line = {"question": item["question"], "query": chosen[0], "db": f"database/{db_id}/{db_id}.duckdb"}
        if chosen[0] != query:
            line["spider_query"] = query
        lines.append(line)
    return lines, counts


def runs(query: str, duckdb_path: Path, open_db) -> tuple[tuple[str, list] | None, str | None]:
    """``(query, its rows)`` when ``query`` runs on the DuckDB file as ``edgesql eval`` runs a gold, else DuckDB's
    complaint."""
    example = Example(0, "", query, duckdb_path.stem, duckdb_path)
    try:
        gold = run_gold(example, (duckdb_path,), "spider", open_db)
    except QueryFailed as error:
        return None, str(error).splitlines()[0]
    return (query, gold.results[0][1]), None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="the folder to write (default: a new temporary folder)")
    parser.add_argument("--db", action="append", choices=DATABASES, help="a database to convert (repeat; default all)")
    parser.add_argument("--spider", type=Path, default=SPIDER, help=f"the Spider dev folder (default {SPIDER})")
    args = parser.parse_args(argv)
    if not (args.spider / "dev.json").is_file():
        print(f"no Spider dev data at {args.spider}: nothing to convert")
        return 0
    out = (args.out or Path(tempfile.mkdtemp(prefix="edgesql-duckdb-dev-"))).resolve()
    if out == ROOT or ROOT in out.parents:
        parser.error(f"--out {out} is inside the project; give a folder outside it")
    examples = json.loads((args.spider / "dev.json").read_text(encoding="utf-8"))
    lines, totals = [], Counter()
    with Databases() as open_db:
        for db_id in args.db or DATABASES:
            sqlite_path = args.spider / "database" / db_id / f"{db_id}.sqlite"
            if not sqlite_path.is_file():
                print(f"{db_id}: no {sqlite_path}, skipped")
                continue
            duckdb_path = out / "database" / db_id / f"{db_id}.duckdb"
            notes = convert(sqlite_path, duckdb_path)
            print(f"{db_id}: converted to {duckdb_path}")
            for note in notes:
                print(f"  {note}")
            written, counts = golds([e for e in examples if e["db_id"] == db_id], db_id, duckdb_path, sqlite_path,
                                    open_db)
            lines += written
            totals += counts
            print(f"  {len(written)} questions; gold {dict(counts)}")
    dataset = out / "dev.jsonl"
    dataset.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    total = sum(totals[k] for k in ("as written", "normalised", "dropped"))
    print(f"\n{dataset}: {len(lines)} questions of {total}; gold runs on DuckDB as written: {totals['as written']}, "
          f"after normalising: {totals['normalised']}, not at all (dropped): {totals['dropped']}; rows differ from "
          f"SQLite's: {totals['rows differ from SQLite']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
