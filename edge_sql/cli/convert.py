"""``edgesql convert``: a fine-tuned Hugging Face model (plus a PEFT LoRA adapter), or an adapter ``edgesql train``
wrote merged into its GGUF base, to a quantized GGUF file. A thin shell over the top-level :mod:`convert` package,
which is imported only when the command runs: torch, transformers and peft (the ``convert`` extra) never load for
the other commands, nor for merging an edgesql adapter.

Here the names a user gives become files (presets live above :mod:`convert`): an edgesql adapter is the folder
``edgesql train`` wrote, a GGUF LoRA file, or a preset that ships one; its base, a preset or a GGUF file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_sql.cli.common import human_size, stderr_console, stdout_console
from edge_sql.errors import ModelError, UsageError

INSTALL = 'pip install torch==2.13.0 && pip install -e ".[convert]"'


def convert_command(
    source: Annotated[Optional[str], typer.Argument(
        help="The base model: a local Hugging Face model folder or a Hub repo id (owner/name); a GRPO or other full "
             "fine-tune is a model like any other. With an edgesql adapter as --lora: a preset or a .gguf file, "
             "and optional (the base the adapter was trained on, its edgesql.base, by default).",
        show_default=False, metavar="SOURCE")] = None,
    lora: Annotated[Optional[str], typer.Option("--lora", help="The LoRA adapter to merge into the base first: an "
                    "edgesql adapter (the folder edgesql train wrote, a GGUF LoRA file, or a preset that ships one, "
                    "e.g. smollm2-135m-sql), merged into its GGUF base without torch; or a PEFT adapter (a folder "
                    "or a Hub repo id) for a Hugging Face SOURCE.", show_default=False)] = None,
    quant: Annotated[str, typer.Option("--quant", help="q4_k_m, q4_0, q4_1, q8_0, or none to keep the "
                                       "full-precision file.")] = "q4_k_m",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The GGUF file to write. [default: "
                                                "NAME.QUANT.gguf in the current folder]", show_default=False)] = None,
    outtype: Annotated[Optional[str], typer.Option("--outtype", help="Precision of the full GGUF written before "
                       "quantizing: f16 or f32. [default: f16 from a Hugging Face model, f32 merging an edgesql "
                       "adapter]", show_default=False)] = None,
    protocol: Annotated[Optional[str], typer.Option("--protocol", help="The prompt protocol stored in the file "
                        "for edgesql. [default: the adapter's, else the matching preset's, else chatml-strict]",
                        show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="general.name of the model. [default: the source "
                                                "folder's or repo's name, or the adapter's]", show_default=False)] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Compare the GGUF files' next-token "
                                         "distributions with the transformers model (with an edgesql adapter: with "
                                         "the base running the adapter in llama.cpp) before finishing.")] = True,
    pre_tokenizer: Annotated[Optional[str], typer.Option("--pre-tokenizer", help="llama.cpp's name of the "
                             "tokenizer's pre-tokenizer, when it is not recognised (e.g. llama-bpe, qwen2).",
                             show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads. [default: all]",
                                                   show_default=False)] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", help="The branch, tag or commit of a Hub "
                        "SOURCE. [default: main]", show_default=False)] = None,
) -> None:
    """Convert a fine-tuned model to a quantized GGUF file that edgesql ask runs, and check it against the original:
    a Hugging Face model (Llama or Qwen2, with an optional PEFT adapter merged in), or an adapter edgesql train wrote
    merged into its GGUF base (edgesql convert --lora my-run/ --quant q4_k_m)."""

    try:
        import convert
    except ImportError:  # the package itself is missing: an install without the source tree
        raise ModelError(f"edgesql convert is not installed; install it with {INSTALL}") from None
    console = stderr_console()
    progress = lambda line: console.print(f"[dim]{line}…[/dim]")  # noqa: E731
    adapter = edgesql_adapter(lora) if lora else None
    if adapter is None:
        if source is None:
            raise missing_source(lora)
        result = convert.convert(source, lora=lora, quant=quant, out=out, outtype=outtype or "f16",
                                 protocol=protocol, name=name, verify=verify, pre_tokenizer=pre_tokenizer,
                                 threads=threads, revision=revision, progress=progress)
    else:
        for flag, value in (("--pre-tokenizer", pre_tokenizer), ("--revision", revision)):
            if value is not None:
                raise UsageError(f"{flag} is for a Hugging Face SOURCE; merging an edgesql adapter keeps the base's "
                                 "tokenizer")
        path, label = adapter
        result = convert.convert_adapter(path, source, locate=model_file, label=label, quant=quant, out=out,
                                         outtype=outtype or "f32", protocol=protocol, name=name, verify=verify,
                                         threads=threads, progress=progress)
    print_report(result, stdout_console())


def edgesql_adapter(lora: str) -> tuple[Path, str | None] | None:
    """(the GGUF LoRA file, how to record it) when ``lora`` names an edgesql adapter, None for a PEFT one: a folder
    with the ``adapter.gguf`` edgesql train writes, a .gguf file, or a preset that ships an adapter (recorded by its
    name). An existing path is read as a path before a preset's name."""
    from edge_sql.backends.llama import TRAINED_ADAPTER
    from edge_sql.preset import get_preset
    from edge_sql.weights import adapter_path

    path = Path(lora).expanduser()
    if path.is_dir():
        return (path / TRAINED_ADAPTER, None) if (path / TRAINED_ADAPTER).is_file() else None
    if path.suffix.lower() == ".gguf":
        return path, None
    if path.exists():
        return None
    preset = get_preset(lora)
    if preset is not None:
        found = adapter_path(preset)
        if found is None:
            raise UsageError(f"the preset {lora} ships no adapter; --lora takes a preset with one (e.g. "
                             "smollm2-135m-sql), a folder edgesql train wrote, or a GGUF LoRA file")
        return found, lora
    return None


