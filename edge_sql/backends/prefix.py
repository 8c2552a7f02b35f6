"""Prompt-prefix states on disk: the KV cache of a schema prompt, saved once and loaded for every later question on
that schema, checked by hash and size-capped."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edge_sql.digest import file_sha256


class PrefixStore:
    """Prompt-prefix states on disk: one file per (model file, prefix tokens), checked by hash, size-capped.

    A state is written next to a small JSON record of its SHA-256; a state whose bytes do not match, or that
    llama.cpp will not load for exactly the expected tokens, is deleted and rebuilt, never trusted.
    """

    def __init__(self, directory: Path, model_key: str, max_bytes: int = 1 << 30):
        self.directory = Path(directory)
        self.model_key = model_key
        self.max_bytes = max_bytes

    def path_for(self, tokens: list[int]) -> Path:
        digest = hashlib.sha256(self.model_key.encode() + np.asarray(tokens, dtype=np.int32).tobytes()).hexdigest()
        return self.directory / f"{digest[:32]}.state"

    def restore(self, decoder, tokens: list[int]) -> bool:
        path = self.path_for(tokens)
        record = path.with_suffix(".json")
        if not path.exists() or not record.exists():
            return False
        try:
            expected = json.loads(record.read_text())["sha256"]
            ok = file_sha256(path) == expected and decoder.load_prefix(path, tokens)
        except (OSError, ValueError, KeyError):
            ok = False
        if not ok:
            self.forget(path)
            return False
        os.utime(path)  # recently used: evicted last
        return True

    def store(self, decoder, tokens: list[int]) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.path_for(tokens)
            partial = path.with_suffix(f".tmp{os.getpid()}")
            if not decoder.save_prefix(partial, tokens):
                partial.unlink(missing_ok=True)
                return
            os.replace(partial, path)
            path.with_suffix(".json").write_text(json.dumps({"sha256": file_sha256(path), "tokens": len(tokens)}))
            self.evict()
        except OSError:
            return  # a cache that cannot be written only costs time

    def evict(self) -> None:
        states = sorted(self.directory.glob("*.state"), key=lambda p: p.stat().st_mtime, reverse=True)
        total = 0
        for path in states:
            total += path.stat().st_size
            if total > self.max_bytes:
                self.forget(path)

    @staticmethod
    def forget(path: Path) -> None:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
