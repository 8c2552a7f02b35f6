"""``edgesql convert``: a fine-tuned Hugging Face model (plus a LoRA adapter) to a quantized GGUF file. A thin
shell over the top-level :mod:`convert` package, which is imported only when the command runs: torch,
transformers and peft (the ``convert`` extra) never load for the other commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge_sql.cli.common import human_size, stderr_console, stdout_console
from edge_sql.errors import ModelError

INSTALL = 'pip install torch==2.13.0 && pip install -e ".[convert]"'


def convert_command(
    source: Annotated[str, typer.Argument(help="The base model: a local Hugging Face model folder or a Hub repo id "
                                          "(owner/name). A GRPO or other full fine-tune is a model like any other.",
                                          show_default=False)],
    lora: Annotated[Optional[str], typer.Option("--lora", help="A PEFT LoRA adapter to merge into the base model "
                                                 "first: a folder or a Hub repo id.", show_default=False)] = None,
    quant: Annotated[str, typer.Option("--quant", help="q4_k_m, q4_0, q8_0, or none to keep the full-precision "
                                       "file.")] = "q4_k_m",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The GGUF file to write. [default: "
                                                "NAME.QUANT.gguf in the current folder]", show_default=False)] = None,
    outtype: Annotated[str, typer.Option("--outtype", help="Precision of the full GGUF written before "
                                         "quantizing: f16 or f32.")] = "f16",
    protocol: Annotated[Optional[str], typer.Option("--protocol", help="The prompt protocol stored in the file "
                        "for edgesql. [default: the matching preset's, else chatml-strict]", show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="general.name of the model. [default: the source "
                                                "folder's or repo's name]", show_default=False)] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Compare the GGUF files' next-token "
                                         "distributions with the transformers model before finishing.")] = True,
    pre_tokenizer: Annotated[Optional[str], typer.Option("--pre-tokenizer", help="llama.cpp's name of the "
                             "tokenizer's pre-tokenizer, when it is not recognised (e.g. llama-bpe, qwen2).",
                             show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads. [default: all]",
                                                   show_default=False)] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", help="The branch, tag or commit of a Hub "
                        "SOURCE. [default: main]", show_default=False)] = None,
) -> None:
    """Convert a fine-tuned Hugging Face model (Llama or Qwen2, with an optional LoRA adapter merged in) to a
    quantized GGUF file that edgesql ask runs, and check it against the original."""

    try:
        import convert
    except ImportError:  # the package itself is missing: an install without the source tree
        raise ModelError(f"edgesql convert is not installed; install it with {INSTALL}") from None
    console = stderr_console()
    result = convert.convert(source, lora=lora, quant=quant, out=out, outtype=outtype, protocol=protocol,
                             name=name, verify=verify, pre_tokenizer=pre_tokenizer, threads=threads,
                             revision=revision,
                             progress=lambda line: console.print(f"[dim]{line}…[/dim]"))
    print_report(result, stdout_console())


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
        rows.append((f"{result.outtype} vs transformers", result.full.summary()))
    if result.quantized is not None:
        rows.append((f"{result.quant} vs transformers", result.quantized.summary()))
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
