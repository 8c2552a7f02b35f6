"""Slow steps, named while they run: library code marks a step that may take a while (``with step("schema",
tokens=2175): ...``); whoever listens (``edgesql ask`` on a terminal) decides what to show, and when.

Nobody listens by default, so a step costs one context-variable read and says nothing:

>>> with step("schema", tokens=2175):
...     pass
>>> heard = []
>>> class Listener:
...     def started(self, step): heard.append(("started", step))
...     def finished(self, step): heard.append(("finished", step.kind))
>>> with listening(Listener()):
...     with step("schema", tokens=2175):
...         pass
>>> heard
[('started', Step(kind='schema', tokens=2175)), ('finished', 'schema')]
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

#: What a step may be: ``schema`` (a schema prefix evaluated by the model, the first time it sees that schema).
KINDS = ("schema",)


@dataclass(frozen=True)
class Step:
    """A step that may take a while: what it does (one of :data:`KINDS`) and how many tokens it works on."""

    kind: str
    tokens: int = 0


class Listener(Protocol):
    def started(self, step: Step) -> None: ...

    def finished(self, step: Step) -> None: ...


_listener: ContextVar[Listener | None] = ContextVar("edgesql_progress_listener", default=None)


@contextmanager
def listening(listener: Listener):
    """Tell ``listener`` of every step started and finished inside this block (in this thread)."""
    token = _listener.set(listener)
    try:
        yield listener
    finally:
        _listener.reset(token)


@contextmanager
def step(kind: str, *, tokens: int = 0):
    """Mark the block as a step of ``kind`` working on ``tokens`` tokens, for whoever listens."""
    listener = _listener.get()
    if listener is None:
        yield
        return
    marked = Step(kind, tokens)
    listener.started(marked)
    try:
        yield
    finally:
        listener.finished(marked)
