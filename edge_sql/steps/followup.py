"""Does a question refer to the previous one? A follow-up ("how many of them?", "and in 2023?") is sent with the
previous question and its SQL as context; a standalone question ("Which customers are from Canada?") is sent alone,
so that an earlier filter does not leak into its answer.

:func:`refers_back` reads a few surface cues, each of which it names:

- a word pointing back: *them*, *those*, *these*, *ones*, *that* at the end or before a general noun ("more than
  that", "that year"), *there* as a place ("live there"), *the results*, *instead*, *else*; *they* and *it* unless
  they open a clause after a noun ("the orders they placed"); *their* and *its* when nothing in the question comes
  before them to own them ("what are their emails?", not "each customer and their country");
- a continuation at the start: *and*, *but*, *also*, *now*, *only*, *just*, *same*, *excluding*, *what about*,
  *show only*, …;
- an operation on the previous result: *sort by*, *group by*, *break it down*, …;
- a preposition or a comparative at the start of a question that asks nothing of its own ("in 2023?",
  "more expensive than 15?"; not "In which country …?");
- a fragment with no subject: a question of question words alone ("how many?"), or two words at most that ask
  nothing ("Canada?").

Anything else is standalone: when in doubt a question is sent alone (the shell's ``.followup`` forces context).
Text in quotes is not read ("… the word 'them' in their name"), nor *IT* in capitals. French, Spanish and German
questions get their commonest cues (*et*, *y*, *und*, *nur*, *ceux*, *ellos*, *davon*, …).
"""

from __future__ import annotations

import re

#: Quoted text: a value the question names, not words of the question ("… the word 'them' …").
QUOTED = re.compile(r"(?<!\w)['\"‘“«][^'\"‘“”«»]*?['\"”»](?!\w)")

#: A word: letters and digits, joined by apostrophes or hyphens ("what's", "ceux-ci").
WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")

#: Words that ask: a question that holds one asks something of its own.
ASKING = frozenset("""
    what which who whom whose when where why how what's who's where's how's list show give find count name get
    display return tell compute calculate quel quelle quels quelles combien qui que quoi où qué cuál cuáles cuánto
    cuánta cuántos cuántas quién quiénes dónde welche welcher welches welchen wie wer was wo wann
""".split())

#: Words that are no subject: they ask, link or point, but name nothing in the data.
FUNCTION = ASKING | frozenset("""
    is are was were be been being do does did have has had can could would will should shall may might must
    the a an each every all any some no not my our your me us i we you please also there here many much more most
    of in on at by for from with to into about between per during before after since until over under than as and
    or but so then now just only again
""".split())

#: Words that open a continuation of the previous question, whatever follows.
CONTINUING = ("and", "but", "or", "also", "plus", "now", "then", "same", "only", "just", "instead", "except",
              "excluding", "without", "including", "not", "what about", "how about", "what if", "sorted", "ordered",
              "grouped", "et", "mais", "seulement", "uniquement", "y", "solo", "sólo", "und", "aber", "nur")

#: Words that open a condition; a continuation unless the question asks something of its own ("in 2023?" but not
#: "In which country …?", "For each category, how many …?").
CONDITIONS = ("in", "for", "from", "by", "per", "with", "during", "between", "before", "after", "since", "until",
              "among", "at", "on", "over", "under", "above", "below")

#: Comparatives that open a question without saying what they compare ("more expensive than 15?").
COMPARATIVES = ("more", "less", "fewer", "greater", "larger", "bigger", "smaller", "higher", "lower", "older",
                "newer", "cheaper", "pricier", "longer", "shorter", "earlier", "later")

#: Operations on a result, and the word after them that shows they work on the previous one ("sort by date").
OPERATIONS = ("sort", "order", "group", "rank", "break", "split", "filter", "limit", "restrict", "narrow", "reverse")
OPERATED = ("by", "down", "to", "it", "them", "those", "these", "descending", "ascending", "desc", "asc")

