"""Where edgesql keeps things, and the settings that say where to download from: all read from the environment at
the moment they are asked for, so a test (or a user) can point them elsewhere."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """Where edgesql keeps caches: ``EDGESQL_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgesql``, else ``~/.cache/edgesql``."""
    if os.environ.get("EDGESQL_CACHE_DIR"):
        return Path(os.environ["EDGESQL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgesql"


def data_dir() -> Path:
    """Where edgesql keeps files of its own: ``EDGESQL_HOME``, else ``$XDG_DATA_HOME/edgesql``."""
    env = os.environ
    if env.get("EDGESQL_HOME"):
        return Path(env["EDGESQL_HOME"]).expanduser()
    return Path(env.get("XDG_DATA_HOME") or "~/.local/share").expanduser() / "edgesql"


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (``HF_HUB_CACHE``, else ``HF_HOME/hub``)."""
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_repo_dir(repo: str) -> Path:
    """A model repository's folder in the hub cache (the hub's layout: ``models--{owner}--{name}``)."""
    return hub_cache_dir() / ("models--" + repo.replace("/", "--"))


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
