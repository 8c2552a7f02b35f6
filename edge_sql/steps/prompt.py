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

Every protocol is a system and a user template (``{schema}``, ``{question}`` and ``{dialect}`` are filled in) put
into a chat format. The published ones are copied from their sources, named in each protocol's ``source``.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_sql.protocols import CHAT_FORMATS, get_protocol

DIALECT_NAMES = {"sqlite": "SQLite", "duckdb": "DuckDB"}


@dataclass(frozen=True)
class Prompt:
    """The text given to the model; ``prefix`` is the start of the answer, already written for it."""

    text: str
    prefix: str = ""
    stop: tuple[str, ...] = ()
    cache_prefix: str = ""  # the head of ``text`` that every question on the same database repeats
    reasoning: int = 0  # tokens a reasoning answer may take (``Protocol.reasoning``); 0: the answer is SQL alone


def build_prompt(protocol: str, schema: str, question: str, dialect: str, prefix: str = "",
                 context: tuple[str, str] | None = None, drafts: str | None = None) -> Prompt:
    """The prompt for ``question``; ``context`` (the previous question and its SQL) lets a follow-up refer to them;
    ``drafts`` (``merge.drafts``) asks a protocol with a merge template to write one query from two drafts.

    >>> text = build_prompt("chatml-strict", "Table 't' (a)", "Now only for 2023?", "sqlite",
    ...                     context=("How many orders?", "SELECT count(*) FROM orders")).text
    >>> print(text.split("<|im_start|>user\\n", 1)[1].split("<|im_end|>")[0])
    Previous question: How many orders?
    Previous SQL: SELECT count(*) FROM orders
    Now: Now only for 2023?
    """
    chosen = get_protocol(protocol)
    if context is not None:
        question = follow_up(question, context)
    values = dict(schema=schema, question=question, dialect=DIALECT_NAMES.get(dialect, dialect))
    template = chosen.user
    if drafts is not None and chosen.merge:
        template, values = chosen.merge, {**values, "drafts": drafts}
    system = chosen.system.format(**values)
    user = template.format(**values)
    text = CHAT_FORMATS[chosen.chat].format(system=system, user=user) + prefix
    marker = "\0question\0"
    head = CHAT_FORMATS[chosen.chat].format(system=system, user=template.format(**{**values, "question": marker}))
    return Prompt(text=text, prefix=prefix, stop=chosen.stop, cache_prefix=head.split(marker, 1)[0],
                  reasoning=chosen.reasoning)


def follow_up(question: str, context: tuple[str, str]) -> str:
    """A question that refers to the previous one: the previous question and SQL, then the new question."""
    previous_question, previous_sql = context
    previous_sql = " ".join(previous_sql.split())
    return f"Previous question: {previous_question}\nPrevious SQL: {previous_sql}\nNow: {question}"
