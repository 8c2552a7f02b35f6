"""edgesql: offline, CPU-only text-to-SQL with a small GGUF model through llama.cpp."""

__version__ = "0.1.0"