#: *there* after these is no place: "how many are there?".
BEING = frozenset("is are was were be been".split())

#: Words that always point back.
POINTERS = frozenset("""
    them ones else instead former latter ceux celles eux ceux-ci ceux-là celles-ci celles-là ellos ellas
    esos esas estos estas davon dieselben
""".split())

#: Possessives that point back unless a word before them names what they belong to.
POSSESSIVES = frozenset({"their", "its"})

#: General nouns after which *that* points back ("that year", "more than that many"), and those after which *this*
#: does ("this list"; not "this year", which is now).
POINTED = {"that": frozenset("""
    one ones list result results query answer year month day week period date time amount number total value
    price figure many much
""".split()), "this": frozenset("one ones list result results query answer".split())}

#: Phrases that point back ("the results", "the previous query").
PHRASES = re.compile(r"\b(the (?:results?|rest|above|previous (?:question|query|results?|answers?|list|ones?)|"
                     r"last (?:question|query|results?|answers?|list))|which ones?|as well\s*\W*$|too\s*\W*$)")


def refers_back(question: str) -> str | None:
    """Why ``question`` refers to the previous one, in a few words; None when it stands alone.

    >>> refers_back("How many of them are from Canada?")
    '"them" points back'
    >>> refers_back("And in 2023?")
    'opens with "and"'
    >>> refers_back("Which customers are from Canada?") is None
    True
    >>> refers_back("List each customer and their country.") is None
    True
    """
    text = QUOTED.sub(" ", question.replace("’", "'"))
    cased = WORD.findall(text)
    words = [word.lower() for word in cased]
    if not words:
        return None
    asks = any(word in ASKING for word in words)
    for opener in CONTINUING:
        if words[:len(opener.split())] == opener.split():
            return f'opens with "{opener}"'
    if len(words) > 1 and words[1] == "only" and words[0] in ASKING | {"keep"}:
        return f'opens with "{words[0]} only"'
    if words[0] in OPERATIONS and (len(words) == 1 or words[1] in OPERATED):
        return f'"{" ".join(words[:2])}" works on the previous result'
    if words[0] in CONDITIONS and not asks:
        return f'opens with "{words[0]}" and asks nothing of its own'
    if words[0] in COMPARATIVES and not asks:
        return f'"{words[0]}" compares without saying what'
    pointer = pointing_word(cased, words)
    if pointer:
        return f'"{pointer}" points back'
    phrase = PHRASES.search(" ".join(words))
    if phrase:
        return f'"{phrase.group(1)}" points back'
    if all(word in FUNCTION for word in words):
        return "names nothing of its own"
    if len(words) <= 2 and not asks:
        return "a fragment"
    return None


def pointing_word(cased: list[str], words: list[str]) -> str | None:
    """The first word of ``words`` that points back, if any (``cased``: the same words as written)."""
    for index, word in enumerate(words):
        after = words[index + 1] if index + 1 < len(words) else None
        if word in POINTERS:
            return word
        if word in ("they", "it") and cased[index] != "IT" and not clause(words, index):
            return word  # not IT, the department
        if word == "there" and after is None and index and words[index - 1] not in BEING:  # not "how many are there"
            return word
        if word in POINTED and (after is None or after in POINTED[word]):
            return f"{word} {after}" if after else word
        if word in ("these", "those") and after not in ("who", "which", "that"):  # not "those who …"
            return word
        if word in POSSESSIVES and all(earlier in FUNCTION for earlier in words[:index]):
            return word
        if word == "same" and "as" not in words[index:]:
            return word
    return None


def clause(words: list[str], index: int) -> bool:
    """Whether the pronoun at ``index`` opens a clause about the word before it: "the orders *they* placed", "the
    category *it* belongs to" (a noun before, a verb after; neither a word of :data:`FUNCTION`)."""
    before = words[index - 1] if index else "the"
    after = words[index + 1] if index + 1 < len(words) else "the"
    return before not in FUNCTION and after not in FUNCTION
