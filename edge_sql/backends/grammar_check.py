"""Check a GBNF grammar before llama.cpp compiles it: a grammar llama.cpp cannot parse crashes the process that
compiles it, so it is first compiled in a child process, and a grammar that passed is remembered (in this process and
on disk, ``<cache>/grammar``: a marker holding the grammar's digest, written to a temporary name and renamed)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from edge_sql.errors import GrammarError
from edge_sql.files import write_atomically
from edge_sql.paths import cache_home


# -- the check -------------------------------------------------------------------------------------------------------

_CHECK = """
import sys
import llama_cpp
sampler = llama_cpp.llama_sampler_init_grammar(None, sys.stdin.buffer.read(), b"root")
sys.exit(0 if sampler else 3)
"""
_checked: set[str] = set()


def check_grammar(text: str) -> None:
    """Raise :class:`GrammarError` unless llama.cpp parses ``text`` (rule ``root``) without error.

    llama.cpp is asked in a child process, so a grammar that would crash it crashes only the child. A grammar that
    passed is remembered by its digest, in this process and on disk (``<cache>/grammar``).
    """
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if digest in _checked:
        return
    marker = grammar_cache() / f"{digest[:40]}.ok"
    if remembered(marker, digest):
        _checked.add(digest)
        return
    result = subprocess.run([sys.executable, "-c", _CHECK], input=text.encode("utf-8"), capture_output=True,
                            timeout=120)
    if result.returncode != 0:
        reason = next((line for line in result.stderr.decode("utf-8", "replace").splitlines()
                       if "error" in line.lower()), f"exit status {result.returncode}")
        raise GrammarError(f"llama.cpp does not accept the grammar: {reason.strip()}")
    _checked.add(digest)
    try:
        write_atomically(marker, digest.encode())
    except OSError:
        pass  # an unwritable cache only costs a check next time


def remembered(marker: Path, digest: str) -> bool:
    """The marker holds the grammar's whole digest; an empty, truncated or damaged one is checked again and rewritten."""
    try:
        return marker.read_bytes() == digest.encode()
    except OSError:
        return False


def grammar_cache() -> Path:
    return cache_home() / "grammar"
