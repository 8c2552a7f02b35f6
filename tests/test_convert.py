"""edgesql convert: a fine-tuned Hugging Face model (base + LoRA adapter) becomes a quantized GGUF file that
llama.cpp runs and that computes what the merged transformers model computes.

The models are tiny random Llama and Qwen2 bodies with SmolLM2's real tokenizer (tests/fixtures/tiny_hf.py). These
tests need the convert extra (torch, transformers, peft) and the demo model's package for the tokenizer: without
them they skip, except under CI (the CI variable set), where skipping would hide a broken conversion, so they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT
from edge_sql.cli import app
from fixtures.tiny_hf import missing, needs_extra, session_tokenizer, tiny_lora, tiny_model

MISSING = missing()
runner = CliRunner()
ARCHS = ("llama", "qwen2")


def python(code: str, **env) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (from the repository root)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, **env})


# --- the heavy packages stay out of everything but convert -----------------------------------------------------------

def test_importing_the_cli_loads_no_torch_transformers_or_peft():
    found = python("import sys, edge_sql.cli, edge_sql.cli.convert; "
                   "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def test_without_the_extra_convert_says_in_one_line_how_to_install_it(tmp_path):
    blocked = python("import sys; sys.modules['torch'] = None; from edge_sql.cli import main; "
                     f"sys.argv = ['edgesql', 'convert', {str(tmp_path)!r}]; main()")
    assert blocked.returncode == 4
    assert blocked.stderr.count("\n") == 1
    assert 'pip install torch==2.13.0 && pip install -e ".[convert]"' in blocked.stderr


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI must have every optional part installed")
def test_ci_installs_the_convert_extra():
    assert MISSING == []


# --- the round trip ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return session_tokenizer(tmp_path_factory)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer):
    """For each architecture: a base model folder and a LoRA adapter folder trained on it."""
    made = {}
    for arch in ARCHS:
        folder = tmp_path_factory.mktemp(arch)
        base = tiny_model(arch, folder / "base", tokenizer)
        tiny_lora(base, folder / "lora")
        made[arch] = (folder / "base", folder / "lora")
    return made


@pytest.fixture(scope="module")
def converted(trained, tmp_path_factory):
    """Each base + adapter converted to Q4_K_M through the library, verified."""
    from convert import convert

    out = tmp_path_factory.mktemp("gguf")
    return {arch: convert(str(base), lora=lora, out=out / f"{arch}.q4_k_m.gguf", threads=2)
            for arch, (base, lora) in trained.items()}


@needs_extra
@pytest.mark.parametrize("arch", ARCHS)
def test_the_full_precision_file_computes_what_transformers_computes(converted, arch):
    full = converted[arch].full
    assert full.tokenizer_agrees
    assert full.top1 >= 0.98  # f16 rounding may flip a near-tie
    assert full.kl_mean < 1e-4


@needs_extra
@pytest.mark.parametrize("arch", ARCHS)
def test_the_4_bit_file_stays_close(converted, arch):
    result = converted[arch]
    assert result.quant == "q4_k_m" and result.fallbacks == []  # 256-wide rows fill whole k-quant blocks
    assert result.quantized.tokenizer_agrees
    assert result.quantized.top1 >= 0.25  # random weights have small margins; a real model agrees far more
    assert result.quantized.kl_mean < 0.5


@needs_extra
@pytest.mark.parametrize("arch", ARCHS)
def test_the_adapter_is_merged_into_the_file(trained, converted, arch):
    """The merged weights differ from the base's, and the file follows the merged model, not the base."""
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM

    from convert.source import load
    from convert.verify import compare, reference_logits

    base_folder, lora = trained[arch]
    merged = load(str(base_folder), lora)
    base = AutoModelForCausalLM.from_pretrained(base_folder)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not base.state_dict()[name].equal(merged.model.state_dict()[name])
    against_base = compare(reference_logits(base, merged.tokenizer), merged.tokenizer, converted[arch].path, 2)
    assert against_base.kl_mean > 3 * converted[arch].quantized.kl_mean
    llm = Llama(model_path=str(converted[arch].path), n_ctx=128, verbose=False, seed=0, n_threads=2)
    assert isinstance(llm("SELECT", max_tokens=8, temperature=0)["choices"][0]["text"], str)  # and it generates
    llm.close()


