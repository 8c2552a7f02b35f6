"""The shell's history: the lines typed in earlier sessions, kept in one file that sessions running at once share.

The file is ``EDGESQL_HISTORY``, else ``$XDG_STATE_HOME/edgesql/history``, else ``~/.local/state/edgesql/history``:
one line a line typed, the last :data:`MAX_LINES` kept. A session adds its lines when it ends, under a lock of the
file's folder: it reads the file again (another session may have added lines meanwhile), adds its own, and writes
the whole to a temporary name renamed over the file, so no session reads half of it. A line that is not text (a NUL
or a control byte, invalid UTF-8: a damaged file) is dropped when the file is read, and the file is written anew.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "history"
>>> _ = path.write_bytes(b".schema\\n\\xff\\xfe damaged\\nHow many customers?\\n")
>>> read_history(path)
['.schema', 'How many customers?']
>>> save_history(path, ["Which city?"])
>>> path.read_text().splitlines()
['.schema', 'How many customers?', 'Which city?']
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from edge_sql.files import locked, write_atomically

#: The most lines the file keeps (the newest).
MAX_LINES = 1000

#: A control character other than a tab: never typed at the prompt, so a sign of a damaged file.
NOT_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def history_path() -> Path:
    """``EDGESQL_HISTORY``, else ``$XDG_STATE_HOME/edgesql/history``, else ``~/.local/state/edgesql/history``."""
    if os.environ.get("EDGESQL_HISTORY"):
        return Path(os.environ["EDGESQL_HISTORY"]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "edgesql" / "history"


def read_history(path: Path) -> list[str]:
    """The last :data:`MAX_LINES` lines of ``path`` that are text; none when it is missing or unreadable."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return []
    lines = []
    for raw in data.split(b"\n"):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if line.strip() and not NOT_TEXT.search(line):
            lines.append(line)
    return lines[-MAX_LINES:]


def save_history(path: Path, lines: list[str]) -> None:
    """Add ``lines`` to the history file, keeping its last :data:`MAX_LINES`; see the module's docstring."""
    path = Path(path)
    added = [line for line in lines if line.strip() and not NOT_TEXT.search(line)]
    with locked(path.parent):
        kept = (read_history(path) + added)[-MAX_LINES:]
        write_atomically(path, "".join(line + "\n" for line in kept).encode("utf-8"))
