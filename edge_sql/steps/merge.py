"""Merge a split vote (CSC-SQL's corrective self-consistency): when the candidates disagree, show the model the two
most-voted queries and what each returned, and let it write the one it thinks right.

>>> print(merge_request("How many orders were shipped?",
...     ("SELECT COUNT(*) FROM orders WHERE status = 'shipped'", ("n",), ((41,),)),
...     ("SELECT COUNT(*) FROM orders", ("n",), ((150,),))))
How many orders were shipped?
Two queries disagree.
Query A: SELECT COUNT(*) FROM orders WHERE status = 'shipped'
Result A: n: 41
Query B: SELECT COUNT(*) FROM orders
Result B: n: 150
Write the one correct query.
"""

from __future__ import annotations

from edge_sql.steps.vote import Ballot, Entry, result_key

#: Rows of each result shown to the model, and the characters of each.
SHOWN_ROWS = 3
SHOWN_CHARS = 160
#: What CSC-SQL's merge prompt shows of each draft: rows, characters of its result, characters of its SQL.
DRAFT_ROWS, DRAFT_CHARS, DRAFT_SQL_CHARS = 20, 1000, 500


def merge_request(question: str, first: tuple[str, tuple, tuple], second: tuple[str, tuple, tuple]) -> str:
    """The question, the two queries (SQL, columns, rows) and their results, and the request for the right one."""
    lines = [question, "Two queries disagree."]
    for label, (sql, columns, rows) in zip("AB", (first, second)):
        lines.append(f"Query {label}: {' '.join(sql.split())}")
        lines.append(f"Result {label}: {describe_rows(columns, rows)}")
    lines.append("Write the one correct query.")
    return "\n".join(lines)


def drafts(first: tuple[str, tuple, tuple], second: tuple[str, tuple, tuple]) -> str:
    """The two queries (SQL, columns, rows) and their results as CSC-SQL's merge-revision prompt lists them
    (``build_merge_generate_prompt``, ``normal_execute_result``): numbered, each result a list of row tuples, the
    first 20 rows of a longer one, each cut at 1,000 characters, each query at 500.

    >>> print(drafts(("SELECT name FROM singer WHERE age > 30", ("name",), (("Ada",), ("Bo",))),
    ...              ("SELECT count(*) FROM singer", ("n",), ((6,),))), end="|")
    1. SELECT name FROM singer WHERE age > 30
    【Execution result】
    [('Ada',), ('Bo',)]
    <BLANKLINE>
    2. SELECT count(*) FROM singer
    【Execution result】
    [(6,)]
    |
    """
    listed = []
    for number, (sql, _columns, rows) in enumerate((first, second), 1):
        shown = repr([tuple(row) for row in rows[:DRAFT_ROWS]])
        if len(rows) > DRAFT_ROWS:
            shown = f"The execution results of the first twenty columns are: {shown[:DRAFT_CHARS]}"
        if len(shown) > DRAFT_CHARS:
            shown = shown[:DRAFT_CHARS] + "..."
        listed.append(f"{number}. {sql[:DRAFT_SQL_CHARS]}\n【Execution result】\n{shown}\n")
    return "\n".join(listed)


def describe_rows(columns: tuple, rows: tuple) -> str:
    """A result in one short line.

    >>> describe_rows(("name", "total"), (("Ada", 12.5), ("Bo", 3)))
    'name, total: (Ada, 12.5), (Bo, 3)'
    >>> describe_rows(("n",), ())
    'no rows'
    """
    if not rows:
        return "no rows"
    if len(columns) == 1 and len(rows) == 1:
        return f"{columns[0]}: {rows[0][0]}"
    shown = ", ".join("(" + ", ".join(str(v) for v in row) + ")" for row in rows[:SHOWN_ROWS])
    more = f" … {len(rows)} rows" if len(rows) > SHOWN_ROWS else ""
    return f"{', '.join(map(str, columns))}: {shown}{more}"[:SHOWN_CHARS]


def split_vote(ballot: Ballot) -> tuple[Entry, Entry] | None:
    """The representatives of the two largest groups when no result has a strict majority of the valid candidates;
    None when the vote is clear (or there is only one result).

    >>> from edge_sql.steps.generate import Candidate
    >>> from edge_sql.steps.validate import VALID, Verdict
    >>> from edge_sql.steps.execute import Result
    >>> from edge_sql.steps.vote import vote
    >>> def entry(sql, n):
    ...     return Entry(Candidate(sql, sql), Verdict(VALID, sql=sql), Result(("n",), ((n,),)))
    >>> pair = split_vote(vote([entry("SELECT 1", 1), entry("SELECT 2", 2), entry("SELECT 1 + 0", 1),
    ...                         entry("SELECT 3", 3), entry("SELECT 2 + 0", 2)]))
    >>> [e.verdict.sql for e in pair]
    ['SELECT 1', 'SELECT 2']
    >>> split_vote(vote([entry("SELECT 1", 1), entry("SELECT 1 + 0", 1), entry("SELECT 2", 2)])) is None
    True
    """
    winner = ballot.winner
    if winner is None or winner.votes * 2 > ballot.valid:
        return None
    groups: dict[object, Entry] = {}
    for entry in ballot.entries:
        if entry.result is not None and entry.verdict.ok:
            key = result_key(entry.result, entry.verdict.ordered)
            if key not in groups or entry.confidence > groups[key].confidence:
                groups[key] = entry
    winning = result_key(winner.result, winner.verdict.ordered)
    others = [e for key, e in groups.items() if key != winning]
    if not others:
        return None
    runner_up = max(others, key=lambda e: (e.votes, e.confidence))
    return winner, runner_up
