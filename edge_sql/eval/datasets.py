"""The datasets ``edgesql eval`` reads: Spider and BIRD folders (or their JSON files) and JSONL files of
``{"question", "query", "db"}``, each question an :class:`Example` with its gold query and its database."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from edge_sql.errors import UsageError



@dataclass(frozen=True)
class Example:
    """One question of a dataset, with its gold query and where its database is."""

    index: int  # position in the dataset file, from 0
    question: str
    gold: str
    db_id: str
    db_path: Path  # the database the pipeline asks
    sql: dict | None = field(default=None, repr=False, compare=False)  # Spider's parse of the gold query, if given
    kind: str | None = None  # a JSONL line's own tag ("kind": "dates", "joins", …): eval reports EX per kind


@dataclass(frozen=True)
class Dataset:
    path: Path
    layout: str  # "spider", "bird" or "jsonl"
    examples: tuple[Example, ...]

    @property
    def metric(self) -> str:
        """How a prediction is compared with the gold query: Spider's rules, or BIRD's set equality."""
        return "bird" if self.layout == "bird" else "spider"


def load_dataset(path: Path | str) -> Dataset:
    """Read a Spider or BIRD folder (or one of their JSON files) or a JSONL file; :class:`UsageError` if unreadable."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / "dev.json").is_file():
            raise UsageError(f"{path} has no dev.json; give a Spider or BIRD folder, one of their JSON files, or a "
                             "JSONL file of {question, query, db}")
        path = path / "dev.json"
    if not path.is_file():
        raise UsageError(f"no such dataset: {path}")
    if path.suffix == ".jsonl":
        return Dataset(path, "jsonl", tuple(read_jsonl(path)))
    items = read_json(path)
    if items and isinstance(items[0], dict) and "SQL" in items[0]:
        databases = path.parent / "dev_databases"
        examples = (
            Example(i, bird_question(item), item.get("SQL", ""), item.get("db_id", ""),
                    databases / item.get("db_id", "") / f"{item.get('db_id', '')}.sqlite")
            for i, item in enumerate(items)
        )
        return Dataset(path, "bird", tuple(examples))
    databases = path.parent / "database"
    examples = (
        Example(i, item.get("question", ""), item.get("query", ""), item.get("db_id", ""),
                databases / item.get("db_id", "") / f"{item.get('db_id', '')}.sqlite", item.get("sql"))
        for i, item in enumerate(items)
    )
    return Dataset(path, "spider", tuple(examples))


def read_json(path: Path) -> list[dict]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise UsageError(f"{path} is not a list of questions")
    return items


def read_jsonl(path: Path):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    index = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}, line {number}: not JSON ({error})") from None
        if not isinstance(item, dict):
            raise UsageError(f"{path}, line {number}: not a JSON object")
        db = Path(str(item.get("db", "")))
        db = db if db.is_absolute() else path.parent / db
        kind = item.get("kind")
        yield Example(index, str(item.get("question", "")), str(item.get("query", "")), db.stem, db,
                      kind=None if kind is None else str(kind))
        index += 1


def bird_question(item: dict) -> str:
    evidence = str(item.get("evidence") or "").strip()
    question = str(item.get("question", ""))
    return f"{question} Hint: {evidence}" if evidence else question


def select_examples(examples, *, db: tuple[str, ...] = (), limit: int | None = None, shuffle: bool = False,
                    seed: int = 42) -> list[Example]:
    """The questions to run: those on the named databases, shuffled with ``seed`` if asked, the first ``limit``.

    >>> chosen = select_examples([Example(i, "q", "SELECT 1", f"db{i % 2}", Path("x")) for i in range(6)],
    ...                          db=("db1",), limit=2)
    >>> [e.index for e in chosen]
    [1, 3]
    """
    chosen = [e for e in examples if not db or e.db_id in db]
    if shuffle:
        random.Random(seed).shuffle(chosen)
    return chosen[:limit] if limit is not None else chosen


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/8"`` → ``(3, 8)``: the third of eight slices; :class:`UsageError` for anything else.

    >>> parse_shard("3/8")
    (3, 8)
    """
    part, _, total = text.partition("/")
    try:
        k, n = int(part), int(total)
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text}: give K/N with 1 <= K <= N, e.g. 3/8")
    return k, n


def shard_examples(examples: list, shard: tuple[int, int]) -> list:
    """The K-th of N contiguous, near-equal slices (questions on one database stay together, so each machine opens
    few databases and reuses its schema caches); the N slices together are the questions, each once, in order.

    >>> [shard_examples(list(range(7)), (k, 3)) for k in (1, 2, 3)]
    [[0, 1, 2], [3, 4], [5, 6]]
    """
    k, n = shard
    size, extra = divmod(len(examples), n)
    start = (k - 1) * size + min(k - 1, extra)
    return examples[start:start + size + (1 if k <= extra else 0)]


def comparison_files(example: Example, layout: str) -> tuple[Path, ...]:
    """The database files a prediction is compared on: for Spider, as its evaluator does, every file with
    ``.sqlite`` in its name in the question's database folder (a test suite); otherwise the database itself."""
    if layout != "spider" or not example.db_path.parent.is_dir():
        return (example.db_path,)
    found = sorted(p for p in example.db_path.parent.iterdir() if ".sqlite" in p.name and p.is_file())
    return tuple(found) or (example.db_path,)
