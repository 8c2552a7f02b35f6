"""The question as the model will read it: cleaned of what a terminal or a paste adds, refused when empty or huge."""

from __future__ import annotations

import re
import unicodedata

from edge_sql.errors import UsageError

#: Terminal escape sequences (colours, cursor moves) pasted along with a question.
ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")

#: The longest question edgesql accepts, in characters.
MAX_QUESTION = 2000


def clean_question(question: str) -> str:
    r"""The question as the model will read it: valid UTF-8, no terminal escapes, control or invisible characters,
    not empty, not huge.

    >>> clean_question("How many\x1b[1m orders\u200b?\n")
    'How many orders?'
    """
    text = question.encode("utf-8", "replace").decode("utf-8")
    text = ANSI_ESCAPE.sub("", text)
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs") else "" if unicodedata.category(ch) == "Cf" else ch
                   for ch in text)
    text = " ".join(text.split())
    if not text:
        raise UsageError("the question is empty; ask something about the data, e.g. \"How many orders are there?\"")
    if len(text) > MAX_QUESTION:
        raise UsageError(f"the question is {len(text):,} characters long; at most {MAX_QUESTION:,} are accepted")
    return text
