"""The opt-in log of asked questions (``edgesql ask --log``): one JSON line a question, stored locally.

Nothing is logged unless ``--log`` is given; the database's rows are logged only with ``--log-rows``. The file is
``EDGESQL_LOG``, else ``$XDG_STATE_HOME/edgesql/log.jsonl``, else ``~/.local/state/edgesql/log.jsonl``.

Several processes may log at once: each line is appended in one write under a lock, and a line cut short by a crash
does not swallow the next one (``files.append_line``).
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from edge_sql.errors import UsageError
from edge_sql.files import append_line


def log_path() -> Path:
    if os.environ.get("EDGESQL_LOG"):
        return Path(os.environ["EDGESQL_LOG"]).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "edgesql" / "log.jsonl"


def record(db: Path, answer, *, error: str | None = None, rows: bool = False) -> Path:
    """Append one question, its chosen SQL and its vote (and its rows when asked) to the log."""
    from edge_sql.cli.output import jsonable

    entry = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "db": str(Path(db).resolve()),
        "question": answer.question,
        "sql": answer.sql,
        "votes": answer.votes,
        "candidates": answer.candidates,
        "model": answer.model,
        "error": error,
    }
    if rows:
        entry["columns"] = list(answer.columns)
        entry["rows"] = [[jsonable(v) for v in row] for row in answer.rows]
    path = log_path()
    try:
        append_line(path, json.dumps(entry, ensure_ascii=False))
    except OSError as problem:
        raise UsageError(f"cannot write the question log {path}: {problem.strerror}") from None
    return path
