"""``edgesql models``: list, download, inspect and remove model presets. A thin shell over :mod:`edge_sql.preset`,
:mod:`edge_sql.weights` and :mod:`edge_sql.backends.gguf_info`; huggingface_hub and gguf are imported only inside the commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from edge_sql.cli.common import human_size, reports_errors, stderr_console, stdout_console
from edge_sql.errors import UsageError

models_app = typer.Typer(
    help="List, download, inspect and remove models (the presets in models/).",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

NameArg = Annotated[str, typer.Argument(help="A preset name (edgesql models list shows them).", show_default=False)]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Output: table or json.")]
FORMATS = ("table", "json")


def say(message: str) -> None:
    """One line of news on stderr (stdout stays data)."""
    sys.stderr.write(f"edgesql: {message}\n")
    sys.stderr.flush()


def chosen_model(model: str | None, *, config: bool = True, threads: int | None = None) -> str:
    """The model that ``ask``, ``shell`` and ``eval`` run (:func:`edge_sql.weights.choose_model`: ``--model``, else
    ``EDGESQL_MODEL``, else the config file's when ``config``, else the best installed preset, else
    smollm2-135m-sql), named once on stderr unless ``--model`` named it. ``eval`` passes ``config=False``: it reads
    no config file. With ``threads`` not pinned (None), the same line says when busy cores leave a local model fewer
    threads: ``model smollm2-135m-sql (default), 1 thread: 1 of 2 cores busy`` (nothing is said for a model that
    ``--model`` named)."""
    from edge_sql.weights import choose_model

    choice = choose_model(model, config=config)
    if choice.notice:  # a model --model named is not named again, nor its threads: stderr stays for what went wrong
        say(", ".join(part for part in (choice.notice, threads_notice(choice.model, threads)) if part))
    return choice.model


def threads_notice(model: str, threads: int | None) -> str:
    """Why a local model runs on fewer threads than this process may use ("" when it does not, or they are
    pinned, or the model is a server's)."""
    if threads is not None or model.lower().startswith(("http://", "https://")):
        return ""
    from edge_sql.backends.cores import free_cores

    cores = free_cores()
    return f"{cores.threads} thread{'s' if cores.threads > 1 else ''}: {cores.note}" if cores.note else ""


def require_preset(name: str):
    from edge_sql.preset import get_preset, load_presets

    preset = get_preset(name)
    if preset is None:
        raise UsageError(f"unknown model {name!r}; the presets are: {', '.join(load_presets())}")
    return preset


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format")


def describe_preset(preset, default: str) -> dict:
    """One row of ``models list``: what the preset is, whether it is here, and what it costs and gives."""
    from edge_sql.weights import find_weights

    path = find_weights(preset)
    return {
        "name": preset.name,
        "default": preset.name == default,
        "installed": path is not None,
        "path": str(path) if path else None,
        "size": path.stat().st_size if path else preset.size,
        "download_size": preset.size,
        "params": preset.params,
        "quantization": preset.quantization,
        "protocol": preset.protocol,
        "license": preset.license,
        "accuracy": preset.accuracy,
        "accuracy_source": preset.accuracy_source,
        "kind": preset.kind,
        "repo": preset.source.get("repo") or preset.source.get("package"),
        "file": preset.source.get("file"),
        "description": preset.description,
        "verified": preset.verified,
    }


def print_wide(table, width: int) -> None:
    """Print a table on stdout; piped into a file or another program it gets ``width`` columns, not 80."""

    console = stdout_console()
    if not console.is_terminal:
        console.width = max(console.width, width)
    console.print(table)


@models_app.command("list")
@reports_errors
def list_models(fmt: FormatOpt = "table") -> None:
    """List the presets: size on disk or to download, installed or not, and their published accuracy."""
    from rich.table import Table
    from rich.text import Text

    from edge_sql.paths import hub_cache_dir
    from edge_sql.preset import load_presets
    from edge_sql.weights import choose_model

    check_format(fmt)
    choice = choose_model(None, config=True)
    default = choice.model
    rows = sorted((describe_preset(p, default) for p in load_presets().values()), key=lambda r: (r["download_size"],
                                                                                                   r["name"]))
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    who = ("ask and shell (the config file's; eval reads none)" if choice.from_config_file
           else "ask, shell and eval")
    table = Table(caption=f"* run by {who} without --model · downloads go to {hub_cache_dir()}",
                  caption_justify="left")
    for column in ("name", "size", "installed", "params", "quant", "protocol", "license", "published accuracy"):
        table.add_column(column, overflow="fold")
    for row in rows:
        if row["installed"]:
            state = "yes"
        else:
            state = {"convert": "no (convert)", "package": "no (pip)"}.get(row["kind"], "no")
        cells = (row["name"] + (" *" if row["default"] else ""), human_size(row["size"]), state, row["params"],
                 row["quantization"], row["protocol"], row["license"], row["accuracy"])
        table.add_row(*map(Text, cells))
    print_wide(table, 160)


@models_app.command("pull")
@reports_errors
def pull_model(
    name: NameArg,
    convert: Annotated[bool, typer.Option("--convert", help="For a preset published as safetensors: download them "
                                          "and convert them to the preset's GGUF file here (needs the convert "
                                          "extra; gigabytes and minutes).")] = False,
) -> None:
    """Download a preset's GGUF file into the Hugging Face cache (resumable), verify its SHA-256, print its path.
    With --convert, a preset published as safetensors is downloaded and converted to GGUF instead."""
    from edge_sql.paths import hub_cache_dir, hub_repo_dir
    from edge_sql.weights import converted_path
    from edge_sql.weights import pull

    preset = require_preset(name)
    if convert and preset.kind != "convert":
        raise UsageError(f"--convert is for presets published as safetensors; {preset.name} is a GGUF file already: "
                         f"edgesql models pull {preset.name}")
    terms = f"license: {preset.license}"
    if preset.restricted:
        terms += " - non-commercial use only; read the terms before using it"
    say(f"{preset.name}: {preset.description}; {terms}")
    source = preset.source
    if preset.kind == "gguf":
        say(f"getting {source['file']} (about {human_size(preset.size)}) from {source['repo']} into {hub_cache_dir()}")
    elif convert and not converted_path(preset).is_file():
        say(f"getting {source['repo']} (about {human_size(preset.size)} of safetensors) into {hub_cache_dir()} and "
            f"converting it to {preset.quantization} at {converted_path(preset)}; this takes minutes")
    pulled = pull(preset, progress=True, convert=convert)
    if pulled.conversion is not None:
        from edge_sql.cli.convert import print_report

        print_report(pulled.conversion, stderr_console())
        say(f"the safetensors stay in {hub_repo_dir(source['repo'])} for another conversion; remove that folder to "
            "free the space")
    sys.stdout.write(f"{pulled.path}\n")
    if pulled.conversion is not None:
        checked = "verified against the transformers model"
    elif pulled.checked_against:
        checked = f"sha256 checked against {pulled.checked_against}"
    else:
        checked = "no published sha256 to check against"
    state = "converted" if pulled.conversion is not None else "downloaded" if pulled.downloaded else \
        "already installed"
    say(f"{preset.name} {state} ({checked}); ask with: edgesql ask --db DB --model {preset.name} QUESTION")


@models_app.command("info")
@reports_errors
def info(
    name_or_path: Annotated[str, typer.Argument(help="An installed preset's name, the path of a GGUF file, or the "
                                                "URL of an OpenAI-compatible server.", show_default=False)],
    fmt: FormatOpt = "table",
) -> None:
    """Show what a GGUF file says about itself (architecture, size, quantization, context, chat template,
    tokenizer), without loading its weights; for a server's URL, what its /v1/models says and how edgesql asks it."""

    if name_or_path.lower().startswith(("http://", "https://")):
        return server_info(name_or_path, fmt)

    from edge_sql.backends.gguf_info import human_count, read_info
    from edge_sql.preset import GENERIC, get_preset
    from edge_sql.weights import weights_path
    from edge_sql.protocols import get_protocol, template_speaks

    check_format(fmt)
    preset = get_preset(name_or_path)
    path = weights_path(preset) if preset is not None else Path(name_or_path).expanduser()
    preset = preset or GENERIC
    found = read_info(path)
    chat = get_protocol(preset.protocol).chat
    if not found.chat_template:
        say(f"warning: {path.name} has no chat template; edgesql will ask it in {chat} ({preset.protocol})")
    elif not template_speaks(found.chat_template, preset.protocol):
        say(f"warning: the chat template of {path.name} is not {chat}, which the protocol {preset.protocol} "
            f"writes; answers may be poor")
    if fmt == "json":
        data = found.to_dict()
        data["preset"] = None if preset is GENERIC else preset.name
        data["protocol"] = preset.protocol
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    template = found.chat_template
    if len(template) > 160:
        template = template[:157] + f"... ({len(found.chat_template)} characters; --format json shows it all)"
    rows = [
        ("file", str(found.path)),
        ("size", f"{human_size(found.size)} ({found.size:,} bytes)"),
        ("architecture", found.architecture),
        ("name", found.name),
        ("parameters", f"{human_count(found.parameters)} ({found.parameters:,})"),
        ("quantization", found.file_type),
        ("tensor types", ", ".join(f"{kind} x{count}" for kind, count in found.tensor_types.items())),
        ("context length", f"{found.context_length:,}" if found.context_length else "-"),
        ("layers", str(found.layers or "-")),
        ("embedding length", str(found.embedding_length or "-")),
        ("tokenizer", f"{found.tokenizer} (pre: {found.pre_tokenizer or '-'}), {found.vocab_size:,} tokens, "
                      f"bos {found.bos_token or '-'}, eos {found.eos_token or '-'}"),
        ("chat template", template or "-"),
        *((key.removeprefix("edgesql."), str(value)) for key, value in found.edgesql.items()),
        ("asked with", f"{preset.protocol} ({chat})" + ("" if preset is GENERIC else f", preset {preset.name}")),
    ]
    print_rows(rows)


def server_info(url: str, fmt: str) -> None:
    """``models info URL``: the models a server lists, the one edgesql asks, with which preset, context and
    tokenizer."""

    from edge_sql.backends.server import ServerModel

    check_format(fmt)
    found = ServerModel(url).info()
    if fmt == "json":
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    ways = {"extras": "the server's /extras/tokenize", "tokenize": "the server's /tokenize",
            "estimate": "estimated: 1 token per 3 characters (the server cannot tokenize)"}
    rows = [("server", found["url"]), ("models", ", ".join(found["models"]) or "-"), ("asked", found["model"]),
            ("asked with", f"{found['protocol']}" + (f", preset {found['preset']}" if found["preset"] else
                                                      " (generic ChatML; ?preset=NAME in the URL chooses one)")),
            ("context length", f"{found['context_length']:,}"), ("tokens counted by", ways[found["tokenizer"]]),
            ("API key", found["api_key"])]
    print_rows(rows)


@models_app.command("rm")
@reports_errors
def rm(name: NameArg) -> None:
    """Remove a downloaded preset's GGUF file from the cache."""
    from edge_sql.weights import installed
    from edge_sql.weights import remove

    preset = require_preset(name)
    if preset.kind != "package" and not installed(preset):
        say(f"{preset.name} is not installed; nothing to remove")
        return
    freed = remove(preset)
    say(f"removed {preset.name} ({human_size(freed)} freed)")


def print_rows(rows: list[tuple[str, str]]) -> None:
    """Name–value rows as a borderless two-column table (``models info``)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, Text(value))
    print_wide(table, 120)
