"""Step 1: the source model in memory. A local folder or a Hub repo id (read with huggingface_hub, which honours
``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and the cache), loaded in float32 with transformers; a PEFT LoRA adapter, when
given, is merged into it with ``merge_and_unload``. A GRPO checkpoint is a plain full model: it needs no adapter."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from convert.errors import ConvertError

#: The Hugging Face architectures we convert, and their GGUF architecture.
SUPPORTED = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}

#: What a conversion needs from a Hub repository (weights, config, tokenizer); nothing else is downloaded.
HUB_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.py"]
#: What an adapter needs: its config and weights, and a tokenizer when it was trained with added tokens.
ADAPTER_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"]

REPO_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")


@dataclass
class Source:
    """The model to convert, merged, with its tokenizer: what the writer and the verifier read."""

    model: object  # transformers PreTrainedModel, float32, eval mode
    tokenizer: object
    folder: Path  # the base model's files
    label: str  # what the user named: a path or a repo id
    repo: str | None  # the Hub repo id, when the source is one
    arch: str  # GGUF architecture name
    lora: Path | None = None  # the adapter's files
    lora_repo: str | None = None  # its Hub repo id, when it came from the Hub


def resolve(source: str, revision: str | None = None, *, what: str = "model") -> tuple[Path, str | None]:
    """The local folder holding ``source``: the folder itself, or a Hub repo's snapshot (downloaded or cached).

    ``what`` (model or adapter) names it in errors. A Hub repository is read with huggingface_hub's
    ``snapshot_download`` into its cache; ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are read when it is called."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConvertError(f"{source} is a file; give the folder of a Hugging Face {what} or a Hub repo id")
        return path, None
    if not REPO_ID.fullmatch(source):
        raise ConvertError(f"no such folder: {source} (and it is not a Hub repo id like owner/name)")
    return download(source, revision, ADAPTER_FILES if what == "adapter" else HUB_FILES), source


def download(repo: str, revision: str | None, patterns: list[str]) -> Path:
    """``snapshot_download`` of the files of ``repo`` that match ``patterns``; its errors become one line."""
    import os

    import httpx2
    from huggingface_hub import errors, snapshot_download

    from edge_sql.paths import hub_cache_dir
    from edge_sql.paths import endpoint, offline

    where = f"{repo}" + (f" at revision {revision}" if revision and revision != "main" else "")
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns, cache_dir=hub_cache_dir(),
                                      endpoint=os.environ.get("HF_ENDPOINT") or None, local_files_only=offline()))
    except errors.GatedRepoError:
        raise ConvertError(f"{repo} is gated: accept its terms on the hub and set HF_TOKEN") from None
    except errors.RepositoryNotFoundError:
        raise ConvertError(f"the hub has no repository {repo} (or it is private: set HF_TOKEN)") from None
    except errors.RevisionNotFoundError:
        raise ConvertError(f"{repo} has no revision {revision}") from None
    except errors.LocalEntryNotFoundError as error:
        if offline():
            raise ConvertError(f"cannot get {where}: HF_HUB_OFFLINE is set and it is not in the Hugging Face "
                               "cache") from None
        cause = error.__cause__ or error
        raise ConvertError(f"cannot get {where}: {endpoint()} cannot be reached ({first_line(cause)}) and it is "
                           "not in the Hugging Face cache") from None
    except (errors.HfHubHTTPError, httpx2.HTTPError, OSError) as error:
        raise ConvertError(f"cannot download {where}: {first_line(error)}") from None


def read_config(folder: Path) -> dict:
    """The model's ``config.json``, checked to be an architecture we convert."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConvertError(f"{folder} is not a Hugging Face model: it has no config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ConvertError(f"{config_file} is not valid JSON: {error}") from None
    architectures = config.get("architectures") or []
    if not any(name in SUPPORTED for name in architectures):
        found = ", ".join(architectures) or config.get("model_type") or "none named"
        raise ConvertError(f"unsupported architecture {found} in {folder}; edgesql convert supports "
                           f"{', '.join(SUPPORTED)} (SmolLM2, Llama-3.2, deepseek-coder, Qwen2.5, SLM-SQL)")
    return config


def load(source: str, lora: str | Path | None = None, revision: str | None = None) -> Source:
    """Load ``source`` (and merge ``lora``, a folder or a Hub repo id, into it) in float32 on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_libraries()
    folder, repo = resolve(source, revision)
    config = read_config(folder)
    arch = next(SUPPORTED[name] for name in config["architectures"] if name in SUPPORTED)
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ConvertError(f"{folder} has a config.json but no weights (*.safetensors)")
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, RuntimeError) as error:
        raise ConvertError(f"cannot load {source}: {first_line(error)}") from None
    adapter = lora_repo = None
    if lora is not None:
        adapter, lora_repo = resolve(str(lora), what="adapter")
        model = merge(model, adapter)
        if (adapter / "tokenizer.json").is_file():  # an adapter trained with added tokens brings its tokenizer
            tokenizer = AutoTokenizer.from_pretrained(adapter)
    model.eval()
    return Source(model=model, tokenizer=tokenizer, folder=folder, label=source, repo=repo, arch=arch, lora=adapter,
                  lora_repo=lora_repo)


def quiet_libraries() -> None:
    """Keep transformers' own progress bars and deprecation notices off the command's stderr: the report says what
    happened, and a warning of a library's future is not the user's business."""
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"peft\..*")


def merge(model, adapter: Path):
    """The model with the PEFT LoRA adapter in ``adapter`` merged into its weights."""
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise ConvertError(f"{adapter} is not a PEFT adapter: it has no adapter_config.json")
    try:
        peft_model = PeftModel.from_pretrained(model, adapter)
    except (RuntimeError, ValueError, KeyError) as error:
        raise ConvertError(f"the adapter {adapter} does not fit this base model: {first_line(error)}") from None
    loaded = sum(1 for name, _ in peft_model.named_parameters() if "lora_" in name)
    if loaded == 0:
        raise ConvertError(f"the adapter {adapter} matched no layer of this base model")
    return peft_model.merge_and_unload()


def first_line(error: Exception) -> str:
    """The first non-empty line of an exception's message (PyTorch's run to dozens)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = next((line for line in lines if "size mismatch" in line), lines[0] if lines else type(error).__name__)
    return text[:300]
