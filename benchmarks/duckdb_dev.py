"""Spider dev on DuckDB: convert the shared Spider dev databases to DuckDB files and write their questions as a JSONL
dataset that ``edgesql eval --data`` reads, to measure the pipeline on the other engine (issue 23).

    python benchmarks/duckdb_dev.py [--out DIR] [--db concert_singer --db singer ...]
    edgesql eval --data DIR/dev.jsonl --model smollm2-135m-sql -n 1,5 --limit 40

Reads ``../shared/data/spider-dev`` beside the project (``dev.json`` and ``database/<db>/<db>.sqlite``); without it,
says so and exits 0. Writes ``DIR/database/<db>/<db>.duckdb`` and ``DIR/dev.jsonl`` (one ``{"question", "query",
"db"}`` a line, ``db`` relative to the file); ``DIR`` is a new temporary folder unless ``--out`` names one, never a
folder inside the project.

The tables are copied row by row through Python's ``sqlite3`` (DuckDB's sqlite extension would have to be
downloaded). Each column gets the DuckDB type of the type SQLite gives it (its affinity: ``INT`` → BIGINT, ``TEXT``
/ ``CHAR`` → VARCHAR, ``REAL`` / ``FLOAT`` → DOUBLE); a column of NUMERIC or no affinity (``bool``, ``DATETIME``,
``NUMBER``) gets the narrowest of BIGINT, DOUBLE and VARCHAR that holds its values, and a column whose values do not
fit its affinity's type (text in an INT column) becomes VARCHAR, which is said. Primary and foreign keys are kept
where DuckDB accepts them over the data (they show in the prompt); the ones it refuses are dropped, and said.

Gold queries are Spider's, written for SQLite: each is run on the DuckDB file as ``edgesql eval`` scores it. One
that fails is normalised as edgesql normalises a candidate (``steps/validate.py``: a double-quoted word that names no
column is a string, the tree written in DuckDB's dialect) and kept if that runs; one that still fails is dropped and
counted. A kept gold whose rows differ from the SQLite gold's on the SQLite file (DuckDB divides integers exactly, for
one) is kept, and counted.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIDER = ROOT.parent / "shared" / "data" / "spider-dev"
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

import duckdb  # noqa: E402

from edge_sql.errors import QueryFailed  # noqa: E402
from edge_sql.eval.datasets import Example  # noqa: E402
from edge_sql.eval.metric import fetch, order_matters, prediction_line, results_match, rewrite  # noqa: E402
from edge_sql.eval.scoring import Databases, run_gold  # noqa: E402
from edge_sql.steps.validate import validate  # noqa: E402

#: The Spider dev databases of the shared data.
DATABASES = ("battle_death", "concert_singer", "cre_Doc_Template_Mgt", "employee_hire_evaluation", "museum_visit",
             "orchestra", "poker_player", "singer", "tvshow", "world_1")
#: Small blocks keep a small database's file small (DuckDB's default is 256 KiB a block), as examples/build.py does.
BLOCK_SIZE = 16_384


def affinity(declared: str) -> str:
    """SQLite's type affinity of a declared column type (https://sqlite.org/datatype3.html, section 3.1)."""
    declared = declared.upper()
    if "INT" in declared:
        return "INTEGER"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in declared or not declared:
        return "BLOB"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def duckdb_type(declared: str, stored: set[str]) -> str:
    """The DuckDB type of a column of SQLite type ``declared`` whose values have the SQLite storage classes
    ``stored`` (``typeof()``: integer, real, text, blob; null left out)."""
    kind = affinity(declared)
    if "blob" in stored:
        return "BLOB"
    fits = {"INTEGER": {"integer"}, "REAL": {"integer", "real"}, "TEXT": {"text"}}
    if kind in fits and stored <= fits[kind]:
        return {"INTEGER": "BIGINT", "REAL": "DOUBLE", "TEXT": "VARCHAR"}[kind]
    if kind == "TEXT":
        return "VARCHAR"  # numbers kept as numbers by a TEXT column cannot happen; anything else reads as text
    if stored <= {"integer"}:
        return "BIGINT"
    if stored <= {"integer", "real"}:
        return "DOUBLE"
    return "VARCHAR"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_table(source: sqlite3.Connection, table: str) -> dict:
    info = source.execute("SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid", (table,)).fetchall()
    columns = []
    for name, declared, _ in info:
        stored = {row[0] for row in source.execute(
            f"SELECT DISTINCT typeof({quote(name)}) FROM {quote(table)}")} - {"null"}
        columns.append((name, declared or "", duckdb_type(declared or "", stored), stored))
    primary = [name for name, _, pk in sorted(info, key=lambda c: c[2]) if pk]
    keys: dict[int, list] = {}
    for ident, _, target, src, dst, *_ in source.execute(f"PRAGMA foreign_key_list({quote(table)})"):
        keys.setdefault(ident, []).append((target, src, dst))
    foreign = []
    for parts in keys.values():
        target = parts[0][0]
        targets = [dst for _, _, dst in parts]
        if any(dst is None for dst in targets):  # REFERENCES t: its primary key
            targets = [row[0] for row in source.execute(
                "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", (target,))]
        foreign.append((target, [src for _, src, _ in parts], targets))
    rows = source.execute(f"SELECT * FROM {quote(table)}").fetchall()
    return {"name": table, "columns": columns, "primary": primary, "foreign": foreign, "rows": rows}


