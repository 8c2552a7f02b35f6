"""Convert a fine-tuned Hugging Face model (a LoRA adapter merged into its base, or a full GRPO checkpoint) into
a quantized GGUF file that ``edgesql ask`` runs.

One call does the four steps, each in its own module:

1. :mod:`convert.source` loads the base model (folder or Hub repo id) and merges the PEFT adapter;
2. :mod:`convert.writer` writes an f16 (or f32) GGUF with the tokenizer (:mod:`convert.vocab`) and edgesql's
   metadata (``general.name``, ``edgesql.source``, ``edgesql.protocol``);
3. :mod:`convert.quantize` quantizes it with llama.cpp's quantizer (q4_k_m, q4_0, q8_0), reporting fallbacks;
4. :mod:`convert.verify` compares both files' next-token distributions with the transformers model's.

Everything is written under temporary names in the output's folder and renamed only when the last check passed:
an interrupted or failed conversion leaves nothing behind. torch, transformers and peft (the ``convert`` extra)
are imported only when :func:`convert` runs.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from convert.errors import ConvertError, MissingExtra
from convert.quantize import QUANTS, Fallback
from convert.source import SUPPORTED
from convert.verify import Agreement
from convert.writer import OUTTYPES

__all__ = ["convert", "Conversion", "ConvertError", "MissingExtra", "SUPPORTED", "QUANTS", "OUTTYPES",
           "F16_KL_LIMIT", "F16_TOP1_MIN"]

#: The full-precision file must compute what transformers computes: beyond these it is a conversion bug.
F16_KL_LIMIT = 0.01
F16_TOP1_MIN = 0.95
#: Metadata keys edgesql writes (``edgesql models info`` shows them).
METADATA = ("edgesql.source", "edgesql.lora", "edgesql.protocol")


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert` made and measured."""

    path: Path
    name: str
    arch: str
    source: str
    lora: str | None
    protocol: str
    outtype: str
    quant: str
    parameters: int
    size: int
    pre_tokenizer: str
    fallbacks: list[Fallback]
    full: Agreement | None  # the f16/f32 file against transformers
    quantized: Agreement | None  # the quantized file against transformers
    seconds: dict[str, float] = field(default_factory=dict)


def default_protocol(repo: str | None) -> str:
    """The prompt protocol of the preset whose weights come from ``repo``, else the generic one."""
    from edge_sql.preset import GENERIC, load_presets

    for preset in load_presets().values():
        if repo and preset.source.get("repo", "").lower() == repo.lower():
            return preset.protocol
    return GENERIC.protocol


def convert(source: str, *, lora: str | Path | None = None, quant: str = "q4_k_m", out: str | Path | None = None,
            outtype: str = "f16", protocol: str | None = None, name: str | None = None, verify: bool = True,
            pre_tokenizer: str | None = None, threads: int | None = None, revision: str | None = None,
            progress=None) -> Conversion:
    """Convert ``source`` (plus ``lora``) to a ``quant`` GGUF file at ``out``; see the module's docstring.

    ``source`` and ``lora`` are each a local folder or a Hub repo id (``revision`` is the source repo's branch,
    tag or commit). ``quant`` may be ``none`` to keep the full-precision file. ``progress`` (a callable taking one
    line) hears each step as it starts."""
    from convert.errors import require_extra
    from edge_sql.protocols import get_protocol

    say = progress or (lambda message: None)
    if quant != "none" and quant not in QUANTS:
        raise ConvertError(f"unknown --quant {quant!r}; one of {', '.join(QUANTS)}, none")
    if outtype not in OUTTYPES:
        raise ConvertError(f"unknown --outtype {outtype!r}; one of {', '.join(OUTTYPES)}")
    if protocol is not None:
        get_protocol(protocol)  # a UsageError naming the known ones
    require_extra()
    import torch

    if threads:
        torch.set_num_threads(threads)
    from convert import quantize, source as sources, verify as verifier, writer

    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    say(f"loading {source}" + (f" and merging {lora}" if lora else ""))
    model = sources.load(source, lora, revision)
    seconds["load"] = time.perf_counter() - clock
    name = name or Path(model.repo or model.folder.resolve()).name + ("-lora" if lora else "")
    protocol = protocol or default_protocol(model.repo)
    label = quant if quant != "none" else outtype
    target = Path(out).expanduser() if out else Path(f"{name}.{label}.gguf")
    if target.is_dir():
        raise ConvertError(f"--out {target} is a folder; give a file name")
    folder = target.resolve().parent
    if not folder.is_dir():
        raise ConvertError(f"cannot write {target}: no such folder {folder}")
    metadata = {"edgesql.source": model.repo or str(model.folder.resolve()), "edgesql.protocol": protocol}
    if lora:
        metadata["edgesql.lora"] = model.lora_repo or str(model.lora.resolve())

    temporary: list[Path] = []

    def scratch(suffix: str) -> Path:
        handle, path = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=folder)
        os.close(handle)
        temporary.append(Path(path))
        return Path(path)

    try:
        full = scratch(f".{outtype}.partial")
        clock = time.perf_counter()
        say(f"writing the {outtype} GGUF")
        try:
            written = writer.write_gguf(model, full, outtype=outtype, name=name, metadata=metadata,
                                        pre=pre_tokenizer)
        except OSError as error:
            raise ConvertError(f"cannot write {target}: {error.strerror or error}") from None
        seconds["write"] = time.perf_counter() - clock
        fallbacks: list[Fallback] = []
        final = full
        if quant != "none":
            final = scratch(f".{quant}.partial")
            clock = time.perf_counter()
            say(f"quantizing to {quant}")
            fallbacks = quantize.quantize(full, final, quant, threads)
            seconds["quantize"] = time.perf_counter() - clock
        full_agreement = quant_agreement = None
        if verify:
            clock = time.perf_counter()
            say("verifying against the transformers model")
            reference = verifier.reference_logits(model.model, model.tokenizer)
            full_agreement = verifier.compare(reference, model.tokenizer, full, threads)
            if full_agreement.kl_mean > F16_KL_LIMIT or full_agreement.top1 < F16_TOP1_MIN:
                raise ConvertError(f"verification failed: the {outtype} GGUF does not match the transformers "
                                   f"model ({full_agreement.summary()})")
            if not full_agreement.tokenizer_agrees:
                raise ConvertError("verification failed: llama.cpp tokenizes the test prompts differently from "
                                   f"transformers (pre-tokenizer {written['pre_tokenizer']!r}; try --pre-tokenizer)")
            if final is not full:
                quant_agreement = verifier.compare(reference, model.tokenizer, final, threads)
            seconds["verify"] = time.perf_counter() - clock
        os.replace(final, target)
        temporary.remove(final)
    finally:
        for path in temporary:
            path.unlink(missing_ok=True)
    parameters = sum(p.numel() for p in model.model.parameters())
    return Conversion(path=target, name=name, arch=model.arch, source=metadata["edgesql.source"],
                      lora=metadata.get("edgesql.lora"), protocol=protocol, outtype=outtype, quant=label,
                      parameters=parameters, size=target.stat().st_size, pre_tokenizer=written["pre_tokenizer"],
                      fallbacks=fallbacks, full=full_agreement, quantized=quant_agreement, seconds=seconds)
