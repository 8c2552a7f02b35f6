"""The schema check inside the batched decoder (``batch.py``): whether a token may follow a sequence's text, and the
token a sequence picks when the one it sampled is refused.

The check itself (``steps/constrain``) is handed in by the caller as an object with ``start()``; its cursors have
``feed(text)`` (None when refused) and ``can_end()``. Nothing here knows SQL.
"""

from __future__ import annotations

import ctypes

import numpy as np

import llama_cpp as L

#: The most tokens tried, from the most likely down, when the one sampled is refused. Past a few hundred, the tokens
#: left hold almost no probability: a candidate that needs them is lost, and walking further only costs time.
WALK = 2048


def follows(decoder, sequence, token: int, stop, is_eog):
    """The sequence's check cursor after ``token``, or None when the check refuses it. An end (end of generation,
    or a stop string) is allowed only where the text so far is a whole valid query."""
    cursor = sequence.cursor
    if sequence.grammar is not None and not decoder.allows(sequence.grammar, token):
        return None
    if is_eog(token):
        return cursor if cursor.can_end() else None
    text = decoder.texts.get(token)
    if text is None:
        text = decoder.texts[token] = decoder.piece(token).decode("utf-8", "replace")
    if not text:
        return None  # a token that writes nothing (a control token) would let a candidate stall forever
    window = sequence.data[-32:].decode("utf-8", "ignore") + text
    cut = min((window.find(s) for s in stop if s and s in window), default=-1)
    if cut < 0:
        return cursor.feed(text)
    head = cut - (len(window) - len(text))  # what of this token comes before the stop string
    cursor = cursor.feed(text[:head]) if head > 0 else cursor
    return cursor if cursor is not None and cursor.can_end() else None


def checked_sample(decoder, sequence, logits, stop, is_eog, top_k: int, min_p: float):
    """The token the sequence picks among those the check allows, tried from the most likely down: a greedy
    candidate takes the first allowed; a sampled one tests every token its chain could still pick (min-p of the
    best allowed one, top-k of them) and samples among them. ``(None, None)`` when none of the :data:`WALK` most
    likely is allowed: the candidate has written itself into a corner, and ends there."""
    greedy = sequence.greedy
    allowed: list[tuple[int, object]] = []
    floor = -np.inf
    for token in most_likely(logits):
        token = int(token)
        if logits[token] < floor:
            break
        cursor = follows(decoder, sequence, token, stop, is_eog)
        if cursor is None:
            continue
        allowed.append((token, cursor))
        if greedy or len(allowed) >= top_k:
            break
        if len(allowed) == 1:
            floor = float(logits[token]) + float(np.log(min_p))  # min-p keeps nothing below this
    if not allowed:
        return None, None
    if greedy or len(allowed) == 1:
        return allowed[0]
    chosen = (L.llama_token_data * len(allowed))()
    for i, (token, _) in enumerate(allowed):
        chosen[i].id, chosen[i].logit, chosen[i].p = token, float(logits[token]), 0.0
    array = L.llama_token_data_array(data=chosen, size=len(allowed), selected=-1, sorted=False)
    L.llama_sampler_apply(sequence.chain, ctypes.byref(array))
    picked = int(chosen[array.selected].id)
    return next(pair for pair in allowed if pair[0] == picked)


def most_likely(logits, first: int = 64, most: int = WALK):
    """Token ids from the most likely down: the first ``first`` by a partial sort, then up to ``most`` in all."""
    top = np.argpartition(-logits, first)[:first]
    top = top[np.argsort(-logits[top], kind="stable")]
    yield from top.tolist()
    order = np.argsort(-logits, kind="stable")[first:most]
    yield from order.tolist()
