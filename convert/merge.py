"""An edgesql LoRA adapter merged into its GGUF base, in GGUF space: numpy and the ``gguf`` package only, no torch,
so it runs wherever edgesql runs.

The adapter is a GGUF LoRA file (what ``edgesql train`` writes, or llama.cpp's own converter): for each adapted
tensor ``W`` of the base, ``W.lora_a`` (rank × inputs, as a numpy array) and ``W.lora_b`` (outputs × rank), already in
llama.cpp's layout (a Llama's query and key rows permuted). The merged weight is what llama.cpp computes when it
applies the adapter at run time::

    W' = dequantize(W) + alpha / rank * (B @ A)        (alpha = adapter.lora.alpha; 0 means a scale of 1)

The new file keeps every metadata key of the base (the tokenizer and chat template included) with a new
``general.name``, its file type and edgesql's keys; its tensors are written one at a time (memory stays at one
tensor): 1-D ones (norms) as they were, the others dequantized (Q4_1, Q8_0, the k-quants: whatever ``gguf.quants``
reads) with the adapter added, in float32 or float16, for llama.cpp's quantizer to quantize again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from convert.errors import ConvertError

#: --outtype of a merge: the precision of the merged file quantized from.
OUTTYPES = ("f32", "f16")


@dataclass
class LoraFile:
    """A GGUF LoRA adapter read: its tensors by the base tensor they adapt, and what it says about itself."""

    path: Path
    arch: str
    alpha: float
    base: str | None  # edgesql.base: the preset or file it was trained on
    protocol: str | None  # edgesql.protocol
    pairs: dict = field(default_factory=dict)  # base tensor name -> (lora_a, lora_b) ReaderTensors

    def trained_on(self) -> str:
        return f"it was trained on {self.base}" if self.base else "it names no base model (no edgesql.base)"


@dataclass(frozen=True)
class Merged:
    """What :func:`write_merged` wrote, for the report."""

    arch: str
    parameters: int
    merged: int  # tensors the adapter changed
    tensors: int
    quantized_base: bool  # some of the base's matrices were quantized (dequantized here)
    pre_tokenizer: str
    metadata: dict  # the base's string keys (its chat template among them)


def strings(reader) -> dict[str, str]:
    """The string-valued metadata of a GGUF file."""
    import gguf

    return {name: f.contents() for name, f in reader.fields.items()
            if f.types == [gguf.GGUFValueType.STRING]}


def open_gguf(path: Path, what: str):
    import gguf

    if not path.is_file():
        raise ConvertError(f"no such {what} file: {path}" if not path.is_dir() else
                           f"{path} is a folder; give the {what}'s .gguf file")
    try:
        return gguf.GGUFReader(str(path))
    except (OSError, ValueError) as error:
        raise ConvertError(f"cannot read {path} as a GGUF {what}: {str(error).splitlines()[0][:200]}") from None


def read_lora(path: Path) -> LoraFile:
    """The GGUF LoRA adapter at ``path``; a :class:`ConvertError` when it is missing or not one."""
    import gguf

    path = Path(path)
    reader = open_gguf(path, "adapter")
    meta = strings(reader)
    if meta.get("general.type") != "adapter" or meta.get("adapter.type", "lora") != "lora":
        raise ConvertError(f"{path} is not a GGUF LoRA adapter (general.type is {meta.get('general.type', 'unset')})")
    alpha = reader.fields.get("adapter.lora.alpha")
    lora = LoraFile(path=path, arch=meta.get("general.architecture", "?"),
                    alpha=float(alpha.contents()) if alpha is not None else 0.0,
                    base=meta.get("edgesql.base"), protocol=meta.get("edgesql.protocol"))
    halves: dict[str, dict[str, object]] = {}
    for tensor in reader.tensors:
        target, _, half = tensor.name.rpartition(".lora_")
        if half not in ("a", "b") or tensor.tensor_type not in (gguf.GGMLQuantizationType.F16,
                                                                 gguf.GGMLQuantizationType.F32):
            raise ConvertError(f"{path} holds {tensor.name} ({tensor.tensor_type.name}), not a float LoRA tensor")
        halves.setdefault(target, {})[half] = tensor
    for target, pair in halves.items():
        if set(pair) != {"a", "b"}:
            raise ConvertError(f"{path} has only half of {target}'s LoRA pair")
        lora.pairs[target] = (pair["a"], pair["b"])
    if not lora.pairs:
        raise ConvertError(f"{path} holds no LoRA tensors")
    return lora


def shape_of(tensor) -> tuple[int, ...]:
    """A tensor's numpy shape (GGUF lists dimensions innermost first)."""
    return tuple(int(n) for n in reversed(tensor.shape))


