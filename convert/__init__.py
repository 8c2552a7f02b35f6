"""Convert a fine-tuned model into a quantized GGUF file that ``edgesql ask`` runs: a Hugging Face model (a PEFT
LoRA adapter merged into its base, or a full GRPO checkpoint) with :func:`convert`, or an adapter ``edgesql train``
wrote (a GGUF LoRA file) merged into its GGUF base with :func:`convert_adapter`.

:func:`convert` does the four steps, each in its own module:

1. :mod:`convert.source` loads the base model (folder or Hub repo id) and merges the PEFT adapter;
2. :mod:`convert.writer` writes an f16 (or f32) GGUF with the tokenizer (:mod:`convert.vocab`) and edgesql's
   metadata (``general.name``, ``edgesql.source``, ``edgesql.protocol``);
3. :mod:`convert.quantize` quantizes it with llama.cpp's quantizer (q4_k_m, q4_0, q8_0), reporting fallbacks;
4. :mod:`convert.verify` compares both files' next-token distributions with the transformers model's.

:func:`convert_adapter` needs no torch: :mod:`convert.merge` adds the adapter to the dequantized base tensors in
numpy and writes an f32 (or f16) GGUF with the base's metadata and tokenizer, :mod:`convert.quantize` quantizes it
(q4_k_m, q4_1, ...), and :mod:`convert.verify` compares both files with the base running the adapter in llama.cpp
(and the full-precision file with the dequantized base running it: that must agree near-exactly).

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

__all__ = ["convert", "convert_adapter", "Conversion", "ConvertError", "MissingExtra", "SUPPORTED", "QUANTS",
           "OUTTYPES", "F16_KL_LIMIT", "F16_TOP1_MIN", "MERGE_KL_LIMIT", "MERGE_TOP1_MIN"]

#: The full-precision file must compute what transformers computes: beyond these it is a conversion bug.
F16_KL_LIMIT = 0.01
F16_TOP1_MIN = 0.95
#: A merged full-precision file computes what llama.cpp computes applying the adapter at run time over the
#: (dequantized) base: it must agree near-exactly (measured on the shipped SmolLM2 adapter: KL 1e-6). Against the
#: quantized base itself it agrees less (KL 0.004 there) because llama.cpp rounds the inputs of a quantized matrix
#: to 8 bits at run time: the base alone differs as much from its own dequantized copy.
MERGE_KL_LIMIT = 0.001
MERGE_TOP1_MIN = 0.95
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
    full: Agreement | None  # the f16/f32 file against the reference
    quantized: Agreement | None  # the quantized file against the reference
    seconds: dict[str, float] = field(default_factory=dict)
    reference: str = "transformers"  # what both were compared with: transformers, or base + LoRA (in llama.cpp)
    exact: Agreement | None = None  # a merge's full-precision file against the dequantized base + LoRA


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
    from convert import source as sources, verify as verifier, writer

    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    say(f"loading {source}" + (f" and merging {lora}" if lora else ""))
    model = sources.load(source, lora, revision)
    seconds["load"] = time.perf_counter() - clock
    name = name or Path(model.repo or model.folder.resolve()).name + ("-lora" if lora else "")
    protocol = protocol or default_protocol(model.repo)
    label = quant if quant != "none" else outtype
    target = output_target(out, f"{name}.{label}.gguf")
    metadata = {"edgesql.source": model.repo or str(model.folder.resolve()), "edgesql.protocol": protocol}
    if lora:
        metadata["edgesql.lora"] = model.lora_repo or str(model.lora.resolve())

    with Scratch(target) as scratch:
        written, full, final, fallbacks = write_and_quantize(
            scratch, lambda path: writer.write_gguf(model, path, outtype=outtype, name=name, metadata=metadata,
                                                    pre=pre_tokenizer),
            f"writing the {outtype} GGUF", "write", outtype, quant, threads, say, seconds)
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
        scratch.keep(final)
    parameters = sum(p.numel() for p in model.model.parameters())
    return Conversion(path=target, name=name, arch=model.arch, source=metadata["edgesql.source"],
                      lora=metadata.get("edgesql.lora"), protocol=protocol, outtype=outtype, quant=label,
                      parameters=parameters, size=target.stat().st_size, pre_tokenizer=written["pre_tokenizer"],
                      fallbacks=fallbacks, full=full_agreement, quantized=quant_agreement, seconds=seconds)


def convert_adapter(adapter: str | Path, source: str | None = None, *, locate=None, label: str | None = None,
                    quant: str = "q4_k_m", out: str | Path | None = None, outtype: str = "f32",
                    protocol: str | None = None, name: str | None = None, verify: bool = True,
                    threads: int | None = None, progress=None) -> Conversion:
    """Merge the GGUF LoRA file ``adapter`` into its GGUF base and quantize the result to ``quant`` at ``out``.

    The base is ``source`` when given, else the adapter's ``edgesql.base``; ``locate`` (a callable) turns either
    into the base's GGUF file (the CLI maps a preset name to its weights), by default it is read as a path.
    ``label`` is how the user named the adapter (a preset, a folder), recorded as ``edgesql.lora`` and giving the
    default name. Both files are compared with the base running the adapter in llama.cpp; the full-precision file
    must agree near-exactly with the same weights in full precision running it (a quantized base is dequantized
    into a temporary file for that), or the conversion fails. No torch: numpy, gguf and llama-cpp-python."""
    from convert import merge, verify as verifier
    from edge_sql.protocols import get_protocol

    say = progress or (lambda message: None)
    if quant != "none" and quant not in QUANTS:
        raise ConvertError(f"unknown --quant {quant!r}; one of {', '.join(QUANTS)}, none")
    if outtype not in merge.OUTTYPES:
        raise ConvertError(f"unknown --outtype {outtype!r}; one of {', '.join(merge.OUTTYPES)}")
    if protocol is not None:
        get_protocol(protocol)  # a UsageError naming the known ones
    adapter = Path(adapter).expanduser()
    lora = merge.read_lora(adapter)
    base_label = source or lora.base
    if base_label is None:
        raise ConvertError(f"the adapter {adapter} names no base model (no edgesql.base): give the base as SOURCE, "
                           f"a preset or a .gguf file")
    base = Path(locate(base_label) if locate else base_label).expanduser()
    if base.is_dir() or (base.suffix.lower() != ".gguf" and not base.is_file()):
        raise ConvertError(f"the base {base_label} is not a GGUF file: merge the adapter into the GGUF file it runs "
                           f"over, given as SOURCE (a Hugging Face model converts first: edgesql convert "
                           f"{base_label} --quant none)")
    label = label or str(adapter.resolve())
    name = name or adapter_name(label)
    protocol = protocol or lora.protocol or default_protocol(None)
    target = output_target(out, f"{name}.{quant if quant != 'none' else outtype}.gguf")
    metadata = {"edgesql.source": base_label, "edgesql.lora": label, "edgesql.protocol": protocol}

    seconds: dict[str, float] = {}
    with Scratch(target) as scratch:
        written, full, final, fallbacks = write_and_quantize(
            scratch, lambda path: merge.write_merged(base, lora, path, outtype=outtype, name=name,
                                                     metadata=metadata, base_label=base_label),
            f"merging {adapter} into {base}, writing the {outtype} GGUF", "merge", outtype, quant, threads, say,
            seconds)
        full_agreement = quant_agreement = exact = None
        if verify:
            clock = time.perf_counter()
            say("verifying against the base with the adapter applied by llama.cpp")
            texts = verifier.gguf_prompts(written.metadata)
            ids, reference = verifier.gguf_logits(base, texts, threads, lora=adapter)
            own, got = verifier.gguf_logits(full, texts, threads, ids=ids)
            full_agreement = exact = verifier.agreement(reference, got, own == ids)
            if written.quantized_base:  # the exact reference: the same weights in full precision, the same LoRA
                plain = scratch(f".dequantized.{outtype}.partial")
                merge.write_merged(base, None, plain, outtype=outtype, name=name, metadata={}, base_label=base_label)
                _, dequantized = verifier.gguf_logits(plain, texts, threads, ids=ids, lora=adapter)
                plain.unlink()
                exact = verifier.agreement(dequantized, got, own == ids)
            if exact.kl_mean > MERGE_KL_LIMIT or exact.top1 < MERGE_TOP1_MIN or not exact.tokenizer_agrees:
                raise ConvertError(f"verification failed: the merged {outtype} GGUF does not compute what "
                                   f"{base_label} with the adapter computes ({exact.summary()})")
            if final is not full:
                own, got = verifier.gguf_logits(final, texts, threads, ids=ids)
                quant_agreement = verifier.agreement(reference, got, own == ids)
            seconds["verify"] = time.perf_counter() - clock
        scratch.keep(final)
    return Conversion(path=target, name=name, arch=written.arch, source=base_label, lora=label, protocol=protocol,
                      outtype=outtype, quant=quant if quant != "none" else outtype, parameters=written.parameters,
                      size=target.stat().st_size, pre_tokenizer=written.pre_tokenizer, fallbacks=fallbacks,
                      full=full_agreement, quantized=quant_agreement, seconds=seconds,
                      reference="base + LoRA", exact=exact if written.quantized_base else None)


def write_and_quantize(scratch, write, message: str, step: str, outtype: str, quant: str, threads: int | None, say,
                       seconds: dict[str, float]):
    """Write the full-precision file with ``write(path)`` (timed as ``step``), then quantize it unless ``quant`` is
    none: (what ``write`` returned, the full file, the final file, the tensors that fell back)."""
    from convert import quantize

    full = scratch(f".{outtype}.partial")
    clock = time.perf_counter()
    say(message)
    try:
        written = write(full)
    except OSError as error:
        raise ConvertError(f"cannot write {scratch.target}: {error.strerror or error}") from None
    seconds[step] = time.perf_counter() - clock
    fallbacks: list[Fallback] = []
    final = full
    if quant != "none":
        final = scratch(f".{quant}.partial")
        clock = time.perf_counter()
        say(f"quantizing to {quant}")
        fallbacks = quantize.quantize(full, final, quant, threads)
        seconds["quantize"] = time.perf_counter() - clock
    return written, full, final, fallbacks


def adapter_name(label: str) -> str:
    """The default model name for an adapter the user named ``label``: a preset's name, a folder's, a file's stem.

    >>> adapter_name("smollm2-135m-sql"), adapter_name("runs/my-rl/"), adapter_name("x/sql.lora.gguf")
    ('smollm2-135m-sql', 'my-rl', 'sql')
    >>> adapter_name("runs/my-rl/adapter.gguf")
    'my-rl'
    """
    path = Path(label)
    if path.name == "adapter.gguf":  # the file edgesql train writes in its folder: the folder names it
        path = path.parent
    stem = path.name
    for suffix in (".gguf", ".lora"):
        stem = stem[: -len(suffix)] if stem.lower().endswith(suffix) else stem
    return stem or "merged"


def output_target(out: str | Path | None, default: str) -> Path:
    """The file to write: ``out``, or ``default`` in the current folder; a folder, or a missing one, is an error."""
    target = Path(out).expanduser() if out else Path(default)
    if target.is_dir():
        raise ConvertError(f"--out {target} is a folder; give a file name")
    folder = target.resolve().parent
    if not folder.is_dir():
        raise ConvertError(f"cannot write {target}: no such folder {folder}")
    return target


class Scratch:
    """Temporary files beside ``target`` (``with Scratch(target) as scratch: path = scratch(suffix)``), all removed
    at the end but the one :meth:`keep` renamed to ``target``: a failed or interrupted conversion leaves nothing."""

    def __init__(self, target: Path):
        self.target = target
        self.folder = target.resolve().parent
        self.paths: list[Path] = []

    def __call__(self, suffix: str) -> Path:
        try:
            handle, path = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=suffix, dir=self.folder)
        except OSError as error:
            raise ConvertError(f"cannot write {self.target}: {error.strerror or error}") from None
        os.close(handle)
        self.paths.append(Path(path))
        return Path(path)

    def keep(self, path: Path) -> None:
        try:
            os.replace(path, self.target)
        except OSError as error:
            raise ConvertError(f"cannot write {self.target}: {error.strerror or error}") from None
        self.paths.remove(path)

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, *exc) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)
