"""Training examples: question/SQL pairs, each rendered into the very prompt ``ask`` builds for that question on that
database (the same schema reading, pruning, value hints, protocol and answer prefix, through
:func:`edge_sql.pipeline.fit_prompt`), and the completion the model should write after it.

Pairs come from a Spider training folder (``train_spider.json`` beside ``database/``; ``--paraphrases`` adds
``train_spider_syn.json``'s Spider-Syn questions), one Spider-format JSON file, or a JSONL file of
``{"question", "query", "db"}`` (the format ``edgesql eval`` reads). An evaluation set is refused: a folder with a
``dev.json``, or a file named ``dev*.json``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from pathlib import Path

from edge_sql.errors import EdgeSQLError, QueryRefused, UsageError
from edge_sql.eval.datasets import Example, load_dataset
from edge_sql.pipeline import Limits, Setup, fit_prompt
from edge_sql.preset import Preset
from edge_sql.protocols import get_protocol
from edge_sql.remedies import Remedies
from edge_sql.steps.database import open_database
from edge_sql.steps.generate import Sampling, answer_budget
from edge_sql.steps.question import clean_question
from edge_sql.steps.schema import Schema, quote_value
from edge_sql.steps.validate import parse_checked, quoted_strings

TRAIN_FILE = "train_spider.json"
#: A string or a double-quoted word of SQL, the quote doubled inside it (SQL's escape), as the check's lexer reads them.
QUOTED = re.compile(r"'(?:[^']|'')*'" r'|"(?:[^"]|"")*"')
PARAPHRASE_FILE = "train_spider_syn.json"


@dataclass(frozen=True)
class TrainingExample:
    """One question as the model sees it in ``ask``: ``prompt`` (whose head ``prefix`` every question shown the same
    schema repeats) and the ``completion`` it should write after it, its stop marker included."""

    index: int
    db_id: str
    prefix: str
    prompt: str
    completion: str


@dataclass(frozen=True)
class Rendered:
    examples: tuple[TrainingExample, ...]
    skipped: dict[str, int]  # reason -> how many pairs


def read_pairs(path: Path | str, *, paraphrases: bool = False) -> list[Example]:
    """The question/SQL pairs of a training set; :class:`UsageError` for an evaluation set or an unreadable one."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / TRAIN_FILE).is_file():
            if (path / "dev.json").is_file():
                raise UsageError(f"{path} is an evaluation set (it holds dev.json): training on it would make every "
                                 "later measurement on it meaningless; give a training set (e.g. spider-train)")
            raise UsageError(f"{path} has no {TRAIN_FILE}; give a Spider training folder, a Spider-format JSON file "
                             "or a JSONL file of {question, query, db}")
        files = [path / TRAIN_FILE] + ([path / PARAPHRASE_FILE] if paraphrases else [])
    else:
        if path.name.startswith("dev") and path.suffix == ".json":
            raise UsageError(f"{path} is an evaluation set: train on a training set, measure on this one")
        files = [path]
    pairs: list[Example] = []
    for file in files:
        if not file.is_file():
            raise UsageError(f"no such training data: {file}")
        dataset = load_dataset(file)
        pairs.extend(replace(example, index=len(pairs) + i) for i, example in enumerate(dataset.examples))
    if not pairs:
        raise UsageError(f"{path} holds no question/SQL pairs")
    return pairs


def hold_back(pairs: list[Example], count: int, seed: int) -> tuple[list[Example], list[Example]]:
    """``count`` pairs set aside (chosen with ``seed``) to score the trained model with the real pipeline; a
    paraphrase of a held-back question (same SQL on the same database) is held back with it."""
    if count <= 0:
        return pairs, []
    originals = sorted({(p.db_id, p.gold) for p in pairs})
    held = set(random.Random(seed).sample(originals, min(count, max(len(originals) - 1, 0))))
    keep = [p for p in pairs if (p.db_id, p.gold) not in held]
    back, seen = [], set()
    for p in pairs:
        if (p.db_id, p.gold) in held and (p.db_id, p.gold) not in seen:
            seen.add((p.db_id, p.gold))
            back.append(p)
    return keep, back


class PromptModel:
    """What :func:`fit_prompt` needs of a model to build ``ask``'s prompt: its preset, context and token count (the
    training tokenizer's, which gives llama.cpp's token ids); it never samples."""

    last_cost = None

    def __init__(self, name: str, preset: Preset, context_length: int, tokenizer):
        self.name, self.preset, self.context_length, self.tokenizer = name, preset, context_length, tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def sample(self, *args, **kwargs):  # pragma: no cover - training renders prompts only
        raise NotImplementedError("a PromptModel only renders prompts")


