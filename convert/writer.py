"""Step 2: the merged model as a full-precision (f16 or f32) GGUF file, written with the ``gguf`` package's
``GGUFWriter`` and its tensor-name map. What llama.cpp expects and transformers stores differently:

- **Llama** rotates query/key pairs that are interleaved (llama.cpp's "normal" RoPE) where transformers rotates
  the two halves of each head (``rotate_half``): the rows of ``q_proj`` and ``k_proj`` are reordered per head, with
  the key-value head count for ``k_proj`` (:func:`permute`). Qwen2 uses the half-split ("neox") RoPE in llama.cpp
  too, so its weights go as they are, with their q/k/v biases.
- **Tied embeddings** (SmolLM2, Llama-3.2-1B, Qwen2.5 0.5B/1.5B): no ``output.weight``; llama.cpp reuses
  ``token_embd.weight``.
- **RoPE**: the base frequency, the rotary dimension (the head size); Llama 3's frequency scaling is written as the
  ``rope_freqs`` tensor of per-frequency factors, linear and YaRN scaling as keys.
- 1-D tensors (norms, biases) stay float32, as llama.cpp wants them; 2-D ones take ``outtype``.
"""

from __future__ import annotations

import math
from pathlib import Path

from convert.errors import ConvertError

OUTTYPES = ("f16", "f32")


def permute(weight, heads: int):
    """Reorder the rows of a query or key projection from transformers' half-split RoPE layout to llama.cpp's
    interleaved one: within each head, row ``i`` of the first half and row ``i`` of the second become neighbours.

    >>> import numpy as np
    >>> permute(np.arange(8).reshape(8, 1), heads=2).ravel().tolist()
    [0, 2, 1, 3, 4, 6, 5, 7]
    """
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def llama3_rope_factors(rope: dict, theta: float, head_dim: int) -> list[float]:
    """Llama 3's RoPE scaling as one factor per rotary frequency (llama.cpp divides each frequency by it): long
    wavelengths are stretched by ``factor``, short ones kept, those between interpolated smoothly."""
    factor = rope["factor"]
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    original = rope.get("original_max_position_embeddings", 8192)
    factors = []
    for i in range(0, head_dim, 2):
        wavelength = 2 * math.pi * theta ** (i / head_dim)
        if wavelength < original / high:
            factors.append(1.0)
        elif wavelength > original / low:
            factors.append(factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return factors


def rope_settings(config) -> tuple[float, dict]:
    """(theta, scaling) from a transformers config, old (``rope_theta``, ``rope_scaling``) or new
    (``rope_parameters``) style."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    scaling = dict(getattr(config, "rope_scaling", None) or params)
    theta = params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    scaling["rope_type"] = kind
    return float(theta), scaling


def write_gguf(source, path: Path, *, outtype: str = "f16", name: str, metadata: dict[str, str],
               pre: str | None = None) -> dict:
    """Write ``source`` (a :class:`convert.source.Source`) to ``path``; returns what was written (for the report)."""
    import gguf
    import numpy as np

    from convert.vocab import add_vocab

    if outtype not in OUTTYPES:
        raise ConvertError(f"unknown --outtype {outtype!r}; one of {', '.join(OUTTYPES)}")
    config = source.model.config
    arch = gguf.MODEL_ARCH.LLAMA if source.arch == "llama" else gguf.MODEL_ARCH.QWEN2
    heads, kv_heads = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or \
        config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    blocks = config.num_hidden_layers
    tied = bool(getattr(config, "tie_word_embeddings", False))
    theta, scaling = rope_settings(config)

    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
    try:
        writer.add_name(name)
        writer.add_type("model")
        for key, value in metadata.items():
            writer.add_string(key, value)
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(blocks)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_rope_freq_base(theta)
        writer.add_rope_dimension_count(head_dim)
        if head_dim != config.hidden_size // heads:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        writer.add_vocab_size(config.vocab_size)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32)
        extra = {}
        kind = scaling["rope_type"]
        if kind == "llama3":
            extra[gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"] = np.array(
                llama3_rope_factors(scaling, theta, head_dim), dtype=np.float32)
        elif kind == "linear":
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(scaling["factor"])
        elif kind == "yarn":
            writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            writer.add_rope_scaling_factor(scaling["factor"])
            writer.add_rope_scaling_orig_ctx_len(scaling["original_max_position_embeddings"])
        elif kind != "default":
            raise ConvertError(f"RoPE scaling {kind!r} is not supported (default, linear, llama3 and yarn are)")

        pre_name = add_vocab(writer, source.tokenizer, config.vocab_size, pre)

        names = gguf.get_tensor_name_map(arch, blocks)
        count = 0
        for hf_name, tensor in source.model.state_dict().items():
            if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
                continue
            data = tensor.detach().to("cpu").float().numpy()
            if source.arch == "llama" and hf_name.endswith("q_proj.weight"):
                data = permute(data, heads)
            elif source.arch == "llama" and hf_name.endswith("k_proj.weight"):
                data = permute(data, kv_heads)
            gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise ConvertError(f"no GGUF name for the tensor {hf_name} of a {source.arch} model")
            keep_f32 = outtype == "f32" or data.ndim == 1
            writer.add_tensor(gguf_name, data.astype(np.float32 if keep_f32 else np.float16))
            count += 1
        for gguf_name, data in extra.items():
            writer.add_tensor(gguf_name, data)
            count += 1

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return {"tensors": count, "pre_tokenizer": pre_name, "tied": tied, "rope": scaling["rope_type"]}
