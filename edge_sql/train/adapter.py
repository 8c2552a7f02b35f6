"""A trained LoRA adapter as a GGUF LoRA file, the format llama.cpp applies at run time over its base model:
``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, and for each adapted projection the two
tensors ``blk.N.<name>.weight.lora_a`` (rank × inputs) and ``.lora_b`` (outputs × rank), in float16.

llama.cpp stores a Llama model's query and key rows in its own RoPE order (``convert.writer.permute``), so their
``lora_b`` rows are reordered the same way; ``lora_a`` (which mixes the inputs) is not.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from edge_sql.errors import UsageError

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
    out = {}
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise UsageError(f"the adapter has only half of {module}'s LoRA pair")
        a, b = pair["A"], pair["B"]
        if arch == "llama" and module.endswith("q_proj"):
            b = permute(b, heads)
        elif arch == "llama" and module.endswith("k_proj"):
            b = permute(b, kv_heads)
        out[module] = (a, b)
    return out


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