def single_quoted(sql: str, schema: Schema) -> str:
    """``sql`` with each double-quoted string literal written in single quotes, as ``ask`` reads SQL.

    Spider's gold queries write a fifth of their strings in double quotes (``WHERE name = "Ben Jones"``), which SQLite
    takes for a string only when no column has that name; the SQL standard, DuckDB and the schema grammar
    (``--grammar``) take them for names. ``ask`` reads them as SQLite does, but a model taught them is cornered under
    the grammar into a real name (``Directed_by = "18_49_Rating_Share"``, seen on the dev half). Which words are
    strings is validation's rule (:func:`~edge_sql.steps.validate.quoted_strings`); everything else stays as written,
    and the query's result is unchanged (checked on all 1,490 such queries of Spider's training set). A query
    validation cannot parse is left as it is.

    >>> from edge_sql.steps.schema import Column, Schema, Table
    >>> shop = Schema("sqlite", (Table("cartoon", (Column("Title", "TEXT"), Column("directed_by", "TEXT"))),))
    >>> print(single_quoted('SELECT "Title" FROM cartoon WHERE directed_by = "Ben Jones"', shop))
    SELECT "Title" FROM cartoon WHERE directed_by = 'Ben Jones'
    >>> print(single_quoted('''SELECT count(*) AS "n" FROM cartoon WHERE title = 'say "hi"' OR title = "it's"''', shop))
    SELECT count(*) AS "n" FROM cartoon WHERE title = 'say "hi"' OR title = 'it''s'
    """
    try:
        strings = quoted_strings(parse_checked(sql, schema.engine), schema)
    except QueryRefused:
        return sql

    def rewrite(match: re.Match) -> str:
        quoted = match.group()
        text = quoted[1:-1].replace('""', '"')
        return quote_value(text) if quoted[0] == '"' and text in strings else quoted

    return QUOTED.sub(rewrite, sql)


def completion_for(gold: str, preset: Preset) -> str | None:
    """What the model writes after ``ask``'s prompt for this gold query: the SQL on one line, less the answer prefix
    the preset already wrote, then the protocol's stop marker; None when the query does not start with that prefix.

    >>> from edge_sql.preset import Preset
    >>> completion_for("SELECT count(*)  FROM head WHERE age  >  56", Preset(name="p", prefix="SELECT"))
    ' count(*) FROM head WHERE age > 56<|im_end|>'
    >>> completion_for("WITH x AS (SELECT 1) SELECT * FROM x", Preset(name="p", prefix="SELECT")) is None
    True
    """
    sql = " ".join(gold.split()).rstrip(";").rstrip()
    if preset.prefix:
        if not sql.upper().startswith(preset.prefix.upper()):
            return None
        sql = sql[len(preset.prefix):]
    return sql + get_protocol(preset.protocol).stop[0]


def render(pairs: list[Example], model: PromptModel, remedies: Remedies = Remedies()) -> Rendered:
    """Each pair as ``ask`` would prompt it with ``remedies`` (the defaults: what a user's ``ask`` uses)."""
    examples, skipped = [], {}

    def skip(reason: str, count: int = 1) -> None:
        skipped[reason] = skipped.get(reason, 0) + count

    by_database: dict[Path, list[Example]] = {}
    for pair in pairs:
        by_database.setdefault(pair.db_path, []).append(pair)
    for db_path, group in by_database.items():
        if not db_path.is_file():
            skip("database missing", len(group))
            continue
        try:
            db = open_database(db_path)
        except EdgeSQLError:
            skip("database cannot be opened", len(group))
            continue
        with db:
            setup = Setup(db, model, Sampling(), Limits(), remedies)
            for pair in group:
                completion = completion_for(single_quoted(pair.gold, db.schema), model.preset)
                if completion is None:
                    skip("query does not start with the answer prefix")
                    continue
                try:
                    question = clean_question(pair.question)
                    view = fit_prompt(question, setup, answer_budget(question))
                except EdgeSQLError:
                    skip("prompt does not fit the model")
                    continue
                prompt = view.prompt
                examples.append(TrainingExample(pair.index, pair.db_id, prompt.cache_prefix, prompt.text, completion))
    examples.sort(key=lambda e: e.index)
    return Rendered(tuple(examples), skipped)
