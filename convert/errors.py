"""What can go wrong in a conversion, as :mod:`edge_sql.errors` types: the CLI maps them to one line and an exit
code (4, a model problem) like every other edgesql error."""

from __future__ import annotations

from edge_sql.errors import ModelError

INSTALL = 'pip install torch==2.13.0 && pip install -e ".[convert]"'


class ConvertError(ModelError):
    """The source model, the adapter or the output cannot be converted; the message says which and why."""


class MissingExtra(ConvertError):
    """torch, transformers or peft is not installed."""

    def __init__(self, module: str, command: str = "convert"):
        super().__init__(f"edgesql {command} needs the {command} extra ({module} is missing): install it with "
                         f"{INSTALL.replace('[convert]', f'[{command}]')} (the torch pin keeps pip on the CPU build)")
        self.module = module


def require_extra(command: str = "convert", modules=("torch", "transformers", "peft", "safetensors")) -> None:
    """Import the heavy packages once, or say in one line how to install ``command``'s extra."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtra(module, command) from None
