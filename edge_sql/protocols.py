"""How each model family is asked, as plain data that presets name: the prompt protocols (system and user
templates, chat format, stop strings; the published ones copied from their sources) and the schema styles.

The steps fill them in (``steps/prompt.py``, ``steps/schema.py``); presets, backends and ``convert`` only name them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_sql.errors import UsageError

#: How the schema is written into a prompt (``steps.schema.render_schema``).
STYLES = ("ddl", "strict")


@dataclass(frozen=True)
class Protocol:
    """How a model family wants to be asked: system and user templates, the chat format, and where to stop."""

    system: str
    user: str = "{question}"
    chat: str = "chatml"
    stop: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")
    source: str = ""
    #: Tokens an answer may take when the model reasons first (``<think>…</think><answer>SQL</answer>``): a reasoning
    #: answer is not stopped at the end of a statement, only at ``stop``. 0: the model answers with SQL alone.
    reasoning: int = 0
    #: The user template of a merge request (``steps/merge.py``): ``{drafts}`` are the two most-voted queries with
    #: what each returned. Empty: the request is asked as the question, in ``user``.
    merge: str = ""


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

#: CSC-SQL's merge-revision prompt (``build_merge_generate_prompt`` in src/cscsql/utils/common_utils.py): the think
#: prompt with another task sentence and the draft queries, with their results, before the instructions.
SLM_SQL_MERGE = SLM_SQL_USER.replace(
    "Below, you are provided with a database schema and a natural language question.",
    "Below, you are provided with a database schema, a natural language question, some draft SQL and its "
    "corresponding execution result.",
).replace("Instructions:\n", "Here are some corresponding draft SQL and execute result: \n{drafts}\n\nInstructions:\n", 1)

#: What CSC-SQL gives a reasoning answer: ``max_output_len`` in src/cscsql/model/infer.py.
SLM_SQL_BUDGET = 1024

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
        reasoning=SLM_SQL_BUDGET,
        merge=SLM_SQL_MERGE,
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


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UsageError(f"unknown prompt protocol {name!r}; known: {', '.join(PROTOCOLS)}") from None


def template_speaks(chat_template: str, protocol: str) -> bool:
    """Whether a GGUF chat template uses the chat format ``protocol`` writes its prompt in.

    >>> template_speaks("{{ '<|im_start|>' + message['role'] }}{{ '<|im_end|>' }}", "chatml-strict")
    True
    >>> template_speaks("[INST] {{ message['content'] }} [/INST]", "qwen-coder")
    False
    """
    return all(marker in chat_template for marker in CHAT_MARKERS[get_protocol(protocol).chat])
