"""The words that schema pruning compares: a question's words without the common English ones, the words of a table
or column name (split at spaces, underscores, digits and camelCase), a crude stem that makes their forms meet, and
the few words that stand for others (a year for the date columns, ``revenue`` for prices and amounts).

>>> [stem(w) for w in question_words("How many invoice lines were shipped in 2017?")]
['invoic', 'lin', 'shipp', '2017']
>>> sorted(content_stems("order_items")), sorted(content_stems("unitPrice")), sorted(content_stems("Order Details"))
(['item'], ['pric', 'unit'], ['detail', 'order'])
"""

from __future__ import annotations

import re
from functools import lru_cache

#: Words of a question that say nothing about which table or column it is about.
STOPWORDS = frozenset(
    """
    a about above after all also am an and any are as at be been before being below between both but by can could
    did do does doing down during each either few for from further had has have having he her here hers him his how
    i if in into is it its itself just me more most my no nor not now of off on once only or other our out over own
    same she should so some such than that the their them then there these they this those through to too under until
    up very was we were what when where which while who whom whose why will with would you your
    list show give find return tell display get please
    many much number count total amount average avg maximum minimum max min sum
    different distinct unique every per whole all
    greater less least larger smaller bigger higher lower than more fewer
    ascending descending order sorted sort ordered
    one two three four five six seven eight nine ten first last top
    value values record records row rows entry entries info information data detail details
    """.split()
)

#: Words of a question that point at the date and time columns (stemmed as :func:`stem` does), beside a year.
DATE_WORDS = frozenset("""
    year yearly month monthly day daily date dated time week weekly hour recent recently latest earliest newest oldest
    """.split())
#: Question words and the name words they usually stand for (a question about revenue is about prices and amounts).
RELATED = {
    "revenue": ("price", "amount", "total", "sale", "payment"),
    "income": ("price", "amount", "total", "sale", "payment", "salary"),
    "spent": ("price", "amount", "total", "payment", "cost"),
    "paid": ("price", "amount", "total", "payment"),
    "cost": ("price", "amount", "total"),
    "money": ("price", "amount", "total", "payment", "salary"),
    "sold": ("sale", "quantity"),
    "earn": ("salary", "earning", "amount"),
    "nation": ("country",),
    "town": ("city",),
    "client": ("customer",),
    "staff": ("employee",),
    "worker": ("employee",),
}

WORD = re.compile(r"[A-Za-z]+|[0-9]+")
CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A crude stem, the same for the forms of a word a question and a schema use (plurals, -ing, -ed, final e).

    >>> [stem(w) for w in ("singers", "countries", "employees", "employee", "hired", "hiring", "Hire", "status")]
    ['singer', 'country', 'employe', 'employe', 'hir', 'hir', 'hir', 'status']
    """
    word = word.lower()
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "xes", "ches", "shes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        word = word[:-1]
    for ending in ("ing", "ed"):
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            word = word[: -len(ending)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def name_words(name: str) -> list[str]:
    """The words of a table or column name: split at non-letters, digits and camelCase, lower-cased.

    >>> name_words("CountryCode"), name_words("order_items"), name_words("HTTPStatus2"), name_words("Num_of_Staff")
    (['country', 'code'], ['order', 'items'], ['http', 'status', '2'], ['num', 'of', 'staff'])
    """
    return [part.lower() for chunk in WORD.findall(name) for part in CAMEL.findall(chunk)]


def question_words(question: str) -> list[str]:
    """The question's words that may name a table, a column or a value: no common English words, no single letters.

    >>> question_words("How many singers are older than 30?")
    ['singers', 'older', '30']
    """
    words = [w for w in re.findall(r"[A-Za-z]+|[0-9]+", question.replace("'s ", " "))]
    return [w for w in words if w.lower() not in STOPWORDS and (len(w) > 1 or w.isdigit())]


@lru_cache(maxsize=65536)
def content_stems(name: str) -> frozenset[str]:
    """The stems of a name's words, common words left out unless it has no other (``Order Details``)."""
    words = name_words(name)
    return frozenset(stem(w) for w in [w for w in words if w not in STOPWORDS] or words)


@lru_cache(maxsize=65536)
def value_stems(value: str) -> frozenset[str]:
    return frozenset(stem(w) for w in name_words(value))


DATE_STEMS = frozenset(stem(w) for w in DATE_WORDS)
RELATED_STEMS = {stem(word): frozenset(stem(w) for w in names) for word, names in RELATED.items()}


def is_year(term: str) -> bool:
    return term.isdigit() and len(term) == 4 and 1000 <= int(term) <= 2999


def related_stems(term: str) -> frozenset[str]:
    """The stems of the names a stemmed question word stands for (:data:`RELATED`)."""
    return RELATED_STEMS.get(term, frozenset())
