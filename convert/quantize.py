"""Step 3: llama.cpp's own quantizer (``llama_model_quantize`` from llama-cpp-python).

A k-quant block spans 256 values of a row, so a tensor whose rows (its input dimension) are not a multiple of 256
cannot take Q4_K or Q6_K: llama.cpp falls back for that tensor (Q4_K to Q5_0, Q6_K to Q8_0, ...) and logs it.
We listen to llama.cpp's log while it runs and report each fallback."""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from pathlib import Path

from convert.errors import ConvertError

#: --quant: the llama.cpp file type each name asks for.
QUANTS = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
          "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0"}

FALLBACK = re.compile(r"(?P<tensor>\S+)\s+-\s+ncols\s+(?P<ncols>\d+)\s+not divisible by\s+(?P<block>\d+)\s+"
                      r"\(required for type\s+(?P<wanted>\w+)\)\s*->\s*falling back to\s+(?P<used>\w+)")


@dataclass(frozen=True)
class Fallback:
    """A tensor that could not take the quant type llama.cpp wanted for it."""

    tensor: str
    wanted: str
    used: str
    ncols: int


def quantize(source: Path, target: Path, quant: str, threads: int | None = None) -> list[Fallback]:
    """Quantize the GGUF file ``source`` into ``target``; returns the tensors that fell back to another type."""
    import llama_cpp
    from llama_cpp import _logger

    if quant not in QUANTS:
        raise ConvertError(f"unknown --quant {quant!r}; one of {', '.join(QUANTS)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTS[quant])
    params.nthread = threads or 0
    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def listen(level, text, user_data):
        lines.append(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(listen, ctypes.c_void_p(0))
    try:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
    log = "".join(lines)
    if status != 0:
        reason = next((line.strip() for line in log.splitlines() if "failed" in line or "error" in line.lower()),
                      f"llama_model_quantize returned {status}")
        raise ConvertError(f"quantizing to {quant} failed: {reason}")
    return [Fallback(m["tensor"], m["wanted"], m["used"], int(m["ncols"])) for m in FALLBACK.finditer(log)]
