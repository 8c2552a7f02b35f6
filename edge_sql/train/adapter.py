"""A trained LoRA adapter as a GGUF LoRA file, the format llama.cpp applies at run time over its base model:
``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, and for each adapted projection the two
tensors ``blk.N.<name>.weight.lora_a`` (rank × inputs) and ``.lora_b`` (outputs × rank), in float16.

llama.cpp stores a Llama model's query and key rows in its own RoPE order (``convert.writer.permute``), so their
``lora_b`` rows are reordered the same way; ``lora_a`` (which mixes the inputs) is not.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sql.errors import UsageError
from edge_sql.train.loop import MLP, TARGETS

LORA = re.compile(r"(?:.*\.)?(model\.layers\.\d+\..+?)\.lora_([AB])(?:\.default)?\.weight$")


def adapter_tensors(state: dict, *, arch: str, heads: int, kv_heads: int) -> dict[str, np.ndarray]:
    """Hugging Face module name (``model.layers.N.self_attn.q_proj``) → (A, B) as float32 arrays, permuted for
    llama.cpp where it needs it."""
    from convert.writer import permute

    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, tensor in state.items():
        match = LORA.match(name)
        if match:
            pairs.setdefault(match.group(1), {})[match.group(2)] = tensor.detach().to("cpu").float().numpy()
    return pair_up({module: (pair.get("A"), pair.get("B")) for module, pair in sorted(pairs.items())},
                   lambda b, n: permute(b, n) if arch == "llama" else b, heads, kv_heads, "the adapter")


def pair_up(pairs: dict, reorder, heads: int, kv_heads: int, where) -> dict[str, tuple]:
    """module → (A, B) with B's query and key rows put in the other RoPE order by ``reorder(B, heads)``; a
    :class:`UsageError` naming ``where`` when a module has only one half of its pair."""
    out = {}
    for module, (a, b) in pairs.items():
        if a is None or b is None:
            raise UsageError(f"{where} has only half of {module}'s LoRA pair")
        if module.endswith("q_proj"):
            b = reorder(b, heads)
        elif module.endswith("k_proj"):
            b = reorder(b, kv_heads)
        out[module] = (a, b)
    return out


def unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of :func:`convert.writer.permute`: llama.cpp's interleaved RoPE rows back to transformers' order.

    >>> from convert.writer import permute
    >>> unpermute(permute(np.arange(8).reshape(8, 1), heads=2), heads=2).ravel().tolist()
    [0, 1, 2, 3, 4, 5, 6, 7]
    """
    rows = weight.shape[0]
    return (weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


@dataclass(frozen=True)
class Adapter:
    """A GGUF LoRA file read back: module → (A, B) in transformers' layout, its alpha, rank, blocks and base."""

    tensors: dict
    alpha: float
    rank: int
    blocks: tuple[int, ...]
    base: str | None


def read_adapter(path: Path, *, arch: str, blocks: int, heads: int, kv_heads: int) -> Adapter:
    """Read a GGUF LoRA adapter (one :func:`write_adapter` wrote, or llama.cpp's converter) to start training from."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path} as a LoRA adapter: {str(error).splitlines()[0]}") from None

    def field(key: str):
        found = reader.fields.get(key)
        return None if found is None else found.contents()

    if field("general.type") != "adapter" or field("adapter.type") != "lora":
        raise UsageError(f"{path} is not a GGUF LoRA adapter")
    architecture = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[arch]
    if field("general.architecture") != gguf.MODEL_ARCH_NAMES[architecture]:
        raise UsageError(f"{path} adapts a {field('general.architecture')} model, not this {arch} base")
    names = gguf.get_tensor_name_map(architecture, blocks)
    modules = {}
    for block in range(blocks):
        for target in TARGETS:
            module = f"model.layers.{block}.{'mlp' if target in MLP else 'self_attn'}.{target}"
            name = names.get_name(module + ".weight", try_suffixes=(".weight",))
            if name is not None:
                modules[name] = module
    halves: dict[str, dict[str, np.ndarray]] = {}
    for tensor in reader.tensors:
        target, _, half = tensor.name.rpartition(".lora_")
        if target not in modules or half not in ("a", "b"):
            raise UsageError(f"{path} holds {tensor.name}, which this {arch} base with {blocks} layers does not have")
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dimensions innermost first
        halves.setdefault(modules[target], {})[half] = np.asarray(tensor.data, dtype=np.float32).reshape(shape)
    tensors = pair_up({module: (pair.get("a"), pair.get("b")) for module, pair in halves.items()},
                      lambda b, n: unpermute(b, n) if arch == "llama" else b, heads, kv_heads, path)
    ranks = {a.shape[0] for a, _ in tensors.values()}
    if len(ranks) != 1:
        raise UsageError(f"{path} mixes LoRA ranks {sorted(ranks)}; edgesql train continues one rank only")
    used = tuple(sorted({int(module.split(".")[2]) for module in tensors}))
    return Adapter(tensors, float(field("adapter.lora.alpha") or 0.0), ranks.pop(), used, field("edgesql.base"))


def write_adapter(path: Path, tensors: dict, *, arch: str, blocks: int, alpha: float, name: str,
                  metadata: dict[str, str]) -> int:
    """Write the GGUF LoRA file (under a temporary name, then renamed); returns its size in bytes."""
    import gguf

    architecture = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}[arch]
    names = gguf.get_tensor_name_map(architecture, blocks)
    path = Path(path)
    partial = path.with_name(f".{path.name}.tmp{os.getpid()}")
    writer = gguf.GGUFWriter(str(partial), gguf.MODEL_ARCH_NAMES[architecture])
    try:
        writer.add_string("general.type", "adapter")
        writer.add_name(name)
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(alpha))
        for key, value in metadata.items():
            writer.add_string(key, value)
        for module, (a, b) in tensors.items():
            target = names.get_name(module + ".weight", try_suffixes=(".weight",))
            if target is None:
                raise UsageError(f"no GGUF name for {module} of a {arch} model")
            writer.add_tensor(f"{target}.lora_a", a.astype(np.float16))
            writer.add_tensor(f"{target}.lora_b", b.astype(np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(partial, path)
    return path.stat().st_size
