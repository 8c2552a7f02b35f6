"""The ``edgesql`` command line: ``app`` (Typer) and ``main`` (the console script)."""

from edge_sql.cli.app import app, main

__all__ = ["app", "main"]