def missing_source(lora: str | None) -> Exception:
    """The one-line error for a command without SOURCE whose --lora is no edgesql adapter."""
    edgesql = "the folder edgesql train wrote, a GGUF LoRA file, or a preset that ships one"
    if lora is None:
        return UsageError(f"give SOURCE, the model to convert (or --lora with an edgesql adapter: {edgesql})")
    if not Path(lora).expanduser().exists():
        return ModelError(f"no such adapter: {lora} (--lora without SOURCE takes an edgesql adapter: {edgesql})")
    return UsageError(f"{lora} is not an edgesql adapter ({edgesql}): a PEFT adapter needs SOURCE, the Hugging "
                      "Face model it was trained on")


def model_file(name: str) -> Path:
    """The GGUF file of the base ``name``: a preset's weights (a one-line error when not installed), else a path."""
    from edge_sql.preset import get_preset
    from edge_sql.weights import weights_path

    preset = get_preset(name)
    return weights_path(preset) if preset is not None else Path(name).expanduser()


def print_report(result, console) -> None:
    from rich.table import Table
    from rich.text import Text

    from edge_sql.backends.gguf_info import human_count

    rows = [
        ("file", str(result.path)),
        ("size", human_size(result.size)),
        ("model", f"{result.name} ({result.arch}, {human_count(result.parameters)} parameters)"),
        ("source", result.source + (f" + LoRA {result.lora}" if result.lora else "")),
        ("quantization", f"{result.quant} (from {result.outtype})"),
        ("fallbacks", "none" if not result.fallbacks else
         f"{len(result.fallbacks)} tensors: " + ", ".join(f"{f.tensor} {f.wanted}->{f.used} (ncols {f.ncols})"
                                                         for f in result.fallbacks)),
        ("tokenizer", f"pre-tokenizer {result.pre_tokenizer}"),
        ("protocol", result.protocol),
    ]
    if result.full is not None:
        rows.append((f"{result.outtype} vs {result.reference}", result.full.summary()))
    if result.quantized is not None:
        rows.append((f"{result.quant} vs {result.reference}", result.quantized.summary()))
    if result.exact is not None:
        rows.append((f"{result.outtype} vs dequantized base + LoRA", result.exact.summary()))
    if result.full is None:
        rows.append(("verified", "no (--no-verify)"))
    rows.append(("time", ", ".join(f"{step} {seconds:.1f} s" for step, seconds in result.seconds.items())))
    table = Table(show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, Text(value))
    console.print(table)
    sys.stdout.flush()