@needs_extra
def test_tokenizer_chat_template_and_metadata_survive(converted, tokenizer, trained):
    from edge_sql.backends.gguf_info import read_info

    info = read_info(converted["llama"].path)
    assert (info.architecture, info.file_type, info.name) == ("llama", "Q4_K_M", "base-lora")
    assert info.chat_template == tokenizer.chat_template
    assert (info.bos_token, info.eos_token, info.vocab_size) == ("<|im_start|>", "<|im_end|>", len(tokenizer))
    assert info.edgesql == {"edgesql.source": str(trained["llama"][0].resolve()), "edgesql.protocol": "chatml-strict",
                            "edgesql.lora": str(trained["llama"][1].resolve())}
    shown = runner.invoke(app, ["models", "info", str(converted["llama"].path)])
    assert "protocol" in shown.stdout and "lora" in shown.stdout


@needs_extra
def test_the_command_writes_q8_0_and_prints_the_report(trained, tmp_path):
    out = tmp_path / "tiny.q8_0.gguf"
    result = runner.invoke(app, ["convert", str(trained["qwen2"][0]), "--quant", "q8_0", "--out", str(out),
                                 "--name", "tiny", "--protocol", "chatml-strict", "--no-verify", "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert "q8_0" in result.stdout and "no (--no-verify)" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.q8_0.gguf"]


@needs_extra
def test_tensors_too_narrow_for_k_quants_are_reported(tokenizer, tmp_path):
    """A 64-wide model cannot fill 256-value k-quant blocks: llama.cpp picks other types, and we list them."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from convert import convert
    from convert.quantize import quantize

    narrow = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    AutoModelForCausalLM.from_config(narrow).save_pretrained(tmp_path / "narrow")
    tokenizer.save_pretrained(tmp_path / "narrow")
    full = convert(str(tmp_path / "narrow"), quant="none", out=tmp_path / "narrow.f16.gguf", verify=False).path
    fallbacks = quantize(full, tmp_path / "narrow.q4_k_m.gguf", "q4_k_m", threads=2)
    assert {(f.tensor, f.wanted, f.used, f.ncols) for f in fallbacks} >= {("blk.0.attn_q.weight", "q4_K", "q5_0", 64)}


# --- bad input: one line, exit 4, nothing left behind ------------------------------------------------------------------

def fails(args: list[str], out_dir: Path) -> str:
    result = runner.invoke(app, ["convert", *args, "--out", str(out_dir / "x.gguf")])
    assert result.exit_code == 4, result.output
    assert list(out_dir.iterdir()) == []
    message = result.stderr.strip().splitlines()[-1]  # after the progress lines
    assert message.startswith("edgesql: ")
    return message


@needs_extra
def test_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "out").mkdir()
    assert "no config.json" in fails([str(tmp_path / "notes")], tmp_path / "out")


@needs_extra
def test_an_unsupported_architecture_names_the_supported_ones(tmp_path):
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    (tmp_path / "out").mkdir()
    message = fails([str(tmp_path / "gpt2")], tmp_path / "out")
    assert "GPT2LMHeadModel" in message and "LlamaForCausalLM" in message and "Qwen2ForCausalLM" in message


@needs_extra
def test_an_adapter_trained_on_another_base(trained, tokenizer, tmp_path):
    other = tmp_path / "other"
    tiny_model("qwen2", other, tokenizer, kv_heads=4)  # k_proj and v_proj have other shapes
    (tmp_path / "out").mkdir()
    message = fails([str(other), "--lora", str(trained["llama"][1])], tmp_path / "out")
    assert "does not fit" in message


@needs_extra
def test_no_disk_space_leaves_nothing_half_written(trained, tmp_path):
    """The output may grow to 5 MB only (the f16 file needs about 25): the write fails, the partial file goes."""
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (5_000_000, 5_000_000)); "
            f"sys.argv = ['edgesql', 'convert', {str(trained['llama'][0])!r}, '--out', {str(tmp_path / 'x.gguf')!r}]; "
            "from edge_sql.cli import main; main()")
    result = python(code)
    assert result.returncode == 4, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("edgesql: cannot write")
    assert list(tmp_path.iterdir()) == []