def convert(sqlite_path: Path, duckdb_path: Path) -> list[str]:
    """Copy every table of ``sqlite_path`` into a new DuckDB file; the notes on what could not be kept."""
    source = sqlite3.connect(f"{sqlite_path.as_uri()}?mode=ro", uri=True)
    source.text_factory = lambda b: b.decode("utf-8", errors="replace")  # as Spider's evaluator reads text
    names = [row[0] for row in source.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
    tables = {name.lower(): read_table(source, name) for name in names}
    source.close()
    notes = []
    for table in tables.values():
        for name, declared, chosen, stored in table["columns"]:
            natural = {"INTEGER": "BIGINT", "REAL": "DOUBLE", "TEXT": "VARCHAR"}.get(affinity(declared))
            if natural and chosen != natural:
                notes.append(f"{table['name']}.{name}: declared {declared}, holds {'/'.join(sorted(stored))}: "
                             f"{chosen}")
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    duckdb_path.unlink(missing_ok=True)
    connection = duckdb.connect()
    connection.execute(f"ATTACH '{str(duckdb_path).replace(chr(39), chr(39) * 2)}' AS target "
                       f"(BLOCK_SIZE {BLOCK_SIZE})")
    connection.execute("USE target")
    created: dict[str, set] = {}  # table (lower case) -> its primary key's columns (lower case), as created
    for table in ordered(tables):
        create(connection, table, tables, created, notes)
    connection.execute("CHECKPOINT")
    connection.close()
    return notes


def ordered(tables: dict) -> list[dict]:
    """The tables, each after the tables its foreign keys name (where there is no cycle), else in file order."""
    done, out = set(), []

    def visit(key, path=()):
        if key in done or key in path or key not in tables:
            return
        for target, _, _ in tables[key]["foreign"]:
            visit(target.lower(), path + (key,))
        done.add(key)
        out.append(tables[key])

    for key in tables:
        visit(key)
    return out


def create(connection, table: dict, tables: dict, created: dict, notes: list[str]) -> None:
    """Create and fill one table, with its keys where DuckDB accepts them; fewer keys after each refusal."""
    columns = [f"{quote(name)} {chosen}" for name, _, chosen, _ in table["columns"]]
    foreign = []
    for target, sources, targets in table["foreign"]:
        key = ", ".join(map(quote, sources))
        if target.lower() not in created or {t.lower() for t in targets} != created[target.lower()]:
            notes.append(f"{table['name']}: foreign key ({key}) -> {target} dropped (not a primary key there)")
            continue
        foreign.append(f"FOREIGN KEY ({key}) REFERENCES {quote(tables[target.lower()]['name'])} "
                       f"({', '.join(map(quote, targets))})")
    primary = [f"PRIMARY KEY ({', '.join(map(quote, table['primary']))})"] if table["primary"] else []
    attempts = [primary + foreign]
    if foreign:
        attempts.append(primary)
    if primary:
        attempts.append([])
    placeholders = ", ".join("?" for _ in table["columns"])
    for number, constraints in enumerate(attempts):
        name = quote(table["name"])
        try:
            connection.execute("BEGIN")
            connection.execute(f"CREATE TABLE {name} ({', '.join(columns + constraints)})")
            if table["rows"]:
                connection.executemany(f"INSERT INTO {name} VALUES ({placeholders})",
                                       [list(row) for row in table["rows"]])
            connection.execute("COMMIT")
        except duckdb.Error as error:
            connection.execute("ROLLBACK")
            message = str(error).splitlines()[0]
            if number + 1 == len(attempts):
                raise
            dropped = "foreign keys" if attempts[number + 1] == primary and foreign else "primary key"
            notes.append(f"{table['name']}: {dropped} dropped ({message})")
            continue
        created[table["name"].lower()] = ({c.lower() for c in table["primary"]} if primary and primary[0] in
                                          constraints else set())
        return


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
