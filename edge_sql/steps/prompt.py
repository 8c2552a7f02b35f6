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

from edge_sql.errors import UsageError


@dataclass(frozen=True)
class Protocol:
    """How a model family wants to be asked: system and user templates, the chat format, and where to stop."""

    system: str
    user: str = "{question}"
    chat: str = "chatml"
    stop: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")
    source: str = ""


#: The instruction part of CSC-SQL's "think" prompt (OmniSQL's prompt without its output-format section, then the
#: think/answer output format); models answer ``<think>…</think><answer>SQL</answer>``.
SLM_SQL_USER = """\
You first thinks about the reasoning process in the mind and then provides the user with the answer.
Task Overview:
You are a data science expert. Below, you are provided with a database schema and a natural language question. \
Your task is to understand the schema and generate a valid SQL query to answer the question.

Database Engine:
{dialect}

Database Schema:
{schema}
This schema describes the database's structure, including tables, columns, primary keys, foreign keys, and any \
relevant relationships or constraints.

Question:
{question}

Instructions:
- Make sure you only output the information that is asked in the question. If the question asks for a specific \
column, make sure to only include that column in the SELECT clause, nothing more.
- The generated query should return all of the information asked in the question without any missing or extra \
information.
- Before generating the final SQL query, please think through the steps of how to write the query.



Output Format:
Show your work in <think> </think> tags. And return the final {dialect} SQL query that starts with keyword `SELECT` \
in <answer> </answer> tags, for example <answer>SELECT AVG(rating_score) FROM movies</answer>.  

Let me solve this step by step."""

PROTOCOLS: dict[str, Protocol] = {
    "chatml-strict": Protocol(
        system="You are a SQL translation engine. Return ONLY raw SQL. Schema: {schema}\nDialect: {dialect}.",
        source="SS-350M-SQL-Strict model card (huggingface.co/saadxsalman/SS-350M-SQL-Strict-GGUF), plus the dialect",
    ),
    "chatml-instruct": Protocol(
        system=(
            "You are a careful data analyst. Write one {dialect} query that answers the question, using only the "
            "tables and columns of this schema:\n{schema}\nReply with the SQL only."
        ),
        user="Question: {question}",
        source="edgesql's own instruction prompt for general chat models",
    ),
    "slm-sql-think": Protocol(
        system=(
            "You are a helpful AI Assistant that provides well-reasoned and detailed responses. You first think about "
            "the reasoning process as an internal monologue and then provide the user with the answer. Respond in the "
            "following format: <think>\n...\n</think>\n<answer>\n...\n</answer>"
        ),
        user=SLM_SQL_USER,
        stop=("<|im_end|>", "<|endoftext|>", "</answer>"),
        source="CSC-SQL src/cscsql/model/infer.py (github.com/CycloneBoy/csc_sql), used by SLM-SQL and CscSQL-Merge",
    ),
    "qwen-coder": Protocol(
        system=(
            "You are an expert data analyst. Given a {dialect} database schema and a question, write a single valid "
            "{dialect} SQL query that answers it. Respond with only the SQL query and nothing else."
        ),
        user="Database schema:\n{schema}\n\nQuestion: {question}",
        source="SQLForge sqlforge/prompts.py (PyPI sqlforge 0.1.0), in Qwen2.5-Coder's ChatML chat template",
    ),
}

CHAT_FORMATS = {
    "chatml": "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n",
}

#: What a GGUF file's chat template (``tokenizer.chat_template``) contains when it speaks a chat format.
CHAT_MARKERS = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
}

DIALECT_NAMES = {"sqlite": "SQLite", "duckdb": "DuckDB"}


@dataclass(frozen=True)
class Prompt:
    """The text given to the model; ``prefix`` is the start of the answer, already written for it."""

    text: str
    prefix: str = ""
    stop: tuple[str, ...] = ()
    cache_prefix: str = ""  # the head of ``text`` that every question on the same database repeats


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UsageError(f"unknown prompt protocol {name!r}; known: {', '.join(PROTOCOLS)}") from None


def build_prompt(protocol: str, schema: str, question: str, dialect: str, prefix: str = "",
                 context: tuple[str, str] | None = None) -> Prompt:
    """The prompt for ``question``; ``context`` (the previous question and its SQL) lets a follow-up refer to them.

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
    system = chosen.system.format(**values)
    user = chosen.user.format(**values)
    text = CHAT_FORMATS[chosen.chat].format(system=system, user=user) + prefix
    marker = "\0question\0"
    head = CHAT_FORMATS[chosen.chat].format(system=system, user=chosen.user.format(**{**values, "question": marker}))
    return Prompt(text=text, prefix=prefix, stop=chosen.stop, cache_prefix=head.split(marker, 1)[0])


def follow_up(question: str, context: tuple[str, str]) -> str:
    """A question that refers to the previous one: the previous question and SQL, then the new question."""
    previous_question, previous_sql = context
    previous_sql = " ".join(previous_sql.split())
    return f"Previous question: {previous_question}\nPrevious SQL: {previous_sql}\nNow: {question}"


def template_speaks(chat_template: str, protocol: str) -> bool:
    """Whether a GGUF chat template uses the chat format ``protocol`` writes its prompt in.

    >>> template_speaks("{{ '<|im_start|>' + message['role'] }}{{ '<|im_end|>' }}", "chatml-strict")
    True
    >>> template_speaks("[INST] {{ message['content'] }} [/INST]", "qwen-coder")
    False
    """
    return all(marker in chat_template for marker in CHAT_MARKERS[get_protocol(protocol).chat])
