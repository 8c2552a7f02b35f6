"""Schema-constrained decoding: a GBNF grammar that lets the model write only a SELECT over the schema's real names.

In the spirit of PICARD, with llama.cpp's grammars: :func:`schema_grammar` turns a :class:`~edge_sql.steps.schema.Schema`
into a grammar whose sentences are read-only queries over the schema's tables and columns (quoted where they must
be, case as stored; ``table.column`` and ``T1.column`` with short aliases), SQL keywords in upper or lower case, the
engine's allowed functions (the names :mod:`edge_sql.steps.guard` lets through), number and string literals. The
continuation after the prompt's ``prefix`` is what is constrained: the demo preset writes ``SELECT`` for the model,
so its grammar starts after it.

Repetitions are bounded (select items, conditions, joins, literal lengths, whitespace) and so is nesting (a
subquery holds no subquery, parentheses go three deep: each level has its own copy of the rules, the last without
parentheses), to what Spider's gold queries use (:data:`BOUNDS`), so a small model cannot loop inside the grammar
until its token limit. The statement ends with ``;`` (a stop string) or end of generation.

A grammar llama.cpp cannot parse crashes the process that uses it, so :func:`check_grammar` compiles it first in a
child process; its verdict is kept on disk by the grammar's digest.

>>> from edge_sql.steps.schema import Column, Schema, Table
>>> shop = Schema("sqlite", (Table("products", (Column("name", "TEXT"), Column("unit price", "REAL"))),))
>>> print(schema_grammar(shop, "sqlite", prefix="SELECT").splitlines()[0])
root ::= ws select-core query-tail end
>>> [line for line in schema_grammar(shop, "sqlite").splitlines() if line.startswith("table ::=")]
['table ::= "products"']
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import lru_cache
from itertools import groupby
from string import Template

from edge_sql.errors import GrammarError
from edge_sql.steps.schema import Schema

#: Functions each engine's grammar offers, as the engine spells them; only those :mod:`edge_sql.steps.guard` allows are
#: kept (see :func:`engine_functions`). ``count`` has its own rule (it alone takes ``*``).
FUNCTIONS = {
    "sqlite": """sum avg min max total group_concat abs round lower upper length substr substring trim ltrim rtrim
                 replace instr coalesce ifnull nullif iif date datetime time julianday strftime unixepoch typeof
                 hex unicode char printf random""",
    "duckdb": """sum avg min max string_agg median mode stddev variance abs round ceil floor sqrt power pow exp ln
                 log lower upper length substring substr trim replace strpos concat concat_ws left right reverse
                 contains starts_with ends_with split_part regexp_matches regexp_replace regexp_extract coalesce
                 nullif greatest least date_part year month day date_trunc strftime strptime age dayname monthname
                 last_day make_date any_value arg_max arg_min random read_csv""",
}

#: Types CAST may name.
TYPES = "INTEGER INT BIGINT REAL FLOAT DOUBLE NUMERIC DECIMAL TEXT VARCHAR DATE TIMESTAMP BOOLEAN"

#: Keyword rules: rule name -> the keyword (written in upper or lower case, nothing in between).
KEYWORDS = {
    "kw-select": "SELECT", "kw-distinct": "DISTINCT", "kw-from": "FROM", "kw-where": "WHERE",
    "kw-group-by": "GROUP BY", "kw-having": "HAVING", "kw-order-by": "ORDER BY", "kw-limit": "LIMIT",
    "kw-offset": "OFFSET", "kw-asc": "ASC", "kw-desc": "DESC", "kw-as": "AS", "kw-join": "JOIN", "kw-on": "ON",
    "kw-inner": "INNER", "kw-left": "LEFT", "kw-outer": "OUTER", "kw-cross": "CROSS", "kw-and": "AND", "kw-or": "OR",
    "kw-not": "NOT", "kw-in": "IN", "kw-like": "LIKE", "kw-between": "BETWEEN", "kw-is": "IS", "kw-null": "NULL",
    "kw-true": "TRUE", "kw-false": "FALSE", "kw-exists": "EXISTS", "kw-case": "CASE", "kw-when": "WHEN",
    "kw-then": "THEN", "kw-else": "ELSE", "kw-end": "END", "kw-cast": "CAST", "kw-count": "COUNT",
    "kw-union": "UNION", "kw-all": "ALL", "kw-intersect": "INTERSECT", "kw-except": "EXCEPT",
}

#: Words a name must be quoted to be: the keywords above and the others both engines reserve.
RESERVED = frozenset(
    " ".join(KEYWORDS.values()).lower().split()
    + """add alter by check collate column constraint create default delete drop escape foreign full glob group
         index insert into join key limit natural order outer primary references right table to transaction union
         unique update using values view with window""".split()
)

#: Bounds, so that a small model cannot loop (``SELECT a, a, a, ...``) for long. The gold queries of the Spider dev
#: half (``../shared/data/spider-dev/dev.json``, 493 queries) use at most 3 select items, 2 joins, 1 ORDER BY / GROUP
#: BY term, 3 operators in one condition (``a = 1 AND b = 2``), 1 set operation, no subquery inside a subquery and
#: parentheses 2 deep; each bound leaves one step of room beyond them (two for conditions: ``a = 1 AND b = 2 AND
#: c = 3`` is an everyday question), for questions Spider does not ask. A literal ``IN`` list holds at most 8
#: values (the gold queries use none; the demo model looped on ``IN (14481, 14482, …`` up to its token limit).
BOUNDS = {"items": 4, "joins": 3, "terms": 2, "tails": 5, "compounds": 1}

#: The statement: a SELECT (or a set operation of them) with the clauses a text-to-SQL answer uses. ``$q`` is the
#: query's level (``""`` the statement, ``-sub`` a subquery), ``$e`` the level of its expressions; ``{...}`` marks
#: are filled from the schema and engine. Every repetition is bounded; a subquery has no subquery of its own.
QUERY = r"""
query$q ::= select$q query-tail$q
query-tail$q ::= $compound order$q? limit?
select$q ::= kw-select ws select-core$q
select-core$q ::= (kw-distinct ws)? items$q from$q? where$q? group$q? having$q?
items$q ::= item$q (comma item$q){0,$moreitems}
item$q ::= "*" | qualifier ".*" | expr$e (ws kw-as ws label)?
from$q ::= ws kw-from ws source$q join$q{0,$joins}
source$q ::= $source (ws (kw-as ws)? alias)?
join$q ::= comma source$q | ws (jointype ws)? kw-join ws source$q (ws kw-on ws expr$e)?
where$q ::= ws kw-where ws expr$e
group$q ::= ws kw-group-by ws expr$e (comma expr$e){0,$moreterms}
having$q ::= ws kw-having ws expr$e
order$q ::= ws kw-order-by ws ordering$q (comma ordering$q){0,$moreterms}
ordering$q ::= expr$e (ws direction)?
"""

#: An expression at level ``$l``: what is inside its parentheses (calls, CASE, CAST, a parenthesised expression) is
#: written at level ``$n``; ``$sub`` is where a subquery may appear. The last level (:data:`LEAF`) has no
#: parentheses, so nesting stops there.
EXPRESSION = r"""
expr$l ::= (kw-not ws)? operand$l tail$l{0,$tails}
tail$l ::= sp operator sp operand$l | ws logic ws (kw-not ws)? operand$l | ws kw-is (ws kw-not)? ws kw-null | negation ws kw-in sp "(" sp (${sub}values) sp ")" | negation ws kw-like ws operand$l | negation ws kw-between ws operand$l ws kw-and ws operand$l
operand$l ::= column | literal | call$l | count$l | case$l | cast$l | "(" sp (${sub}expr$n) sp ")"$exists
call$l ::= function sp "(" sp (kw-distinct ws)? expr$n (comma expr$n){0,3} sp ")"
count$l ::= kw-count sp "(" sp ("*" | (kw-distinct ws)? expr$n) sp ")"
case$l ::= kw-case (ws operand$n)? when$l{1,4} (ws kw-else ws expr$n)? ws kw-end
when$l ::= ws kw-when ws expr$n ws kw-then ws expr$n
cast$l ::= kw-cast sp "(" sp expr$n ws kw-as ws type sp ")"
"""
LEAF = r"""
expr-leaf ::= (kw-not ws)? operand-leaf tail-leaf{0,$tails}
tail-leaf ::= sp operator sp operand-leaf | ws logic ws (kw-not ws)? operand-leaf | ws kw-is (ws kw-not)? ws kw-null | negation ws kw-in sp "(" sp values sp ")" | negation ws kw-like ws operand-leaf | negation ws kw-between ws operand-leaf ws kw-and ws operand-leaf
operand-leaf ::= column | literal
"""

#: Expression levels: (level, the next level inside its parentheses, whether a subquery may appear). The statement's
#: expressions nest three parentheses deep; a subquery's start one deep and may not hold a subquery.
LEVELS = (("", "-1", True), ("-1", "-2", True), ("-2", "-leaf", True), ("-s1", "-s2", False), ("-s2", "-leaf", False))

#: The rules every level shares. ``{...}`` marks are filled from the schema and engine.
SHARED = r"""
compound ::= ws setop ws select
setop ::= kw-union (ws kw-all)? | kw-intersect | kw-except
jointype ::= kw-inner | kw-left (ws kw-outer)? | kw-cross
direction ::= kw-asc | kw-desc
limit ::= ws kw-limit ws integer (ws kw-offset ws integer)?
negation ::= (ws kw-not)?
logic ::= kw-and | kw-or
operator ::= {operators}
values ::= literal (comma literal){0,7}
literal ::= number | string | kw-null | kw-true | kw-false
number ::= integer fraction?
integer ::= [0-9]{1,10}
fraction ::= "." [0-9]{1,6}
string ::= "'" character{0,40} "'"
character ::= [^'\\;\n\r\x00] | "''"
label ::= [A-Za-z] [A-Za-z0-9_]{0,23}
alias ::= [Tt] [1-9] | [a-z]
qualifier ::= table | alias
column ::= {columns} | alias "." name
name ::= {names}
table ::= {tables}
function ::= {functions}
type ::= {types}
comma ::= sp "," ws?
sp ::= " "?
ws ::= " " | "\n" " "{0,4}
end ::= (sp ";")?
"""


def statement_rules() -> str:
    """The statement's rules, every level written out (GBNF has no parameters), before the schema is filled in."""
    bounds = dict(BOUNDS, moreitems=BOUNDS["items"] - 1, moreterms=BOUNDS["terms"] - 1)
    parts = [Template(QUERY).substitute(bounds, q="", e="", compound=f"compound{{0,{BOUNDS['compounds']}}}",
                                        source='(table | "(" sp query-sub sp ")")'),
             Template(QUERY).substitute(bounds, q="-sub", e="-s1", compound="", source="table")]
    for level, inner, subqueries in LEVELS:
        parts.append(Template(EXPRESSION).substitute(
            BOUNDS, l=level, n=inner, sub="query-sub | " if subqueries else "",
            exists=' | kw-exists sp "(" sp query-sub sp ")"' if subqueries else ""))
    parts += [Template(LEAF).substitute(BOUNDS), SHARED]
    text = "\n".join(part.strip() for part in parts)
    text = re.sub(r" \(comma [a-z0-9-]+\)\{0,0\}", "", text)  # a bound of one: no repetition at all
    return re.sub(r" +$", "", re.sub(r"(?<=\S)  +", " ", text), flags=re.M)


OPERATORS = ("=", "!=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "||")


def schema_grammar(schema: Schema, dialect: str, prefix: str = "", reasoning: bool = False) -> str:
    """The GBNF grammar of a SELECT over ``schema``, for the answer that continues after ``prefix``; for a model
    that ``reasoning`` first, its think block is free text and the SELECT is what its ``<answer>`` holds.

    Cached per schema digest, dialect and prefix (building it for hundreds of columns takes milliseconds).
    """
    start = reasoning_rule(prefix) if reasoning and "<answer>" not in prefix else start_rule(prefix.rsplit("<answer>", 1)[-1])
    return _grammar(schema_digest(schema), _names(schema), dialect, start)


#: A think block's text: anything but the start of a closing tag (a reasoning model closes only ``</think>``).
THINK_TEXT = '( [^<] | "<" [^/] )*'


def reasoning_rule(prefix: str) -> str:
    """Where the grammar of a reasoning answer starts: in or before its think block, then ``<answer>``, the query and
    ``</answer>``.

    >>> reasoning_rule("")
    '"<think>" ( [^<] | "<" [^/] )* "</think>" ws? "<answer>" ws? query end ws? "</answer>"'
    >>> reasoning_rule("<think>\\n").startswith('( [^<]')
    True
    """
    answer = 'ws? "<answer>" ws? query end ws? "</answer>"'
    if "</think>" in prefix:
        return answer
    return f'{THINK_TEXT} "</think>" {answer}' if "<think>" in prefix else f'"<think>" {THINK_TEXT} "</think>" {answer}'



def schema_digest(schema: Schema) -> str:
    """A digest of what the grammar depends on: the engine and the table and column names, in order."""
    names = [schema.engine] + [[t.name, [c.name for c in t.columns]] for t in schema.tables]
    return hashlib.sha256(json.dumps(names, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


def _names(schema: Schema) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((t.name, tuple(c.name for c in t.columns)) for t in schema.tables)


@lru_cache(maxsize=32)
def _grammar(digest: str, tables, dialect: str, root: str) -> str:
    del digest  # the cache key: equal digests have equal names
    usable = [(t, tuple(c for c in cols if writable(c))) for t, cols in tables if writable(t)]
    names = sorted({quote(c) for _, cols in usable for c in cols}) or ['"rowid"']
    qualified = [f"{quote(t)}.{quote(c)}" for t, cols in usable for c in cols]
    fills = {
        "operators": alternation(OPERATORS),
        "columns": alternation(names + qualified),
        "names": alternation(names),
        "tables": alternation([quote(t) for t, _ in usable] or ['"sqlite_master"' if dialect == "sqlite" else '"x"']),
        "functions": alternation(cased(engine_functions(dialect))),
        "types": alternation(cased(TYPES.split())),
    }
    body = re.sub(r"\{([a-z]+)\}", lambda m: fills[m.group(1)], statement_rules())
    keywords = "\n".join(f"{rule} ::= {alternation(cased([word]))}" for rule, word in KEYWORDS.items())
    return f"root ::= {root}\n{body}\n{keywords}\n"


def start_rule(prefix: str) -> str:
    """Where the grammar starts, given the answer's prefix: after ``SELECT`` (and its space), or a whole query."""
    stripped = prefix.rstrip()
    if re.search(r"(?i)(?:^|\W)select$", stripped):
        return "select-core query-tail end" if prefix != stripped else "ws select-core query-tail end"
    if not stripped or prefix != stripped or not re.search(r"\w$", stripped):
        return "query end"
    raise GrammarError(f"cannot constrain an answer that starts with {prefix!r}: the prefix must end before a query "
                       "or with SELECT")


def writable(name: str) -> bool:
    """A name the grammar can spell: not empty, valid text without NUL (llama.cpp ends a token at a NUL)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(name) and "\x00" not in name


def quote(name: str) -> str:
    """The name as SQL must write it: bare when it is a plain identifier and not a reserved word, else quoted.

    >>> quote("price"), quote("unit price"), quote("order"), quote("2nd"), quote('a"b')
    ('price', '"unit price"', '"order"', '"2nd"', '"a""b"')
    """
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name.lower() not in RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def cased(words) -> list[str]:
    """Each word as written and in upper and lower case."""
    return sorted({form for word in words for form in (word, word.upper(), word.lower())})


@lru_cache(maxsize=4)
def engine_functions(dialect: str) -> tuple[str, ...]:
    """The engine's functions that the guard allows: each one is parsed in the dialect and checked as the guard
    checks a query, so the grammar never offers a call the guard would refuse.

    >>> "group_concat" in engine_functions("sqlite"), "random" in engine_functions("sqlite")
    (True, False)
    """
    from edge_sql.steps import guard
    from edge_sql.errors import QueryRefused

    allowed = []
    for name in FUNCTIONS.get(dialect, FUNCTIONS["sqlite"]).split():
        for arguments in ("x", "x, 1", "x, 'a'"):
            try:
                guard.check(f"SELECT {name}({arguments}) FROM t", dialect)
            except QueryRefused:
                continue
            allowed.append(name)
            break
    return tuple(allowed)


def literal(text: str) -> str:
    r"""A GBNF string literal for ``text``; everything outside printable ASCII is escaped by code point.

    >>> print(literal('a "b"\\ é'))
    "a \"b\"\\ \u00E9"
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    return '"' + "".join(out) + '"'


def alternation(words) -> str:
    """A GBNF expression matching exactly ``words``, factored on common prefixes.

    The sampler follows one grammar stack per open alternative: factored, a position holds one per distinct next
    character rather than one per name, so hundreds of columns cost little.

    >>> alternation(["order_id", "orders", "price"])
    '("order" ("_id" | "s") | "price")'
    >>> alternation(["a", "ab"])
    '"a" ("b" | "")'
    """
    words = sorted(set(words))
    if not words:
        raise ValueError("an alternation needs at least one word")
    return _factor(words, top=True)


def _factor(words: list[str], top: bool = False) -> str:
    alternatives, empty = [], "" in words
    for _, group in groupby([w for w in words if w], key=lambda w: w[0]):
        group = list(group)
        head = os.path.commonprefix(group)
        rests = [w[len(head):] for w in group]
        if rests == [""]:
            alternatives.append(literal(head))
        else:
            alternatives.append(f"{literal(head)} {_factor(rests)}")
    if empty:
        alternatives.append('""')
    if len(alternatives) == 1 and (top or not empty):
        return alternatives[0]
    return "(" + " | ".join(alternatives) + ")"
