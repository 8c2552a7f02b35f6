"""The words and lexemes the decoding-time check reads: SQL's keywords, the functions a candidate may call, and an
incremental lexer that says what of a text is finished and what a later piece may still extend."""

from __future__ import annotations

import re
from bisect import bisect_left
from functools import lru_cache

#: Words that steer the tracker or belong to expressions; a column of the same name must be quoted to be read as one.
KEYWORDS = frozenset("""
    select from where group by having order limit offset as on join inner left right full outer cross natural using
    and or not in is null like glob ilike regexp between exists case when then else end cast distinct all asc desc
    union intersect except true false collate escape with recursive window qualify over partition filter
    """.split())
#: Words that may stand in an expression without being a column (window frames, literals' types, NULLS FIRST, …).
SOFT_KEYWORDS = frozenset("""
    nocase rtrim binary nulls first last rows range groups preceding following unbounded current row interval
    similar to any some date time timestamp within ties exclude others no
    """.split())
#: Soft keywords that follow an operand (ORDER BY x DESC NULLS LAST).
SORTING = frozenset("nulls first last".split())
#: Words that end a FROM source (or its alias).
FROM_ENDS = frozenset("""
    on using join inner left right full outer cross natural where group having order limit offset union intersect
    except window qualify
    """.split())
#: Functions a candidate may call, as the engines spell them (the guard has the last word: the end check runs it).
FUNCTIONS = frozenset("""
    count sum avg min max total group_concat string_agg array_agg list median mode stddev stddev_samp stddev_pop
    variance var_samp var_pop count_if any_value arg_max arg_min bool_and bool_or quantile_cont quantile_disc
    percentile_cont percentile_disc approx_count_distinct abs round ceil ceiling floor sign sqrt pow power exp ln log
    log10 log2 mod pi trunc even lower upper length len substr substring trim ltrim rtrim replace instr strpos
    position concat concat_ws left right lpad rpad reverse initcap contains starts_with ends_with split_part
    string_split regexp_matches regexp_replace regexp_extract chr char unicode hex typeof format printf
    coalesce ifnull nullif iif if greatest least cast try_cast date datetime time julianday unixepoch strftime
    strptime to_char epoch date_trunc date_part datepart extract year month day dayofweek dayofyear week quarter hour
    minute second dayname monthname last_day make_date datediff date_diff dateadd date_add date_sub age current_date
    current_time current_timestamp now today row_number rank dense_rank ntile lag lead first_value last_value
    nth_value percent_rank cume_dist likely unlikely likelihood random
    """.split())
#: Aggregates: SQLite refuses them in WHERE, ON and GROUP BY ("misuse of aggregate").
AGGREGATES = frozenset("count sum avg total group_concat string_agg array_agg list median mode".split())
#: Keywords that are an operand by themselves.
OPERAND_WORDS = frozenset("null true false".split())
#: Keywords that stand between two operands (``x IN …``, ``a AND b``): something must come before them.
BINARY_WORDS = frozenset("in is like glob ilike regexp between and or collate escape".split())
#: Operators that stand between two operands (``*`` is also ``SELECT *``).
BINARY = frozenset("= < > <= >= <> != == || / % :: & | ^".split())
#: The clauses of a SELECT, in the order SQL writes them (ON belongs to FROM).
CLAUSES = {"select": 0, "from": 1, "on": 1, "where": 2, "group": 3, "having": 4, "window": 5, "qualify": 6,
           "order": 7, "limit": 8, "offset": 9}
#: An alias written before the FROM clause that binds it (``SELECT T1.name FROM …``) must look like one: a few letters
#: and digits, or the name of a table. Past FROM, aliases are known exactly.
ALIAS_LIKE = re.compile(r"[a-z_]{1,3}[0-9]{0,3}")
#: Where a reasoning answer's SQL begins and ends.
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

DERIVED = ""  # the "table" of a derived table or CTE: its columns are not followed


class Names:
    """A set of lower-cased names that also answers "is this the start of one of them?" in O(log n)."""

    def __init__(self, names):
        self.set = frozenset(n.lower() for n in names)
        self.sorted = sorted(self.set)

    def __contains__(self, name: str) -> bool:
        return name in self.set

    def starts(self, prefix: str) -> bool:
        i = bisect_left(self.sorted, prefix)
        return i < len(self.sorted) and self.sorted[i].startswith(prefix)


def unquote(text: str) -> str:
    """The name inside ``"…"``, ```…```` or ``[…]``."""
    if text[0] == "[":
        return text[1:-1]
    return text[1:-1].replace(text[0] * 2, text[0])


LEXEME = re.compile(r"""
    (?P<space>[ \t\r\n]+)
  | (?P<string>'(?:[^']|'')*'(?!'))
  | (?P<quoted>"(?:[^"]|"")*"(?!")|`(?:[^`]|``)*`(?!`)|\[[^\]]*\])
  | (?P<word>(?:[A-Za-z_\u0080-\uffff]|\d+_)[A-Za-z0-9_$\u0080-\uffff]*)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<punct>[<>!=|]=|<>|\|\||::|[(),.*+\-/%=<>!|;:~&^?])
  | (?P<junk>.)
""", re.VERBOSE | re.DOTALL)


@lru_cache(maxsize=65536)
def lex(text: str) -> tuple[tuple, str]:
    """The finished lexemes of ``text`` and what is left that a later piece may extend (a word, a number, a quoted
    string or name, or one that is not closed).

    >>> lex("SELECT name FROM pro")
    ((('word', 'SELECT'), ('space', ' '), ('word', 'name'), ('space', ' '), ('word', 'FROM'), ('space', ' ')), 'pro')
    >>> lex("WHERE a = 'it''s")
    ((('word', 'WHERE'), ('space', ' '), ('word', 'a'), ('space', ' '), ('punct', '='), ('space', ' ')), "'it''s")
    """
    lexemes = []
    at = 0
    while at < len(text):
        match = LEXEME.match(text, at)
        kind = match.lastgroup
        end = match.end()
        if kind == "junk" and text[at] in "'\"`[":
            return tuple(lexemes), text[at:]  # a string or a name not closed yet
        if end == len(text) and (kind in ("string", "quoted", "number", "word") or text[at:] in ("<", ">", "!", "|",
                                                                                              "=", ":")):
            return tuple(lexemes), text[at:]  # it may go on: a longer word, "<" of "<=", "!" of "!="
        lexemes.append((kind, match.group()))
        at = end
    return tuple(lexemes), ""
