"""Prompt-prefix states on disk: the KV cache of a schema prompt, saved once and loaded for every later question on
that schema, checked by hash and size-capped. Several processes may share the folder at once."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edge_sql.digest import file_sha256
from edge_sql.files import remove_stale_partials, rename_into_place, temporary_path, write_atomically


class PrefixStore:
    """Prompt-prefix states on disk: one per (model file, KV layout, prefix tokens), checked by hash, size-capped.

    A state file is named after its key and the SHA-256 of its bytes (``<key>.<sha>.state``), and a small JSON record
    (``<key>.json``) names it with its full SHA-256. Both are written to a temporary name and renamed, so a process
    never reads half of either, and a state file's name never stands for other bytes, whichever process wrote it
    last. A record that is not JSON, a state whose bytes do not match, or one that llama.cpp will not load for exactly
    the expected tokens is deleted and rebuilt, never trusted.
    """

    def __init__(self, directory: Path, model_key: str, max_bytes: int = 1 << 30):
        self.directory = Path(directory)
        self.model_key = model_key
        self.max_bytes = max_bytes

    def key_for(self, tokens: list[int], layout: str = "") -> str:
        """The key of the state of ``tokens`` in a KV cache of ``layout`` (the decoder's; "" for llama.cpp's default):
        another model, adapter, token or layout is another key.

        >>> store = PrefixStore(Path("."), "model")
        >>> len({store.key_for([1, 2]), store.key_for([1, 3]), store.key_for([1, 2], "no-flash")})
        3
        """
        layout = f"\0{layout}" if layout else ""
        digest = hashlib.sha256(self.model_key.encode() + layout.encode() +
                                np.asarray(tokens, dtype=np.int32).tobytes()).hexdigest()
        return digest[:32]

    def record_for(self, tokens: list[int], layout: str = "") -> Path:
        return self.directory / f"{self.key_for(tokens, layout)}.json"

    def restore(self, decoder, tokens: list[int]) -> bool:
        record = self.record_for(tokens, getattr(decoder, "layout", ""))
        try:
            entry = json.loads(record.read_bytes())
            expected, state = entry["sha256"], self.directory / entry["file"]
            if state.name != f"{record.stem}.{expected[:16]}.state" or entry["tokens"] != len(tokens):
                raise ValueError("the record names another state")
            ok = file_sha256(state) == expected and decoder.load_prefix(state, tokens)
        except FileNotFoundError:  # no record yet, or its state was evicted by another process
            ok, state = False, None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # damaged: not JSON, or not our record
            ok, state = False, None
        if not ok:
            self.forget(record, state)
            return False
        with contextlib.suppress(OSError):
            os.utime(state)  # recently used: evicted last
        return True

    def store(self, decoder, tokens: list[int]) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            record = self.record_for(tokens, getattr(decoder, "layout", ""))
            partial = temporary_path(record)
            try:
                if not decoder.save_prefix(partial, tokens):
                    return
                digest = file_sha256(partial)
                state = self.directory / f"{record.stem}.{digest[:16]}.state"
                rename_into_place(partial, state)
            finally:
                partial.unlink(missing_ok=True)
            entry = {"file": state.name, "sha256": digest, "tokens": len(tokens)}
            write_atomically(record, json.dumps(entry).encode())
            self.evict()
        except OSError:
            return  # a cache that cannot be written only costs time

    def evict(self) -> None:
        """Keep the folder under ``max_bytes``: the states used longest ago go first, with their records; temporary
        files a killed process left behind go too."""
        remove_stale_partials(self.directory)
        states = []
        for path in self.directory.glob("*.state"):
            with contextlib.suppress(OSError):  # another process may have removed it meanwhile
                stat = path.stat()
                states.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in states) + sum(size_of(path) for path in self.directory.glob("*.json"))
        for _, size, path in sorted(states, key=lambda item: item[0]):
            if total <= self.max_bytes:
                break
            record = self.directory / f"{path.name.split('.')[0]}.json"
            self.forget(record, path)
            total -= size

    @staticmethod
    def forget(record: Path, state: Path | None = None) -> None:
        for path in (state, record):
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
