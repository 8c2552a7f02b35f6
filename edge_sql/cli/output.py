"""Show an answer: a rich table for people, one JSON object or CSV rows for programs.

Data goes to stdout; progress and errors go to stderr, so stdout stays pipeable. Colour only on a terminal
(rich honours ``NO_COLOR``).
"""

from __future__ import annotations

import base64
import csv
import datetime
import decimal
import json
import math
import sys
import uuid

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from edge_sql.steps.execute import Result
from edge_sql.pipeline import Answer

FORMATS = ("table", "json", "csv", "markdown")


def jsonable(value):
    """A database value as JSON can carry it: dates as ISO text, decimals as numbers, bytes as base64."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return jsonable(float(value))
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def answer_to_dict(answer: Answer, error: str | None = None) -> dict:
    ballot = [
        {
            "sql": entry.verdict.sql or entry.candidate.sql,
            "verdict": entry.verdict.kind,
            "error": entry.verdict.error,
            "votes": entry.votes,
            "logprob": round(entry.candidate.logprob, 4),
            "tokens": entry.candidate.tokens,
            "round": entry.stage,
        }
        for entry in answer.ballot.entries
    ]
    data = {
        "question": answer.question,
        "sql": answer.sql,
        "columns": list(answer.columns),
        "rows": [[jsonable(v) for v in row] for row in answer.rows],
        "truncated": answer.truncated,
        "votes": answer.votes,
        "candidates": answer.candidates,
        "ballot": ballot,
        "model": answer.model,
        "dialect": answer.dialect,
        "timings": answer.timings,
        "tokens": answer.tokens,
        "ungrounded": [lookup.to_dict() for lookup in answer.ungrounded],
        "confidence": None if answer.confidence is None else round(answer.confidence, 4),
        "signals": None if answer.signals is None else answer.signals.to_dict(),
    }
    if error:
        data["error"] = error
    return data


def print_json(data: dict) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_csv(columns, rows) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else jsonable(v) for v in row])
    sys.stdout.flush()


def markdown_cell(value) -> str:
    text = "NULL" if value is None else str(jsonable(value))
    return " ".join(text.replace("\\", "\\\\").replace("|", "\\|").split())


def print_markdown(columns, rows, *, sql: str | None = None, note: str | None = None) -> None:
    """A Markdown table (GitHub style), after the SQL in a fenced block when given, before a note when given.

    >>> print_markdown(["name", "price"], [("Desk | Lamp", 19.5), ("Kettle", None)], note="2 rows")
    | name | price |
    | --- | --- |
    | Desk \\| Lamp | 19.5 |
    | Kettle | NULL |
    <BLANKLINE>
    2 rows
    """
    lines = [f"```sql\n{sql}\n```", ""] if sql else []
    lines.append("| " + " | ".join(markdown_cell(c) for c in columns) + " |")
    lines.append("| " + " | ".join("---" for _ in columns) + " |")
    lines += ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in rows]
    if note:
        lines += ["", note]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def print_result_table(console: Console, result_columns, rows, truncated: bool, max_rows: int) -> None:
    table = Table(show_header=True, header_style="bold", show_lines=False)
    for name in result_columns:
        table.add_column(str(name), overflow="fold")
    for row in rows:
        table.add_row(*[Text("NULL", style="dim") if v is None else Text(str(jsonable(v))) for v in row])
    console.print(table)
    count = f"{len(rows)} row" + ("" if len(rows) == 1 else "s")
    if truncated:
        count = f"first {max_rows} rows shown; pass --max-rows to see more"
    console.print(Text(count, style="dim"))


def print_sql(console: Console, sql: str) -> None:
    console.print(Syntax(sql, "sql", theme="ansi_dark", word_wrap=True, background_color="default"))


def print_answer(answer: Answer, fmt: str, *, max_rows: int, show_candidates: bool, console: Console) -> None:
    if fmt == "json":
        print_json(answer_to_dict(answer))
        return
    warnings = [lookup.message() for lookup in answer.ungrounded]  # values no row holds: the rows rest on them
    if fmt == "csv":
        print_csv(answer.columns, answer.rows)
        sys.stderr.write("".join(f"edgesql: {line}\n" for line in warnings))
        return
    if fmt == "markdown":
        print_markdown(answer.columns, answer.rows, sql=answer.sql, note="\n\n".join([footer(answer), *warnings]))
        return
    print_sql(console, answer.sql)
    print_result_table(console, answer.columns, answer.rows, answer.truncated, max_rows)
    console.print(Text(footer(answer), style="dim"))
    for line in warnings:
        console.print(Text(line, style="yellow"))
    if show_candidates:
        print_ballot(console, answer)


def footer(answer: Answer) -> str:
    """The line under an answer: the vote, the model, and how sure the answer is, in words.

    >>> from edge_sql.steps.vote import Ballot
    >>> footer(Answer("q", "SELECT 1", ("1",), ((1,),), False, 4, Ballot((None,) * 5, None), "m", "sqlite",
    ...               confidence=0.83))
    '4 of 5 candidates agreed · m · confidence 83% (high)'
    """
    from edge_sql.steps.confidence import words

    sure = "" if answer.confidence is None else \
        f" · confidence {answer.confidence:.0%} ({words(answer.confidence)})"
    return f"{answer.votes} of {answer.candidates} candidates agreed · {answer.model}{sure}"


def print_ballot(console: Console, answer: Answer) -> None:
    """``--show-candidates``: the schema the model saw (and what was left out of it), then every candidate."""
    if answer.view is not None:
        print_view(console, answer.view)
    table = Table(title="Candidates", show_header=True, header_style="bold")
    rounds = any(entry.stage != "sample" for entry in answer.ballot.entries)
    for name in ("#", "round") if rounds else ("#",):
        table.add_column(name, overflow="fold")
    for name in ("votes", "verdict", "sql / error"):
        table.add_column(name, overflow="fold")
    for index, entry in enumerate(answer.ballot.entries, 1):
        detail = entry.verdict.sql or entry.candidate.sql or entry.candidate.text.strip() or "(nothing)"
        if entry.verdict.error:
            detail += f"\n{entry.verdict.error}"
        detail += "".join(f"\n{lookup.message()}" for lookup in entry.ungrounded)
        winner = entry is answer.ballot.winner
        cells = (str(index), entry.stage) if rounds else (str(index),)
        table.add_row(*cells, str(entry.votes), entry.verdict.kind, Text(detail, style="bold" if winner else ""))
    console.print(table)


def print_view(console: Console, view) -> None:
    console.print(Text("Schema shown to the model", style="bold"))
    console.print(Text(view.rendered, style="dim"))
    if view.note:
        console.print(Text(view.note, style="dim"))
    if view.grammar is not None:
        console.print(Text("decoded under the schema's grammar", style="dim"))
    if view.check is not None:
        console.print(Text("each token checked against the schema as it was decoded", style="dim"))


def print_explanation(console: Console, explanation) -> None:
    """``ask --explain``: the chosen query pretty-printed, then what each clause does."""
    console.print(Text("Explanation", style="bold"))
    print_sql(console, explanation.sql)
    for line in explanation.lines:
        console.print(f"  • {line}", markup=False)


def print_result(result: Result, sql: str, fmt: str, *, max_rows: int, console: Console) -> None:
    """The output of ``edgesql run``: one query's result."""
    if fmt == "json":
        print_json({"sql": sql, "columns": list(result.columns), "rows": [[jsonable(v) for v in r] for r in result.rows],
                    "truncated": result.truncated, "seconds": round(result.seconds, 4)})
    elif fmt == "csv":
        print_csv(result.columns, result.rows)
    elif fmt == "markdown":
        print_markdown(result.columns, result.rows)
    else:
        print_result_table(console, result.columns, result.rows, result.truncated, max_rows)
