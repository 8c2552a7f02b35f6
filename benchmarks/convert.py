"""Measure edgesql convert: convert+quantize time and agreement with transformers (top-1, KL) of the f16 and the
quantized files, on the test suite's tiny Llama and Qwen2 models (with a LoRA adapter) and on SmolLM2-135M
(dequantized from the demo GGUF by transformers' GGUF loader, saved, and converted again).

    python benchmarks/convert.py [--quant q4_k_m] [--threads 2] [--skip-smollm2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# this script's folder first on sys.path would make "import convert" import this file, not the package
sys.path[:] = [str(ROOT / "tests")] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]

from fixtures.tiny_hf import demo_gguf, smollm2_tokenizer, tiny_lora, tiny_model  # noqa: E402

from convert import convert  # noqa: E402


def row(label: str, result, wall: float) -> str:
    q, f = result.quantized, result.full
    return (f"| {label} | {result.quant} | {wall:.1f} s | {result.seconds.get('write', 0) + result.seconds.get('quantize', 0):.1f} s "
            f"| {f.top1:.1%} / {f.kl_mean:.1e} | {q.top1:.1%} / {q.kl_mean:.2g} | {len(result.fallbacks)} | "
            f"{result.size / 1e6:.1f} MB |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quant", default="q4_k_m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-smollm2", action="store_true")
    args = parser.parse_args()
    print("| model | quant | wall (load+write+quantize+verify) | write+quantize | f16: top-1 / KL | quant: top-1 / KL "
          "| fallbacks | size |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        tokenizer = smollm2_tokenizer(base / "tokenizer")
        for arch in ("llama", "qwen2"):
            model = tiny_model(arch, base / arch, tokenizer)
            tiny_lora(model, base / f"{arch}-lora")
            start = time.perf_counter()
            result = convert(str(base / arch), lora=base / f"{arch}-lora", quant=args.quant,
                             out=base / f"{arch}.gguf", threads=args.threads)
            print(row(f"tiny {arch} + LoRA", result, time.perf_counter() - start), flush=True)
        if not args.skip_smollm2:
            from transformers import AutoModelForCausalLM

            gguf_file = demo_gguf()
            start = time.perf_counter()
            model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
            config = model.config  # a model loaded from a GGUF file will not save itself: copy it into a plain one
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            plain = AutoModelForCausalLM.from_config(config)
            plain.load_state_dict(model.state_dict())
            plain.save_pretrained(base / "smollm2")
            tokenizer.save_pretrained(base / "smollm2")
            print(f"(SmolLM2-135M dequantized from {gguf_file.name} and saved in {time.perf_counter() - start:.1f} s)")
            for quant in dict.fromkeys((args.quant, "q8_0")):
                start = time.perf_counter()
                result = convert(str(base / "smollm2"), quant=quant, out=base / f"smollm2.{quant}.gguf",
                                 threads=args.threads)
                print(row("SmolLM2-135M", result, time.perf_counter() - start), flush=True)
                if result.fallbacks:
                    kinds = sorted({f"{f.wanted}->{f.used}" for f in result.fallbacks})
                    print(f"(fallbacks: {len(result.fallbacks)} tensors, {', '.join(kinds)})")


if __name__ == "__main__":
    main()
