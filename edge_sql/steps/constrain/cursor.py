"""The cursor of one candidate: reads each piece the model writes into the scopes, refuses what no query can hold,
and says where the answer may end."""

from __future__ import annotations

from edge_sql.steps.constrain.clauses import ENDS_FROM, Clauses
from edge_sql.steps.constrain.scopes import Frame, Refused, Scopes
from edge_sql.steps.constrain.words import (ALIAS_LIKE, ANSWER_CLOSE, ANSWER_OPEN, BINARY, DERIVED, FROM_ENDS, lex,
                                            unquote)


#: The most blank characters in a row.
MAX_SPACES = 12


class Cursor(Clauses):
    """The state of one candidate's text: what the tracker made of its finished lexemes, and the unfinished one."""

    __slots__ = ("held", "tail", "sql", "mode", "previous", "closing", "spaces")

    def __init__(self, check):
        super().__init__(check)
        self.held: tuple | None = None  # a finished word waiting for the next character to say what it is
        self.tail = ""  # the lexeme the next piece may extend
        self.sql = ""
        self.mode = "sql"  # "think": a reasoning answer before its <answer>
        self.previous = ""  # the last punctuation, to refuse comments
        self.closing = ""  # a reasoning answer's "</answer>" as far as it is written
        self.spaces = 0  # blanks written since the last lexeme

    def copy(self) -> "Cursor":
        other = Cursor.__new__(Cursor)
        for name in Scopes.__slots__ + Cursor.__slots__:
            setattr(other, name, getattr(self, name))
        other.frames = [f.copy() for f in self.frames]
        return other

    # -- the interface ----------------------------------------------------------------------------------------------

    def feed(self, piece: str) -> "Cursor | None":
        """The cursor after ``piece``, or None when no query can begin with the text so far and ``piece``."""
        if not piece:
            return self
        other = self.copy()
        try:
            other.take(piece)
        except Refused:
            return None
        return other

    def can_end(self) -> bool:
        """Whether the text so far is a whole query whose names all exist (the validator agrees)."""
        if self.mode == "think":
            return False
        other = self.copy()
        try:
            other.finish()
        except Refused:
            return False
        return self.check.valid(self.sql.strip())

    # -- reading text -------------------------------------------------------------------------------------------------

    def take(self, piece: str) -> None:
        if self.mode == "think":
            seen = self.tail + piece
            at = seen.find(ANSWER_OPEN)
            if at < 0:
                self.tail = seen[-(len(ANSWER_OPEN) - 1):]
                return
            self.mode, self.tail = "sql", ""
            piece = seen[at + len(ANSWER_OPEN):]
        if self.check.reasoning:
            piece = self.hold_closing(piece)
        self.sql += piece
        lexemes, self.tail = lex(self.tail + piece)
        for lexeme in lexemes:
            self.lexeme(lexeme)
        if self.tail:
            self.lookahead(self.tail[0])
            self.partial(self.tail)

    def hold_closing(self, piece: str) -> str:
        """What of ``piece`` is SQL: a reasoning answer's text that may be the start of ``</answer>`` is held back
        until the next piece says (the decoder cuts the whole tag as a stop string before it reaches here)."""
        text, self.closing = self.closing + piece, ""
        at = text.rfind("<")
        if at >= 0 and ANSWER_CLOSE.startswith(text[at:]) and len(text) - at < len(ANSWER_CLOSE):
            text, self.closing = text[:at], text[at:]
        return text

    def finish(self) -> None:
        """The end of the text: the held word and the open lexeme are read as finished, every frame closed."""
        if self.tail:
            lexemes, rest = lex(self.tail + " ")
            for lexeme in lexemes:
                self.lexeme(lexeme)
        self.lookahead(None)
        if len(self.frames) != 1 or self.top.expect in ("table", "alias", "column", "label", "cte"):
            raise Refused
        self.end_scope(self.top)

    def lexeme(self, lexeme: tuple) -> None:
        kind, text = lexeme
        if kind == "space":
            self.previous = ""
            self.spaces += len(text)
            if self.spaces > MAX_SPACES:
                raise Refused  # a model that can write nothing valid pads with blanks: it must write something
            if self.held is not None and not (self.held[0] == "word" and self.held[1].lower() in self.check.functions):
                self.lookahead(" ")  # "name (" and "T1 ." are not read: a word is what it is once a blank follows
            return
        self.spaces = 0
        self.lookahead(text[0])
        if kind in ("word", "quoted"):
            self.held = lexeme
            self.previous = ""
            return
        frame = self.top
        if kind == "junk":
            raise Refused  # a control character, an emoji: no part of a query outside a string
        if kind == "punct":
            self.punct(text)
            frame.fresh = False
            self.previous = text
            return
        if frame.expect not in ("expr", "label") or frame.kind == "query" and frame.clause in ("start", "compound"):
            raise Refused  # a literal where a table, a column, an alias or SELECT must be
        frame.fresh, self.previous = False, ""
        if frame.expect == "label":
            frame.expect, frame.named = "expr", True
        else:
            self.begin_operand(frame)
        frame.operand = True

    def lookahead(self, char: str | None) -> None:
        """Say what the held word is, now that the next character is known."""
        if self.held is None:
            return
        held, self.held = self.held, None
        kind, text = held
        self.word(text, kind == "quoted", char)

    # -- punctuation --------------------------------------------------------------------------------------------------

    def punct(self, char: str) -> None:
        frame = self.top
        if char in "-/*" and self.previous + char in ("--", "/*"):
            raise Refused  # comments are no part of an answer
        if frame.kind == "query" and frame.clause in ("start", "compound") and char != "(":
            raise Refused
        if char == ";":
            return  # the statement's end (the decoder stops there): the end check judges what came before
        if frame.kind == "with" and char == ",":
            frame.expect = "cte"
            return
        if char == "(":
            in_from = frame.kind != "paren" and frame.expect == "table"
            if in_from:
                frame.expect = "alias-or-end"
            elif frame.operand or frame.expect != "expr":
                raise Refused  # "x (": a parenthesis after a whole operand
            self.frames.append(Frame("paren", in_from=in_from))
            return
        if char == ")":
            self.close()
            return
        if frame.expect in ("source-end", "by"):
            if char != "," or frame.expect == "by":
                raise Refused
        if frame.expect == "dot":
            if char != ".":
                raise Refused
            frame.expect = "column"
            return
        if frame.expect == "column":
            if char != "*":
                raise Refused
            frame.expect, frame.operand = "expr", True
            return
        if frame.expect in ("table", "alias"):
            raise Refused
        if char == "," and frame.kind == "query" and frame.clause in ("from", "on"):
            self.end_source(frame)
            frame.clause, frame.expect, frame.operand = "from", "table", False
            return
        if frame.expect in ("label", "alias-or-end"):
            if frame.expect == "alias-or-end":
                if char != ",":
                    raise Refused
                self.end_source(frame)
            frame.expect = "expr"
        if char == ",":
            frame.operand = frame.named = False
        elif char == "*" and not frame.operand:
            frame.operand = True  # SELECT *, count(*)
        elif char in BINARY or char == "*":
            if not frame.operand:
                raise Refused  # "WHERE = 5": an operator needs an operand before it
            frame.operand = False
        else:  # + - ~ (unary or binary), : ?
            frame.operand = False

    def close(self) -> None:
        if len(self.frames) == 1:
            raise Refused
        frame = self.top
        if frame.kind == "query":
            self.end_scope(frame)  # while its own sources are still in scope
        self.frames.pop()
        if frame.kind == "query":
            if frame.derived:
                self.top.expect = "alias-or-end"
                self.top.table = DERIVED
        elif frame.kind == "with":
            raise Refused
        elif frame.in_from:
            raise Refused  # a parenthesised join is more than this tracker follows: not written by the models
        if self.top.expect == "label":
            self.top.expect = "expr"
        if not frame.derived:
            self.top.operand = True  # a call, a parenthesised expression, a subquery: one operand

    # -- the unfinished lexeme ----------------------------------------------------------------------------------------

    def partial(self, text: str) -> None:
        """Refuse an unfinished lexeme that no allowed name begins with."""
        first, frame = text[0], self.top
        if first in "<>!|=:":
            return  # an operator, judged when it is whole
        if first.isdigit() and frame.expect in ("table", "column"):
            return self.word_start(text.lower())  # a name may start with digits (18_49_Rating_Share)
        if first in "'0123456789" or first == "." or first.isspace():
            if first != "." and (frame.expect not in ("expr", "label") or frame.expect == "expr" and frame.operand):
                raise Refused  # a literal where a name must be, or right after an operand
            return
        if first in "\"`[":
            closer = "]" if first == "[" else first
            body = (unquote(text) if len(text) > 1 and text.endswith(closer) else text[1:]).lower()
            if first == '"' and self.top.expect not in ("table", "column"):
                return  # a string, for SQLite and, normalised, DuckDB
            if self.top.expect in ("alias", "alias-or-end", "label", "cte"):
                return
            return self.word_start(body)
        return self.word_start(text.lower())

    def word_start(self, prefix: str) -> None:
        check, frame = self.check, self.top
        expect = frame.expect
        if prefix in ENDS_FROM and expect in ("alias-or-end", "source-end", "expr") and not self.query().from_done:
            self.from_can_end()
        if expect in ("alias", "alias-or-end") and prefix in frame.pending and frame.table not in frame.pending[prefix]:
            raise Refused  # the alias a column was written with, on a table without it: see check_alias
        if expect == "table":
            if not (check.tables.starts(prefix) or any(c.startswith(prefix) for c in self.ctes)):
                raise Refused
            return
        if expect == "column":
            table = self.outer_source(frame.qualifier)
            if table == DERIVED:
                return
            tables = [table] if table is not None else self.query().pending.get(frame.qualifier, ())
            if not any(check.columns[t].starts(prefix) for t in tables):
                raise Refused
            return
        if expect in ("alias", "alias-or-end"):
            # a keyword may begin like an alias written before FROM: "a" then AS, "o" then ON or ORDER
            keyword = expect == "alias-or-end" and any(k.startswith(prefix) for k in FROM_ENDS | {"as"})
            glued = not keyword and any(prefix != q and prefix.startswith(q) for q in frame.pending)
            if glued or expect == "alias-or-end" and (
                    any(prefix != k and prefix.startswith(k) for k in FROM_ENDS) or not ALIAS_LIKE.fullmatch(prefix)
                    and not keyword):
                raise Refused  # see check_alias
            return
        if expect in ("label", "cte"):
            return
        if expect == "by":
            if not "by".startswith(prefix):
                raise Refused
            return
        if expect == "source-end":
            if not any(k.startswith(prefix) for k in FROM_ENDS):
                raise Refused
            return
        if frame.kind == "query" and frame.clause in ("start", "compound"):
            if not ("select".startswith(prefix) or "with".startswith(prefix)):
                raise Refused
            return
        if frame.operand and not (frame.kind == "query" and frame.clause == "select" and not frame.named):
            if not check.keywords.starts(prefix):
                raise Refused  # after a whole operand: an operator or a keyword, not another name
            return
        if check.words.starts(prefix) or any(n.startswith(prefix) for f in self.frames for n in f.labels):
            return
        query = self.query()
        if query.from_done:
            for alias, table in self.sources_in_scope():
                if alias.startswith(prefix) or table == DERIVED or check.columns[table].starts(prefix):
                    return
            raise Refused
        if check.all_columns.starts(prefix) or check.tables.starts(prefix) or self.ctes:
            return
        if any(alias.startswith(prefix) for alias, _ in self.sources_in_scope()):
            return
        if not ALIAS_LIKE.fullmatch(prefix):
            raise Refused
