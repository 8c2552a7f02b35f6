"""The tokenizer, written into the GGUF as llama.cpp reads a byte-level BPE vocabulary: tokens, token types,
merges, the pre-tokenizer's name, BOS/EOS/PAD and the chat template (the last four through ``gguf.SpecialVocab``).

llama.cpp does not run the tokenizer's pre-tokenizer regexes from the file; it knows a fixed set by name
(``tokenizer.ggml.pre``). :func:`pre_tokenizer` recognises the ones our presets use from ``tokenizer.json``:

>>> pre_tokenizer({"type": "ByteLevel", "use_regex": True})
'gpt-2'
>>> pre_tokenizer({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
...                                                      {"type": "ByteLevel", "use_regex": True}]})
'smollm'
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from convert.errors import ConvertError

#: The pre-tokenizers llama.cpp knows by name that :func:`pre_tokenizer` recognises.
PRE_TOKENIZERS = ("gpt-2", "smollm", "llama-bpe", "qwen2", "deepseek-coder")

DEEPSEEK_CODER_SPLITS = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"}


def pre_tokenizer(spec: dict | None) -> str | None:
    """The llama.cpp name of the pre-tokenizer described by ``tokenizer.json``'s ``pre_tokenizer``, or None."""
    if not spec:
        return None
    steps = spec.get("pretokenizers", []) if spec.get("type") == "Sequence" else [spec]
    kinds = [step.get("type") for step in steps]
    splits = [step.get("pattern", {}).get("Regex", "") for step in steps if step.get("type") == "Split"]
    byte_level_regex = any(step.get("type") == "ByteLevel" and step.get("use_regex", True) for step in steps)
    digits = any(step.get("type") == "Digits" and step.get("individual_digits") for step in steps)
    if kinds == ["ByteLevel"] and byte_level_regex:
        return "gpt-2"
    if sorted(kinds) == ["ByteLevel", "Digits"] and byte_level_regex and digits:
        return "smollm"
    if len(splits) == 1 and splits[0].startswith("(?i:'s|'t|'re|'ve|'m|'ll|'d)"):
        if "\\p{N}{1,3}" in splits[0]:
            return "llama-bpe"
        if "|\\p{N}|" in splits[0]:
            return "qwen2"
    if set(splits) == DEEPSEEK_CODER_SPLITS:
        return "deepseek-coder"
    return None


def add_vocab(writer, tokenizer, n_vocab: int, pre: str | None = None) -> str:
    """Write ``tokenizer`` (a transformers fast BPE tokenizer) into ``writer``; returns the pre-tokenizer's name.

    ``n_vocab`` is the model's embedding rows: ids the tokenizer does not use are written as unused padding."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        raise ConvertError("the tokenizer is not a fast (tokenizer.json) tokenizer; only BPE tokenizers convert")
    spec = json.loads(backend.to_str())
    if spec.get("model", {}).get("type") != "BPE":
        raise ConvertError(f"the tokenizer is {spec.get('model', {}).get('type')}, not BPE; only byte-level BPE "
                           "tokenizers (Llama 3, Qwen2, SmolLM, deepseek-coder) convert")
    name = pre or pre_tokenizer(spec.get("pre_tokenizer"))
    if name is None:
        raise ConvertError("unknown pre-tokenizer " + json.dumps(spec.get("pre_tokenizer"))[:200] +
                           f"; name the llama.cpp one with --pre-tokenizer (known here: {', '.join(PRE_TOKENIZERS)})")

    by_id = {index: text for text, index in tokenizer.get_vocab().items()}
    if by_id and max(by_id) >= n_vocab:
        raise ConvertError(f"the tokenizer has ids up to {max(by_id)} but the model only {n_vocab} embeddings")
    added = tokenizer.added_tokens_decoder  # id -> AddedToken
    tokens, types = [], []
    for index in range(n_vocab):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(added[index].content)
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(name)
    writer.add_token_list(tokens)
    writer.add_token_types(types)

    # merges, special token ids, add_bos and the chat template: gguf's own reader of the tokenizer's files
    with tempfile.TemporaryDirectory(prefix="edgesql-tokenizer-") as folder:
        tokenizer.save_pretrained(folder)
        special = gguf.SpecialVocab(Path(folder), load_merges=True, n_vocab=len(tokens))
        if not special.merges:
            raise ConvertError("the tokenizer has no BPE merges")
        if not special.chat_template:
            template = Path(folder, "chat_template.jinja")
            if template.is_file():
                special.chat_template = template.read_text(encoding="utf-8")
        special.add_to_gguf(writer, quiet=True)
    return name
