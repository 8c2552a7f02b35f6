"""Step 4: does the GGUF file compute what it should? Against the merged transformers model (a Hugging Face
source), or against its GGUF base with the adapter applied at run time by llama.cpp (an edgesql adapter merged in
GGUF space, :mod:`convert.merge`).

A few fixed prompts (plain text, SQL, and a chat turn with its special tokens) are tokenized by the reference's
tokenizer; both models read the same token ids and we compare their next-token distributions at every position:
top-1 agreement, and the Kullback-Leibler divergence KL(reference || GGUF) in nats. llama.cpp's own tokenization
of the same texts is compared too: a wrong pre-tokenizer or lost special tokens show there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROMPTS = (
    "The capital of France is",
    "SELECT name, COUNT(*) FROM customers WHERE country = 'France' GROUP BY name ORDER BY 2 DESC LIMIT 10;",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
)
CHAT = "How many customers are there in the table customers(id, name, city)?"


@dataclass(frozen=True)
class Agreement:
    """How closely a GGUF file follows the reference model, over every position of the fixed prompts."""

    positions: int
    top1: float  # share of positions where both pick the same most likely next token
    kl_mean: float  # mean KL(reference || GGUF), nats
    kl_max: float
    tokenizer_agrees: bool  # llama.cpp tokenizes the prompts to the same ids as the reference

    def summary(self) -> str:
        return (f"top-1 {self.top1:.1%} of {self.positions} positions, KL mean {self.kl_mean:.2g} "
                f"max {self.kl_max:.2g} nats, tokenizer {'agrees' if self.tokenizer_agrees else 'DIFFERS'}")


def prompts(tokenizer) -> list[str]:
    """The fixed prompts, the last one rendered with the model's chat template when it has one."""
    texts = list(PROMPTS)
    if getattr(tokenizer, "chat_template", None):
        texts.append(tokenizer.apply_chat_template([{"role": "user", "content": CHAT}], tokenize=False,
                                                   add_generation_prompt=True))
    return texts


def gguf_prompts(metadata: dict[str, str]) -> list[str]:
    """The fixed prompts for a GGUF model, the last one rendered with the chat template in its ``metadata`` (as
    llama-cpp-python renders it) when it has one that renders."""
    texts = list(PROMPTS)
    template = metadata.get("tokenizer.chat_template")
    if template:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        try:
            texts.append(Jinja2ChatFormatter(template, eos_token="", bos_token="")(
                messages=[{"role": "user", "content": CHAT}]).prompt)
        except Exception:  # a template llama-cpp-python's renderer cannot run: the plain prompts still compare
            pass
    return texts


def reference_logits(model, tokenizer) -> list[tuple[list[int], object]]:
    """(token ids, logits per position) of the transformers model for each fixed prompt."""
    import torch

    out = []
    with torch.no_grad():
        for text in prompts(tokenizer):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            logits = model(torch.tensor([ids])).logits[0].double().numpy()
            out.append((ids, logits))
    return out


def gguf_logits(path: Path, texts: list[str], threads: int | None = None, *, ids: list[list[int]] | None = None,
                lora: Path | None = None) -> tuple[list[list[int]], list[object]]:
    """Run the GGUF file at ``path`` (with the LoRA adapter ``lora`` applied at run time, when given) with llama.cpp:
    (its own tokenization of ``texts``, logits per position of ``ids`` or, when not given, of that tokenization)."""
    import numpy as np
    from llama_cpp import Llama

    longest = max(len(tokens) for tokens in ids) if ids else 248  # the fixed prompts are far shorter
    llm = Llama(model_path=str(path), n_ctx=max(64, longest + 8), n_batch=max(64, longest + 8), logits_all=True,
                verbose=False, seed=0, n_threads=threads, lora_path=str(lora) if lora else None)
    try:
        own = [llm.tokenize(text.encode(), add_bos=False, special=True) for text in texts]
        logits = []
        for tokens in ids or own:
            llm.reset()
            llm.eval(tokens)
            logits.append(np.asarray(llm.scores[:len(tokens)], dtype=np.float64))
    finally:
        llm.close()
    return own, logits


def agreement(expected: list, got: list, tokenizer_agrees: bool) -> Agreement:
    """Top-1 agreement and KL(expected || got) over every position of every prompt."""
    import numpy as np

    top1, kls = [], []
    for want, have in zip(expected, got):
        top1.extend(have.argmax(-1) == want.argmax(-1))
        p, q = log_softmax(want), log_softmax(have)
        kls.extend((np.exp(p) * (p - q)).sum(-1))
    return Agreement(positions=len(top1), top1=float(np.mean(top1)), kl_mean=float(np.mean(kls)),
                     kl_max=float(np.max(kls)), tokenizer_agrees=bool(tokenizer_agrees))


def compare(reference, tokenizer, path: Path, threads: int | None = None) -> Agreement:
    """Load the GGUF file at ``path`` with llama.cpp and compare it with ``reference`` (from
    :func:`reference_logits`)."""
    ids = [tokens for tokens, _ in reference]
    own, logits = gguf_logits(path, prompts(tokenizer), threads, ids=ids)
    return agreement([expected for _, expected in reference], logits, own == ids)


def log_softmax(logits):
    import numpy as np

    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
