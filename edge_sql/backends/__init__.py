"""Model backends behind one door (``door.py``): the :class:`Model` protocol, ``register_model`` for a single model
(a test double), ``register_backend`` for a family of names, and ``load_model``. The built-in llama.cpp backend
(``llama.py``, with its batched decoder, prefix cache and grammar check) registers here like any other."""

from edge_sql.backends import llama
from edge_sql.backends.door import (Completion, Cost, Model, default_threads, load_model, physical_cores,
                                    register_backend, register_model, unregister_model)

register_backend("llama.cpp", llama.load)

__all__ = ["Completion", "Cost", "Model", "default_threads", "load_model", "physical_cores", "register_backend",
           "register_model", "unregister_model"]
