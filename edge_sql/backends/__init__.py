"""Model backends behind one door (``door.py``): the :class:`Model` protocol, ``register_model`` for a single model
(a test double), ``register_backend`` for a family of names, and ``load_model``. The built-in llama.cpp backend
(``llama.py``, with its batched decoder, prefix cache and grammar check) registers here like any other, after the
server backend (``server.py``: an OpenAI-compatible server by URL), which claims only http(s) URLs."""

from edge_sql.backends import llama
from edge_sql.backends.door import (Completion, Cost, Model, default_threads, load_model, physical_cores,
                                    register_backend, register_model, unregister_model)


def serve(name_or_path: str, **options):
    """``server.load`` for an http(s) URL, imported only then (urllib and ssl stay out of a local ``ask``)."""
    if not name_or_path.lower().startswith(("http://", "https://")):
        return None
    from edge_sql.backends import server

    return server.load(name_or_path, **options)


register_backend("server", serve)
register_backend("llama.cpp", llama.load)

__all__ = ["Completion", "Cost", "Model", "default_threads", "load_model", "physical_cores", "register_backend",
           "register_model", "unregister_model"]
