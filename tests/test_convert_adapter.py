"""edgesql convert --lora ADAPTER: an adapter ``edgesql train`` wrote (a GGUF LoRA file) is merged into its GGUF base
and quantized, with no torch at all, and the merged file computes what llama.cpp computes applying the adapter at
run time.

    edgesql convert --lora my-run/ --quant q4_1 --out my-run.q4_1.gguf      # the base: the adapter's edgesql.base
    edgesql convert base.gguf --lora adapter.gguf --quant q8_0              # SOURCE given: that base instead
    edgesql convert --lora smollm2-135m-sql --quant q4_k_m                  # a preset that ships an adapter

The base is a tiny random Llama written with the ``gguf`` package (tests/fixtures/tiny_gguf.py's tokenizer and
shape, weights drawn larger so that each position has a clear favourite), as f16 and as Q4_1 like the demo model;
the adapter is written by ``edge_sql.train.adapter.write_adapter`` with random non-zero A and B, as after training.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, ROOT
from edge_sql.cli import app
from fixtures.tiny_gguf import CONFIG, add_llama_shape, add_tokenizer, tokenizer, write_out

runner = CliRunner()
SHAPES = {"self_attn.q_proj": (64, 64), "self_attn.k_proj": (32, 64), "self_attn.v_proj": (32, 64),
          "self_attn.o_proj": (64, 64), "mlp.gate_proj": (128, 64), "mlp.up_proj": (128, 64),
          "mlp.down_proj": (64, 128)}  # (outputs, inputs) of each projection of the tiny Llama


def write_base(path: Path, *, width: int = CONFIG["n_embd"], seed: int = 0, scale: float = 0.15) -> Path:
    """A tiny random Llama as an f16 GGUF file (two layers, ``width`` wide, the tiny byte-level tokenizer)."""
    import gguf

    rng = np.random.default_rng(seed)
    ffn, vocab, layers = 2 * width, tokenizer.n_vocab, CONFIG["n_layer"]
    kv = width // CONFIG["n_head"] * CONFIG["n_head_kv"]

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float16)

    def norm(n):
        return (1 + rng.standard_normal(n) * 0.02).astype(np.float32)

    tensors = [("token_embd.weight", matrix(vocab, width))]
    for i in range(layers):
        tensors += [(f"blk.{i}.attn_norm.weight", norm(width)), (f"blk.{i}.attn_q.weight", matrix(width, width)),
                    (f"blk.{i}.attn_k.weight", matrix(kv, width)), (f"blk.{i}.attn_v.weight", matrix(kv, width)),
                    (f"blk.{i}.attn_output.weight", matrix(width, width)), (f"blk.{i}.ffn_norm.weight", norm(width)),
                    (f"blk.{i}.ffn_gate.weight", matrix(ffn, width)), (f"blk.{i}.ffn_up.weight", matrix(ffn, width)),
                    (f"blk.{i}.ffn_down.weight", matrix(width, ffn))]
    tensors.append(("output_norm.weight", norm(width)))
    writer = gguf.GGUFWriter(str(path), arch="llama")
    try:
        writer.add_name("tiny base")
        writer.add_type("model")
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        add_llama_shape(writer, vocab=vocab, context=512, width=width, layers=layers, ffn=ffn)
        add_tokenizer(writer, "smollm")
        write_out(writer, tensors)
    finally:
        writer.close()
    return path


def write_lora(path: Path, *, base: str | None, seed: int = 1, rank: int = 4, shapes=SHAPES) -> Path:
    """A rank-``rank`` GGUF LoRA adapter on every projection of both layers, as ``edgesql train`` writes it."""
    from edge_sql.train.adapter import write_adapter

    rng = np.random.default_rng(seed)
    tensors = {f"model.layers.{i}.{module}": (rng.standard_normal((rank, inputs)) * 0.1,
                                              rng.standard_normal((outputs, rank)) * 0.1)
               for i in range(CONFIG["n_layer"]) for module, (outputs, inputs) in shapes.items()}
    metadata = {"edgesql.protocol": "chatml-strict", **({"edgesql.base": base} if base else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_adapter(path, tensors, arch="llama", blocks=CONFIG["n_layer"], alpha=8, name="tiny SQL LoRA",
                  metadata=metadata)
    return path


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    """The tiny base as f16, and quantized to Q4_1 (what the demo model ships as) by llama.cpp."""
    from convert.quantize import quantize

    folder = tmp_path_factory.mktemp("bases")
    f16 = write_base(folder / "tiny.f16.gguf")
    quantize(f16, folder / "tiny.q4_1.gguf", "q4_1", threads=2)
    return {"f16": f16, "q4_1": folder / "tiny.q4_1.gguf"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, bases) -> Path:
    """The folder ``edgesql train`` leaves: ``adapter.gguf``, trained on the Q4_1 base."""
    folder = tmp_path_factory.mktemp("my-run")
    write_lora(folder / "adapter.gguf", base=str(bases["q4_1"]))
    return folder


def convert(*args) -> "object":
    return runner.invoke(app, ["convert", "--threads", "2", *map(str, args)], env={"COLUMNS": "160"})


def metadata(path: Path) -> dict:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


# --- the merge computes what llama.cpp computes with the adapter ----------------------------------------------------

@pytest.mark.parametrize("kind", ["f16", "q4_1"])
def test_the_merged_file_computes_what_the_base_computes_with_the_adapter(bases, run, tmp_path, kind):
    """Dequantized base + alpha/rank * B @ A, in float32: the logits llama.cpp gives applying the adapter at run
    time over the same base, up to llama.cpp's own rounding (an f16 base exactly; over Q4_1 it rounds the matrices'
    inputs to 8 bits), while the adapter itself moves them by far more."""
    from convert import MERGE_KL_LIMIT, convert_adapter
    from convert.verify import PROMPTS, gguf_logits

    result = convert_adapter(run / "adapter.gguf", str(bases[kind]), quant="none", out=tmp_path / "merged.gguf",
                             threads=2)
    assert result.quant == result.outtype == "f32" and result.quantized is None
    assert result.full.tokenizer_agrees and result.full.top1 >= 0.95
    assert result.full.kl_mean < (1e-5 if kind == "f16" else MERGE_KL_LIMIT)
    if kind == "q4_1":  # checked against the dequantized base running the adapter too: the same math
        assert result.exact.kl_mean < 1e-5 and result.exact.top1 == 1.0
    else:  # the base itself is full precision: that was the exact check
        assert result.exact is None

    ids, plain = gguf_logits(bases[kind], list(PROMPTS), 2)
    _, adapted = gguf_logits(bases[kind], list(PROMPTS), 2, ids=ids, lora=run / "adapter.gguf")
    _, merged = gguf_logits(result.path, list(PROMPTS), 2, ids=ids)
    for before, want, got in zip(plain, adapted, merged):
        moved = np.abs(want - before).max()  # what the adapter does to the logits
        assert moved > 1.0
        assert np.abs(got - want).max() < moved / (200 if kind == "f16" else 10)  # the merged file does the same


def test_the_merged_file_keeps_the_base_metadata_and_records_its_making(bases, run, tmp_path):
    from convert import convert_adapter

    result = convert_adapter(run / "adapter.gguf", quant="q8_0", out=tmp_path / "sql.q8_0.gguf", label="my-run",
                             verify=False, threads=2)
    base, merged = metadata(bases["q4_1"]), metadata(result.path)
    assert merged["general.name"] == "my-run" and merged["edgesql.lora"] == "my-run"
    assert merged["edgesql.source"] == str(bases["q4_1"])  # from the adapter's edgesql.base
    assert merged["edgesql.protocol"] == "chatml-strict"
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                "tokenizer.chat_template", "tokenizer.ggml.eos_token_id", "llama.attention.head_count_kv"):
        assert merged[key] == base[key], key
    assert merged["general.file_type"] == 7  # MOSTLY_Q8_0, set by llama.cpp's quantizer

    from gguf import GGUFReader

    types = {t.name: t.tensor_type.name for t in GGUFReader(str(result.path)).tensors}
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.weight"] == "Q8_0"


def test_no_torch_is_needed(bases, run, tmp_path):
    """The merge runs where only the runtime (gguf, numpy, llama-cpp-python) is installed."""
    code = ("import sys; sys.modules.update(torch=None, transformers=None, peft=None); "
            f"sys.argv = ['edgesql', 'convert', '--lora', {str(run)!r}, '--quant', 'q4_0', '--out', "
            f"{str(tmp_path / 'm.gguf')!r}, '--threads', '2']; from edge_sql.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.gguf").is_file()


# --- the command -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("quant", ["q4_1", "q8_0"])
def test_the_command_merges_the_run_folder_and_ask_runs_the_file(run, bases, tmp_path, quant):
    """No SOURCE: the adapter's edgesql.base is the base; the report says what it was checked against."""
    out = tmp_path / f"my-run.{quant}.gguf"
    result = convert("--lora", run, "--quant", quant, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"{quant} (from f32)" in result.stdout
    assert f"{quant} vs base + LoRA" in result.stdout and "KL mean" in result.stdout
    assert "f32 vs dequantized base + LoRA" in result.stdout  # the Q4_1 base, dequantized: the exact check
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left

    asked = runner.invoke(app, ["ask", "--db", str(EXAMPLES / "shop.sqlite"), "--model", str(out), "-n", "2",
                                "--threads", "2", "--format", "json", "How many customers are there?"])
    assert asked.exit_code in (0, 5), asked.output  # a random model may write nothing valid; it must run
    assert "Traceback" not in asked.output


def test_a_given_source_overrides_the_adapters_base(bases, tmp_path):
    adapter = write_lora(tmp_path / "moved.lora.gguf", base=str(tmp_path / "gone" / "base.gguf"))
    result = convert(bases["f16"], "--lora", adapter, "--quant", "q8_0", "--out", tmp_path / "out.gguf")
    assert result.exit_code == 0, result.output
    assert metadata(tmp_path / "out.gguf")["edgesql.source"] == str(bases["f16"])


def test_a_preset_with_an_adapter_names_its_file_and_its_base():
    """``--lora smollm2-135m-sql``: the adapter in the preset registry, over the demo model (when installed)."""
    from edge_sql.cli.convert import edgesql_adapter, model_file
    from edge_sql.preset import get_preset
    from edge_sql.weights import adapter_path, find_weights

    path, label = edgesql_adapter("smollm2-135m-sql")
    assert path == adapter_path(get_preset("smollm2-135m-sql")) and label == "smollm2-135m-sql"
    assert metadata(path)["edgesql.base"] == "smollm2-135m"
    if find_weights(get_preset("smollm2-135m")) is not None:
        assert model_file("smollm2-135m").name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert model_file("some/base.gguf") == Path("some/base.gguf")


def test_a_peft_adapter_still_takes_the_hugging_face_path(tmp_path):
    from edge_sql.cli.convert import edgesql_adapter

    (tmp_path / "peft").mkdir()
    (tmp_path / "peft" / "adapter_config.json").write_text("{}")
    assert edgesql_adapter(str(tmp_path / "peft")) is None
    assert edgesql_adapter("owner/peft-adapter") is None  # a Hub repo id


# --- bad input: one line, its exit code, nothing left behind ---------------------------------------------------------

def fails(args: list, out_dir: Path, code: int = 4) -> str:
    out_dir.mkdir(exist_ok=True)
    result = convert(*args, "--out", out_dir / "x.gguf")
    assert result.exit_code == code, result.output
    assert list(out_dir.iterdir()) == []
    assert "Traceback" not in result.output
    message = result.stderr.strip().splitlines()[-1]  # after the progress lines
    assert message.startswith("edgesql: ")
    return message


def test_a_missing_adapter(tmp_path):
    assert "no such adapter: " in fails(["--lora", tmp_path / "my-rl/"], tmp_path / "out")


def test_an_adapter_without_its_base_and_no_source(tmp_path):
    adapter = write_lora(tmp_path / "a.gguf", base=None)
    assert "names no base model" in fails(["--lora", adapter], tmp_path / "out")


def test_a_base_that_is_not_there(tmp_path):
    adapter = write_lora(tmp_path / "a.gguf", base=str(tmp_path / "gone.gguf"))
    assert f"no such base model file: {tmp_path / 'gone.gguf'}" in fails(["--lora", adapter], tmp_path / "out")


def test_an_adapter_trained_on_another_base(bases, tmp_path):
    wide = {module: (2 * rows, 2 * cols) for module, (rows, cols) in SHAPES.items()}
    adapter = write_lora(tmp_path / "a.gguf", base="wide-base", shapes=wide)
    message = fails([bases["f16"], "--lora", adapter], tmp_path / "out")
    assert "does not fit" in message and "64x64 there and 128x128 in the adapter" in message
    assert "it was trained on wide-base" in message


def test_a_model_file_is_not_an_adapter(bases, tmp_path):
    assert "is not a GGUF LoRA adapter" in fails(["--lora", bases["f16"]], tmp_path / "out")


def test_an_output_folder_that_is_not_there(run, tmp_path):
    result = convert("--lora", run, "--out", tmp_path / "no" / "such" / "x.gguf")
    assert result.exit_code == 4 and "cannot write" in result.stderr and "no such folder" in result.stderr


def test_an_output_folder_that_cannot_be_written(run, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    (tmp_path / "ro").mkdir(mode=0o555)
    result = convert("--lora", run, "--out", tmp_path / "ro" / "x.gguf")
    assert result.exit_code == 4 and "cannot write" in result.stderr


@pytest.mark.parametrize("args, code, says", [
    ([], 2, "give SOURCE"),
    (["--lora", "smollm2-135m"], 2, "ships no adapter"),
])
def test_usage_errors(tmp_path, args, code, says):
    assert says in fails(args, tmp_path / "out", code)


def test_a_peft_adapter_without_source(tmp_path):
    (tmp_path / "peft").mkdir()
    (tmp_path / "peft" / "adapter_config.json").write_text("{}")
    assert "a PEFT adapter needs SOURCE" in fails(["--lora", tmp_path / "peft"], tmp_path / "out", 2)


def test_a_merge_that_does_not_agree_fails_and_leaves_nothing(run, tmp_path, monkeypatch):
    """The check bites: a merge that adds the adapter twice is refused, and its files are removed."""
    from convert import ConvertError, convert_adapter, merge

    added = merge.merged_tensor

    def twice(tensor, pair, alpha, base_label):
        return added(tensor, pair, 2 * alpha, base_label)

    monkeypatch.setattr(merge, "merged_tensor", twice)
    (tmp_path / "out").mkdir()
    with pytest.raises(ConvertError, match="verification failed: the merged f32 GGUF does not compute"):
        convert_adapter(run / "adapter.gguf", quant="q8_0", out=tmp_path / "out" / "x.gguf", threads=2)
    assert list((tmp_path / "out").iterdir()) == []
