"""A candidate's sampler chain in llama.cpp: greedy at temperature 0, else top-k, top-p, min-p, the temperature and
its own seed (the settings are the same for every candidate; only the seed differs)."""

from __future__ import annotations

import llama_cpp as L

#: Sampler settings for temperature > 0.
TOP_K, TOP_P, MIN_P = 40, 0.95, 0.05


def make_chain(temperature: float, seed: int, grammar=None):
    """The sampler chain of one candidate; ``grammar`` (a compiled grammar, cloned here) goes first when given."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    if grammar is not None:
        L.llama_sampler_chain_add(chain, L.llama_sampler_clone(grammar))
    if temperature <= 0:
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        return chain
    for sampler in (
        L.llama_sampler_init_top_k(TOP_K),
        L.llama_sampler_init_top_p(TOP_P, 1),
        L.llama_sampler_init_min_p(MIN_P, 1),
        L.llama_sampler_init_temp(temperature),
        L.llama_sampler_init_dist(seed & 0xFFFFFFFF),
    ):
        L.llama_sampler_chain_add(chain, sampler)
    return chain
