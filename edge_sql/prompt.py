"""Build the prompt: a protocol (plain data, named by the model's preset) filled with schema, dialect and question.

The default protocol is the strict raw-SQL ChatML of the SS-350M-SQL-Strict model card, with one line added that
names the SQL dialect to write.

>>> prompt = build_prompt("chatml-strict", "Table 'products' (name, price)", "Most expensive product?", "sqlite")
>>> print(prompt.text)
<|im_start|>system
You are a SQL translation engine. Return ONLY raw SQL. Schema: Table 'products' (name, price)
Dialect: SQLite.<|im_end|>
<|im_start|>user
Most expensive product?<|im_end|>
<|im_start|>assistant
<BLANKLINE>
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_sql.errors import UsageError


@dataclass(frozen=True)
class Protocol:
    """How a model family wants to be asked: system and user templates, the chat format, and where to stop."""

    system: str
    user: str = "{question}"
    chat: str = "chatml"
    stop: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")


PROTOCOLS: dict[str, Protocol] = {
    "chatml-strict": Protocol(
        system="You are a SQL translation engine. Return ONLY raw SQL. Schema: {schema}\nDialect: {dialect}.",
    ),
    "chatml-instruct": Protocol(
        system=(
            "You are a careful data analyst. Write one {dialect} query that answers the question, using only the "
            "tables and columns of this schema:\n{schema}\nReply with the SQL only."
        ),
        user="Question: {question}",
    ),
}

CHAT_FORMATS = {
    "chatml": "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n",
}

DIALECT_NAMES = {"sqlite": "SQLite", "duckdb": "DuckDB"}


@dataclass(frozen=True)
class Prompt:
    """The text given to the model; ``prefix`` is the start of the answer, already written for it."""

    text: str
    prefix: str = ""
    stop: tuple[str, ...] = ()
    cache_prefix: str = ""  # the head of ``text`` that every question on the same database repeats


def build_prompt(protocol: str, schema: str, question: str, dialect: str, prefix: str = "") -> Prompt:
    try:
        chosen = PROTOCOLS[protocol]
    except KeyError:
        raise UsageError(f"unknown prompt protocol {protocol!r}; known: {', '.join(PROTOCOLS)}") from None
    system = chosen.system.format(schema=schema, dialect=DIALECT_NAMES.get(dialect, dialect))
    user = chosen.user.format(question=question)
    text = CHAT_FORMATS[chosen.chat].format(system=system, user=user) + prefix
    marker = "\0question\0"
    head = CHAT_FORMATS[chosen.chat].format(system=system, user=chosen.user.format(question=marker))
    return Prompt(text=text, prefix=prefix, stop=chosen.stop, cache_prefix=head.split(marker, 1)[0])