def check_fits(lora: LoraFile, reader, base_label: str) -> None:
    """Refuse, in one line naming the base it was trained on, an adapter whose tensors ``reader``'s base lacks or
    whose shapes differ."""
    arch = reader.fields["general.architecture"].contents()
    if lora.arch != arch:
        raise ConvertError(f"the adapter {lora.path} adapts a {lora.arch} model, and {base_label} is {arch}; "
                           f"{lora.trained_on()}")
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    for target, (a, b) in lora.pairs.items():
        if target not in tensors:
            raise ConvertError(f"the adapter {lora.path} does not fit {base_label}: it adapts {target}, which that "
                               f"model does not have; {lora.trained_on()}")
        want, (rank, inputs), (outputs, rank_b) = shape_of(tensors[target]), shape_of(a), shape_of(b)
        if want != (outputs, inputs) or rank != rank_b:
            raise ConvertError(f"the adapter {lora.path} does not fit {base_label}: {target} is "
                               f"{'x'.join(map(str, want))} there and {outputs}x{inputs} in the adapter; "
                               f"{lora.trained_on()}")


def merged_tensor(tensor, pair, alpha: float, base_label: str):
    """The base ``tensor`` dequantized to float32, plus the adapter's delta when ``pair`` is given."""
    import gguf
    import numpy as np

    try:
        weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError:
        raise ConvertError(f"cannot dequantize {tensor.name} of {base_label}: the gguf package has no reader for "
                           f"{tensor.tensor_type.name}") from None
    weight = np.array(weight, dtype=np.float32, copy=True).reshape(shape_of(tensor))
    if pair is not None:
        a, b = (np.asarray(half.data, dtype=np.float32).reshape(shape_of(half)) for half in pair)
        rank = a.shape[0]
        weight += np.float32(alpha / rank if alpha else 1.0) * (b @ a)  # llama.cpp's scale: alpha / rank, or 1
    return weight


def write_merged(base: Path, lora: LoraFile | None, path: Path, *, outtype: str, name: str,
                 metadata: dict[str, str], base_label: str) -> Merged:
    """Write ``base`` with ``lora`` merged into it to ``path`` (see the module's docstring); with ``lora`` None, the
    base dequantized alone."""
    import gguf
    import numpy as np

    if outtype not in OUTTYPES:
        raise ConvertError(f"unknown --outtype {outtype!r}; one of {', '.join(OUTTYPES)}")
    reader = open_gguf(base, "base model")
    if "general.architecture" not in reader.fields:
        raise ConvertError(f"{base} has no general.architecture: not a model file")
    if strings(reader).get("general.type") == "adapter":
        raise ConvertError(f"{base} is a LoRA adapter, not a base model")
    pairs = {} if lora is None else lora.pairs
    if lora is not None:
        check_fits(lora, reader, base_label)
    arch = reader.fields["general.architecture"].contents()
    dtype = np.float32 if outtype == "f32" else np.float16
    file_type = gguf.LlamaFileType.ALL_F32 if outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16

    writer = gguf.GGUFWriter(str(path), arch)
    try:
        for key, found in reader.fields.items():
            if key.startswith(("GGUF.", "edgesql.")) or key in ("general.architecture", "general.name",
                                                                 "general.file_type"):
                continue
            kind = found.types[0]
            sub = found.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, found.contents(), kind, sub_type=sub)
        if "general.alignment" in reader.fields:
            writer.data_alignment = int(reader.fields["general.alignment"].contents())
        writer.add_name(name)
        writer.add_file_type(file_type)
        for key, value in metadata.items():
            writer.add_string(key, value)

        kept = set()
        for tensor in reader.tensors:
            if len(tensor.shape) == 1 and tensor.name not in pairs:  # norms, biases: as they were
                kept.add(tensor.name)
                writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                                       tensor.tensor_type)
            else:
                shape = shape_of(tensor)
                writer.add_tensor_info(tensor.name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor in reader.tensors:
            if tensor.name in kept:
                writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
            else:
                data = merged_tensor(tensor, pairs.get(tensor.name), lora.alpha if lora else 0.0, base_label)
                writer.write_tensor_data(data.astype(dtype, copy=False))
    finally:
        writer.close()
    meta = strings(reader)
    plain = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
    return Merged(arch=arch, parameters=sum(int(t.n_elements) for t in reader.tensors), merged=len(pairs),
                  tensors=len(reader.tensors), quantized_base=any(t.tensor_type not in plain for t in reader.tensors),
                  pre_tokenizer=meta.get("tokenizer.ggml.pre", "default"), metadata=meta)
