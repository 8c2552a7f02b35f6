"""What a GGUF file says about itself, read with ``gguf.GGUFReader`` (memory-mapped; no weights are loaded).

``gguf`` (and numpy) are imported only when a file is read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge_sql.errors import ModelError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    size: int
    architecture: str
    name: str
    parameters: int
    file_type: str
    tensor_types: dict[str, int]
    context_length: int | None
    layers: int | None
    embedding_length: int | None
    chat_template: str
    tokenizer: str
    pre_tokenizer: str
    vocab_size: int
    bos_token: str
    eos_token: str
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def edgesql(self) -> dict[str, object]:
        """What ``edgesql convert`` wrote about the file's origin: ``edgesql.source``, ``edgesql.lora``,
        ``edgesql.protocol`` (empty for files made elsewhere)."""
        return {key: value for key, value in self.metadata.items() if key.startswith("edgesql.")}

    def to_dict(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def read_info(path: Path) -> GGUFInfo:
    """The metadata of the GGUF file at ``path``; a :class:`ModelError` when it is missing or not a GGUF file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no such model file: {path}")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ModelError(f"{path} is not a GGUF model file")
    try:
        import gguf

        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, OSError) as error:
        raise ModelError(f"{path} is not a readable GGUF file: {error}") from None

    def value(key: str, default=None):
        found = reader.fields.get(key)
        if found is None or not found.types:
            return default
        if found.types[0] == gguf.GGUFValueType.ARRAY:
            return f"[{len(found.data)} values]"
        return found.contents()

    arch = value("general.architecture", "")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = len(tokens.data) if tokens is not None else 0

    def token(key: str) -> str:
        index = value(key)
        if tokens is None or not isinstance(index, int) or not 0 <= index < vocab:
            return ""
        return tokens.contents(index)

    file_type = value("general.file_type")
    try:
        file_type_name = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else ""
    except ValueError:
        file_type_name = str(file_type)
    types = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    metadata = {key: value(key) for key in reader.fields
                if not key.startswith("GGUF.") and key != "tokenizer.chat_template"}
    return GGUFInfo(
        path=path,
        size=path.stat().st_size,
        architecture=arch,
        name=value("general.name", ""),
        parameters=sum(int(tensor.n_elements) for tensor in reader.tensors),
        file_type=file_type_name,
        tensor_types=dict(types.most_common()),
        context_length=value(f"{arch}.context_length"),
        layers=value(f"{arch}.block_count"),
        embedding_length=value(f"{arch}.embedding_length"),
        chat_template=value("tokenizer.chat_template", ""),
        tokenizer=value("tokenizer.ggml.model", ""),
        pre_tokenizer=value("tokenizer.ggml.pre", ""),
        vocab_size=vocab,
        bos_token=token("tokenizer.ggml.bos_token_id"),
        eos_token=token("tokenizer.ggml.eos_token_id"),
        metadata=metadata,
    )


def human_count(n: int) -> str:
    """A parameter count the way model cards write it.

    >>> human_count(134_515_008), human_count(494_032_768), human_count(1_543_714_304), human_count(100_000)
    ('135M', '494M', '1.54B', '100K')
    """
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            text = f"{n / scale:.{max(3 - len(str(int(n // scale))), 0)}f}"
            return (text.rstrip("0").rstrip(".") if "." in text else text) + unit
    return str(n)
